"""A path given as tracking_uri names one self-contained store, however it is spelled."""

from __future__ import annotations

import os

import mlflow
import pytest

import models
from keras_mlflow_savedmodel import SavedModelMLflowCallback, TrackingStoreError
from keras_mlflow_savedmodel.store import TRACKING_DB_NAME, resolve_tracking_store

STORE_NAME = "실험 저장소"  # Korean letters and a space


@pytest.fixture
def store_folder(tmp_path, monkeypatch):
    """The real store folder, a symlink to it, another working directory and a home folder."""
    real = tmp_path / "data" / STORE_NAME
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    return real


SPELLINGS = {
    "absolute": lambda tmp_path: str(tmp_path / "data" / STORE_NAME),
    "relative": lambda tmp_path: os.path.join("data", STORE_NAME),
    "relative from another folder": lambda tmp_path: os.path.join("..", "data", STORE_NAME),
    "home": lambda tmp_path: os.path.join("~", "data", STORE_NAME),
    "symlink": lambda tmp_path: str(tmp_path / "link"),
    "trailing slash": lambda tmp_path: str(tmp_path / "data" / STORE_NAME) + "/",
}
WORKING_DIRS = {"relative from another folder": "elsewhere"}


def train_with(path, tmp_path):
    x, y = models.make_data(rows=16)
    callback = SavedModelMLflowCallback(path, experiment_name="paths")
    models.sequential_model().fit(x, y, epochs=1, callbacks=[callback], verbose=0)
    return callback


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_path_spelling_lands_in_one_store(spelling, store_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / WORKING_DIRS.get(spelling, ""))
    callback = train_with(SPELLINGS[spelling](tmp_path), tmp_path)

    assert os.path.isfile(store_folder / TRACKING_DB_NAME)
    client = mlflow.MlflowClient(callback.tracking_uri)
    run = client.get_run(callback.run_id)
    experiment_id = run.info.experiment_id
    assert os.path.isfile(store_folder / experiment_id / callback.run_id / "artifacts" / "model" / "saved_model.pb")
    # MLflow 2's SQL store creates an empty ./mlruns as its default artifact root; no file may land
    # in the working directories.
    assert [path for path in (tmp_path / "elsewhere").rglob("*") if path.is_file()] == []
    assert [path for path in (tmp_path / "mlruns").rglob("*") if path.is_file()] == []


def test_all_spellings_share_one_database(store_folder, tmp_path, monkeypatch):
    uris = set()
    for spelling in sorted(SPELLINGS):
        monkeypatch.chdir(tmp_path / WORKING_DIRS.get(spelling, ""))
        uris.add(resolve_tracking_store(SPELLINGS[spelling](tmp_path)).tracking_uri)

    assert len(uris) == 1


def test_resolution_independent_of_later_chdir(store_folder, tmp_path, monkeypatch):
    callback = SavedModelMLflowCallback(os.path.join("data", STORE_NAME))
    monkeypatch.chdir(tmp_path / "elsewhere")
    x, y = models.make_data(rows=16)
    models.sequential_model().fit(x, y, epochs=1, callbacks=[callback], verbose=0)

    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert os.path.isdir(store_folder / run.info.experiment_id / callback.run_id / "artifacts" / "model")


def test_uri_passes_through_unchanged(tmp_path):
    uri = f"sqlite:///{tmp_path}/explicit.db"
    assert resolve_tracking_store(uri).tracking_uri == uri


def test_file_instead_of_folder_is_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a store")
    with pytest.raises(TrackingStoreError, match="notes.txt"):
        SavedModelMLflowCallback(str(path))


def test_sqlite_file_suggests_uri(tmp_path):
    mlflow.MlflowClient(f"sqlite:///{tmp_path}/runs.db").search_experiments()
    with pytest.raises(TrackingStoreError, match="sqlite:///"):
        SavedModelMLflowCallback(str(tmp_path / "runs.db"))


def make_legacy_file_store(folder):
    experiment = folder / "0"
    experiment.mkdir(parents=True)
    (experiment / "meta.yaml").write_text(
        "artifact_location: file://{}\nexperiment_id: '0'\nlifecycle_stage: active\nname: Default\n".format(experiment)
    )


def test_legacy_file_store_is_rejected(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    make_legacy_file_store(tmp_path / "old")
    with pytest.raises(TrackingStoreError, match="migrate-filestore"):
        SavedModelMLflowCallback(str(tmp_path / "old"))
    assert not (tmp_path / "old" / TRACKING_DB_NAME).exists()


def test_legacy_file_store_allowed_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    make_legacy_file_store(tmp_path / "old")
    callback = train_with(str(tmp_path / "old"), tmp_path)

    assert callback.tracking_uri.startswith("file://")
    assert not (tmp_path / "old" / TRACKING_DB_NAME).exists()
    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert run.info.status == "FINISHED"


def test_colon_folder_name_suggests_dot_slash(tmp_path):
    with pytest.raises(TrackingStoreError) as raised:
        SavedModelMLflowCallback("mlflow-store:v2")

    message = str(raised.value)
    assert "tracking_uri argument 'mlflow-store:v2'" in message
    assert "write it as './mlflow-store:v2'" in message
    assert str(tmp_path / "mlflow-store:v2") in message
    assert not (tmp_path / "mlflow-store:v2").exists()


def test_colon_folder_name_with_dot_slash_logs_model(tmp_path):
    callback = train_with("./mlflow-store:v2", tmp_path)

    store_folder = tmp_path / "mlflow-store:v2"
    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert os.path.isfile(store_folder / TRACKING_DB_NAME)
    assert os.path.isfile(store_folder / run.info.experiment_id / callback.run_id / "artifacts" / "model" / "saved_model.pb")
