"""A local store gets the SavedModel moved into the run, not copied through a temporary folder."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading

import mlflow
import numpy as np
import pytest

import models
from keras_mlflow_savedmodel import SavedModelMLflowCallback, load_model
from keras_mlflow_savedmodel.local_artifacts import STAGING_PREFIX
from keras_mlflow_savedmodel.saving import TEMP_PREFIX


def fit(callback, model=None):
    model = model or models.sequential_model()
    x, y = models.make_data()
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)
    return model, x


def run_folder(store, run_id):
    run = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db").get_run(run_id)
    return os.path.join(str(store), run.info.experiment_id, run_id)


@contextlib.contextmanager
def names_seen_in(folder):
    """Yield a set that collects every name that appears in `folder` while the block runs."""
    seen = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(os.listdir(folder))
            stop.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join()


def test_local_store_stages_in_run_not_in_temp(tmp_path, monkeypatch):
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    store = tmp_path / "store"
    callback = SavedModelMLflowCallback(str(store))
    with names_seen_in(system_temp) as seen:
        model, x = fit(callback)

    assert not [name for name in seen if name.startswith(TEMP_PREFIX)]
    restored = load_model(callback.model_uri, dst_path=str(tmp_path / "download"))
    np.testing.assert_allclose(restored.predict(x), model.predict(x, verbose=0), atol=1e-5)


def test_no_staging_folder_left_in_run(tmp_path):
    store = tmp_path / "store"
    callback = SavedModelMLflowCallback(str(store))
    fit(callback)

    assert sorted(os.listdir(run_folder(store, callback.run_id))) == ["artifacts"]
    artifacts = mlflow.MlflowClient(callback.tracking_uri).list_artifacts(callback.run_id, "model")
    assert not [entry.path for entry in artifacts if STAGING_PREFIX in entry.path]


def test_taken_artifact_path_gets_suffix(tmp_path):
    # An earlier fit or another logger used "model" in the user's run; nothing may be merged into it.
    store = tmp_path / "store"
    notes = tmp_path / "notes.txt"
    notes.write_text("data split 2026-12-05\n")
    callback = SavedModelMLflowCallback(str(store))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(notes), "model")
        model, x = fit(callback)

    artifacts = os.path.join(run_folder(store, run.info.run_id), "artifacts")
    assert os.listdir(os.path.join(artifacts, "model")) == ["notes.txt"]
    assert callback.model_uri == f"runs:/{run.info.run_id}/model-2"
    restored = load_model(callback.model_uri)
    np.testing.assert_allclose(restored.predict(x), model.predict(x, verbose=0), atol=1e-5)


def test_artifact_path_taken_by_file_gets_suffix(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    with mlflow.start_run():
        mlflow.log_text("a note", "model")
        fit(callback)

    assert callback.artifact_path == "model-2"
    assert os.path.isfile(os.path.join(run_folder(tmp_path / "store", callback.run_id), "artifacts", "model-2", "saved_model.pb"))


def test_temp_dir_argument_is_still_used(tmp_path):
    temp_root = tmp_path / "fast-disk"
    temp_root.mkdir()
    with names_seen_in(temp_root) as seen:
        fit(SavedModelMLflowCallback(str(tmp_path / "store"), temp_dir=str(temp_root)))

    assert any(name.startswith(TEMP_PREFIX) for name in seen)
    assert os.listdir(temp_root) == []


def staging_folder_of(run_folder_path, pid):
    host = socket.gethostname().replace("-", "_")
    folder = os.path.join(run_folder_path, f"{STAGING_PREFIX}{host}-{pid}-abcd1234", "saved_model", "variables")
    os.makedirs(folder)
    with open(os.path.join(folder, "variables.data-00000-of-00001"), "wb") as file:
        file.write(b"\0" * 1024)
    return os.path.dirname(os.path.dirname(folder))


def test_killed_writer_staging_is_removed(tmp_path):
    store = tmp_path / "store"
    first = SavedModelMLflowCallback(str(store))
    fit(first)
    finished = subprocess.Popen(["true"])
    finished.wait()
    abandoned = staging_folder_of(run_folder(store, first.run_id), finished.pid)
    still_writing = staging_folder_of(run_folder(store, first.run_id), os.getpid())

    fit(SavedModelMLflowCallback(str(store)))

    assert not os.path.exists(abandoned)
    assert os.path.isdir(still_writing)

