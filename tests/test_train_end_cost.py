"""What the callback writes and skips to keep training and train end cheap: sizes and steps, not times."""

from __future__ import annotations

import os

import mlflow
import numpy as np
import pytest

import models
from keras_mlflow_savedmodel import InvalidArgumentError, SavedModelMLflowCallback
from keras_mlflow_savedmodel.mlflow_model import serving_signature
from keras_mlflow_savedmodel.verification import VERIFICATION_TAG
from reload import predict_in_fresh_process


def fit(model, callback, epochs=2):
    x, y = models.make_data()
    model.fit(x, y, epochs=epochs, batch_size=16, callbacks=[callback], verbose=0)
    return x


def artifact_folder(callback, artifact_path="model"):
    from urllib.parse import unquote, urlparse

    artifact_uri = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id).info.artifact_uri
    return os.path.join(unquote(urlparse(artifact_uri).path), artifact_path)


def weight_bytes(model) -> int:
    return sum(int(np.prod(weight.shape)) * np.dtype(weight.dtype).itemsize for weight in model.weights)


def variables_bytes(folder) -> int:
    variables = os.path.join(folder, "variables")
    return sum(os.path.getsize(os.path.join(variables, name)) for name in os.listdir(variables))


def wide_model():
    import keras

    # Large enough that the checkpoint's own bookkeeping is small beside the weights.
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(512), keras.layers.Dense(512), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_saved_model_stores_each_weight_once(tmp_path):
    model = wide_model()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), save_keras_archive=False)
    fit(model, callback)

    folder = artifact_folder(callback)
    assert variables_bytes(folder) <= 1.05 * weight_bytes(model)


def test_weights_once_keeps_serving_endpoints(tmp_path):
    model = wide_model()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), save_keras_archive=False)
    x = fit(model, callback)[:4]

    import tensorflow as tf

    folder = artifact_folder(callback)
    expected = np.asarray(model(x, training=False))
    np.testing.assert_allclose(predict_in_fresh_process(folder, x, tmp_path), expected, atol=1e-5)
    reloaded = tf.saved_model.load(folder)
    np.testing.assert_allclose(reloaded.serve(tf.constant(x)).numpy(), expected, atol=1e-5)
    assert serving_signature(folder).inputs.inputs[0].shape == (-1, 8)


def test_verify_false_skips_reload_check(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), verify=False)
    fit(models.sequential_model(), callback)

    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert VERIFICATION_TAG not in run.data.tags
    assert callback.verification is None
    assert os.path.isfile(os.path.join(artifact_folder(callback), "saved_model.pb"))


def test_every_epoch_metric_logged_in_order(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), save_keras_archive=False)
    fit(models.sequential_model(), callback, epochs=6)

    client = mlflow.MlflowClient(callback.tracking_uri)
    history = client.get_metric_history(callback.run_id, "loss")
    assert [metric.step for metric in sorted(history, key=lambda metric: metric.timestamp)] == list(range(6))
    assert client.get_run(callback.run_id).info.status == "FINISHED"


def test_metrics_thread_stopped_after_fit(tmp_path):
    import threading

    callback = SavedModelMLflowCallback(str(tmp_path / "store"), save_keras_archive=False)
    fit(models.sequential_model(), callback)

    names = [thread.name for thread in threading.enumerate()]
    assert not [name for name in names if name.startswith("keras-mlflow-savedmodel-metrics")]


@pytest.mark.parametrize("value", [1, "no", None])
def test_bad_verify_names_itself(value, tmp_path):
    with pytest.raises(InvalidArgumentError, match="verify"):
        SavedModelMLflowCallback(str(tmp_path / "store"), verify=value)
