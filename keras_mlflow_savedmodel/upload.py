"""Uploading a SavedModel folder into a run with retries, and keeping it on local disk when that fails.

A kept SavedModel lives in ``<kept root>/<run_id>/<artifact_path>/``. Beside that folder, a file
of the same name plus ``.kept-model.json`` records its tracking URI, run and artifact path, so that
``keras-mlflow-savedmodel upload <folder>`` can log it into its run later. The kept root is the
``kept_dir`` argument of the callback. When that is None it is ``<store folder>/kept-models`` for
a local store folder, and ``$XDG_DATA_HOME/keras-mlflow-savedmodel/kept-models`` (by default
``~/.local/share/keras-mlflow-savedmodel/kept-models``) for any other store.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from typing import Optional

logger = logging.getLogger(__name__)

KEPT_FOLDER_NAME = "kept-models"
KEPT_INFO_SUFFIX = ".kept-model.json"
DEFAULT_UPLOAD_RETRIES = 3
# Seconds before the first retry; every further retry waits twice as long (2, 4, 8 s by default).
RETRY_BACKOFF_SECONDS = 2.0

# OSError numbers that a later attempt can succeed after. Permission errors, a full disk and a
# read-only file system are not here, because waiting does not fix them.
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EAGAIN",
        "EBUSY",
        "EINTR",
        "ETIMEDOUT",
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "ESTALE",
    )
    if hasattr(errno, name)
)
# HTTP statuses that mean "try again later".
_TRANSIENT_HTTP_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_transient_error(error: BaseException) -> bool:
    """Return True when `error`, or an error it was raised from, may go away on a later attempt.

    Connection failures and timeouts, HTTP 408, 429, 500, 502, 503 and 504 responses, and the
    OSErrors in
    ``_TRANSIENT_ERRNOS`` count as transient. MLflow's REST client wraps connection failures in an
    ``MlflowException`` (``mlflow.utils.rest_utils.http_request`` in MLflow 3.17), so the chain of
    causes is searched. An ``MlflowException`` that only carries status 500 is not transient.
    """
    import requests

    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return True
        if isinstance(current, requests.exceptions.HTTPError):
            status = getattr(current.response, "status_code", None)
            if status in _TRANSIENT_HTTP_STATUSES:
                return True
        if isinstance(current, OSError) and current.errno in _TRANSIENT_ERRNOS:
            return True
        status_of = getattr(current, "get_http_status_code", None)
        if callable(status_of) and status_of() in _TRANSIENT_HTTP_STATUSES - {500}:
            return True
        current = current.__cause__ or current.__context__
    return False


def upload_with_retries(client, run_id: str, folder: str, artifact_path: str, retries: int) -> None:
    """Log the files of `folder` under `artifact_path` of run `run_id`, retrying transient errors.

    Makes at most ``1 + retries`` attempts and waits ``RETRY_BACKOFF_SECONDS`` before the first
    retry, doubling the wait each time. Each attempt is itself subject to the MLflow REST client's
    own retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7 by default in MLflow 3.17).

    Raises:
        Exception: The last error, when it is not transient or the retries are used up.
    """
    for attempt in range(retries + 1):
        try:
            client.log_artifacts(run_id, folder, artifact_path)
            return
        except Exception as error:
            if attempt == retries or not is_transient_error(error):
                raise
            wait = RETRY_BACKOFF_SECONDS * 2**attempt
            logger.warning(
                "Uploading the SavedModel to run %s failed (%s: %s); retry %d of %d in %.0f s.",
                run_id,
                type(error).__name__,
                error,
                attempt + 1,
                retries,
                wait,
            )
            time.sleep(wait)


def default_kept_root(store_folder: Optional[str]) -> str:
    """Return the folder for kept SavedModels when ``kept_dir`` is None."""
    if store_folder is not None:
        return os.path.join(store_folder, KEPT_FOLDER_NAME)
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "keras-mlflow-savedmodel", KEPT_FOLDER_NAME)


def keep_saved_model(
    saved_model_folder: str, kept_roots, tracking_uri: str, run_id: str, artifact_path: str, reason: str
) -> str:
    """Move a written SavedModel out of its temporary folder into the first usable kept root.

    Returns the folder that now contains the SavedModel. When no kept root can be written, the
    SavedModel stays where it is and that folder is returned, so the model is never deleted.
    """
    for root in kept_roots:
        target = os.path.join(root, run_id, *artifact_path.split("/"))
        try:
            if os.path.exists(target):
                target = f"{target}-{time.strftime('%Y%m%d-%H%M%S')}"
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(saved_model_folder, target)
        except OSError as error:
            logger.warning("Cannot keep the SavedModel in %r: %s. Trying the next location.", target, error)
            continue
        _write_kept_info(target, tracking_uri, run_id, artifact_path, reason)
        return target
    _write_kept_info(saved_model_folder, tracking_uri, run_id, artifact_path, reason)
    return saved_model_folder


def kept_info_path(folder: str) -> str:
    """Return the path of the file that records where the kept SavedModel `folder` belongs."""
    return os.path.normpath(folder) + KEPT_INFO_SUFFIX


def _write_kept_info(folder: str, tracking_uri: str, run_id: str, artifact_path: str, reason: str) -> None:
    info = {"tracking_uri": tracking_uri, "run_id": run_id, "artifact_path": artifact_path, "reason": reason}
    try:
        with open(kept_info_path(folder), "w", encoding="utf-8") as file:
            json.dump(info, file, indent=2)
    except OSError as error:
        logger.warning("Cannot write %r: %s", kept_info_path(folder), error)


def read_kept_info(folder: str) -> dict:
    """Return the tracking URI, run id and artifact path recorded beside a kept SavedModel.

    Raises:
        InvalidArgumentError: The record is missing or unreadable.
    """
    from keras_mlflow_savedmodel.errors import InvalidArgumentError

    info_path = kept_info_path(folder)
    try:
        with open(info_path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidArgumentError(
            "folder",
            folder,
            f"Cannot read {info_path!r} ({error}). Pass --tracking-uri, --run-id and "
            "--artifact-path to say where the SavedModel belongs.",
        ) from error


def upload_kept_model(
    folder: str,
    *,
    tracking_uri: Optional[str] = None,
    run_id: Optional[str] = None,
    artifact_path: Optional[str] = None,
    retries: int = DEFAULT_UPLOAD_RETRIES,
) -> str:
    """Log a kept SavedModel folder into its run, then delete the folder.

    Args:
        folder: A folder named by a ``ModelLoggingError`` or its log message.
        tracking_uri: Store of the run; None uses the one recorded beside the folder.
        run_id: Run to log into; None uses the recorded run.
        artifact_path: Artifact path in the run; None uses the recorded one.
        retries: Retries of transient upload errors.

    Returns:
        The artifact URI of the uploaded SavedModel.

    Raises:
        InvalidArgumentError: `folder` is not a kept SavedModel folder, or it records no run and
            none was given.
    """
    import mlflow

    from keras_mlflow_savedmodel.errors import InvalidArgumentError
    from keras_mlflow_savedmodel.store import (
        open_tracking_store,
        require_existing_store,
        resolve_tracking_store,
    )

    folder = os.path.abspath(os.path.expanduser(folder))
    if not os.path.isdir(folder):
        raise InvalidArgumentError(
            "folder",
            folder,
            f"The folder {folder!r} does not exist. Pass the folder that the error or log message named.",
        )
    if not os.path.isfile(os.path.join(folder, "saved_model.pb")):
        raise InvalidArgumentError(
            "folder",
            folder,
            f"{folder!r} holds no saved_model.pb, so it is not a kept SavedModel folder. Pass the "
            "folder that the error or log message named.",
        )
    given = {"tracking_uri": tracking_uri, "run_id": run_id, "artifact_path": artifact_path}
    if any(value is None for value in given.values()):
        recorded = read_kept_info(folder)
        given = {key: value if value is not None else recorded.get(key) for key, value in given.items()}
    missing = [key for key, value in given.items() if not value]
    if missing:
        raise InvalidArgumentError(
            missing[0], None, f"No {missing[0]} is recorded for {folder!r}; pass --{missing[0].replace('_', '-')}."
        )

    store = resolve_tracking_store(given["tracking_uri"], source="tracking URI of the kept folder")
    require_existing_store(store)
    # For a server, one short request first, so that a server that is down fails in seconds
    # instead of after MLflow's own retries of every upload attempt.
    open_tracking_store(store)
    client = mlflow.MlflowClient(store.tracking_uri)
    upload_with_retries(client, given["run_id"], folder, given["artifact_path"], retries)
    shutil.rmtree(folder)
    if os.path.exists(kept_info_path(folder)):
        os.remove(kept_info_path(folder))
    artifact_uri = client.get_run(given["run_id"]).info.artifact_uri.rstrip("/") + "/" + given["artifact_path"]
    logger.info("Uploaded the kept SavedModel %r to %s and deleted the local copy.", folder, artifact_uri)
    return artifact_uri


def kept_roots(kept_dir, store_folder: Optional[str]) -> list:
    """Return the folders to keep an unlogged SavedModel in, first choice first.

    `kept_dir` alone when given. Otherwise the folder beside a local store, then the per-user
    data folder, so that a store folder that cannot be written does not lose the model.
    """
    if kept_dir is not None:
        return [os.path.abspath(os.path.expanduser(os.fspath(kept_dir)))]
    roots = [default_kept_root(store_folder)]
    if store_folder is not None:
        roots.append(default_kept_root(None))
    return roots


def add_cli_command(commands) -> None:
    """Add the ``upload`` command to the subparsers `commands` of the command line."""
    command = commands.add_parser(
        "upload",
        help="Log a SavedModel kept after a failed upload into its run, then delete it.",
        description="Log a SavedModel folder that SavedModelMLflowCallback kept on local disk "
        "because the upload at train end failed, into the run it belongs to, then delete the "
        "local copy. The store, run and artifact path are read from the record beside the folder.",
    )
    command.add_argument("folder", metavar="FOLDER", help="The kept folder that the error message named.")
    command.add_argument("--tracking-uri", help="Store folder or tracking URI of the run (default: recorded).")
    command.add_argument("--run-id", help="Run to log into (default: recorded).")
    command.add_argument("--artifact-path", help="Artifact path in the run (default: recorded).")


def run_cli_command(arguments) -> int:
    """Run the ``upload`` command, print the artifact URI and return the exit status 0."""
    artifact_uri = upload_kept_model(
        arguments.folder,
        tracking_uri=arguments.tracking_uri,
        run_id=arguments.run_id,
        artifact_path=arguments.artifact_path,
    )
    print(f"uploaded to:    {artifact_uri}")
    return 0
