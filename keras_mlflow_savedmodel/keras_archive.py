"""The native Keras files logged beside the SavedModel: the Keras model folder, weights, custom classes.

The SavedModel serves predictions without any Python class. The native Keras model (Keras 3) lets
``load_model(..., trainable=True)`` return a Keras model that trains further, and the record of
custom classes (``custom_objects.json``) names the modules a loader must import first.

The native model is written as ``keras_model/``, the unzipped form of a ``.keras`` archive
(``config.json``, ``metadata.json``, ``model.weights.h5``), which ``keras.saving.load_model``
opens like the archive. For the zipped archive, Keras writes the weights into memory or a
temporary file first and then copies them into the zip. The folder is written once, which took
about half the time and a seventh of the extra memory for a 25M-parameter model (BENCHMARKS.md).
Keras versions whose ``save`` has no ``zipped`` argument (before about 3.5) get ``model.keras``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import shutil
import warnings

from keras_mlflow_savedmodel import _compat

logger = logging.getLogger(__name__)

KERAS_FOLDER = "keras_model"
KERAS_ARCHIVE_FILE = "model.keras"
CUSTOM_OBJECTS_FILE = "custom_objects.json"
WEIGHTS_FILE = "model.weights.h5"

# Modules whose classes ship with Keras, TensorFlow or tf_keras and need no record.
_LIBRARY_MODULES = ("keras", "tf_keras", "tensorflow")


def is_library_class(cls) -> bool:
    """Return True for a class that Keras can rebuild without the user's code."""
    return cls.__module__.split(".")[0] in _LIBRARY_MODULES


def custom_class_records(model) -> list:
    """Return one record per custom class the model uses: module, class name, registered name.

    Layers (nested ones included), the model's own class, and its loss and optimizer are
    searched. The registered name is what ``keras.saving.register_keras_serializable`` gave the
    class, or None for a class that was not registered.
    """
    classes = []
    for layer in _compat.all_layers(model):
        classes.append(type(layer))
    for attribute in ("loss", "optimizer"):
        value = getattr(model, attribute, None)
        if value is not None and not isinstance(value, (str, dict, list, tuple)):
            classes.append(type(value))

    records = []
    seen = set()
    for cls in classes:
        if is_library_class(cls) or cls in seen:
            continue
        seen.add(cls)
        records.append(
            {
                "module": cls.__module__,
                "class_name": cls.__qualname__,
                "registered_name": _compat.registered_name(cls),
            }
        )
    return records


def write_custom_class_records(model, folder: str) -> list:
    """Write ``custom_objects.json`` into `folder` and return the records it contains."""
    records = custom_class_records(model)
    with open(os.path.join(folder, CUSTOM_OBJECTS_FILE), "w", encoding="utf-8") as file:
        json.dump({"custom_classes": records}, file, indent=2)
    return records


