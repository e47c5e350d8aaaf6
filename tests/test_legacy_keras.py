"""The callback under TF_USE_LEGACY_KERAS=1 (tf_keras): each case trains in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest

from reload import predict_in_fresh_process

LEGACY_ENV = {"TF_USE_LEGACY_KERAS": "1"}
TRAINING_SCRIPT = os.path.join(os.path.dirname(__file__), "legacy_training.py")

pytest.importorskip("tf_keras")


def train_legacy(store, work_dir, kind):
    env = dict(os.environ, **LEGACY_ENV)
    result = subprocess.run(
        [sys.executable, TRAINING_SCRIPT, str(store), str(work_dir), kind],
        cwd=str(work_dir),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def logged_folder(store, run):
    client = mlflow.MlflowClient(run["tracking_uri"])
    experiment_id = client.get_run(run["run_id"]).info.experiment_id
    return os.path.join(str(store), experiment_id, run["run_id"], "artifacts", "model")


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed", "integer_lookup"])
def test_legacy_model_reloads_in_fresh_process(tmp_path, kind):
    store = tmp_path / "store"
    run = train_legacy(store, tmp_path, kind)
    folder = logged_folder(store, run)

    assert run["keras_module"].startswith("tf_keras")
    assert os.path.isfile(os.path.join(folder, "keras_metadata.pb"))
    outputs = predict_in_fresh_process(folder, np.load(tmp_path / "inputs.npy"), tmp_path)
    np.testing.assert_allclose(outputs, np.load(tmp_path / "predictions.npy"), atol=1e-5)


def test_legacy_load_model_revives_keras_model(tmp_path):
    store = tmp_path / "store"
    run = train_legacy(store, tmp_path, "functional")
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from keras_mlflow_savedmodel import load_model

        model_uri, store, inputs_path, outputs_path = sys.argv[1:5]
        model = load_model(model_uri, tracking_uri=store)
        print(type(model).__module__)
        np.save(outputs_path, model.predict(np.load(inputs_path), verbose=0))
        """
    )
    outputs_path = tmp_path / "loaded.npy"
    result = subprocess.run(
        [sys.executable, "-c", script, run["model_uri"], str(store), str(tmp_path / "inputs.npy"), str(outputs_path)],
        cwd=str(tmp_path),
        env=dict(os.environ, **LEGACY_ENV),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("tf_keras")
    np.testing.assert_allclose(np.load(outputs_path), np.load(tmp_path / "predictions.npy"), atol=1e-5)
