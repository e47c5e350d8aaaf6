"""The README's demo script trains on the digits, logs to its store and reloads the model."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import mlflow

DEMO_SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "digits_demo.py")


def test_demo_logs_and_reloads_digits_model(tmp_path):
    store = tmp_path / "demo-store"
    result = subprocess.run(
        [sys.executable, DEMO_SCRIPT, str(store), "--epochs", "3"],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    accuracies = re.findall(r"Test accuracy of the .*: +([0-9.]+)", result.stdout)
    assert len(accuracies) == 2
    assert accuracies[0] == accuracies[1]
    assert float(accuracies[0]) > 0.5
    assert f"--default-artifact-root {store}" in result.stdout
    runs = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db").search_runs(
        [mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db").get_experiment_by_name("digits").experiment_id]
    )
    assert [run.info.status for run in runs] == ["FINISHED"]
