"""Checks of the callback's arguments, run in ``__init__`` before any file or network access."""

from __future__ import annotations

import os
import posixpath

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
