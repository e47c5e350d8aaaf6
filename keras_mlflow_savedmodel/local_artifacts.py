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


def make_staging_folder(artifact_folder: str) -> Optional[str]:
    """Create a staging folder beside `artifact_folder` and return it, or None when that fails.

    Returns None, so that the caller falls back to the system's temporary folder, when the run's
    folder cannot be written (a read-only store, for example).
    """
    run_folder = os.path.dirname(artifact_folder.rstrip(os.sep))
    try:
        os.makedirs(artifact_folder, exist_ok=True)
        return tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=run_folder)
    except OSError as error:
        logger.debug("Cannot stage the SavedModel in %r (%s); using a temporary folder.", run_folder, error)
        return None


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
