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
