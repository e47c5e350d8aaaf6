"""Failures, interrupts and failed uploads: the run status is true and no trained model is lost."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import keras
import mlflow
import numpy as np
import pytest

import models
import servers
from permissions import without_file_permission_override
from keras_mlflow_savedmodel import ModelLoggingError, SavedModelMLflowCallback, run_lifecycle
from keras_mlflow_savedmodel.saving import TEMP_PREFIX
from keras_mlflow_savedmodel.upload import KEPT_FOLDER_NAME
from reload import predict_in_fresh_process

SCRIPT = os.path.join(os.path.dirname(__file__), "failure_scripts.py")
SCRIPT_TIMEOUT_SECONDS = 300


@pytest.fixture(autouse=True)
def no_dangling_runs():
    """End runs a test left open, so that the next test's fit does not end them."""
    yield
    run_lifecycle.end_dangling_runs()


class RaiseAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, error, epoch=1):
        super().__init__()
        self.error = error
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise self.error


class StopServerAtTrainEnd(keras.callbacks.Callback):
    def __init__(self, server):
        super().__init__()
        self.server = server

    def on_train_end(self, logs=None):
        self.server.stop()


def fit(model, callbacks, epochs=2):
    x, y = models.make_data()
    model.fit(x, y, epochs=epochs, batch_size=16, callbacks=callbacks, verbose=0)
    return x


def run_status(tracking_uri, run_id):
    return mlflow.MlflowClient(tracking_uri).get_run(run_id).info.status


def run_artifacts(store, run_id, artifact_path="model"):
    run = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db").get_run(run_id)
    return os.path.join(str(store), run.info.experiment_id, run_id, "artifacts", artifact_path)


def temporary_folders(folder):
    return [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]


def run_script(mode, work_dir, prefix=()):
    """Run failure_scripts.py in a fresh process and return the completed process."""
    return subprocess.run(
        [*prefix, sys.executable, SCRIPT, mode, str(work_dir)],
        cwd=work_dir,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
    )


def read_run_id(work_dir):
    with open(os.path.join(work_dir, "run.json")) as file:
        return json.load(file)["run_id"]


def train_with_read_only_artifacts(work_dir, mode="read-only"):
    result = run_script(mode, work_dir, without_file_permission_override())
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(work_dir, "result.json")) as file:
        return json.load(file), result.stderr


# Run status after failures and interrupts


def test_exception_in_fit_fails_run(tmp_path):
    with pytest.raises(ValueError, match="bad batch"):
        with SavedModelMLflowCallback(str(tmp_path / "store")) as callback:
            fit(models.sequential_model(), [callback, RaiseAtEpochEnd(ValueError("bad batch"))])

    assert run_status(callback.tracking_uri, callback.run_id) == "FAILED"
    assert mlflow.active_run() is None


def test_keyboard_interrupt_kills_run(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with SavedModelMLflowCallback(str(tmp_path / "store")) as callback:
            fit(models.sequential_model(), [callback, RaiseAtEpochEnd(KeyboardInterrupt())])

    assert run_status(callback.tracking_uri, callback.run_id) == "KILLED"
    assert mlflow.active_run() is None


def test_interrupt_logs_partial_model(tmp_path):
    store = tmp_path / "store"
    model = models.sequential_model()
    with pytest.raises(KeyboardInterrupt):
        with SavedModelMLflowCallback(str(store), log_partial_model=True) as callback:
            fit(model, [callback, RaiseAtEpochEnd(KeyboardInterrupt())], epochs=5)

    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[run_lifecycle.PARTIAL_MODEL_TAG] == "model"
    x, _ = models.make_data()
    outputs = predict_in_fresh_process(run_artifacts(store, callback.run_id), x, tmp_path)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=1e-5)


def test_interrupt_leaves_no_temporary_folder(tmp_path):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with SavedModelMLflowCallback(str(tmp_path / "store"), temp_dir=str(temp_root), log_partial_model=True) as cb:
            fit(models.sequential_model(), [cb, RaiseAtEpochEnd(KeyboardInterrupt())])

    assert temporary_folders(temp_root) == []


