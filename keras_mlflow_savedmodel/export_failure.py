"""Handling of a failed SavedModel export: the layer at fault is named and the weights are kept."""

from __future__ import annotations

import logging
import os
import re
import shutil

from keras_mlflow_savedmodel import _compat, keras_archive
from keras_mlflow_savedmodel.errors import LayerExportError

logger = logging.getLogger(__name__)

TRAINING_RESULTS_FOLDER = "training_results"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _is_layer(value) -> bool:
    return all(hasattr(value, name) for name in ("built", "name", "call", "weights"))


def layer_at_fault(error: BaseException, model):
    """Return the innermost layer whose code was running when `error` was raised, or None.

    The traceback frames of the error (and of the errors it was raised from) are read for a
    ``self`` that is a Keras layer. A custom layer is preferred over a built-in one, because a
    built-in layer usually fails on what a custom layer handed it.
    """
    layers = []
    seen_errors = set()
    current = error
    while current is not None and id(current) not in seen_errors:
        seen_errors.add(id(current))
        traceback = current.__traceback__
        while traceback is not None:
            candidate = traceback.tb_frame.f_locals.get("self")
            if candidate is not None and candidate is not model and _is_layer(candidate):
                layers.append(candidate)
            traceback = traceback.tb_next
        current = current.__cause__ or current.__context__
    custom = [layer for layer in layers if not keras_archive.is_library_class(type(layer))]
    if custom:
        return custom[-1]
    return layers[-1] if layers else None


def short_reason(error: BaseException) -> str:
    """Return the error's message on one line, without terminal colors or Keras's argument dump."""
    text = _ANSI_ESCAPE.sub("", str(error))
    # Keras 3 appends the arguments of the failed call, which can be long tensors' reprs.
    text = text.split("Arguments received by")[0]
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def keep_training_results(model, error, client, run_id: str, artifact_path: str, staging: str) -> LayerExportError:
    """Log the model's weights (and ``.keras`` archive when possible) after a failed export.

    Returns the error to raise: it names the layer at fault, the cause and where the weights
    are. When the upload fails too, the weights stay in `staging` and the error names that folder.
    """
    layer = layer_at_fault(error, model)
    if layer is not None:
        culprit = f"the layer {layer.name!r} ({type(layer).__name__})"
        fix = (
            f"Make {type(layer).__name__}.call() traceable by tf.function: use keras.ops or "
            "TensorFlow operations on tensors, no NumPy conversion or Python branching on "
            "tensor values. "
        )
    elif _compat.saved_model_export_problem() is not None:
        culprit = "the Keras backend"
        fix = f"Set KERAS_BACKEND=tensorflow: {_compat.saved_model_export_problem()}. "
    else:
        culprit = "an unidentified layer or input"
        fix = "Check that every input has a fixed dtype and rank and that call() is traceable. "

    results_folder = os.path.join(staging, TRAINING_RESULTS_FOLDER)
    os.makedirs(results_folder, exist_ok=True)
    keras_archive.write_weights(model, results_folder)
    keras_archive.write_keras_archive(model, results_folder)
    keras_archive.write_custom_class_records(model, results_folder)
    results_path = f"{artifact_path}/{TRAINING_RESULTS_FOLDER}"
    try:
        client.log_artifacts(run_id, results_folder, results_path)
    except Exception as upload_error:  # noqa: BLE001 - any upload failure leaves the files on disk
        logger.error(
            "Could not log the trained weights to run %s: %s. They are kept in %s.",
            run_id,
            upload_error,
            results_folder,
        )
        kept_location = results_folder
    else:
        kept_location = client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + results_path
        shutil.rmtree(staging, ignore_errors=True)

    message = (
        f"Could not write {type(model).__name__} {model.name!r} as a SavedModel because of "
        f"{culprit}: {type(error).__name__}: {short_reason(error)} {fix}The trained weights are kept in "
        f"{kept_location} ({keras_archive.WEIGHTS_FILE}); rebuild the model in code and call "
        "model.load_weights() on that file."
    )
    return LayerExportError(getattr(layer, "name", None), kept_location, message)
