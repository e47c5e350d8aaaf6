"""Distributed training: one run and one model per job, and no worker waits forever."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np

import servers
from keras_mlflow_savedmodel.distributed import THROWAWAY_PREFIX
from keras_mlflow_savedmodel.saving import TEMP_PREFIX
from reload import predict_in_fresh_process

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_training.py")
# Upper bound for one training process; a worker stuck in a collective operation fails the test.
WORKER_TIMEOUT_SECONDS = 300


def runs_in_store(store):
    client = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(experiment_ids)


def saved_models_under(store):
    return sorted(root for root, _, files in os.walk(store) if "saved_model.pb" in files)


def leftover_folders(temp_dir):
    return [name for name in os.listdir(temp_dir) if name.startswith((TEMP_PREFIX, THROWAWAY_PREFIX))]


def child_env(extra=None):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "TF_CONFIG"))}
    env.update(extra or {})
    return env


def test_mirrored_strategy_one_run_one_model(tmp_path):
    store, temp_dir, out = tmp_path / "store", tmp_path / "tmp", tmp_path / "out.npz"
    temp_dir.mkdir()
    result = subprocess.run(
        [sys.executable, SCRIPT, "mirrored", str(store), str(out), str(temp_dir)],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    saved = np.load(out)
    assert int(saved["replicas"]) == 2
    runs = runs_in_store(store)
    assert [run.info.run_id for run in runs] == [str(saved["run_id"])]
    assert runs[0].info.status == "FINISHED"
    (model_folder,) = saved_models_under(store)
    outputs = predict_in_fresh_process(model_folder, saved["x"], tmp_path)
    np.testing.assert_allclose(outputs, saved["predictions"], atol=1e-5)
    assert leftover_folders(temp_dir) == []


def test_multi_worker_one_run_one_model(tmp_path):
    store, temp_dir = tmp_path / "store", tmp_path / "tmp"
    temp_dir.mkdir()
    ports = [servers.free_port(), servers.free_port()]
    cluster = {"worker": [f"{servers.HOST}:{port}" for port in ports]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        # Keras 3.15 cannot fit under MultiWorkerMirroredStrategy; see distributed_training.py.
        env = child_env({"TF_CONFIG": tf_config, "TF_USE_LEGACY_KERAS": "1"})
        out = tmp_path / f"worker{index}.npz"
        log = open(tmp_path / f"worker{index}.log", "w")
        command = [sys.executable, SCRIPT, "multi-worker", str(store), str(out), str(temp_dir)]
        workers.append((subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log), log))
    try:
        for process, _ in workers:
            process.wait(timeout=WORKER_TIMEOUT_SECONDS)
    finally:
        for process, log in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()

    for index, (process, _) in enumerate(workers):
        assert process.returncode == 0, (tmp_path / f"worker{index}.log").read_text()[-3000:]
    chief_run_id = str(np.load(tmp_path / "worker0.npz")["run_id"])
    assert str(np.load(tmp_path / "worker1.npz")["run_id"]) == ""
    runs = runs_in_store(store)
    assert [run.info.run_id for run in runs] == [chief_run_id]
    assert runs[0].info.status == "FINISHED"
    assert len(saved_models_under(store)) == 1
    assert leftover_folders(temp_dir) == []
