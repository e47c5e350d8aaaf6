"""The ``ui`` command's server: ``mlflow server`` on a store, run as a child process until stopped.

The child runs in a process group of its own, because MLflow 3 starts its uvicorn workers as
further child processes. Stopping signals the whole group: SIGTERM, then SIGKILL after
``STOP_TIMEOUT_SECONDS``. This module belongs to the command-line interface and prints to the
terminal.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from keras_mlflow_savedmodel.errors import InvalidArgumentError
from keras_mlflow_savedmodel.store import TrackingStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# One worker is plenty for one person's browser and keeps memory low; MLflow 3.17 starts 4.
DEFAULT_WORKERS = 1
START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 15
_POLL_SECONDS = 0.3


def server_command(store: TrackingStore, host: str, port: int, workers: int) -> list:
    """Return the argv that starts ``mlflow server`` on `store` with this interpreter's MLflow."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        *store.ui_options(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def url_of(host: str, port: int) -> str:
    """Return the URL a browser opens for a server listening on `host`:`port`."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def check_port_free(host: str, port: int) -> None:
    """Raise when another program already listens on `host`:`port`.

    Raises:
        InvalidArgumentError: The port is in use, or `host` is not an address of this machine.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise InvalidArgumentError(
                    "--port",
                    port,
                    f"--port {port} is already in use on {host}. Pass another port, such as "
                    f"--port {port + 1}, or stop the program that uses it.",
                ) from error
            raise InvalidArgumentError(
                "--host",
                host,
                f"--host {host!r} cannot be listened on: {error.strerror}. Pass an address of "
                f"this machine, such as {DEFAULT_HOST}.",
            ) from error


def serve(store: TrackingStore, host: str, port: int, workers: int) -> int:
    """Run ``mlflow server`` on `store` until Ctrl-C or SIGTERM, and return the exit status.

    Raises:
        InvalidArgumentError: The port is in use or the host cannot be listened on.
    """
    check_port_free(host, port)
    url = url_of(host, port)
    process = _start(server_command(store, host, port, workers))
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(f"Starting the MLflow UI on {store.display_uri} (process {process.pid})...", flush=True)
        if not _wait_until_ready(process, url):
            if process.poll() is None:
                print(f"error: the MLflow UI did not answer at {url} within {START_TIMEOUT_SECONDS} s.", file=sys.stderr)
            else:
                print(
                    f"error: mlflow server exited with status {process.returncode} before answering "
                    f"at {url}; its output is above.",
                    file=sys.stderr,
                )
            return 1
        print(f"MLflow UI: {url}  (Ctrl-C stops it)", flush=True)
        status = process.wait()
        print(f"error: mlflow server exited with status {status}; its output is above.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Stopping the MLflow UI...", flush=True)
        return 0
    finally:
        _stop(process)
        signal.signal(signal.SIGTERM, previous_handler)


def _interrupt(signum, frame):
    # SIGTERM takes the same path as Ctrl-C, so that the child's process group is stopped too.
    raise KeyboardInterrupt


def _start(command: list) -> subprocess.Popen:
    if os.name == "nt":
        return subprocess.Popen(command, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)
    return subprocess.Popen(command, start_new_session=True)


def _wait_until_ready(process: subprocess.Popen, url: str) -> bool:
    """Poll ``<url>/health``; return False when the process exits or the start timeout passes."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(_POLL_SECONDS)
    return False


def _stop(process: subprocess.Popen) -> None:
    """Stop the child's process group: SIGTERM, then SIGKILL for whatever is left."""
    if os.name == "nt":
        if process.poll() is None:
            process.send_signal(signal.CTRL_BREAK_EVENT)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        return
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    # uvicorn workers may outlive the leader, so the group gets SIGKILL in any case.
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(group_id: int, signum: int) -> None:
    try:
        os.killpg(group_id, signum)
    except ProcessLookupError:
        pass
