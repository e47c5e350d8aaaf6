"""Every kind of Keras 3 model that trains through the callback reloads in a fresh process and
predicts the same, without its custom classes importable there."""

from __future__ import annotations

import os

import keras
import mlflow
import numpy as np
import pytest

import fidelity_models
from keras_mlflow_savedmodel import SavedModelMLflowCallback
from keras_mlflow_savedmodel.errors import LayerExportError
from keras_mlflow_savedmodel.export_failure import TRAINING_RESULTS_FOLDER
from keras_mlflow_savedmodel.keras_archive import WEIGHTS_FILE
from keras_mlflow_savedmodel.verification import PASSED, VERIFICATION_TAG
from structured_reload import flat_numpy, serve_in_fresh_process


def logged_folder(store, run_id, *parts):
    run = mlflow.MlflowClient(mlflow.get_tracking_uri()).get_run(run_id)
    return os.path.join(str(store), run.info.experiment_id, run_id, "artifacts", "model", *parts)


def assert_same_outputs(actual, expected):
    assert len(actual) == len(expected)
    for index, (got, want) in enumerate(zip(actual, expected)):
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"output {index}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"output {index}")


@pytest.mark.parametrize("kind", sorted(fidelity_models.BUILDERS))
def test_model_kind_round_trips(tmp_path, kind):
    store = tmp_path / "store"
    model, x, y = fidelity_models.build(kind)
    callback = SavedModelMLflowCallback(str(store))
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)

    expected = flat_numpy(model.predict(x, verbose=0))
    outputs = serve_in_fresh_process(logged_folder(store, callback.run_id), x, tmp_path)
    assert_same_outputs(outputs, expected)


@pytest.mark.parametrize("kind", ["string_lookup", "mixed_precision", "subclassed_tuple_inputs"])
def test_model_kind_passes_reload_check(tmp_path, kind):
    model, x, y = fidelity_models.build(kind)
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)

    tags = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id).data.tags
    assert tags[VERIFICATION_TAG] == PASSED


def test_adapted_normalization_keeps_statistics(tmp_path):
    store = tmp_path / "store"
    model, x, y = fidelity_models.build("adapted_normalization")
    callback = SavedModelMLflowCallback(str(store))
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)
    normalization = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    probe = np.asarray(normalization.mean).reshape(1, -1).astype("float32")

    (outputs,) = serve_in_fresh_process(logged_folder(store, callback.run_id), probe, tmp_path)
    head = model.layers[-1]
    # At the adapted mean the normalized input is zero, so the output is the head's bias alone.
    np.testing.assert_allclose(outputs[0], np.asarray(head.bias), atol=1e-5)


class NumpyClip(keras.layers.Layer):
    """Trains eagerly, but NumPy on a symbolic tensor cannot be traced for export."""

    def call(self, inputs):
        return keras.ops.convert_to_tensor(np.clip(np.asarray(inputs), -1.0, 1.0))

    def compute_output_shape(self, input_shape):
        return input_shape


def untraceable_model():
    inputs = keras.Input((4,))
    hidden = NumpyClip(name="numpy_clip")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))
    model.compile("adam", "mse", run_eagerly=True)
    return model


def fit_untraceable(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    model = untraceable_model()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    with pytest.raises(LayerExportError) as raised:
        model.fit(x, rng.normal(size=(16, 1)), epochs=1, batch_size=8, callbacks=[callback], verbose=0)
    return model, x, callback, raised.value


def test_export_error_names_layer(tmp_path):
    _, _, _, error = fit_untraceable(tmp_path)

    assert error.layer_name == "numpy_clip"
    assert "'numpy_clip' (NumpyClip)" in str(error)
    assert "NumpyClip.call()" in str(error)


def test_export_error_keeps_weights(tmp_path):
    model, x, callback, error = fit_untraceable(tmp_path)
    weights = logged_folder(tmp_path / "store", callback.run_id, TRAINING_RESULTS_FOLDER, WEIGHTS_FILE)

    assert os.path.isfile(weights)
    assert TRAINING_RESULTS_FOLDER in error.kept_location
    rebuilt = untraceable_model()
    rebuilt.load_weights(weights)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)



# The numpy, openvino and torch backends need jax, openvino or torch, none of which is installed
# here, so the train-begin check runs with the backend name replaced.
@pytest.fixture
def numpy_backend(monkeypatch):
    from keras_mlflow_savedmodel import _compat

    monkeypatch.setattr(_compat, "keras_backend", lambda: "numpy")


def test_unsupported_backend_without_archive_raises(tmp_path, numpy_backend):
    from keras_mlflow_savedmodel import ModelExportError

    model = fidelity_models.build("custom_train_step")[0]
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), save_keras_archive=False)
    callback.set_model(model)
    with pytest.raises(ModelExportError, match="the numpy backend cannot export a SavedModel"):
        callback.on_train_begin()


def test_unsupported_backend_with_archive_warns(tmp_path, numpy_backend):
    model = fidelity_models.build("custom_train_step")[0]
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    callback.set_model(model)
    with pytest.warns(UserWarning, match="will not be logged as a SavedModel: the numpy backend"):
        callback.on_train_begin()
