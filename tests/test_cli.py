"""The ``keras-mlflow-savedmodel`` command: where, runs and ui on stores the callback wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

import models
import servers
from permissions import make_read_only, without_file_permission_override
from keras_mlflow_savedmodel import SavedModelMLflowCallback
from keras_mlflow_savedmodel.cli import EXIT_BAD_INPUT, PROG, main
from keras_mlflow_savedmodel.runs_table import format_size
from keras_mlflow_savedmodel.saving import folder_size
from keras_mlflow_savedmodel.ui_server import STOP_TIMEOUT_SECONDS

UI_START_TIMEOUT_SECONDS = 120


def train(store, experiment_name="cli", run_name="cli-run"):
    callback = SavedModelMLflowCallback(str(store), experiment_name=experiment_name, run_name=run_name)
    x, y = models.make_data(rows=16)
    models.sequential_model().fit(x, y, epochs=2, batch_size=8, callbacks=[callback], verbose=0)
    return callback


@pytest.fixture
def trained(tmp_path):
    store = tmp_path / "cli store"
    return store, train(store)


def run_main(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def model_folder(store, callback):
    import mlflow

    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    return os.path.join(str(store), run.info.experiment_id, callback.run_id, "artifacts", "model")


# where


def test_where_prints_callback_store(trained, capsys):
    store, callback = trained
    status, out, _ = run_main(capsys, "where", str(store))

    assert status == 0
    assert f"tracking URI:   {callback.tracking_uri}   (from PATH_OR_URI)" in out
    assert f"artifacts in:   {os.path.realpath(store)}" in out
    assert f"open it with:   {callback.ui_command}" in out


def test_where_uses_environment_uri(trained, capsys, monkeypatch):
    store, callback = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", callback.tracking_uri)
    status, out, _ = run_main(capsys, "where")

    assert status == 0
    assert f"{callback.tracking_uri}   (from environment variable MLFLOW_TRACKING_URI)" in out


def test_where_http_hides_password(capsys):
    status, out, _ = run_main(capsys, "where", "http://alice:s3cret@127.0.0.1:5999")

    assert status == 0
    assert "http://alice:***@127.0.0.1:5999" in out
    assert "s3cret" not in out


# runs


def test_runs_table_shows_run(trained, capsys):
    store, callback = trained
    status, out, _ = run_main(capsys, "runs", str(store))

    row = next(line for line in out.splitlines() if line.startswith(callback.run_id))
    expected_size = format_size(folder_size(model_folder(store, callback)))
    assert status == 0
    assert "Experiment 'cli'" in out
    assert "cli-run" in row
    assert "FINISHED" in row
    assert "loss=" in row
    assert f"model ({expected_size})" in row


def test_runs_experiment_filter(trained, capsys):
    store, first = trained
    second = train(store, experiment_name="other", run_name="other-run")
    status, out, _ = run_main(capsys, "runs", str(store), "--experiment", "other")

    assert status == 0
    assert second.run_id in out
    assert first.run_id not in out


def test_runs_marks_run_without_model(trained, capsys):
    import mlflow

    store, callback = trained
    client = mlflow.MlflowClient(callback.tracking_uri)
    run = client.create_run(client.get_run(callback.run_id).info.experiment_id, run_name="no-model")
    client.set_terminated(run.info.run_id)
    status, out, _ = run_main(capsys, "runs", str(store))

    row = next(line for line in out.splitlines() if line.startswith(run.info.run_id))
    assert status == 0
    assert row.rstrip().endswith("none")


@pytest.mark.parametrize("command", ["where", "runs"])
def test_read_only_store_is_readable(trained, tmp_path, command):
    store, callback = trained
    prefix = without_file_permission_override()
    make_read_only(store)
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "keras_mlflow_savedmodel", command, str(store)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    expected = callback.run_id if command == "runs" else callback.tracking_uri
    assert expected in result.stdout


# bad input


def make_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a store")
    return str(path)


def make_legacy_file_store(tmp_path):
    folder = tmp_path / "mlruns"
    (folder / "0").mkdir(parents=True)
    (folder / "0" / "meta.yaml").write_text("name: Default\n")
    return str(folder)


def make_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return str(folder)


BAD_STORES = [
    ("missing folder", lambda tmp_path: str(tmp_path / "no-such-folder"), "does not exist"),
    ("file", make_file, "names a store folder"),
    ("legacy file store", make_legacy_file_store, "legacy MLflow file store"),
    ("folder without database", make_empty_folder, "mlflow.db is missing"),
    ("unknown scheme", lambda tmp_path: "foo://host/store", "URI scheme 'foo'"),
    ("missing sqlite file", lambda tmp_path: f"sqlite:///{tmp_path}/none.db", "does not exist"),
]


@pytest.mark.parametrize("command", ["where", "runs", "ui"])
@pytest.mark.parametrize(("case", "make_store", "expected"), BAD_STORES, ids=[case[0] for case in BAD_STORES])
def test_bad_store_one_line_status_2(tmp_path, capsys, command, case, make_store, expected):
    value = make_store(tmp_path)
    status, out, err = run_main(capsys, command, value)

    assert status == EXIT_BAD_INPUT
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"{PROG}: error: ")
    assert "PATH_OR_URI" in err
    assert expected in err


def test_ui_rejects_tracking_server(capsys):
    status, _, err = run_main(capsys, "ui", "http://127.0.0.1:5999")

    assert status == EXIT_BAD_INPUT
    assert "open http://127.0.0.1:5999 in a browser" in err


@pytest.mark.parametrize(("option", "value"), [("--port", "0"), ("--port", "http"), ("--workers", "0")])
def test_ui_bad_option_status_2(trained, capsys, option, value):
    store, _ = trained
    with pytest.raises(SystemExit) as raised:
        main(["ui", str(store), option, value])

    assert raised.value.code == EXIT_BAD_INPUT
    assert f"argument {option}: invalid" in capsys.readouterr().err


def test_ui_port_in_use_status_2(trained, capsys):
    store, _ = trained
    with socket.socket() as listener:
        listener.bind((servers.HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        status, _, err = run_main(capsys, "ui", str(store), "--port", str(port))

    assert status == EXIT_BAD_INPUT
    assert f"--port {port} is already in use" in err


def test_module_bad_input_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "keras_mlflow_savedmodel", "runs", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{PROG}: error: The store folder")


# ui


@pytest.fixture
def ui_process(trained, tmp_path):
    """Start ``python -m keras_mlflow_savedmodel ui STORE`` on a free port; yield it and its URL."""
    store, _ = trained
    port = servers.free_port()
    log_path = tmp_path / "ui.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "keras_mlflow_savedmodel", "ui", str(store), "--port", str(port)],
            cwd=str(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{servers.HOST}:{port}"
    try:
        wait_for_line(log_path, f"MLflow UI: {url}", process)
        yield process, url, log_path
    finally:
        servers.stop_process_group(process)


def wait_for_line(log_path, text, process):
    deadline = time.monotonic() + UI_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if text in log_path.read_text():
            return
        assert process.poll() is None, f"ui exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.3)
    pytest.fail(f"ui did not print {text!r}:\n{log_path.read_text()[-3000:]}")


def get_json(url, endpoint, **query):
    with urllib.request.urlopen(f"{url}{endpoint}?{urllib.parse.urlencode(query)}", timeout=30) as response:
        return json.loads(response.read())


def process_group_gone(group_id):
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        return True
    return False


def wait_until_group_gone(group_id, timeout=10):
    deadline = time.monotonic() + timeout
    while not process_group_gone(group_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_ui_serves_run_and_artifacts(trained, ui_process):
    _, callback = trained
    process, url, _ = ui_process
    experiment = get_json(url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="cli")["experiment"]
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/runs/search",
        data=json.dumps({"experiment_ids": [experiment["experiment_id"]]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.loads(response.read())["runs"]
    listing = get_json(url, "/api/2.0/mlflow/artifacts/list", run_id=callback.run_id, path="model")
    with urllib.request.urlopen(
        f"{url}/get-artifact?{urllib.parse.urlencode({'path': 'model/saved_model.pb', 'run_uuid': callback.run_id})}",
        timeout=30,
    ) as response:
        saved_model_bytes = response.read()

    assert [run["info"]["run_id"] for run in runs] == [callback.run_id]
    assert "model/saved_model.pb" in {entry["path"] for entry in listing["files"]}
    assert len(saved_model_bytes) > 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_ui_stops_on_signal(ui_process, signum):
    process, url, log_path = ui_process
    os.kill(process.pid, signum)
    status = process.wait(timeout=60)

    assert status == 0, log_path.read_text()[-3000:]
    assert "Stopping the MLflow UI" in log_path.read_text()
    assert process_group_gone(process.pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/health", timeout=5)


def test_ui_second_interrupt_kills_server(ui_process):
    process, url, log_path = ui_process
    server_group = int(re.search(r"\(process (\d+)\)", log_path.read_text()).group(1))
    # A stopped server cannot act on SIGTERM, so the gentle stop hangs until the second Ctrl-C.
    os.killpg(server_group, signal.SIGSTOP)
    try:
        os.kill(process.pid, signal.SIGINT)
        wait_for_line(log_path, "Stopping the MLflow UI", process)
        second_interrupt = time.monotonic()
        os.kill(process.pid, signal.SIGINT)
        status = process.wait(timeout=60)
        seconds = time.monotonic() - second_interrupt
        # Workers killed after their leader are reaped by init, which can take a moment.
        server_stopped = wait_until_group_gone(server_group)
    finally:
        if not process_group_gone(server_group):
            os.killpg(server_group, signal.SIGKILL)

    log = log_path.read_text()
    assert status == 128 + signal.SIGINT, log[-3000:]
    assert "Traceback" not in log
    assert "SIGINT received again" in log
    assert seconds < STOP_TIMEOUT_SECONDS
    assert server_stopped
