"""The mlflow ui command the callback prints opens the store and shows the run and its model."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

import models
from keras_mlflow_savedmodel import SavedModelMLflowCallback
from servers import HOST, free_port, stop_process_group, wait_until_healthy


def get_json(base_url, endpoint, **query):
    url = f"{base_url}{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def trained_callback(tmp_path):
    store = tmp_path / "ui store 저장소"
    callback = SavedModelMLflowCallback(str(store), experiment_name="ui")
    x, y = models.make_data(rows=16)
    models.sequential_model().fit(x, y, epochs=2, callbacks=[callback], verbose=0)
    return callback


@pytest.fixture
def ui_server(trained_callback, tmp_path):
    """Run the printed command, from another working directory, on a free port of 127.0.0.1."""
    words = shlex.split(trained_callback.ui_command)
    assert words[:2] == ["mlflow", "ui"]
    mlflow_executable = os.path.join(os.path.dirname(sys.executable), "mlflow")
    port = free_port()
    other_dir = tmp_path / "somewhere else"
    other_dir.mkdir()
    log_path = tmp_path / "ui.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [mlflow_executable, *words[1:], "--host", HOST, "--port", str(port)],
            cwd=str(other_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://{HOST}:{port}"
    try:
        wait_until_healthy(base_url, process, log_path)
        yield base_url
    finally:
        stop_process_group(process)


def test_ui_command_shows_run_metrics_and_model(trained_callback, ui_server):
    experiment = get_json(ui_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="ui")
    experiment_id = experiment["experiment"]["experiment_id"]
    request = urllib.request.Request(
        f"{ui_server}/api/2.0/mlflow/runs/search",
        data=json.dumps({"experiment_ids": [experiment_id]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.loads(response.read())["runs"]
    artifacts = get_json(ui_server, "/api/2.0/mlflow/artifacts/list", run_id=trained_callback.run_id, path="model")

    assert [run["info"]["run_id"] for run in runs] == [trained_callback.run_id]
    metric_keys = {metric["key"] for metric in runs[0]["data"]["metrics"]}
    assert "loss" in metric_keys
    assert "model/saved_model.pb" in {item["path"] for item in artifacts["files"]}
