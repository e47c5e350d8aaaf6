"""A free-space check of the folder the temporary SavedModel is written to, before writing."""

from __future__ import annotations

import logging
import math
import shutil

import numpy as np

from keras_mlflow_savedmodel import _compat
from keras_mlflow_savedmodel.errors import InsufficientSpaceError

logger = logging.getLogger(__name__)

# Room for saved_model.pb, the graph and file-system rounding on top of the variables. An
# estimate, not a measurement: a graph of a very large model can need more.
GRAPH_ALLOWANCE_BYTES = 4 * 2**20


def _variables_bytes(variables) -> int:
    total = 0
    for variable in variables:
        if not hasattr(variable, "shape") or not hasattr(variable, "dtype"):
            # Legacy Keras lists a VocabWeightHandler among a lookup layer's weights.
            continue
        dtype = getattr(variable.dtype, "as_numpy_dtype", variable.dtype)
        total += math.prod(int(dim) for dim in variable.shape) * np.dtype(dtype).itemsize
    return total


def _optimizer_bytes(model) -> int:
    optimizer_variables = getattr(getattr(model, "optimizer", None), "variables", None)
    if callable(optimizer_variables):
        optimizer_variables = optimizer_variables()
    return _variables_bytes(optimizer_variables or [])


def estimate_saved_model_bytes(model, with_keras_model: bool = False) -> int:
    """Return an estimate of the bytes written: the SavedModel's variables plus a graph allowance.

    Keras 3's export writes the model's variables only. Legacy Keras's ``model.save`` also writes
    the optimizer's variables, so they are counted for legacy models. `with_keras_model` adds
    the native Keras model of a Keras 3 model: its weights and optimizer variables once more.
    """
    weights = _variables_bytes(model.weights)
    total = weights + GRAPH_ALLOWANCE_BYTES
    if not _compat.is_keras3_model(model):
        total += _optimizer_bytes(model)
    elif with_keras_model:
        total += weights + _optimizer_bytes(model)
    return total


def check_free_space(folder: str, model, *, with_keras_model: bool = False, fix: str = "") -> None:
    """Raise when `folder` has less free space than the files of `model` are estimated to need.

    `fix` is the advice that ends the error message; by default, a `temp_dir` on another disk.

    Raises:
        InsufficientSpaceError: Too little free space; the message gives both sizes.
    """
    required = estimate_saved_model_bytes(model, with_keras_model)
    free = shutil.disk_usage(folder).free
    logger.debug("SavedModel estimate %d bytes, %d bytes free in %r.", required, free, folder)
    if free >= required:
        return
    subject = "The SavedModel and the native Keras model need" if with_keras_model else "The SavedModel needs"
    fix = fix or "Pass temp_dir= with a folder on a disk with more space, or free space"
    raise InsufficientSpaceError(
        folder,
        required,
        free,
        f"{subject} about {required / 1e6:.1f} MB, but {folder!r} has only "
        f"{free / 1e6:.1f} MB free, so nothing was written. The trained model is still in memory. "
        f"{fix}, or save it yourself with "
        "model.export(...) (Keras 3) or model.save(..., save_format='tf') (legacy Keras).",
    )
