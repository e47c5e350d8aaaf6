"""Real ``mlflow server`` processes on 127.0.0.1 for tests, started on a free port and stopped by PID.

Each server runs in its own process group (MLflow 3 starts uvicorn workers as child processes), so
stopping it signals that group, whose id is the PID of the process the helper started.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

HOST = "127.0.0.1"
# Admin account of the basic-auth server. The password follows MLflow 3.17's password policy.
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "test-admin-password-7f3a"
START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 20


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class RunningServer:
    """A started server process.

    Attributes:
        url: Base URL, ``http://127.0.0.1:<port>``.
        process: The process the helper started; its PID is also the process group id.
        log_path: File that receives the server's stdout and stderr.
    """

    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def stop(self) -> Optional[int]:
        """Stop the process group with SIGTERM, then SIGKILL, and return the exit status."""
        return stop_process_group(self.process)


def stop_process_group(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_SECONDS) -> Optional[int]:
    """Send SIGTERM to the process group led by `process`, wait, then SIGKILL what is left."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Workers may outlive the leader, so the group gets SIGKILL even after the leader exited.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return process.wait(timeout=timeout)


def wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = START_TIMEOUT_SECONDS):
    """Poll ``<url>/health`` until it returns 200; raise with the log when the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"The server process {process.pid} exited with status {process.returncode} before "
                f"answering at {url}. Its log:\n{log_path.read_text(errors='replace')[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"The server at {url} did not answer /health within {timeout} s.")


def start_mlflow_server(work_dir, *, mode: str = "serve-artifacts", env: Optional[dict] = None) -> RunningServer:
    """Start ``mlflow server`` with a SQLite backend under `work_dir` and wait until it answers.

    Args:
        work_dir: Folder for the database, the artifacts and the log.
        mode: ``"serve-artifacts"`` (proxied ``mlflow-artifacts:`` storage), ``"artifact-root"``
            (a plain ``--default-artifact-root`` folder that clients write to directly) or
            ``"basic-auth"`` (proxied storage behind MLflow's basic-auth app, with the admin
            account ``ADMIN_USERNAME``/``ADMIN_PASSWORD``).
        env: Extra environment variables for the server process.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{HOST}:{port}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{work_dir / 'server.db'}",
    ]
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    if mode == "serve-artifacts":
        command += ["--serve-artifacts", "--artifacts-destination", str(work_dir / "artifacts")]
    elif mode == "artifact-root":
        command += ["--no-serve-artifacts", "--default-artifact-root", str(work_dir / "artifacts")]
    elif mode == "basic-auth":
        command += ["--serve-artifacts", "--artifacts-destination", str(work_dir / "artifacts")]
        command += ["--app-name", "basic-auth"]
        config_path = work_dir / "basic_auth.ini"
        config_path.write_text(
            textwrap.dedent(
                f"""\
                [mlflow]
                default_permission = READ
                database_uri = sqlite:///{work_dir / 'basic_auth.db'}
                admin_username = {ADMIN_USERNAME}
                admin_password = {ADMIN_PASSWORD}
                authorization_function = mlflow.server.auth:authenticate_request_basic_auth
                """
            )
        )
        child_env["MLFLOW_AUTH_CONFIG_PATH"] = str(config_path)
        child_env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "test-secret-key-for-csrf"
    else:
        raise ValueError(f"Unknown server mode {mode!r}.")
    child_env.update(env or {})

    log_path = work_dir / "server.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=work_dir,
            env=child_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(url, process, log_path)
    except BaseException:
        stop_process_group(process)
        raise
    return RunningServer(url, process, log_path)
