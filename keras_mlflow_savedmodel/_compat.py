"""Every difference between Keras 3 and legacy Keras 2, and between MLflow 2 and 3, in one place.

"Legacy Keras" is Keras 2: the ``tf_keras`` package (selected by ``TF_USE_LEGACY_KERAS=1`` on
TensorFlow 2.16 and later) or the Keras built into TensorFlow 2.15.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys

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
        if keras_backend() != "tensorflow" or not _export_weights_once(model, folder):
            kwargs = {"format": "tf_saved_model"}
            if "verbose" in inspect.signature(model.export).parameters:
                kwargs["verbose"] = False
            model.export(folder, **kwargs)
        return "keras3-export"
    model.save(folder, save_format="tf")
    return "keras2-savedmodel"


def _export_weights_once(model, folder: str) -> bool:
    """Write what ``model.export`` writes on the TensorFlow backend, storing each weight once.

    Keras 3.15's export archive lists the model's Keras variables under ``variables`` and, under
    ``_all_variables``, the ``tf.Variable`` that each of them wraps, as found in the traced
    ``serve`` function. The checkpoint finds two objects per weight and stores every weight
    twice. Listing the wrapped ``tf.Variable`` objects instead writes the same ``serve``
    endpoint, ``serving_default`` signature and ``variables`` lists with each weight once.
    Returns False, having written nothing, when this Keras lacks the private names used here.
    """
    import keras

    try:
        # NOTE: private in Keras 3.15; the function model.export uses for its input signature.
        from keras.src.export.export_utils import get_input_signature
    except ImportError:
        return False
    archive = keras.export.ExportArchive()
    # NOTE: _tf_trackable is private in Keras 3.15; it is the object that write_out saves.
    trackable = getattr(archive, "_tf_trackable", None)
    if trackable is None:
        return False
    archive.track_and_add_endpoint("serve", model, get_input_signature(model))
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        wrapped = [_wrapped_tf_variable(variable) for variable in getattr(trackable, name)]
        setattr(trackable, name, wrapped)
    archive.write_out(folder, verbose=False)
    return True


def _wrapped_tf_variable(variable):
    """Return the ``tf.Variable`` inside a Keras 3 variable, or `variable` when it wraps none."""
    import tensorflow as tf

    value = getattr(variable, "value", None)
    return value if isinstance(value, tf.Variable) else variable


def load_legacy_keras_model(folder: str, custom_objects=None):
    """Revive a legacy Keras model from a SavedModel folder, or return None without legacy Keras."""
    if legacy_keras_requested():
        import tensorflow as tf

        return tf.keras.models.load_model(folder, custom_objects=custom_objects)
    try:
        import tf_keras
    except ImportError:
        tf_keras = None
    if tf_keras is not None:
        return tf_keras.models.load_model(folder, custom_objects=custom_objects)
    import tensorflow as tf

    if not hasattr(tf.keras, "version") or tf.keras.version().startswith("2."):
        return tf.keras.models.load_model(folder, custom_objects=custom_objects)
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


class SavedModelServing:
    """Calls a reloaded SavedModel the way the live Keras model is called.

    Keras 3's ``model.export`` writes a ``serve`` endpoint that takes the model's own input
    structure. Legacy Keras writes only named signatures, so inputs are matched to the
    ``serving_default`` argument names, which are the model's input names.
    """

    def __init__(self, reloaded, model):
        self.reloaded = reloaded
        self.model = model
        self.has_serve = hasattr(reloaded, "serve") and hasattr(reloaded.serve, "input_signature")

    def input_specs(self):
        """Return the nested ``tf.TensorSpec`` of one call's inputs."""
        if self.has_serve:
            signature = self.reloaded.serve.input_signature
            return signature[0] if len(signature) == 1 else tuple(signature)
        specs = self.reloaded.signatures["serving_default"].structured_input_signature[1]
        if len(specs) == 1:
            return next(iter(specs.values()))
        return dict(specs)

    def call(self, inputs):
        """Run the SavedModel on `inputs` (tensors in the model's structure) and return outputs."""
        if self.has_serve:
            signature = self.reloaded.serve.input_signature
            if len(signature) > 1:
                return self.reloaded.serve(*inputs)
            if isinstance(signature[0], tuple) and isinstance(inputs, list):
                inputs = tuple(inputs)
            return self.reloaded.serve(inputs)
        serving = self.reloaded.signatures["serving_default"]
        names = list(serving.structured_input_signature[1])
        if isinstance(inputs, dict):
            named = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            named = dict(zip(getattr(self.model, "input_names", names), inputs))
        else:
            named = {names[0]: inputs}
        outputs = serving(**named)
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        output_names = list(getattr(self.model, "output_names", None) or [])
        if output_names and all(name in outputs for name in output_names):
            return [outputs[name] for name in output_names]
        return outputs


