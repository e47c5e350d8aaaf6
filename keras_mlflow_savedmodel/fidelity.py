"""The steps between writing the SavedModel and uploading it: native Keras files, MLmodel, reload check."""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from mlflow.exceptions import MlflowException

from keras_mlflow_savedmodel import _compat, keras_archive, mlflow_model, verification
from keras_mlflow_savedmodel.errors import ModelExportError, ModelVerificationError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FolderReport:
    """Files added to the SavedModel folder, and the result of the reload check.

    Attributes:
        verification: Result of the reload check, or None when it was not run.
        keras_archive_written: True when the native Keras model is in the folder.
        custom_classes: The records written to ``custom_objects.json``.
        mlmodel_written: True when the ``MLmodel`` file is in the folder.
    """

    verification: Optional[verification.VerificationResult]
    keras_archive_written: bool
    custom_classes: list
    mlmodel_written: bool


def complete_saved_model_folder(
    model,
    folder: str,
    saved_format: str,
    *,
    run_id: str,
    artifact_path: str,
    input_example=None,
    save_keras_archive: bool = True,
    verify: bool = True,
) -> FolderReport:
    """Add the Keras files and ``MLmodel`` to the SavedModel `folder` and run the reload check.

    The reload check runs first, on the folder exactly as Keras wrote it. The check and the MLmodel
    read the SavedModel back with ``tf.saved_model.load``.
    """
    result = _verify(model, folder, input_example) if verify else None
    if result is not None and result.skipped:
        logger.warning("Reload check of the SavedModel skipped: %s.", result.detail)
    elif result is not None:
        logger.info(
            "Reload check of the SavedModel %s: max abs difference %.3g on inputs from the %s.",
            result.status,
            result.max_abs_diff,
            result.inputs_source,
        )

    records = keras_archive.write_custom_class_records(model, folder)
    archive = keras_archive.write_keras_archive(model, folder) if save_keras_archive else None
    extra_files = {"custom_objects": keras_archive.CUSTOM_OBJECTS_FILE}
    if archive is not None:
        extra_files["keras_archive"] = archive

    try:
        mlflow_model.write_mlmodel(
            folder,
            run_id=run_id,
            artifact_path=artifact_path,
            saved_format=saved_format,
            keras_version=_compat.keras_version_of(model),
            input_example=input_example,
            extra_files=extra_files,
        )
    except (MlflowException, OSError, ValueError, TypeError) as error:
        # The SavedModel is still logged; only mlflow.pyfunc cannot load it.
        logger.warning("Could not write the MLmodel file, so the folder is logged without it: %s", error)
        return FolderReport(result, archive is not None, records, False)
    return FolderReport(result, archive is not None, records, True)


def _verify(model, folder: str, input_example):
    """Run the reload check; a reload or call that raises counts as a failed check."""
    import tensorflow as tf

    try:
        return verification.verify_saved_model(model, folder, input_example)
    except (tf.errors.OpError, ValueError, TypeError, KeyError) as error:
        source = "input_example" if input_example is not None else "serving signature"
        detail = f"the reloaded SavedModel could not be called ({type(error).__name__}: {error})"
        return verification.VerificationResult(False, float("inf"), source, detail)


# Glue between SavedModelMLflowCallback and the steps above.


def complete_folder(callback, artifact_path: str, folder: str, saved_format: str) -> FolderReport:
    """Run `complete_saved_model_folder` with the options of `callback`."""
    return complete_saved_model_folder(
        callback.model,
        folder,
        saved_format,
        run_id=callback.run_id,
        artifact_path=artifact_path,
        input_example=callback._input_example,
        save_keras_archive=callback._save_keras_archive,
        verify=callback._verify,
    )


def record_logged_model(callback, logged) -> None:
    """Tag the run with the reload check, register the model, and raise on a failed check.

    Raises:
        ModelVerificationError: The check failed and ``on_verify_failure="raise"``.
    """
    import warnings

    report = logged.folder_report
    result = report.verification if report is not None else None
    callback.verification = result
    client = callback._client()
    if result is not None:
        for key, value in result.tags().items():
            client.set_tag(callback.run_id, key, value)
    if callback._registered_model_name is not None:
        callback.registered_model_version = _register_or_warn(
            client, callback._registered_model_name, logged.artifact_uri, callback.run_id, callback.model_uri
        )
    if result is None or result.passed or result.skipped:
        return
    message = verification.describe_failure(result, callback.model.name, callback.model_uri)
    if callback._on_verify_failure == "raise":
        raise ModelVerificationError(result.max_abs_diff, callback.model_uri, message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _register_or_warn(client, name: str, artifact_uri: str, run_id: str, model_uri: str):
    """Register the model; on an MLflow error, warn and return None, since the model is logged."""
    import warnings

    try:
        return register_model(client, name, artifact_uri, run_id)
    except MlflowException as error:
        warnings.warn(
            f"The model is logged at {model_uri} but could not be registered as {name!r}: "
            f"{error}. Register it later with mlflow.register_model({model_uri!r}, {name!r}).",
            RuntimeWarning,
            stacklevel=4,
        )
        return None


def register_model(client, name: str, artifact_uri: str, run_id: str) -> str:
    """Register the logged folder as a new version of the registered model `name`; return the version."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, artifact_uri, run_id=run_id)
    logger.info("Registered the model as %r version %s.", name, version.version)
    return str(version.version)


def check_backend(save_keras_archive: bool) -> None:
    """Say at train begin when this Keras backend cannot export a SavedModel.

    Raises:
        ModelExportError: The backend cannot export a SavedModel and the ``.keras`` archive is
            turned off, so nothing could be logged at train end.
    """
    import warnings

    problem = _compat.saved_model_export_problem()
    if problem is None:
        return
    if not save_keras_archive:
        raise ModelExportError(
            f"Cannot log this model as a SavedModel: {problem}, and save_keras_archive=False "
            "turns off the .keras archive, so nothing could be logged after training. Set "
            "KERAS_BACKEND=tensorflow, or pass save_keras_archive=True to log the .keras archive."
        )
    warnings.warn(
        f"The model will not be logged as a SavedModel: {problem}. At train end the weights "
        "and the .keras archive are logged instead, and a LayerExportError is raised (or a "
        "warning issued with on_log_error='warn'). Set KERAS_BACKEND=tensorflow for a SavedModel.",
        stacklevel=3,
    )
