"""The .keras archive and the record of custom classes: load_model returns a model that trains on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import mlflow
import numpy as np
import pytest

import fidelity_models
import models
from keras_mlflow_savedmodel import CustomObjectsError, KerasMlflowSavedModelError, SavedModelMLflowCallback, load_model
from keras_mlflow_savedmodel.keras_archive import CUSTOM_OBJECTS_FILE, KERAS_FOLDER


def logged_folder(store, run_id):
    run = mlflow.MlflowClient(mlflow.get_tracking_uri()).get_run(run_id)
    return os.path.join(str(store), run.info.experiment_id, run_id, "artifacts", "model")


def fit_kind(tmp_path, kind):
    model, x, y = fidelity_models.build(kind)
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)
    return model, x, y, callback


def test_trainable_load_predicts_same(tmp_path):
    model, x, _, callback = fit_kind(tmp_path, "registered_custom_layer")

    restored = load_model(callback.model_uri, trainable=True)
    assert isinstance(restored, keras.Model)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_trainable_load_trains_further(tmp_path):
    _, x, y, callback = fit_kind(tmp_path, "registered_custom_layer")
    restored = load_model(callback.model_uri, trainable=True)
    before = [weight.copy() for weight in restored.get_weights()]

    history = restored.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(old, new) for old, new in zip(before, restored.get_weights()))


def test_custom_classes_are_recorded(tmp_path):
    _, _, _, callback = fit_kind(tmp_path, "registered_custom_layer")

    with open(os.path.join(logged_folder(tmp_path / "store", callback.run_id), CUSTOM_OBJECTS_FILE)) as file:
        records = json.load(file)["custom_classes"]
    assert records == [{"module": "fidelity_models", "class_name": "Power", "registered_name": "fidelity_tests>Power"}]


def test_custom_objects_argument_resolves_local_class(tmp_path):
    model = models.sequential_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)
    scale_shift = type(model.layers[0])

    restored = load_model(callback.model_uri, trainable=True, custom_objects={"ScaleShift": scale_shift})
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_missing_local_class_is_named(tmp_path):
    model = models.sequential_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)

    with pytest.raises(CustomObjectsError, match="ScaleShift") as raised:
        load_model(callback.model_uri, trainable=True)
    assert [record["class_name"] for record in raised.value.missing] == ["custom_classes.<locals>.ScaleShift"]


def test_unserializable_layer_warns_and_logs_savedmodel(tmp_path):
    model, x, y = fidelity_models.build("custom_layer_without_config")
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    with pytest.warns(UserWarning, match="get_config"):
        model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)

    folder = logged_folder(tmp_path / "store", callback.run_id)
    assert os.path.isfile(os.path.join(folder, "saved_model.pb"))
    assert not os.path.exists(os.path.join(folder, KERAS_FOLDER))
    with pytest.raises(KerasMlflowSavedModelError, match="contains no native Keras model"):
        load_model(callback.model_uri, trainable=True)


def test_layer_config_that_cannot_rebuild_warns(tmp_path):
    class Scale(keras.layers.Layer):
        # No **kwargs: the config Keras fills in has "name" and "trainable", which __init__ rejects.
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def call(self, inputs):
            return inputs * self.factor

    model = keras.Sequential([keras.Input((8,)), Scale(2.0), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    with pytest.warns(UserWarning, match=r"layer 'scale' \(.*Scale\)"):
        model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)

    assert os.path.isfile(os.path.join(logged_folder(tmp_path / "store", callback.run_id), "saved_model.pb"))


def test_archive_can_be_turned_off(tmp_path):
    model, x, y = fidelity_models.build("registered_custom_layer")
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), save_keras_archive=False)
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)

    assert not os.path.exists(os.path.join(logged_folder(tmp_path / "store", callback.run_id), KERAS_FOLDER))



def plain_model():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_trainable_load_resumes_optimizer_state(tmp_path):
    model = plain_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model.fit(x, y, epochs=3, batch_size=16, callbacks=[callback], verbose=0)

    restored = load_model(callback.model_uri, trainable=True)
    assert int(restored.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 12
    for logged, live in zip(restored.optimizer.variables, model.optimizer.variables):
        np.testing.assert_allclose(np.asarray(logged), np.asarray(live), atol=0)


def test_keras_folder_opens_with_keras_alone(tmp_path):
    model = plain_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)

    folder = os.path.join(logged_folder(tmp_path / "store", callback.run_id), KERAS_FOLDER)
    assert {"config.json", "metadata.json", "model.weights.h5"} <= set(os.listdir(folder))
    restored = keras.saving.load_model(folder)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_run_with_zipped_archive_still_loads_trainable(tmp_path):
    # Runs logged by earlier versions, or on Keras before 3.5, hold model.keras instead of the folder.
    model = plain_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), save_keras_archive=False)
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)
    archive = tmp_path / "model.keras"
    model.save(archive)
    mlflow.MlflowClient(callback.tracking_uri).log_artifact(callback.run_id, str(archive), "model")

    restored = load_model(callback.model_uri, trainable=True)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)

# Runs in a fresh process where fidelity_models cannot be imported: Power is defined again here,
# unregistered, and handed over through custom_objects.
_FRESH_LOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np
    from keras_mlflow_savedmodel import CustomObjectsError, load_model

    model_uri, tracking_uri, inputs_path, outputs_path, mode = sys.argv[1:6]

    class Power(keras.layers.Layer):
        def __init__(self, exponent=2.0, **kwargs):
            super().__init__(**kwargs)
            self.exponent = exponent

        def call(self, inputs):
            return keras.ops.sign(inputs) * keras.ops.abs(inputs) ** self.exponent

        def get_config(self):
            return {**super().get_config(), "exponent": self.exponent}

    if mode == "without":
        try:
            load_model(model_uri, tracking_uri=tracking_uri, trainable=True)
        except CustomObjectsError as error:
            print("missing:", [record["class_name"] for record in error.missing])
        sys.exit(0)
    model = load_model(model_uri, tracking_uri=tracking_uri, trainable=True, custom_objects={"fidelity_tests>Power": Power})
    x = np.load(inputs_path)
    np.save(outputs_path, model.predict(x, verbose=0))
    model.fit(x, np.zeros((len(x), 2)), epochs=1, verbose=0)
    """
)


def load_in_fresh_process(tmp_path, callback, x, mode):
    inputs_path = tmp_path / "inputs.npy"
    outputs_path = tmp_path / "outputs.npy"
    np.save(inputs_path, x)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_LOAD_SCRIPT, callback.model_uri, callback.tracking_uri, str(inputs_path), str(outputs_path), mode],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, outputs_path


def test_fresh_process_names_missing_class(tmp_path):
    _, x, _, callback = fit_kind(tmp_path, "registered_custom_layer")

    stdout, _ = load_in_fresh_process(tmp_path, callback, x, "without")
    assert "missing: ['Power']" in stdout


def test_fresh_process_loads_with_custom_objects(tmp_path):
    model, x, _, callback = fit_kind(tmp_path, "registered_custom_layer")

    _, outputs_path = load_in_fresh_process(tmp_path, callback, x, "with")
    np.testing.assert_allclose(np.load(outputs_path), model.predict(x, verbose=0), atol=1e-6)