def read_custom_class_records(folder: str) -> list:
    """Return the records of ``custom_objects.json`` in `folder`, or [] when there is none."""
    path = os.path.join(folder, CUSTOM_OBJECTS_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as file:
        return json.load(file).get("custom_classes", [])


def import_recorded_classes(records) -> tuple:
    """Import the recorded classes that can be imported here.

    Returns:
        ``(custom_objects, missing)``: a dict from registered name and class name to class, and
        the records whose module or class could not be imported.
    """
    custom_objects = {}
    missing = []
    for record in records:
        try:
            module = importlib.import_module(record["module"])
        except ImportError:
            missing.append(record)
            continue
        value = module
        for part in record["class_name"].split("."):
            value = getattr(value, part, None)
        if value is None or "<locals>" in record["class_name"]:
            missing.append(record)
            continue
        custom_objects[record["class_name"].split(".")[-1]] = value
        if record.get("registered_name"):
            custom_objects[record["registered_name"]] = value
    return custom_objects, missing


def _can_write_folder(model) -> bool:
    return "zipped" in inspect.signature(model.save).parameters


def write_keras_archive(model, folder: str):
    """Write the native Keras model into `folder`; return the name written, or None with a warning.

    The name is `KERAS_FOLDER`, or `KERAS_ARCHIVE_FILE` on Keras versions that cannot write the
    unzipped folder. Only Keras 3 writes it: legacy Keras revives a trainable model from the
    SavedModel itself. A model whose custom objects cannot be serialized gets a warning with the
    reason, and the SavedModel is logged without the native model. Any other error while writing
    it is handled the same way, so that a failure here never costs the SavedModel.
    """
    if not _compat.is_keras3_model(model):
        return None
    name = KERAS_FOLDER if _can_write_folder(model) else KERAS_ARCHIVE_FILE
    path = os.path.join(folder, name)
    try:
        if name == KERAS_FOLDER:
            model.save(path, zipped=False)
        else:
            model.save(path)
    except Exception as error:  # noqa: BLE001 - the SavedModel is logged whatever went wrong here
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
        warnings.warn(
            f"The model {model.name!r} is logged without its native Keras form ({name}), so "
            f"it can be reloaded for serving but not for further training: Keras could not "
            f"serialize it ({type(error).__name__}: {error}). Give each custom layer a "
            "get_config() that returns its constructor arguments, or pass "
            "save_keras_archive=False to skip it.",
            stacklevel=2,
        )
        return None
    for layer_name, class_name, reason in layers_keras_cannot_rebuild(model):
        warnings.warn(
            f"The native Keras form of {model.name!r} ({name}) was logged, but Keras is likely "
            f"to fail to rebuild its layer {layer_name!r} ({class_name}) when it is loaded with "
            f"load_model(..., trainable=True): {reason}. Give {class_name}.__init__ a **kwargs "
            f"argument passed to super().__init__, and a get_config() that returns the other "
            "constructor arguments.",
            stacklevel=2,
        )
    return name


def layers_keras_cannot_rebuild(model) -> list:
    """Return ``(layer name, class name, reason)`` for the custom layers their config cannot rebuild.

    Saving succeeds for a layer whose config cannot be passed back to its constructor (Keras 3
    fills in a config from the constructor's arguments), and loading fails later. Each custom
    layer class is rebuilt once with ``from_config(get_config())``, which creates no weights.
    The model itself is skipped, because rebuilding a functional model creates all its weights.
    """
    problems = []
    seen = set()
    for layer in _compat.all_layers(model):
        cls = type(layer)
        if layer is model or is_library_class(cls) or cls in seen:
            continue
        seen.add(cls)
        try:
            cls.from_config(layer.get_config())
        except Exception as error:  # noqa: BLE001 - any failure here is what loading would meet
            problems.append((layer.name, cls.__qualname__, f"{type(error).__name__}: {error}"))
    return problems


def find_keras_archive(folder: str):
    """Return the path of the native Keras model logged in `folder`, or None when there is none."""
    candidate = os.path.join(folder, KERAS_FOLDER)
    if os.path.isfile(os.path.join(candidate, "config.json")):
        return candidate
    candidate = os.path.join(folder, KERAS_ARCHIVE_FILE)
    return candidate if os.path.isfile(candidate) else None


def write_weights(model, folder: str) -> str:
    """Write the model's weights into `folder` and return the file's path."""
    path = os.path.join(folder, WEIGHTS_FILE)
    model.save_weights(path)
    return path


def load_keras_archive(folder: str, custom_objects=None):
    """Load the native Keras model logged in `folder` as a Keras 3 model that can train further.

    Recorded custom classes that can be imported are found without `custom_objects`; entries
    of `custom_objects` take precedence.

    Raises:
        CustomObjectsError: Some recorded classes can neither be imported nor are in
            `custom_objects`.
    """
    import keras

    from keras_mlflow_savedmodel.errors import CustomObjectsError

    records = read_custom_class_records(folder)
    found, missing = import_recorded_classes(records)
    passed_objects = dict(custom_objects or {})
    missing = [
        record
        for record in missing
        if record["class_name"].split(".")[-1] not in passed_objects
        and record.get("registered_name") not in passed_objects
    ]
    if missing:
        names = ", ".join(f"{record['module']}.{record['class_name']}" for record in missing)
        example = ", ".join(f"{record['class_name'].split('.')[-1]!r}: ..." for record in missing)
        raise CustomObjectsError(
            missing,
            f"The logged Keras model uses custom classes that are not importable here: {names}. "
            f"Make their modules importable, or pass custom_objects={{{example}}} with the "
            "classes to load_model.",
        )
    found.update(passed_objects)
    return keras.saving.load_model(find_keras_archive(folder), custom_objects=found)
