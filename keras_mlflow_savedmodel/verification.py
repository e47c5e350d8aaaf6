"""The reload check: load the written SavedModel back and compare its outputs with the live model.

The check runs on one sample batch: the user's ``input_example`` when given, otherwise inputs built
from the SavedModel's own serving signature (random floats, zero integers, empty strings). Its
result is stored as run tags so that a model that changed on save is visible in the MLflow UI.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from keras_mlflow_savedmodel import _compat

# Run tags that carry the result of the check.
VERIFICATION_TAG = "keras_mlflow_savedmodel.verification"
MAX_DIFFERENCE_TAG = "keras_mlflow_savedmodel.verification_max_abs_diff"
SAMPLE_SOURCE_TAG = "keras_mlflow_savedmodel.verification_inputs"

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"

# The float tolerance of the check: outputs match when |saved - live| <= atol + rtol * |live|.
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
# Float outputs computed in float16 (mixed precision) carry about 3 significant digits.
FLOAT16_ATOL = 1e-3
FLOAT16_RTOL = 1e-3

SAMPLE_ROWS = 2
# Lengths tried, in order, for a dimension the serving signature leaves open, such as a time axis.
# A longer one is tried when the live model rejects a shorter one (a Conv1D with kernel 5 needs 5).
SAMPLE_OPEN_DIMENSIONS = (3, 32, 128)
SAMPLE_OPEN_DIMENSION = SAMPLE_OPEN_DIMENSIONS[0]


@dataclasses.dataclass(frozen=True)
class VerificationResult:
    """Outcome of comparing the reloaded SavedModel with the live model.

    Attributes:
        passed: True when every output matched within tolerance (exactly for strings, integers
            and booleans).
        max_abs_diff: Largest absolute difference over the float outputs; 0.0 when all outputs
            are exact types, infinity when the outputs differ in structure, shape or exact values.
        inputs_source: ``"input_example"`` or ``"serving signature"``.
        detail: What differed, empty when the check passed.
    """

    passed: bool
    max_abs_diff: float
    inputs_source: str
    detail: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"skipped"`` (no built input was valid for the live model)."""
        if self.skipped:
            return SKIPPED
        return PASSED if self.passed else FAILED

    def tags(self) -> dict:
        """Return the run tags that record this result."""
        return {
            VERIFICATION_TAG: self.status,
            MAX_DIFFERENCE_TAG: repr(float(self.max_abs_diff)),
            SAMPLE_SOURCE_TAG: self.inputs_source,
        }


