"""Exceptions raised by keras_mlflow_savedmodel.

Every exception derives from `KerasMlflowSavedModelError`, so one `except` clause catches them all.
The classes carry the offending value as attributes, and their messages name the value, where it
came from and how to fix it.
"""

from __future__ import annotations


class KerasMlflowSavedModelError(Exception):
    """Base class of every error raised by this package."""


class InvalidArgumentError(KerasMlflowSavedModelError, ValueError):
    """An argument has a value the package cannot use.

    Attributes:
        argument: Name of the argument, as the caller wrote it.
        value: The value received.
    """

    def __init__(self, argument: str, value: object, message: str):
        super().__init__(message)
        self.argument = argument
        self.value = value


class TrackingStoreError(KerasMlflowSavedModelError):
    """A tracking store cannot be used: wrong kind of folder, mixed formats, unreachable server.

    Attributes:
        value: The path or URI as given.
        source: Where the value came from, for example ``"tracking_uri argument"``.
    """

    def __init__(self, value: object, source: str, message: str):
        super().__init__(message)
        self.value = value
        self.source = source


class TrackingServerError(TrackingStoreError):
    """A remote tracking server cannot be reached in time, rejects the credentials, or is no MLflow server.

    Attributes:
        status_code: The HTTP status the server answered, or None when no answer came.
    """

    def __init__(self, value: object, source: str, status_code, message: str):
        super().__init__(value, source, message)
        self.status_code = status_code


class StoreMismatchError(TrackingStoreError):
    """An MLflow run is active in a different store than the callback was told to use.

    Attributes:
        active_store: Tracking URI of the store that holds the active run.
        requested_store: Tracking URI the callback resolved.
    """

    def __init__(self, active_store: str, requested_store: str, source: str, message: str):
        super().__init__(requested_store, source, message)
        self.active_store = active_store
        self.requested_store = requested_store


class ModelExportError(KerasMlflowSavedModelError):
    """Keras could not write the model as a SavedModel."""


class ModelLoggingError(KerasMlflowSavedModelError):
    """The SavedModel was written but could not be logged to MLflow.

    The SavedModel is kept on local disk so the trained model is not lost.

    Attributes:
        kept_folder: Local folder that still holds the SavedModel.
        run_id: The run the model was meant for.
        artifact_path: The artifact path it was meant to be logged under.
    """

    def __init__(self, kept_folder: str, run_id: str, artifact_path: str, message: str):
        super().__init__(message)
        self.kept_folder = kept_folder
        self.run_id = run_id
        self.artifact_path = artifact_path


class InsufficientSpaceError(ModelExportError):
    """The folder the SavedModel is written to has less free space than the files need.

    Attributes:
        folder: The folder that was checked.
        required_bytes: Estimated size of the files to write.
        free_bytes: Free space in `folder` when it was checked.
    """

    def __init__(self, folder: str, required_bytes: int, free_bytes: int, message: str):
        super().__init__(message)
        self.folder = folder
        self.required_bytes = required_bytes
        self.free_bytes = free_bytes


class LayerExportError(ModelExportError):
    """Keras could not write the model as a SavedModel because of one layer or input.

    The trained weights are logged or kept on disk before this is raised.

    Attributes:
        layer_name: Name of the layer (or input) at fault, or None when it could not be found.
        kept_location: Artifact URI or local folder that holds the trained weights.
    """

    def __init__(self, layer_name, kept_location, message: str):
        super().__init__(message)
        self.layer_name = layer_name
        self.kept_location = kept_location


class ModelVerificationError(KerasMlflowSavedModelError):
    """The reloaded SavedModel does not reproduce the live model's outputs.

    Attributes:
        max_abs_diff: Largest absolute difference between saved and live float outputs.
        model_uri: Where the SavedModel was logged anyway.
    """

    def __init__(self, max_abs_diff: float, model_uri, message: str):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.model_uri = model_uri


class CustomObjectsError(KerasMlflowSavedModelError):
    """A logged Keras model needs custom classes that are neither importable nor passed.

    Attributes:
        missing: The records (module, class name, registered name) of the classes not found.
    """

    def __init__(self, missing: list, message: str):
        super().__init__(message)
        self.missing = missing
