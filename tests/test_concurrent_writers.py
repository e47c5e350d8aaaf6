"""Two processes that write to one local store folder at the same time, both real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import mlflow
import pytest

from keras_mlflow_savedmodel.store import resolve_tracking_store

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT_SECONDS = 180

# Both children import everything, report ready, then wait for the "go" file, so that the parts
# under test (store creation, experiment creation, training and logging) overlap in time.
_PRELUDE = textwrap.dedent(
    """
    import os, sys, time
    work_dir, name = sys.argv[1], sys.argv[2]
    sys.path.insert(0, {tests_dir!r})
    """
)
_WAIT_FOR_GO = textwrap.dedent(
    """
    open(os.path.join(work_dir, "ready-" + name), "w").close()
    while not os.path.exists(os.path.join(work_dir, "go")):
        time.sleep(0.005)
    """
)
_TRAIN_SCRIPT = (
    _PRELUDE
    + textwrap.dedent(
        """
        import models
        from keras_mlflow_savedmodel import SavedModelMLflowCallback
        model = models.sequential_model()
        x, y = models.make_data()
        """
    )
    + _WAIT_FOR_GO
    + textwrap.dedent(
        """
        callback = SavedModelMLflowCallback(
            os.path.join(work_dir, "store"), experiment_name="shared", run_name=name
        )
        model.fit(x, y, epochs=3, batch_size=16, callbacks=[callback], verbose=0)
        print(callback.run_id)
        """
    )
)
_CREATE_EXPERIMENT_SCRIPT = (
    _PRELUDE
    + textwrap.dedent(
        """
        from keras_mlflow_savedmodel import store as store_module
        store = store_module.resolve_tracking_store(os.path.join(work_dir, "store"))
        """
    )
    + _WAIT_FOR_GO
    + textwrap.dedent(
        """
        store_module.open_tracking_store(store)
        print(store_module.get_or_create_experiment(store, "created-twice"))
        """
    )
)


def run_together(script, work_dir, names=("first", "second")):
    """Start one child per name, release them at once, and return their completed results."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    processes = {}
    logs = {}
    for name in names:
        logs[name] = open(work_dir / f"{name}.log", "w+")
        processes[name] = subprocess.Popen(
            [sys.executable, "-c", script.format(tests_dir=TESTS_DIR), str(work_dir), name],
            cwd=work_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=logs[name],
            text=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not all((work_dir / f"ready-{name}").exists() for name in names):
            exited = {name: process.poll() for name, process in processes.items() if process.poll() is not None}
            assert not exited, f"children exited before the start: {exited}"
            assert time.monotonic() < deadline, "children did not get ready in time"
            time.sleep(0.05)
        (work_dir / "go").touch()
        results = {}
        for name, process in processes.items():
            stdout, _ = process.communicate(timeout=START_TIMEOUT_SECONDS)
            logs[name].seek(0)
            results[name] = (process.returncode, stdout.strip(), logs[name].read())
        return results
    finally:
        for name, process in processes.items():
            if process.poll() is None:
                process.kill()
                process.wait()
            logs[name].close()


@pytest.mark.slow
def test_two_trainings_share_new_store(tmp_path):
    results = run_together(_TRAIN_SCRIPT, tmp_path)

    for name, (status, _, stderr) in results.items():
        assert status == 0, f"{name} failed:\n{stderr[-3000:]}"
        assert "database is locked" not in stderr
    store = resolve_tracking_store(str(tmp_path / "store"))
    client = mlflow.MlflowClient(store.tracking_uri)
    experiment = client.get_experiment_by_name("shared")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["first", "second"]
    assert {run.info.run_id for run in runs} == {stdout for _, stdout, _ in results.values()}
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "loss")] == [0, 1, 2]
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "accuracy")] == [0, 1, 2]
        model_folder = os.path.join(store.local_folder, experiment.experiment_id, run.info.run_id, "artifacts", "model")
        assert os.path.isfile(os.path.join(model_folder, "saved_model.pb"))
        assert os.path.isdir(os.path.join(model_folder, "variables"))


@pytest.mark.slow
def test_two_processes_create_same_experiment(tmp_path):
    # Each round starts on a new store, so both children also race to create the database.
    for round_index in range(3):
        work_dir = tmp_path / f"round-{round_index}"
        results = run_together(_CREATE_EXPERIMENT_SCRIPT, work_dir)

        for name, (status, _, stderr) in results.items():
            assert status == 0, f"round {round_index}, {name} failed:\n{stderr[-3000:]}"
        experiment_ids = {stdout for _, stdout, _ in results.values()}
        assert len(experiment_ids) == 1
        store = resolve_tracking_store(str(work_dir / "store"))
        names = [experiment.name for experiment in mlflow.MlflowClient(store.tracking_uri).search_experiments()]
        assert sorted(names) == ["Default", "created-twice"]
