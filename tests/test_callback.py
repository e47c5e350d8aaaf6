"""End-to-end tests of SavedModelMLflowCallback on Keras 3 with real training and real stores."""

from __future__ import annotations

import logging
import os

import mlflow
import numpy as np
import pytest

import models
from keras_mlflow_savedmodel import SavedModelMLflowCallback, load_model
from keras_mlflow_savedmodel.callback import AUTOLOG_SAFE_ARTIFACT_PATH
from keras_mlflow_savedmodel.saving import TEMP_PREFIX
from reload import predict_in_fresh_process


def fit(model, callback, epochs=2, **kwargs):
    x, y = models.make_data()
    model.fit(x, y, epochs=epochs, batch_size=16, validation_split=0.25, callbacks=[callback], verbose=0, **kwargs)
    return x


def artifact_folder(store, run_id, artifact_path="model"):
    run = mlflow.MlflowClient(mlflow.get_tracking_uri()).get_run(run_id)
    return os.path.join(str(store), run.info.experiment_id, run_id, "artifacts", artifact_path)


def test_drop_in_run_lands_in_store(tmp_path):
    store = tmp_path / "store"
    callback = SavedModelMLflowCallback(str(store), experiment_name="digits", run_name="first")
    fit(models.sequential_model(), callback)

    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "first"
    assert callback.model_uri == f"runs:/{callback.run_id}/model"
    assert os.path.isfile(os.path.join(artifact_folder(store, callback.run_id), "saved_model.pb"))
    assert mlflow.active_run() is None


def test_drop_in_run_logs_params_and_epoch_metrics(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    fit(models.sequential_model(), callback, epochs=3)

    client = mlflow.MlflowClient(callback.tracking_uri)
    params = client.get_run(callback.run_id).data.params
    assert params["epochs"] == "3"
    assert params["batch_size"] == "16"
    assert params["optimizer"] == "Adam"
    assert params["learning_rate"] == "0.001"
    assert params["trainable_params"] == str(8 * 2 + 8 * 16 + 16 + 16 * 3 + 3)
    history = client.get_metric_history(callback.run_id, "val_loss")
    assert [metric.step for metric in history] == [0, 1, 2]


@pytest.mark.parametrize("build", [models.sequential_model, models.functional_model, models.subclassed_model])
def test_model_kind_reloads_in_fresh_process(build, tmp_path):
    store = tmp_path / "store"
    model = build()
    callback = SavedModelMLflowCallback(str(store))
    x = fit(model, callback)

    outputs = predict_in_fresh_process(artifact_folder(store, callback.run_id), x, tmp_path)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=1e-5)


def test_load_model_predicts_like_trained_model(tmp_path):
    model = models.sequential_model()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    x = fit(model, callback)

    restored = load_model(callback.model_uri)
    np.testing.assert_allclose(restored.predict(x), model.predict(x, verbose=0), atol=1e-5)


def test_serving_model_predict_takes_keras_verbose(tmp_path):
    model = models.sequential_model()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    x = fit(model, callback)

    restored = load_model(callback.model_uri)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_load_model_with_store_path(tmp_path):
    store = tmp_path / "store"
    model = models.sequential_model()
    callback = SavedModelMLflowCallback(str(store))
    x = fit(model, callback)
    mlflow.set_tracking_uri(None)

    restored = load_model(callback.model_uri, tracking_uri=str(store))
    np.testing.assert_allclose(restored.predict(x, batch_size=10), model.predict(x, verbose=0), atol=1e-5)


