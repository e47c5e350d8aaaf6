"""``mlflow models serve`` serves the logged folder: a real scoring server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import mlflow
import numpy as np
import pytest

import fidelity_models
import models
from keras_mlflow_savedmodel import SavedModelMLflowCallback
from servers import HOST, free_port, stop_process_group, wait_until_healthy

# Seen with MLflow 2.22.5: its scoring server exits at start with "'FastAPI' object has no
# attribute 'route'", before loading any model.
pytestmark = pytest.mark.skipif(
    int(mlflow.__version__.split(".")[0]) < 3,
    reason="mlflow models serve of MLflow 2.22 fails to start its scoring server",
)


def start_scoring_server(model_uri, tracking_uri, work_dir):
    port = free_port()
    log_path = work_dir / "scoring-server.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    # MLflow runs uvicorn by name, so the interpreter's bin folder must be on PATH.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", HOST, "-p", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=str(work_dir), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        wait_until_healthy(url, process, log_path)
    except BaseException:
        stop_process_group(process)
        raise
    return url, process


@pytest.fixture
def served_model(tmp_path):
    model = models.sequential_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)
    url, process = start_scoring_server(callback.model_uri, callback.tracking_uri, tmp_path)
    yield model, x, url
    stop_process_group(process)


def invoke(url, payload):
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


def test_served_tensor_inputs_predict_same(served_model):
    model, x, url = served_model

    predictions = invoke(url, {"inputs": x[:5].tolist()})
    np.testing.assert_allclose(np.asarray(predictions), model.predict(x[:5], verbose=0), atol=1e-5)


def test_served_dataframe_predicts_same(served_model):
    model, x, url = served_model
    columns = [f"feature_{index}" for index in range(x.shape[1])]

    predictions = invoke(url, {"dataframe_split": {"columns": columns, "data": x[:3].tolist()}})
    np.testing.assert_allclose(np.asarray(predictions), model.predict(x[:3], verbose=0), atol=1e-5)


def test_served_named_inputs_predict_same(tmp_path):
    model, x, y = fidelity_models.build("dict_inputs")
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)
    url, process = start_scoring_server(callback.model_uri, callback.tracking_uri, tmp_path)
    try:
        predictions = invoke(url, {"inputs": {name: values[:4].tolist() for name, values in x.items()}})
    finally:
        stop_process_group(process)

    np.testing.assert_allclose(np.asarray(predictions), model.predict(x, verbose=0)["score"][:4], atol=1e-5)
