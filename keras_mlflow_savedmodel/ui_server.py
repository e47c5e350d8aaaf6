"""The ``ui`` command's server: ``mlflow server`` on a store, run as a child process until stopped.

The child runs in a process group of its own, because MLflow 3 starts its uvicorn workers as
further child processes. Stopping signals the whole group: SIGTERM, then SIGKILL after
``STOP_TIMEOUT_SECONDS``, or at once when a second Ctrl-C or SIGTERM arrives while it stops. This module belongs to the command-line interface and prints to the
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

    The first Ctrl-C or SIGTERM stops the server gently and returns 0. A second one while it
    stops kills the server's process group at once and returns 128 plus the signal number (130
    for Ctrl-C). A server that exits by itself or never answers returns 1.

    Raises:
        InvalidArgumentError: The port is in use or the host cannot be listened on.
    """
    check_port_free(host, port)
    url = url_of(host, port)
    stop_signals = _StopSignals()
    previous_handlers = stop_signals.install()
    try:
        process = _start(server_command(store, host, port, workers))
        try:
            status = _run_until_stopped(process, store, url, stop_signals)
        finally:
            forcing_signal = _stop(process, stop_signals)
    finally:
        _StopSignals.restore(previous_handlers)
    if forcing_signal is not None:
        return 128 + int(forcing_signal)
    return status


class _StopSignals:
    """The SIGINT and SIGTERM signals received while the UI runs, in order of arrival.

    The handler only records the signal and raises nothing, so a signal cannot cut the stop
    sequence short halfway and skip the SIGKILL of the process group. The serving and stopping
    loops poll `count` instead.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: list = []

    @property
    def count(self) -> int:
        return len(self.received)

    def install(self) -> dict:
        """Install the recording handler and return the previous handlers."""
        previous = {}
        for signum in self.HANDLED:
            previous[signum] = signal.signal(signum, self._record)
        return previous

    @staticmethod
    def restore(previous: dict) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _record(self, signum, frame):
        self.received.append(signal.Signals(signum))


def _run_until_stopped(process: subprocess.Popen, store: TrackingStore, url: str, stop_signals: _StopSignals) -> int:
    """Print the UI's URL once it responds, then wait for a stop signal. Return 0, or 1 on failure."""
    print(f"Starting the MLflow UI on {store.display_uri} (process {process.pid})...", flush=True)
    ready = _wait_until_ready(process, url, stop_signals)
    if ready:
        print(f"MLflow UI: {url}  (Ctrl-C stops it)", flush=True)
        while process.poll() is None and not stop_signals.count:
            time.sleep(_POLL_SECONDS)
    if stop_signals.count:
        print("Stopping the MLflow UI (Ctrl-C again kills it at once)...", flush=True)
        return 0
    if ready:
        print(f"error: mlflow server exited with status {process.returncode}; its output is above.", file=sys.stderr)
    elif process.poll() is None:
        print(f"error: the MLflow UI did not respond at {url} within {START_TIMEOUT_SECONDS} s (timed out).", file=sys.stderr)
    else:
        print(
            f"error: mlflow server exited with status {process.returncode} before answering "
            f"at {url}; its output is above.",
            file=sys.stderr,
        )
    return 1


def _start(command: list) -> subprocess.Popen:
    if os.name == "nt":
        return subprocess.Popen(command, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)
    return subprocess.Popen(command, start_new_session=True)


def _wait_until_ready(process: subprocess.Popen, url: str, stop_signals: _StopSignals) -> bool:
    """Poll ``<url>/health``; return False on a stop signal, when the process exits, or at the start timeout."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and not stop_signals.count:
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


def _stop(process: subprocess.Popen, stop_signals: _StopSignals):
    """Stop the child's process group: SIGTERM, then SIGKILL for whatever is left.

    Returns the signal that cut the gentle stop short, or None when none arrived.
    """
    signals_before = stop_signals.count
    if process.poll() is None:
        _terminate_group(process)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while process.poll() is None and time.monotonic() < deadline and stop_signals.count == signals_before:
            time.sleep(_POLL_SECONDS)
    forcing_signal = None
    if stop_signals.count > signals_before:
        forcing_signal = stop_signals.received[signals_before]
        print(f"{forcing_signal.name} received again: killing the MLflow UI now.", flush=True)
    # uvicorn workers may outlive the leader, so the group gets SIGKILL in any case.
    _kill_group(process)
    process.wait()
    return forcing_signal


def _terminate_group(process: subprocess.Popen) -> None:
    if os.name == "nt":
        process.send_signal(signal.CTRL_BREAK_EVENT)
    else:
        _signal_group(process.pid, signal.SIGTERM)


def _kill_group(process: subprocess.Popen) -> None:
    if os.name == "nt":
        # NOTE: on Windows only the direct child is killed; its own children are not tracked.
        if process.poll() is None:
            process.kill()
    else:
        _signal_group(process.pid, signal.SIGKILL)


def _signal_group(group_id: int, signum: int) -> None:
    try:
        os.killpg(group_id, signum)
    except ProcessLookupError:
        pass