def test_user_run_is_used_and_left_open(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    with mlflow.start_run() as run:
        fit(models.sequential_model(), callback)
        assert callback.run_id == run.info.run_id
        assert mlflow.active_run().info.run_id == run.info.run_id
        status_inside = mlflow.MlflowClient().get_run(run.info.run_id).info.status

    assert status_inside == "RUNNING"
    assert mlflow.MlflowClient().get_run(run.info.run_id).info.status == "FINISHED"


def test_autolog_without_models_inside_user_run(tmp_path):
    store = tmp_path / "store"
    callback = SavedModelMLflowCallback(str(store), experiment_name="autolog")
    mlflow.autolog(log_models=False)
    with mlflow.start_run() as run:
        fit(models.sequential_model(), callback, epochs=3)

    client = mlflow.MlflowClient(callback.tracking_uri)
    assert callback.run_id == run.info.run_id
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 3
    assert os.path.isfile(os.path.join(artifact_folder(store, run.info.run_id), "saved_model.pb"))


def test_autolog_run_lands_in_callback_store(tmp_path):
    store = tmp_path / "store"
    callback = SavedModelMLflowCallback(str(store), experiment_name="autolog")
    mlflow.autolog(log_models=False)
    fit(models.sequential_model(), callback, epochs=3)

    client = mlflow.MlflowClient(callback.tracking_uri)
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "autolog"
    assert len(client.get_metric_history(callback.run_id, "loss")) == 3
    assert os.path.isfile(os.path.join(artifact_folder(store, callback.run_id), "saved_model.pb"))
    # MLflow 2's SQL store creates an empty ./mlruns as its default artifact root; nothing may land there.
    assert [path for path in (tmp_path / "mlruns").rglob("*") if path.is_file()] == []


def test_autolog_params_logged_once(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    mlflow.autolog(log_models=False)
    fit(models.sequential_model(), callback, epochs=2)

    params = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id).data.params
    assert "optimizer" not in params
    assert params["epochs"] == "2"


def test_autolog_with_models_keeps_folders_apart(tmp_path):
    store = tmp_path / "store"
    model = models.sequential_model()
    callback = SavedModelMLflowCallback(str(store))
    mlflow.autolog(log_models=True)
    x = fit(model, callback)

    assert callback.model_uri == f"runs:/{callback.run_id}/{AUTOLOG_SAFE_ARTIFACT_PATH}"
    folder = artifact_folder(store, callback.run_id, AUTOLOG_SAFE_ARTIFACT_PATH)
    assert os.path.isfile(os.path.join(folder, "saved_model.pb"))
    restored = load_model(callback.model_uri)
    np.testing.assert_allclose(restored.predict(x), model.predict(x, verbose=0), atol=1e-5)


def test_no_temporary_folder_left(tmp_path, monkeypatch):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), temp_dir=str(temp_root))
    fit(models.sequential_model(), callback)

    assert [name for name in os.listdir(temp_root) if name.startswith(TEMP_PREFIX)] == []


def test_train_begin_logs_store_and_ui_command(tmp_path, caplog):
    store = tmp_path / "store"
    callback = SavedModelMLflowCallback(str(store))
    with caplog.at_level(logging.INFO, logger="keras_mlflow_savedmodel"):
        fit(models.sequential_model(), callback, epochs=1)

    begin_lines = [record.getMessage() for record in caplog.records if "mlflow ui" in record.getMessage()]
    assert len(begin_lines) == 1
    assert callback.run_id in begin_lines[0]
    assert str(store) in begin_lines[0]


def test_active_run_in_other_store_fails_before_training(tmp_path):
    from keras_mlflow_savedmodel import StoreMismatchError

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")
    with mlflow.start_run():
        with pytest.raises(StoreMismatchError, match="other.db"):
            SavedModelMLflowCallback(str(tmp_path / "store"))


def test_two_callbacks_in_one_fit_finish(tmp_path):
    first = SavedModelMLflowCallback(str(tmp_path / "store"), artifact_path="first")
    second = SavedModelMLflowCallback(str(tmp_path / "store"), artifact_path="second")
    x, y = models.make_data()
    models.sequential_model().fit(x, y, epochs=1, callbacks=[first, second], verbose=0)

    client = mlflow.MlflowClient(first.tracking_uri)
    assert first.run_id == second.run_id
    assert client.get_run(first.run_id).info.status == "FINISHED"
    artifacts = {item.path for item in client.list_artifacts(first.run_id)}
    assert {"first", "second"} <= artifacts


def test_second_store_uses_its_default_experiment(tmp_path):
    SavedModelMLflowCallback(str(tmp_path / "store-a"), experiment_name="project-a")
    callback = SavedModelMLflowCallback(str(tmp_path / "store-b"))
    fit(models.sequential_model(), callback, epochs=1)

    client = mlflow.MlflowClient(callback.tracking_uri)
    experiment_id = client.get_run(callback.run_id).info.experiment_id
    assert client.get_experiment(experiment_id).name == "Default"


def test_temp_dir_with_tilde_is_expanded(tmp_path, monkeypatch):
    (tmp_path / "home" / "scratch").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), temp_dir="~/scratch")
    monkeypatch.chdir(tmp_path / "home")
    fit(models.sequential_model(), callback, epochs=1)

    assert mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id).info.status == "FINISHED"


def test_metric_name_mlflow_rejects_is_renamed(tmp_path):
    import keras

    model = models.sequential_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc@train (%)")])
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    fit(model, callback, epochs=2)

    client = mlflow.MlflowClient(callback.tracking_uri)
    assert client.get_run(callback.run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(callback.run_id, "acc_train ___")) == 2


def test_load_model_rejects_missing_store(tmp_path):
    from keras_mlflow_savedmodel import TrackingStoreError

    with pytest.raises(TrackingStoreError, match="typo"):
        load_model("runs:/0123456789abcdef/model", tracking_uri=str(tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()
