"""Writing the model as a SavedModel to a temporary folder and logging it into a run."""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
import tempfile
import time
from typing import Optional

from keras_mlflow_savedmodel import _compat, distributed, export_failure, local_artifacts, upload
from keras_mlflow_savedmodel.disk_space import check_free_space
from keras_mlflow_savedmodel.errors import ModelExportError, ModelLoggingError

logger = logging.getLogger(__name__)

TEMP_PREFIX = "keras-mlflow-savedmodel-"
SAVED_MODEL_FOLDER = "saved_model"
STORE_DISK_FIX = "Free space on the store's disk, pass save_keras_archive=False to write less"


@dataclasses.dataclass(frozen=True)
class LoggedSavedModel:
    """What ``log_saved_model`` logged.

    Attributes:
        artifact_uri: Full URI of the logged folder in the artifact store.
        size_bytes: Total size of the files logged.
        seconds: Wall time of writing and logging together.
        saved_format: ``"keras3-export"`` or ``"keras2-savedmodel"``.
        folder_report: What `complete_folder` returned, or None.
    """

    artifact_uri: str
    size_bytes: int
    seconds: float
    saved_format: str
    folder_report: object = None


def folder_size(folder: str) -> int:
    """Return the total size in bytes of the files under `folder`."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def log_saved_model(
    model,
    client,
    run_id: str,
    artifact_path: str,
    temp_dir=None,
    *,
    upload_retries: int = upload.DEFAULT_UPLOAD_RETRIES,
    kept_roots=(),
    tracking_uri: str = "",
    complete_folder=None,
    with_keras_model: bool = False,
    run_artifact_uri: Optional[str] = None,
) -> LoggedSavedModel:
    """Write `model` as a SavedModel to a fresh staging folder and log it under `artifact_path`.

    The staging folder is created in `temp_dir` when it is given. Otherwise, when the run's
    artifacts are in a local folder, it is created beside that folder, on the same disk, and the
    finished SavedModel is renamed into the run instead of copied (see `local_artifacts`); for any
    other store it is created in the system's temporary folder and the files are uploaded.
    The free space of the staging folder's disk is checked before writing. The staging folder
    is removed after a successful upload, and also when writing fails or is interrupted. When the
    upload fails, or is interrupted, the SavedModel is moved to the first of `kept_roots` that can
    be written (see `upload.keep_saved_model`) so that the trained model is not lost.
    `complete_folder(folder, saved_format)`, when given, runs between writing and uploading;
    what it returns is kept as ``folder_report``. `with_keras_model` is True when it adds the
    native Keras model, which the free-space check then counts. `run_artifact_uri`, when the caller
    knows it, saves asking the store for it. When writing fails, the weights are logged instead
    (see `export_failure.keep_training_results`).

    Raises:
        InsufficientSpaceError: The staging folder's disk has too little free space.
        ModelExportError: Keras could not write the SavedModel.
        ModelLoggingError: The upload failed; the error names the kept folder.
    """
    started = time.perf_counter()
    if run_artifact_uri is not None:
        artifact_folder = local_artifacts.local_artifact_folder(run_artifact_uri)
    else:
        artifact_folder = local_artifacts.find_local_artifact_folder(client, run_id, tracking_uri)
    staging = None
    if temp_dir is None and artifact_folder is not None:
        staging = local_artifacts.make_staging_folder(artifact_folder)
    if staging is None:
        staging_parent = os.fspath(temp_dir) if temp_dir is not None else tempfile.gettempdir()
        check_free_space(staging_parent, model, with_keras_model=with_keras_model)
        if artifact_folder is not None:
            # The model ends up on a local store's disk, wherever it is written first.
            check_free_space(
                local_artifacts.existing_ancestor(artifact_folder),
                model,
                with_keras_model=with_keras_model,
                fix=STORE_DISK_FIX,
            )
        staging = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=temp_dir)
    else:
        try:
            # The model stays on this disk after logging, so another temp_dir would not help.
            check_free_space(
                staging,
                model,
                with_keras_model=with_keras_model,
                fix=STORE_DISK_FIX,
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    saved_model_folder = os.path.join(staging, SAVED_MODEL_FOLDER)
    try:
        saved_format = _compat.write_saved_model(model, saved_model_folder)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(error, Exception):
            raise
        raise export_failure.keep_training_results(
            model, error, client, run_id, artifact_path, staging
        ) from error

    # Files beside the SavedModel (MLmodel, .keras archive) and the reload check.
    folder_report = None
    if complete_folder is not None:
        try:
            folder_report = distributed.call_outside_strategy(complete_folder, saved_model_folder, saved_format)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    size_bytes = folder_size(saved_model_folder)
    try:
        moved = artifact_folder is not None and local_artifacts.move_into_artifacts(
            saved_model_folder, artifact_folder, artifact_path
        )
        if not moved:
            upload.upload_with_retries(client, run_id, saved_model_folder, artifact_path, upload_retries)
    except BaseException as error:
        reason = f"{type(error).__name__}: {error}"
        kept = upload.keep_saved_model(saved_model_folder, kept_roots, tracking_uri, run_id, artifact_path, reason)
        if kept != saved_model_folder:
            shutil.rmtree(staging, ignore_errors=True)
        message = (
            f"Could not log the SavedModel to run {run_id} under {artifact_path!r} "
            f"({reason}). The trained model is kept in {kept!r}; upload it into the run later "
            f"with: keras-mlflow-savedmodel upload {shlex.quote(kept)}"
        )
        logger.error(message)
        if not isinstance(error, Exception):
            raise
        raise ModelLoggingError(kept, run_id, artifact_path, message) from error

    shutil.rmtree(staging, ignore_errors=True)
    if run_artifact_uri is None:
        run_artifact_uri = client.get_run(run_id).info.artifact_uri
    artifact_uri = run_artifact_uri.rstrip("/") + "/" + artifact_path
    seconds = time.perf_counter() - started
    return LoggedSavedModel(artifact_uri, size_bytes, seconds, saved_format, folder_report)
