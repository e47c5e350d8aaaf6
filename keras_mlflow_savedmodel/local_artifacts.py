"""Writing the SavedModel beside a local run's artifacts and moving it in, instead of copying it.

When the run's artifacts are in a local folder (a store folder, or MLflow's ``./mlruns``), the
SavedModel is written to a hidden staging folder in the run's own folder, on the same disk. Once
complete, it is renamed to ``artifacts/<artifact_path>``. A rename moves no bytes, so a
1 GB model costs one write instead of a write plus a copy, and no second copy of it is ever on
disk. The staging folder is the parent of ``artifacts/``, which MLflow names after the run, so it
is not listed among the run's artifacts while the model is being written.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from typing import Optional
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".keras-mlflow-savedmodel-"


def local_artifact_folder(artifact_uri: str) -> Optional[str]:
    """Return the local folder of a run's artifact URI, or None when the artifacts are not local.

    ``file:`` URIs and plain absolute paths are local; ``mlflow-artifacts:``, ``s3:`` and other
    schemes are not.
    """
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return unquote(parsed.path)
    if parsed.scheme == "" and os.path.isabs(artifact_uri):
        return artifact_uri
    return None


def find_local_artifact_folder(client, run_id: str, tracking_uri: str) -> Optional[str]:
    """Return the local artifact folder of run `run_id`, or None when it is not local or not known.

    A tracking server is not asked: its artifacts are uploaded in any case, and a server that is
    down would hold up writing the model by MLflow's retries. A store that cannot be read
    returns None too, so that the model is still written and then kept if the upload fails.
    """
    if urlparse(tracking_uri).scheme in ("http", "https", "databricks"):
        return None
    try:
        return local_artifact_folder(client.get_run(run_id).info.artifact_uri)
    except Exception as error:  # noqa: BLE001 - the upload after writing retries and keeps the model
        logger.debug("Cannot read the artifact location of run %s (%s).", run_id, error)
        return None


def _host_name() -> str:
    # Dashes separate the parts of a staging folder's name, so the host name must have none.
    return socket.gethostname().replace("-", "_") or "host"


def _staging_prefix() -> str:
    # The host and process id let a later writer tell a folder whose process died from one that
    # is still being written, even when several machines share the store's disk.
    return f"{STAGING_PREFIX}{_host_name()}-{os.getpid()}-"


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        # The process exists but belongs to another user.
        return False
    return False


def remove_abandoned_staging_folders(experiment_folder: str) -> int:
    """Remove the staging folders that killed processes of this host left in `experiment_folder`.

    A process killed while writing (SIGKILL, out of memory) leaves its staging folder in the run's
    folder, where no MLflow view lists it. Only folders named after this host and a process that
    no longer exists are removed. Returns the number removed.
    """
    this_host = _host_name()
    removed = 0
    try:
        run_folders = [entry.path for entry in os.scandir(experiment_folder) if entry.is_dir()]
    except OSError:
        return 0
    for run_folder in run_folders:
        try:
            names = [name for name in os.listdir(run_folder) if name.startswith(STAGING_PREFIX)]
        except OSError:
            continue
        for name in names:
            parts = name[len(STAGING_PREFIX) :].rsplit("-", 2)
            if len(parts) != 3 or parts[0] != this_host or not parts[1].isdigit():
                continue
            if not _process_is_gone(int(parts[1])):
                continue
            shutil.rmtree(os.path.join(run_folder, name), ignore_errors=True)
            removed += 1
            logger.info("Removed %s, left by a process that was killed while writing a model.", name)
    return removed


def make_staging_folder(artifact_folder: str) -> Optional[str]:
    """Create a staging folder beside `artifact_folder` and return it, or None when that fails.

    Staging folders that killed processes left in the same experiment are removed first. Returns
    None, so that the caller falls back to the system's temporary folder, when the run's folder
    cannot be written (a read-only store, for example).
    """
    run_folder = os.path.dirname(artifact_folder.rstrip(os.sep))
    remove_abandoned_staging_folders(os.path.dirname(run_folder))
    try:
        os.makedirs(artifact_folder, exist_ok=True)
        return tempfile.mkdtemp(prefix=_staging_prefix(), dir=run_folder)
    except OSError as error:
        logger.debug("Cannot stage the SavedModel in %r (%s); using a temporary folder.", run_folder, error)
        return None


def existing_ancestor(path: str) -> str:
    """Return `path`, or its nearest parent folder that exists."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def move_into_artifacts(folder: str, artifact_folder: str, artifact_path: str) -> bool:
    """Rename `folder` to ``<artifact_folder>/<artifact_path>``; return False when it cannot be.

    Nothing is moved, and False is returned, when the destination already exists (then the files
    must be merged into it, as ``MlflowClient.log_artifacts`` does) or when the rename fails, for
    example because the two folders are on different disks.
    """
    destination = os.path.join(artifact_folder, *artifact_path.split("/"))
    if os.path.lexists(destination):
        return False
    try:
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        os.rename(folder, destination)
    except OSError as error:
        logger.debug("Cannot move %r to %r (%s); copying it instead.", folder, destination, error)
        return False
    return True
