"""Shared fixtures: every test gets its own working directory and a clean MLflow state."""

from __future__ import annotations

import os
import sys

import pytest

# Keep TensorFlow's start-up chatter out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch):
    """Run each test in `tmp_path` with no MLflow environment, run or autologging left over."""
    import mlflow

    from keras_mlflow_savedmodel import callback

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    # The values MLflow wrote into these variables for an earlier test's callback are gone, so
    # the callback must not remember them: a test that sets the same value sets it as the user.
    monkeypatch.setattr(callback, "_ENVIRONMENT_WRITTEN_BY_MLFLOW", {})
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.autolog(disable=True)
    mlflow.set_tracking_uri(None)