def sample_inputs_from_specs(specs, seed: int = 0, open_dimension: int = SAMPLE_OPEN_DIMENSION):
    """Return NumPy arrays matching the nested `specs` (``tf.TensorSpec``), for a check run."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def make(spec):
        shape = [SAMPLE_ROWS] + [
            open_dimension if dim is None else int(dim) for dim in spec.shape.as_list()[1:]
        ]
        dtype = spec.dtype
        if dtype == tf.string:
            return np.full(shape, b"", dtype=object)
        if dtype == tf.bool:
            return np.zeros(shape, dtype=bool)
        if dtype.is_integer:
            # Zero is a valid index for Embedding and lookup layers of any size.
            return np.zeros(shape, dtype=dtype.as_numpy_dtype)
        return rng.normal(size=shape).astype(dtype.as_numpy_dtype)

    return tf.nest.map_structure(make, specs)


def to_tensors(inputs):
    """Convert every array in the nested `inputs` to a tensor; lists stay lists, tuples tuples."""
    import tensorflow as tf

    return tf.nest.map_structure(tf.convert_to_tensor, inputs)


def compare_outputs(saved, live):
    """Return ``(passed, max_abs_diff, detail)`` for two nested output structures."""
    import numpy as np
    import tensorflow as tf

    saved_flat = [np.asarray(value) for value in tf.nest.flatten(saved)]
    live_flat = [np.asarray(value) for value in tf.nest.flatten(live)]
    if len(saved_flat) != len(live_flat):
        return False, float("inf"), f"{len(saved_flat)} saved outputs, {len(live_flat)} live outputs"

    max_abs_diff = 0.0
    for index, (saved_value, live_value) in enumerate(zip(saved_flat, live_flat)):
        if saved_value.shape != live_value.shape:
            detail = f"output {index} has shape {saved_value.shape} saved, {live_value.shape} live"
            return False, float("inf"), detail
        if not np.issubdtype(live_value.dtype, np.floating):
            if not np.array_equal(saved_value, live_value):
                return False, float("inf"), f"output {index} ({live_value.dtype}) differs"
            continue
        float16 = live_value.dtype == np.float16 or saved_value.dtype == np.float16
        atol, rtol = (FLOAT16_ATOL, FLOAT16_RTOL) if float16 else (DEFAULT_ATOL, DEFAULT_RTOL)
        saved64 = saved_value.astype(np.float64)
        live64 = live_value.astype(np.float64)
        difference = np.abs(saved64 - live64)
        if difference.size:
            max_abs_diff = max(max_abs_diff, float(np.nanmax(difference)))
        if not np.allclose(saved64, live64, atol=atol, rtol=rtol, equal_nan=True):
            detail = (
                f"output {index} differs by up to {float(np.nanmax(difference)):.3g} "
                f"(tolerance atol={atol:g}, rtol={rtol:g})"
            )
            return False, max_abs_diff, detail
    return True, max_abs_diff, ""


def verify_saved_model(model, folder: str, input_example=None) -> VerificationResult:
    """Reload the SavedModel in `folder` and compare its outputs with `model` on one batch.

    Args:
        model: The live Keras model that was written to `folder`.
        folder: The SavedModel folder.
        input_example: Inputs in the structure the model takes, or None to build a batch from
            the serving signature.

    Returns:
        The result. A mismatch is returned, not raised, so the caller decides what it means.
    """
    import tensorflow as tf

    reloaded = tf.saved_model.load(folder)
    serving = _compat.SavedModelServing(reloaded, model)
    if input_example is not None:
        tensors, source = to_tensors(input_example), "input_example"
        live_outputs = model(tensors, training=False)
    else:
        source = "serving signature"
        tensors, live_outputs, rejection = _inputs_the_live_model_accepts(model, serving.input_specs())
        if tensors is None:
            detail = (
                f"the live model rejected every batch built from the serving signature "
                f"(open dimensions of {', '.join(map(str, SAMPLE_OPEN_DIMENSIONS))}): {rejection}. "
                "Pass input_example= with one real batch to check this model"
            )
            return VerificationResult(False, float("nan"), source, detail, skipped=True)
    saved_outputs = serving.call(tensors)
    passed, max_abs_diff, detail = compare_outputs(saved_outputs, live_outputs)
    return VerificationResult(passed, max_abs_diff, source, detail)


def _inputs_the_live_model_accepts(model, specs):
    """Return (tensors, live outputs, None) for the first built batch `model` accepts.

    When the live model rejects every length tried for the open dimensions, return
    (None, None, description of the last error), because a comparison on such inputs
    cannot show whether the SavedModel matches.
    """
    import tensorflow as tf

    rejection = ""
    for open_dimension in SAMPLE_OPEN_DIMENSIONS:
        tensors = to_tensors(sample_inputs_from_specs(specs, open_dimension=open_dimension))
        try:
            return tensors, model(tensors, training=False), None
        except (tf.errors.OpError, ValueError, TypeError) as error:
            rejection = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None, None, rejection


def describe_failure(result: VerificationResult, model_name: str, location: Optional[str]) -> str:
    """Return the message for a failed check, naming the model and where it was logged."""
    where = f" The SavedModel was logged anyway to {location}." if location else ""
    return (
        f"The SavedModel of {model_name!r} does not reproduce the live model: {result.detail} on "
        f"inputs from the {result.inputs_source}.{where} Check custom layers whose call() "
        "depends on Python state, or on the training argument, and compare "
        "tf.saved_model.load(folder).serve(x) with model(x, training=False). Pass "
        "on_verify_failure='warn' to log such a model with a warning instead of failing."
    )
