"""Checks of the callback's arguments, run in ``__init__`` before any file or network access."""

from __future__ import annotations

import os
import posixpath
import re

from keras_mlflow_savedmodel.errors import InvalidArgumentError


def check_tracking_uri(value):
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidArgumentError(
            "tracking_uri",
            value,
            "tracking_uri must be a path to a store folder, a tracking URI string or None. "
            f"Received: tracking_uri={value!r} of type {type(value).__name__}.",
        )
    if not os.fspath(value).strip():
        raise InvalidArgumentError(
            "tracking_uri",
            value,
            f"tracking_uri must not be empty. Received: tracking_uri={value!r}. Pass a folder such "
            "as 'mlflow-store', a URI such as 'http://127.0.0.1:5000', or None for MLflow's "
            "current tracking URI.",
        )


def check_optional_name(argument: str, value):
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(
            argument,
            value,
            f"{argument} must be a non-empty string or None. Received: {argument}={value!r}.",
        )


def check_artifact_path(value) -> str:
    """Return `value` as a normalized relative POSIX path, or raise."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(
            "artifact_path",
            value,
            "artifact_path must be a non-empty string such as 'model'. "
            f"Received: artifact_path={value!r}.",
        )
    normalized = posixpath.normpath(value.replace("\\", "/"))
    if normalized.startswith("/") or normalized == "." or normalized.split("/")[0] == "..":
        raise InvalidArgumentError(
            "artifact_path",
            value,
            "artifact_path must be a relative path inside the run's artifacts, such as 'model' "
            f"or 'models/classifier'. Received: artifact_path={value!r}.",
        )
    return normalized


def check_tags(value) -> dict:
    """Return `value` as a dict of string keys and string values, or raise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgumentError(
            "tags",
            value,
            f"tags must be a dict of run tags or None. Received: tags={value!r} of type "
            f"{type(value).__name__}.",
        )
    for key in value:
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(
                "tags",
                value,
                f"tags keys must be non-empty strings. Received the key {key!r} in tags={value!r}.",
            )
        if re.search(r"[^\w\-. /]", key):
            raise InvalidArgumentError(
                "tags",
                value,
                f"tags key {key!r} has characters MLflow rejects; use letters, digits, '_', '-', "
                f"'.', ' ' and '/'. Received: tags={value!r}.",
            )
    return {key: str(tag_value) for key, tag_value in value.items()}


def check_bool(argument: str, value):
    if not isinstance(value, bool):
        raise InvalidArgumentError(
            argument,
            value,
            f"{argument} must be True or False. Received: {argument}={value!r}.",
        )


def check_temp_dir(value):
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
        raise InvalidArgumentError(
            "temp_dir",
            value,
            f"temp_dir must be a folder path or None. Received: temp_dir={value!r}.",
        )
    folder = os.path.expanduser(os.fspath(value))
    if not os.path.isdir(folder):
        raise InvalidArgumentError(
            "temp_dir",
            value,
            f"temp_dir {folder!r} is not an existing folder. Create it, or pass None for the "
            "system's temporary folder.",
        )


def check_non_negative_int(argument: str, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(
            argument,
            value,
            f"{argument} must be an int of 0 or more. Received: {argument}={value!r}.",
        )


def check_choice(argument: str, value, allowed: tuple):
    if value not in allowed:
        raise InvalidArgumentError(
            argument,
            value,
            f"{argument} must be one of {', '.join(repr(choice) for choice in allowed)}. "
            f"Received: {argument}={value!r}.",
        )


def check_optional_folder(argument: str, value):
    """Check a folder argument that is created when missing, so it need not exist yet."""
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
        raise InvalidArgumentError(
            argument,
            value,
            f"{argument} must be a folder path or None. Received: {argument}={value!r}.",
        )
    folder = os.path.expanduser(os.fspath(value))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InvalidArgumentError(
            argument,
            value,
            f"{argument} {folder!r} is a file, not a folder. Pass a folder path (it is created "
            "when needed), or None for the default location.",
        )


def check_input_example(value):
    """Check that `value` is None, an array-like, or a list, tuple or dict of array-likes."""
    if value is None:
        return
    if isinstance(value, (str, bytes, int, float, bool)):
        raise InvalidArgumentError(
            "input_example",
            value,
            "input_example must be a batch of model inputs: an array, a list or tuple of "
            f"arrays, or a dict of arrays keyed by input name. Received: input_example={value!r} "
            f"of type {type(value).__name__}. Pass for example x_train[:2].",
        )
    if isinstance(value, dict):
        parts = list(value.values())
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    for part in parts:
        if not hasattr(part, "shape") or len(part.shape) == 0:
            raise InvalidArgumentError(
                "input_example",
                value,
                "input_example must hold arrays or tensors with a batch dimension. Received an "
                f"item of type {type(part).__name__} in input_example. Pass NumPy arrays such "
                "as x_train[:2].",
            )
