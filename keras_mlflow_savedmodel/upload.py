"""Uploading a SavedModel folder into a run with retries, and keeping it on local disk when that fails.

A kept SavedModel lives in ``<kept root>/<run_id>/<artifact_path>/``. Beside that folder, a file
of the same name plus ``.kept-model.json`` records its tracking URI, run and artifact path, so that
``keras-mlflow-savedmodel upload <folder>`` can log it into its run later. The kept root is the
``kept_dir`` argument of the callback. When that is None it is ``<store folder>/kept-models`` for
a local store folder, and ``$XDG_DATA_HOME/keras-mlflow-savedmodel/kept-models`` (by default
``~/.local/share/keras-mlflow-savedmodel/kept-models``) for any other store.
"""

from __future__ import annotations

import dataclasses
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
# Key of the kept record that contains the status the run gets once the kept SavedModel is uploaded.
# Only the callback writes it, for a run it started and ended FAILED because this upload failed.
STATUS_AFTER_UPLOAD_KEY = "run_status_after_upload"
# The statuses `record_status_after_upload` may record.
_STATUSES_AFTER_UPLOAD = ("FINISHED",)
# Statuses a run can have only because its SavedModel could not be logged: FAILED when the
# callback ended it, RUNNING when the store was unreachable and the run could not be ended.
_STATUSES_OF_FAILED_UPLOAD = ("FAILED", "RUNNING")
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
            if os.path.isdir(saved_model_folder) and os.path.isdir(target):
                # A copy to another disk that failed part-way: the source is whole, the copy is not.
                shutil.rmtree(target, ignore_errors=True)
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


def record_status_after_upload(folder: str, status: str) -> None:
    """Add to the record beside the kept SavedModel `folder` the status its run gets after upload.

    A record that cannot be read or written is logged at WARNING. The upload command then leaves
    the run's status as it is.
    """
    info_path = kept_info_path(folder)
    try:
        with open(info_path, encoding="utf-8") as file:
            info = json.load(file)
        info[STATUS_AFTER_UPLOAD_KEY] = status
        with open(info_path, "w", encoding="utf-8") as file:
            json.dump(info, file, indent=2)
    except (OSError, json.JSONDecodeError) as error:
        logger.warning(
            "Cannot record in %r that the run is to be %s after upload (%s), so "
            "'keras-mlflow-savedmodel upload' will leave the run's status as it is.",
            info_path,
            status,
            error,
        )


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


@dataclasses.dataclass(frozen=True)
class UploadedKeptModel:
    """Result of `upload_kept_model`.

    Attributes:
        artifact_uri: Artifact URI of the uploaded SavedModel.
        run_id: The run it was logged into.
        run_status: Status of the run after the upload.
        previous_run_status: Status of the run before the upload.
    """

    artifact_uri: str
    run_id: str
    run_status: str
    previous_run_status: str


def upload_kept_model(
    folder: str,
    *,
    tracking_uri: Optional[str] = None,
    run_id: Optional[str] = None,
    artifact_path: Optional[str] = None,
    retries: int = DEFAULT_UPLOAD_RETRIES,
) -> UploadedKeptModel:
    """Log a kept SavedModel folder into its run, then delete the folder.

    The run is set to FINISHED, keeping its end time, when its status is FAILED or RUNNING and
    the record beside the folder shows that the callback ended it FAILED only because this upload
    failed (see `record_status_after_upload`). Any other run keeps its status.

    Args:
        folder: A folder named by a ``ModelLoggingError`` or its log message.
        tracking_uri: Store of the run; None uses the one recorded beside the folder.
        run_id: Run to log into; None uses the recorded run.
        artifact_path: Artifact path in the run; None uses the recorded one.
        retries: Retries of transient upload errors.

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
    recorded = {}
    if any(value is None for value in given.values()) or os.path.isfile(kept_info_path(folder)):
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
    run = client.get_run(given["run_id"])
    artifact_uri = run.info.artifact_uri.rstrip("/") + "/" + given["artifact_path"]
    logger.info("Uploaded the kept SavedModel %r to %s and deleted the local copy.", folder, artifact_uri)

    status_after_upload = None
    if recorded.get("run_id") == given["run_id"]:
        status_after_upload = recorded.get(STATUS_AFTER_UPLOAD_KEY)
    previous_status = run.info.status
    if status_after_upload not in _STATUSES_AFTER_UPLOAD or previous_status not in _STATUSES_OF_FAILED_UPLOAD:
        return UploadedKeptModel(artifact_uri, run.info.run_id, previous_status, previous_status)
    # The end time stays the end of training. A run that could not be ended gets the present time.
    client.set_terminated(run.info.run_id, status_after_upload, end_time=run.info.end_time or None)
    logger.info(
        "Set run %s to %s (was %s): the failed upload was its only failure.",
        run.info.run_id,
        status_after_upload,
        previous_status,
    )
    return UploadedKeptModel(artifact_uri, run.info.run_id, status_after_upload, previous_status)


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
    """Run the ``upload`` command, print the artifact URI and the run's status, and return 0."""
    uploaded = upload_kept_model(
        arguments.folder,
        tracking_uri=arguments.tracking_uri,
        run_id=arguments.run_id,
        artifact_path=arguments.artifact_path,
    )
    print(f"uploaded to:    {uploaded.artifact_uri}")
    print(f"run status:     {describe_run_status(uploaded)}")
    return 0


def describe_run_status(uploaded: UploadedKeptModel) -> str:
    """Return the run's status after the upload, and why it changed or stayed."""
    if uploaded.run_status != uploaded.previous_run_status:
        return f"{uploaded.run_status} (was {uploaded.previous_run_status} only because the upload had failed)"
    if uploaded.run_status in _STATUSES_OF_FAILED_UPLOAD:
        return (
            f"{uploaded.run_status} (unchanged: the record beside the kept folder does not show "
            "that the failed upload was the run's only failure)"
        )
    return uploaded.run_status
