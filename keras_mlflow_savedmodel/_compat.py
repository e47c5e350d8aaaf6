"""Every difference between Keras 3 and legacy Keras 2, and between MLflow 2 and 3, in one place.

"Legacy Keras" is Keras 2: the ``tf_keras`` package (selected by ``TF_USE_LEGACY_KERAS=1`` on
TensorFlow 2.16 and later) or the Keras built into TensorFlow 2.15.
"""

from __future__ import annotations

import functools
import inspect
import os

LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"
# Written by Keras 2's model.save(save_format="tf") beside saved_model.pb; its presence marks a
# SavedModel that legacy Keras can revive as a Keras model.
KERAS_METADATA_FILE = "keras_metadata.pb"


def legacy_keras_requested() -> bool:
    """Return True when ``TF_USE_LEGACY_KERAS`` asks tf.keras to be tf_keras."""
    return os.environ.get(LEGACY_KERAS_ENV, "").strip().lower() in ("1", "true", "yes")


def callback_base_class() -> type:
    """Return the Keras ``Callback`` class that ``tf.keras`` resolves to in this process."""
    import tensorflow as tf

    return tf.keras.callbacks.Callback


@functools.lru_cache(maxsize=None)
def _keras3_model_class():
    try:
        import keras
    except ImportError:
        return None
    if int(keras.__version__.split(".")[0]) < 3:
        return None
    return keras.Model


def is_keras3_model(model) -> bool:
    """Return True for a Keras 3 model, False for a legacy Keras 2 model."""
    keras3_model = _keras3_model_class()
    return keras3_model is not None and isinstance(model, keras3_model)


def keras_version_of(model) -> str:
    """Return the version of the Keras package that `model` belongs to."""
    if is_keras3_model(model):
        import keras

        return keras.__version__
    module = type(model).__module__.split(".")[0]
    if module == "tf_keras":
        import tf_keras

        return tf_keras.__version__
    import tensorflow as tf

    return getattr(tf.keras, "__version__", tf.__version__)


def write_saved_model(model, folder: str) -> str:
    """Write `model` to `folder` as a TensorFlow SavedModel and return the format used.

    Keras 3 writes an inference-only SavedModel with ``model.export``; legacy Keras writes its
    full SavedModel, with ``keras_metadata.pb``, through ``model.save(save_format="tf")``.
    """
    if is_keras3_model(model):
        kwargs = {"format": "tf_saved_model"}
        if "verbose" in inspect.signature(model.export).parameters:
            kwargs["verbose"] = False
        model.export(folder, **kwargs)
        return "keras3-export"
    model.save(folder, save_format="tf")
    return "keras2-savedmodel"


def load_legacy_keras_model(folder: str):
    """Revive a legacy Keras model from a SavedModel folder, or return None without legacy Keras."""
    if legacy_keras_requested():
        import tensorflow as tf

        return tf.keras.models.load_model(folder)
    try:
        import tf_keras
    except ImportError:
        tf_keras = None
    if tf_keras is not None:
        return tf_keras.models.load_model(folder)
    import tensorflow as tf

    if not hasattr(tf.keras, "version") or tf.keras.version().startswith("2."):
        return tf.keras.models.load_model(folder)
    return None


def optimizer_learning_rate(optimizer):
    """Return the optimizer's current learning rate as a float, or None when it has none."""
    import numpy as np

    rate = getattr(optimizer, "learning_rate", None)
    if rate is None:
        return None
    if callable(rate) and not hasattr(rate, "numpy"):
        # A legacy Keras LearningRateSchedule: evaluate it at the current step.
        rate = rate(optimizer.iterations)
    try:
        array = np.asarray(rate)
        value = float(array)
    except (TypeError, ValueError):
        return None
    if array.dtype == np.float32:
        # Shortest decimal that reads back as the same float32: 0.001, not 0.0010000000474974513.
        value = float(np.format_float_positional(np.float32(value), unique=True))
    return value


def autologging_flavors_enabled(flavors=("tensorflow", "keras")) -> list:
    """Return which of MLflow's autologging `flavors` are enabled in this process."""
    from mlflow.utils.autologging_utils import autologging_is_disabled

    return [flavor for flavor in flavors if not autologging_is_disabled(flavor)]


def autolog_logs_models(flavors) -> bool:
    """Return True when autologging of any of `flavors` logs its own model at train end."""
    from mlflow.utils.autologging_utils import get_autologging_config

    return any(bool(get_autologging_config(flavor, "log_models", True)) for flavor in flavors)


# The name mlflow.autolog(log_models=True) logs its Keras/TensorFlow model under, on MLflow 2
# (an artifact folder) and on MLflow 3 (a LoggedModel that runs:/<id>/model resolves to).
AUTOLOG_MODEL_NAME = "model"


def current_experiment_id():
    """Return the experiment id MLflow's fluent API would use for a new run, or None."""
    from mlflow.tracking import fluent

    # NOTE: private in MLflow 2.12 to 3.17; no public call returns the fluent experiment id.
    get_experiment_id = getattr(fluent, "_get_experiment_id", None)
    if get_experiment_id is None:
        return None
    return get_experiment_id()
