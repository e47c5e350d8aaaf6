"""Constructor arguments are checked before any I/O, with errors that name the argument."""

from __future__ import annotations

import pytest

from keras_mlflow_savedmodel import InvalidArgumentError, SavedModelMLflowCallback

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
