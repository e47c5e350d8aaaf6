"""Constructor arguments are checked before any I/O, with errors that name the argument."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest

from keras_mlflow_savedmodel import InvalidArgumentError, SavedModelMLflowCallback
from keras_mlflow_savedmodel.store import get_or_create_experiment, open_tracking_store, resolve_tracking_store

BAD_ARGUMENTS = [
    ("tracking_uri", 123),
    ("tracking_uri", ""),
    ("tracking_uri", "   "),
    ("experiment_name", ""),
    ("experiment_name", 5),
    ("run_name", 3),
    ("artifact_path", ""),
    ("artifact_path", "/absolute/model"),
    ("artifact_path", "../outside"),
    ("artifact_path", "."),
    ("artifact_path", 7),
    ("tags", "team=vision"),
    ("tags", {1: "one"}),
    ("tags", {"owner!": "me"}),
    ("log_params", 1),
    ("log_params", "yes"),
    ("log_metrics", None),
    ("temp_dir", "/does/not/exist"),
    ("temp_dir", 42),
]


@pytest.mark.parametrize(("argument", "value"), BAD_ARGUMENTS, ids=[f"{a}={v!r}" for a, v in BAD_ARGUMENTS])
def test_bad_argument_names_itself(argument, value, tmp_path):
    kwargs = {argument: value}
    store = tmp_path / "store"
    if argument == "tracking_uri":
        with pytest.raises(InvalidArgumentError, match="tracking_uri") as raised:
            SavedModelMLflowCallback(value)
    else:
        with pytest.raises(InvalidArgumentError, match=argument) as raised:
            SavedModelMLflowCallback(str(store), **kwargs)

    assert raised.value.argument == argument
    assert repr(value) in str(raised.value)
    assert not store.exists()


def make_store_with_deleted_experiment(folder, name="retired"):
    """Create a store folder with the experiment `name`, deleted; return the store and its id."""
    store = resolve_tracking_store(str(folder))
    open_tracking_store(store)
    experiment_id = get_or_create_experiment(store, name)
    mlflow.MlflowClient(store.tracking_uri).delete_experiment(experiment_id)
    return store, experiment_id


def restore_command_of(message):
    return message.split("Restore it with: ", 1)[1].split(". Or ", 1)[0]


def test_unknown_environment_experiment_id_rejected(tmp_path, monkeypatch):
    open_tracking_store(resolve_tracking_store(str(tmp_path / "store")))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "12345")
    with pytest.raises(InvalidArgumentError) as raised:
        SavedModelMLflowCallback(str(tmp_path / "store"))

    message = str(raised.value)
    assert raised.value.argument == "MLFLOW_EXPERIMENT_ID"
    assert "environment variable MLFLOW_EXPERIMENT_ID '12345' is not the id of an experiment" in message
    assert "'0' (Default)" in message
    assert "Unset MLFLOW_EXPERIMENT_ID" in message


def test_deleted_environment_experiment_id_rejected(tmp_path, monkeypatch):
    _, experiment_id = make_store_with_deleted_experiment(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    with pytest.raises(InvalidArgumentError) as raised:
        SavedModelMLflowCallback(str(tmp_path / "store"))

    message = str(raised.value)
    assert raised.value.argument == "MLFLOW_EXPERIMENT_ID"
    assert f"environment variable MLFLOW_EXPERIMENT_ID {experiment_id!r} names the experiment 'retired'" in message
    assert f"mlflow experiments restore --experiment-id {experiment_id}" in message
    assert "unset MLFLOW_EXPERIMENT_ID" in message


def test_deleted_experiment_name_rejected(tmp_path):
    _, experiment_id = make_store_with_deleted_experiment(tmp_path / "store")
    with pytest.raises(InvalidArgumentError) as raised:
        SavedModelMLflowCallback(str(tmp_path / "store"), experiment_name="retired")

    message = str(raised.value)
    assert raised.value.argument == "experiment_name"
    assert "experiment_name argument 'retired' names the experiment 'retired'" in message
    assert "which is deleted" in message
    assert f"mlflow experiments restore --experiment-id {experiment_id}" in message
    assert "pass another experiment_name" in message


def test_deleted_experiment_restore_command_works(tmp_path):
    make_store_with_deleted_experiment(tmp_path / "store")
    with pytest.raises(InvalidArgumentError) as raised:
        SavedModelMLflowCallback(str(tmp_path / "store"), experiment_name="retired")
    environment = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    restored = subprocess.run(
        ["bash", "-c", restore_command_of(str(raised.value))],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert restored.returncode == 0, restored.stderr[-3000:]
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), experiment_name="retired")
    assert mlflow.MlflowClient(callback.tracking_uri).get_experiment_by_name("retired").lifecycle_stage == "active"


def test_positional_arguments_after_tracking_uri_rejected(tmp_path):
    with pytest.raises(TypeError):
        SavedModelMLflowCallback(str(tmp_path / "store"), "experiment")


def test_unknown_keyword_rejected(tmp_path):
    with pytest.raises(TypeError, match="experiment"):
        SavedModelMLflowCallback(str(tmp_path / "store"), experiment="typo")


def test_artifact_path_normalized(tmp_path):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), artifact_path="models//classifier/")
    assert callback.artifact_path == "models/classifier"


def test_import_has_no_side_effects():
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import keras_mlflow_savedmodel\n"
        "assert dict(os.environ) == before\n"
        "print(sorted(name for name in ('tensorflow', 'mlflow', 'keras') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
