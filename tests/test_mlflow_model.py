"""The logged folder is an MLflow Model: pyfunc loads and predicts, and it can be registered."""

from __future__ import annotations

import os

import mlflow
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import fidelity_models
import models
from keras_mlflow_savedmodel import SavedModelMLflowCallback
from keras_mlflow_savedmodel.mlflow_model import FLAVOR_NAME, MLMODEL_FILE


def fit(model, x, y, callback):
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)


def logged_folder(store, run_id):
    run = mlflow.MlflowClient(mlflow.get_tracking_uri()).get_run(run_id)
    return os.path.join(str(store), run.info.experiment_id, run_id, "artifacts", "model")


@pytest.fixture
def single_input(tmp_path):
    model = models.sequential_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), input_example=x[:2])
    fit(model, x, y, callback)
    return model, x, callback


@pytest.fixture
def dict_input(tmp_path):
    model, x, y = fidelity_models.build("dict_inputs")
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), registered_model_name="scores")
    fit(model, x, y, callback)
    return model, x, callback


def test_pyfunc_predicts_numpy(single_input):
    model, x, callback = single_input

    predictions = mlflow.pyfunc.load_model(callback.model_uri).predict(x)
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0), atol=1e-5)


def test_pyfunc_predicts_dataframe(single_input):
    model, x, callback = single_input

    predictions = mlflow.pyfunc.load_model(callback.model_uri).predict(pd.DataFrame(x))
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0), atol=1e-5)


def test_pyfunc_predicts_dict_of_arrays(dict_input):
    model, x, callback = dict_input

    predictions = mlflow.pyfunc.load_model(callback.model_uri).predict(x)
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0)["score"], atol=1e-5)


def test_pyfunc_predicts_dataframe_of_named_inputs(dict_input):
    model, x, callback = dict_input
    frame = pd.DataFrame({name: list(values) for name, values in x.items()})

    predictions = mlflow.pyfunc.load_model(callback.model_uri).predict(frame)
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0)["score"], atol=1e-5)


def test_pyfunc_predicts_strings(tmp_path):
    model, x, y = fidelity_models.build("text_vectorization")
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    fit(model, x, y, callback)
    texts = x.numpy().astype(object)

    predictions = mlflow.pyfunc.load_model(callback.model_uri).predict(texts)
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0), atol=1e-5)


def test_signature_matches_serving_signature(tmp_path, dict_input):
    _, _, callback = dict_input
    folder = logged_folder(tmp_path / "store", callback.run_id)

    signature = mlflow.models.get_model_info(callback.model_uri).signature
    loaded = tf.saved_model.load(folder)
    served = loaded.signatures["serving_default"].structured_input_signature[1]
    assert signature.inputs.input_names() == sorted(served)
    assert [spec.shape for spec in signature.inputs.inputs] == [
        tuple(-1 if dim is None else dim for dim in served[name].shape.as_list()) for name in sorted(served)
    ]


def test_input_example_is_stored(single_input):
    _, x, callback = single_input

    info = mlflow.models.get_model_info(callback.model_uri)
    assert info.saved_input_example_info["type"] == "ndarray"
    example = mlflow.models.Model.load(callback.model_uri).load_input_example(mlflow.artifacts.download_artifacts(callback.model_uri))
    np.testing.assert_allclose(example, x[:2], atol=1e-6)


def test_folder_still_loads_with_tensorflow(tmp_path, single_input):
    model, x, callback = single_input
    folder = logged_folder(tmp_path / "store", callback.run_id)

    assert os.path.isfile(os.path.join(folder, MLMODEL_FILE))
    loaded = tf.saved_model.load(folder)
    np.testing.assert_allclose(loaded.serve(x).numpy(), model.predict(x, verbose=0), atol=1e-5)


def test_flavor_names_keras_files(single_input):
    _, _, callback = single_input

    flavor = mlflow.models.get_model_info(callback.model_uri).flavors[FLAVOR_NAME]
    assert flavor["keras_archive"] == "keras_model"
    assert flavor["saved_format"] == "keras3-export"


def test_registered_version_is_exposed(dict_input):
    _, _, callback = dict_input

    version = mlflow.MlflowClient(callback.tracking_uri).get_model_version("scores", callback.registered_model_version)
    assert callback.registered_model_version == "1"
    assert version.run_id == callback.run_id


def test_registered_model_loads_with_pyfunc(dict_input):
    model, x, callback = dict_input

    loaded = mlflow.pyfunc.load_model(f"models:/scores/{callback.registered_model_version}")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x, verbose=0)["score"], atol=1e-5)


def test_second_fit_registers_next_version(tmp_path):
    model = models.sequential_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), registered_model_name="digits")
    fit(model, x, y, callback)
    first_run = callback.run_id
    fit(model, x, y, callback)

    assert callback.registered_model_version == "2"
    versions = mlflow.MlflowClient(callback.tracking_uri).search_model_versions("name='digits'")
    assert sorted((str(version.version), version.run_id) for version in versions) == [("1", first_run), ("2", callback.run_id)]
