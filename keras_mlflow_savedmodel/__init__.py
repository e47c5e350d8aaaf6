"""Log Keras models to MLflow as TensorFlow SavedModels that load back, custom layers included.

``import keras_mlflow_savedmodel`` is cheap and has no side effects: TensorFlow and MLflow are
imported when `SavedModelMLflowCallback` or `load_model` is first used.
"""

from __future__ import annotations

import importlib

from keras_mlflow_savedmodel.errors import (
    CustomObjectsError,
    InsufficientSpaceError,
    InvalidArgumentError,
    KerasMlflowSavedModelError,
    LayerExportError,
    ModelExportError,
    ModelLoggingError,
    ModelVerificationError,
    StoreMismatchError,
    TrackingStoreError,
)

__version__ = "0.1.0"

_LAZY_ATTRIBUTES = {
    "SavedModelMLflowCallback": "keras_mlflow_savedmodel.callback",
    "load_model": "keras_mlflow_savedmodel.loading",
    "ServingModel": "keras_mlflow_savedmodel.loading",
}

__all__ = [
    "CustomObjectsError",
    "InsufficientSpaceError",
    "InvalidArgumentError",
    "KerasMlflowSavedModelError",
    "LayerExportError",
    "ModelExportError",
    "ModelLoggingError",
    "ModelVerificationError",
    "SavedModelMLflowCallback",
    "ServingModel",
    "StoreMismatchError",
    "TrackingStoreError",
    "load_model",
]


def __getattr__(name):
    module_name = _LAZY_ATTRIBUTES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
