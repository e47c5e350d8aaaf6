"""The reload check: the SavedModel is compared with the live model and the result is tagged."""

from __future__ import annotations

import os

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf

import models
from keras_mlflow_savedmodel import InvalidArgumentError, SavedModelMLflowCallback
from keras_mlflow_savedmodel.errors import ModelVerificationError
from keras_mlflow_savedmodel.verification import (
    FAILED,
    MAX_DIFFERENCE_TAG,
    PASSED,
    SAMPLE_SOURCE_TAG,
    VERIFICATION_TAG,
)


class EagerOnlyDoubling(keras.layers.Layer):
    """Doubles its input only when run eagerly, so the traced SavedModel differs from the live model."""

    def call(self, inputs):
        if tf.executing_eagerly():
            return inputs * 2.0
        return inputs


def drifting_model():
    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(3)(EagerOnlyDoubling()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    return model


def run_tags(callback):
    return mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id).data.tags


def fit(model, callback, y=None):
    x, labels = models.make_data()
    targets = labels if y is None else y
    model.fit(x, targets, epochs=1, batch_size=16, callbacks=[callback], verbose=0)
    return x


def test_passed_check_is_tagged(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    fit(models.functional_model(), callback)

    tags = run_tags(callback)
    assert tags[VERIFICATION_TAG] == PASSED
    assert float(tags[MAX_DIFFERENCE_TAG]) <= 1e-5
    assert tags[SAMPLE_SOURCE_TAG] == "serving signature"


def test_input_example_is_used(tmp_path):
    x, _ = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), input_example=x[:4])
    fit(models.subclassed_model(), callback)

    assert run_tags(callback)[SAMPLE_SOURCE_TAG] == "input_example"
    assert callback.verification.passed


def test_mismatch_raises_and_keeps_model(tmp_path):
    store = tmp_path / "store"
    callback = SavedModelMLflowCallback(str(store))
    with pytest.raises(ModelVerificationError, match="does not reproduce the live model") as raised:
        fit(drifting_model(), callback, y=np.zeros((64, 3), "float32"))

    client = mlflow.MlflowClient(callback.tracking_uri)
    run = client.get_run(callback.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[VERIFICATION_TAG] == FAILED
    assert raised.value.max_abs_diff > 1e-3
    assert raised.value.model_uri == callback.model_uri
    folder = os.path.join(str(store), run.info.experiment_id, callback.run_id, "artifacts", "model")
    assert os.path.isfile(os.path.join(folder, "saved_model.pb"))


def test_mismatch_warns_when_asked(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), on_verify_failure="warn")
    with pytest.warns(RuntimeWarning, match="on_verify_failure='warn'"):
        fit(drifting_model(), callback, y=np.zeros((64, 3), "float32"))

    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[VERIFICATION_TAG] == FAILED


@pytest.mark.parametrize(
    "argument, value",
    [
        ("on_verify_failure", "ignore"),
        ("on_verify_failure", None),
        ("input_example", "a sentence"),
        ("input_example", [1, 2]),
        ("save_keras_archive", "yes"),
        ("registered_model_name", ""),
        ("registered_model_name", 3),
    ],
)
def test_bad_argument_is_rejected(tmp_path, argument, value):
    with pytest.raises(InvalidArgumentError) as raised:
        SavedModelMLflowCallback(str(tmp_path / "store"), **{argument: value})

    assert raised.value.argument == argument
    assert argument in str(raised.value)


def test_list_input_example_is_checked(tmp_path):
    import fidelity_models

    model, x, y = fidelity_models.build("multi_input_output")
    example = [array[:3] for array in x]
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), input_example=example)
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)

    tags = run_tags(callback)
    assert tags[VERIFICATION_TAG] == PASSED
    assert tags[SAMPLE_SOURCE_TAG] == "input_example"


def open_length_conv_model():
    inputs = keras.Input((None, 2))
    features = keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(4, 5)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    model.compile("adam", "mse")
    return model


def test_open_axis_longer_than_default_passes(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    x = np.random.default_rng(0).normal(size=(16, 10, 2)).astype("float32")
    open_length_conv_model().fit(x, x[:, 0, :1], epochs=1, callbacks=[callback], verbose=0)

    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[VERIFICATION_TAG] == PASSED


def test_unbuildable_inputs_skip_the_check(tmp_path):
    inputs = keras.Input((None, 2))
    features = keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(4, 200)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    model.compile("adam", "mse")
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    x = np.random.default_rng(0).normal(size=(8, 210, 2)).astype("float32")
    model.fit(x, x[:, 0, :1], epochs=1, callbacks=[callback], verbose=0)

    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[VERIFICATION_TAG] == "skipped"