def default_host_creds(tracking_uri: str):
    """Return MLflow's ``MlflowHostCreds`` for `tracking_uri`, read from MLflow's environment variables."""
    try:
        # The public location in MLflow 3.17.
        from mlflow.utils.credentials import get_default_host_creds
    except ImportError:
        # NOTE: the private location in older MLflow 2 releases; not run against MLflow 2 here.
        from mlflow.tracking._tracking_service.utils import _get_default_host_creds as get_default_host_creds
    return get_default_host_creds(tracking_uri)


def all_layers(model) -> list:
    """Return `model` and every layer inside it, nested layers included."""
    # NOTE: _flatten_layers is private in Keras 3.15 and tf_keras 2.21 alike; no public call
    # walks nested layers of subclassed models.
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=True, recursive=True))
    return [model] + list(getattr(model, "layers", []))


def registered_name(cls):
    """Return the name `cls` was registered under for Keras serialization, or None."""
    if is_keras3_model_class(cls):
        import keras

        name = keras.saving.get_registered_name(cls)
    else:
        try:
            import tf_keras

            name = tf_keras.saving.get_registered_name(cls)
        except ImportError:
            import tensorflow as tf

            name = tf.keras.saving.get_registered_name(cls)
    return None if name == cls.__name__ else name


def is_keras3_model_class(cls) -> bool:
    """Return True when `cls` derives from a Keras 3 class (layer, loss, optimizer...)."""
    return any(base.__module__.split(".")[0] == "keras" for base in cls.__mro__)


def keras_backend():
    """Return the Keras 3 backend name (``"tensorflow"``, ``"jax"``...), or None without Keras 3."""
    if _keras3_model_class() is None:
        return None
    import keras

    return keras.backend.backend()


# Keras 3.15 exports a TensorFlow SavedModel on these backends (JAX through jax2tf); the torch
# backend exports only with torch_xla installed, and numpy and openvino never do.
SAVED_MODEL_BACKENDS = ("tensorflow", "jax")


def saved_model_export_problem():
    """Return why this Keras 3 backend cannot export a SavedModel, or None when it can."""
    backend = keras_backend()
    if backend is None or backend in SAVED_MODEL_BACKENDS:
        return None
    if backend == "torch":
        import importlib.util

        if importlib.util.find_spec("torch_xla") is not None:
            return None
        return "the torch backend exports a SavedModel only with torch_xla installed"
    return f"the {backend} backend cannot export a SavedModel (Keras exports on tensorflow and jax)"


def save_mlflow_input_example(mlmodel, example, folder: str) -> bool:
    """Store `example` in `folder` as MLflow's input example of `mlmodel`; return False if unable."""
    # NOTE: private in MLflow 2.x and 3.17; mlflow.models has no public call that stores an
    # example for a folder that was not written by a flavor's save_model.
    try:
        from mlflow.models.utils import _save_example
    except ImportError:
        return False
    _save_example(mlmodel, example, folder)
    return True


def early_stopping_classes() -> tuple:
    """Return the EarlyStopping classes of every Keras in use: Keras 3, tf_keras, tf.keras."""
    classes = []
    if _keras3_model_class() is not None:
        import keras

        classes.append(keras.callbacks.EarlyStopping)
    # A tf_keras callback exists only once tf_keras is imported; importing it here would add
    # about 0.25 s to every train end of a Keras 3 model.
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None:
        classes.append(tf_keras.callbacks.EarlyStopping)
    import tensorflow as tf

    classes.append(tf.keras.callbacks.EarlyStopping)
    return tuple(dict.fromkeys(classes))


def sqlalchemy_version() -> str:
    import sqlalchemy

    return sqlalchemy.__version__


def sqlalchemy_decodes_database_path() -> bool:
    """Return True when SQLAlchemy percent-decodes the path of a ``sqlite:///`` URI (2.1 and later)."""
    from sqlalchemy.engine import make_url

    return make_url("sqlite:///%41").database == "A"