def test_second_interrupt_still_kills_run(tmp_path):
    # The first Ctrl-C stops fit; the second arrives while the partial model is being exported.
    interrupted = {"again": False}

    class InterruptExport(keras.layers.Layer):
        def call(self, inputs):
            if interrupted["again"]:
                raise KeyboardInterrupt()
            return inputs

    class FirstInterrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            interrupted["again"] = True
            raise KeyboardInterrupt()

    model = keras.Sequential([keras.Input((8,)), InterruptExport(), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(KeyboardInterrupt):
        with SavedModelMLflowCallback(str(tmp_path / "store"), log_partial_model=True) as callback:
            fit(model, [callback, FirstInterrupt()])

    assert run_status(callback.tracking_uri, callback.run_id) == "KILLED"
    assert run_lifecycle.PARTIAL_MODEL_TAG not in mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id).data.tags


def test_user_run_left_to_its_owner(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    with mlflow.start_run() as run:
        with pytest.raises(ValueError):
            with callback:
                fit(models.sequential_model(), [callback, RaiseAtEpochEnd(ValueError("bad batch"))])
        status_inside = run_status(callback.tracking_uri, run.info.run_id)

    assert status_inside == "RUNNING"


def test_later_fit_ends_dangling_run(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model = models.sequential_model()
    with pytest.raises(ValueError):
        fit(model, [callback, RaiseAtEpochEnd(ValueError("bad batch"))])
    crashed_run_id = callback.run_id
    status_after_crash = run_status(callback.tracking_uri, crashed_run_id)

    fit(model, [callback])

    assert status_after_crash == "RUNNING"
    assert callback.run_id != crashed_run_id
    assert run_status(callback.tracking_uri, crashed_run_id) == "FAILED"
    assert run_status(callback.tracking_uri, callback.run_id) == "FINISHED"


def test_uncaught_exception_in_script_fails_run(tmp_path):
    result = run_script("crash", tmp_path)

    assert result.returncode == 1, result.stderr[-3000:]
    assert "bad batch in epoch 1" in result.stderr
    store = tmp_path / "store"
    assert run_status(f"sqlite:///{store}/mlflow.db", read_run_id(tmp_path)) == "FAILED"
    assert temporary_folders(tmp_path / "tmp") == []


def test_sigterm_kills_run_and_logs_partial_model(tmp_path):
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "sigterm", str(tmp_path)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + SCRIPT_TIMEOUT_SECONDS
        while not (tmp_path / "ready").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read()[-3000:]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=SCRIPT_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == run_lifecycle.TERMINATED_EXIT_CODE, stderr[-3000:]
    store = tmp_path / "store"
    run = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db").get_run(read_run_id(tmp_path))
    assert run.info.status == "KILLED"
    assert run.data.tags[run_lifecycle.PARTIAL_MODEL_TAG] == "model"
    assert os.path.isfile(os.path.join(run_artifacts(store, run.info.run_id), "saved_model.pb"))
    assert temporary_folders(tmp_path / "tmp") == []


# Logging fails at train end


def test_read_only_artifacts_keep_model(tmp_path):
    result, stderr = train_with_read_only_artifacts(tmp_path)

    kept = result["kept_folder"]
    assert kept == os.path.join(str(tmp_path / "store"), KEPT_FOLDER_NAME, result["run_id"], "model")
    assert kept in result["message"]
    error_lines = [line for line in stderr.splitlines() if line.startswith("ERROR") and kept in line]
    assert len(error_lines) == 1
    assert result["run_id"] in error_lines[0]
    assert run_status(f"sqlite:///{tmp_path}/store/mlflow.db", result["run_id"]) == "FAILED"
    assert temporary_folders(tmp_path / "tmp") == []
    saved = np.load(tmp_path / "predictions.npz")
    outputs = predict_in_fresh_process(kept, saved["x"], tmp_path)
    np.testing.assert_allclose(outputs, saved["predictions"], atol=1e-5)


def test_upload_command_logs_kept_model(tmp_path):
    result, _ = train_with_read_only_artifacts(tmp_path)
    store = tmp_path / "store"
    for folder in store.iterdir():
        if folder.is_dir():
            folder.chmod(0o755)

    upload = subprocess.run(
        [sys.executable, "-m", "keras_mlflow_savedmodel", "upload", result["kept_folder"]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
    )

    assert upload.returncode == 0, upload.stderr[-3000:]
    assert not os.path.exists(result["kept_folder"])
    saved = np.load(tmp_path / "predictions.npz")
    outputs = predict_in_fresh_process(run_artifacts(store, result["run_id"]), saved["x"], tmp_path)
    np.testing.assert_allclose(outputs, saved["predictions"], atol=1e-5)


def upload_kept_folder(work_dir, kept_folder):
    """Make the store writable again and run the upload command on `kept_folder`."""
    for folder in (work_dir / "store").iterdir():
        if folder.is_dir():
            folder.chmod(0o755)
    return subprocess.run(
        [sys.executable, "-m", "keras_mlflow_savedmodel", "upload", kept_folder],
        cwd=work_dir,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
    )


def test_upload_command_finishes_failed_run(tmp_path):
    result, _ = train_with_read_only_artifacts(tmp_path)
    tracking_uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    failed_run = mlflow.MlflowClient(tracking_uri).get_run(result["run_id"])

    upload = upload_kept_folder(tmp_path, result["kept_folder"])

    assert upload.returncode == 0, upload.stderr[-3000:]
    assert "run status:     FINISHED (was FAILED only because the upload had failed)" in upload.stdout
    assert failed_run.info.status == "FAILED"
    run = mlflow.MlflowClient(tracking_uri).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.end_time == failed_run.info.end_time


def test_upload_command_keeps_other_failure(tmp_path):
    result, _ = train_with_read_only_artifacts(tmp_path, mode="read-only-own-run")
    tracking_uri = f"sqlite:///{tmp_path}/store/mlflow.db"

    upload = upload_kept_folder(tmp_path, result["kept_folder"])

    assert upload.returncode == 0, upload.stderr[-3000:]
    assert "run status:     FAILED (unchanged" in upload.stdout
    assert run_status(tracking_uri, result["run_id"]) == "FAILED"
    assert os.path.isfile(os.path.join(run_artifacts(tmp_path / "store", result["run_id"]), "saved_model.pb"))


@pytest.fixture
def mlflow_server(tmp_path):
    server = servers.start_mlflow_server(tmp_path / "server")
    yield server
    server.stop()


def test_stopped_server_retries_then_keeps_model(tmp_path, mlflow_server, monkeypatch, caplog):
    # MLflow's REST client would retry each request 7 times over minutes; the test counts ours.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    kept_dir = tmp_path / "kept"
    callback = SavedModelMLflowCallback(mlflow_server.url, kept_dir=str(kept_dir), upload_retries=2)

    with caplog.at_level(logging.WARNING, logger="keras_mlflow_savedmodel"):
        with pytest.raises(ModelLoggingError) as raised:
            fit(models.sequential_model(), [StopServerAtTrainEnd(mlflow_server), callback])

    kept = os.path.join(str(kept_dir), callback.run_id, "model")
    assert raised.value.kept_folder == kept
    assert kept in str(raised.value)
    assert os.path.isfile(os.path.join(kept, "saved_model.pb"))
    retries = [record for record in caplog.records if "retry" in record.getMessage()]
    assert len(retries) == 2
