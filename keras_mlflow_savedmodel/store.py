"""Resolution of a path or URI to the MLflow tracking store it names.

A URI (``sqlite:``, ``file:``, ``http(s):``, ``databricks``...) is used unchanged. A path names a
self-contained local store folder: the SQLite database ``mlflow.db`` and every artifact live inside
it, artifacts at ``<folder>/<experiment_id>/<run_id>/artifacts/``. The path is resolved once, when
the callback is created, to an absolute location with ``~`` expanded and symlinks followed, so the
working directory of a later ``mlflow ui`` does not matter.

MLflow's own SQLite stores put artifacts under ``./mlruns`` of whatever the working directory is
when an experiment is created. To keep artifacts inside the folder, this module creates the database
and the experiments itself, with the folder as the artifact root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shlex
import sys
import urllib.parse
from pathlib import Path
from typing import Optional, Union

from keras_mlflow_savedmodel import _compat
from keras_mlflow_savedmodel.errors import InvalidArgumentError, TrackingStoreError
from keras_mlflow_savedmodel.remote import check_server, is_http_uri, redact_uri

logger = logging.getLogger(__name__)

TRACKING_DB_NAME = "mlflow.db"
# Held while one process creates the database or an experiment, so that two processes starting
# on a new store at once do not both run MLflow's schema migrations or insert the same experiment.
LOCK_FILE_NAME = ".mlflow.db.lock"
ALLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

# Bare names that MLflow accepts as tracking URIs without a colon.
_BARE_URI_NAMES = ("databricks", "databricks-uc", "uc")
# URI schemes of MLflow 3.17's built-in tracking stores. SQLAlchemy URIs may add a driver
# ("postgresql+psycopg2"), and plugins add schemes through the "mlflow.tracking_store" entry points.
_BUILTIN_SCHEMES = ("file", "http", "https", "databricks", "databricks-uc", "uc", "sqlite", "postgresql", "mysql", "mssql")
_TRACKING_STORE_ENTRY_POINTS = "mlflow.tracking_store"
# A scheme of two letters or more, so that a Windows drive letter ("C:\\runs") reads as a path.
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_SQLITE_HEADER = b"SQLite format 3\x00"
# Characters a URL parser reads as an escape, a query or a fragment.
_URI_SPECIAL_CHARACTERS = "%?#"
# How many experiments an error about an unknown experiment id lists.
_LISTED_EXPERIMENTS = 10

PathOrUri = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class TrackingStore:
    """A resolved tracking store.

    Attributes:
        tracking_uri: The URI to hand to MLflow.
        given: The path or URI as the caller gave it.
        source: Where the value came from, for error messages and logs.
        local_folder: Absolute path of the self-contained store folder, or None for a URI.
    """

    tracking_uri: str
    given: str
    source: str
    local_folder: Optional[str] = None

    @property
    def display_uri(self) -> str:
        """The tracking URI with credentials replaced by ``***``."""
        return redact_uri(self.tracking_uri)

    def ui_options(self) -> list:
        """Return the ``mlflow ui`` options that open this store, with the tracking URI unredacted."""
        options = ["--backend-store-uri", self.tracking_uri]
        if _is_local_sqlite(self):
            # Experiments created from the UI then keep their artifacts in the folder too.
            options += ["--default-artifact-root", self.local_folder]
        return options

    def ui_command(self) -> str:
        """Return the ``mlflow ui`` command that opens this store, quoted for a POSIX shell.

        A tracking server already serves the UI, so for an ``http(s)`` store this is its URL.
        Credentials are replaced by ``***`` in both cases.
        """
        if is_http_uri(self.tracking_uri):
            return self.display_uri
        options = self.ui_options()
        options[1] = self.display_uri
        return " ".join(shlex.quote(word) for word in ["mlflow", "ui", *options])


def is_uri(value: str) -> bool:
    """Return True when `value` reads as a URI rather than a filesystem path."""
    return value in _BARE_URI_NAMES or bool(_SCHEME_RE.match(value))


def same_store(first_uri: str, second_uri: str) -> bool:
    """Return True when two tracking URIs name the same store, ignoring percent-encoding."""

    def normalize(uri: str) -> str:
        uri = urllib.parse.unquote(uri).rstrip("/")
        for prefix in ("sqlite:///", "file://"):
            if uri.startswith(prefix):
                return prefix + os.path.realpath(uri[len(prefix) :])
        return uri

    return normalize(first_uri) == normalize(second_uri)


def resolve_tracking_store(value: Optional[PathOrUri], source: str = "tracking_uri argument") -> TrackingStore:
    """Resolve a path or URI to the store it names, without creating anything.

    Args:
        value: A tracking URI, a path to a store folder, or None for MLflow's current tracking URI
            (``MLFLOW_TRACKING_URI`` when set, then ``mlflow.set_tracking_uri()``, then MLflow's
            default).
        source: Where `value` came from, quoted in error messages.

    Raises:
        TrackingStoreError: The path names a file, or a folder that contains a legacy MLflow file
            store while ``MLFLOW_ALLOW_FILE_STORE`` is not ``true``.
    """
    if value is None:
        env_value = os.environ.get(TRACKING_URI_ENV)
        if env_value:
            return resolve_tracking_store(env_value, source=f"environment variable {TRACKING_URI_ENV}")
        import mlflow

        return TrackingStore(mlflow.get_tracking_uri(), "", "mlflow.get_tracking_uri()")

    given = os.fspath(value)
    if is_uri(given):
        _check_scheme(given, source)
        return TrackingStore(given, given, source)
    return _resolve_store_folder(given, source)


def _check_scheme(uri: str, source: str) -> None:
    if uri in _BARE_URI_NAMES:
        return
    scheme, after_scheme = uri.split(":", 1)
    scheme = scheme.lower()
    if scheme.split("+", 1)[0] in _BUILTIN_SCHEMES or scheme in _plugin_schemes():
        return
    schemes = ", ".join(_BUILTIN_SCHEMES)
    if after_scheme.startswith("//"):
        fix = f"Use a store folder path, or a URI with one of the schemes {schemes}"
    else:
        # "mlflow-store:v2" is more likely a folder name than a URI. It is still not taken as a
        # folder, because a URI of a tracking-store plugin that is not installed would then put
        # the runs into a new local folder silently.
        folder = os.path.abspath(uri)
        fix = (
            f"If it names a folder, write it as {'./' + uri!r} (the folder {folder!r}). Otherwise "
            f"use a URI with one of the schemes {schemes}"
        )
    raise TrackingStoreError(
        uri,
        source,
        f"{source} {redact_uri(uri)!r} has the URI scheme {scheme!r}, which no installed MLflow "
        f"tracking store handles. {fix}, or install the MLflow plugin that provides {scheme!r}.",
    )


def _plugin_schemes() -> set:
    from importlib.metadata import entry_points

    return {entry_point.name.lower() for entry_point in entry_points(group=_TRACKING_STORE_ENTRY_POINTS)}


def _resolve_store_folder(given: str, source: str) -> TrackingStore:
    folder = os.path.realpath(os.path.expanduser(given))
    if os.path.isfile(folder):
        raise TrackingStoreError(given, source, _file_instead_of_folder_message(given, source, folder))

    if _holds_legacy_file_store(folder):
        if os.environ.get(ALLOW_FILE_STORE_ENV, "").strip().lower() == "true":
            return TrackingStore(Path(folder).as_uri(), given, source, folder)
        raise TrackingStoreError(
            given,
            source,
            f"The store folder {folder!r} (from {source} {given!r}) holds a legacy MLflow file "
            "store (meta.yaml files), and this package keeps new runs in a SQLite database inside "
            "the folder, so the two formats would mix. Either pass a new folder, or migrate the "
            f"old runs with 'mlflow migrate-filestore' (MLflow 3.13 and later). To keep using the "
            f"file store as it is, set {ALLOW_FILE_STORE_ENV}=true.",
        )

    db_path = os.path.join(folder, TRACKING_DB_NAME)
    try:
        tracking_uri = _sqlite_uri(db_path)
    except ValueError as error:
        raise TrackingStoreError(
            given,
            source,
            f"The store folder {folder!r} (from {source} {given!r}) cannot be used: {error}. "
            "Pass a folder whose path has none of these characters, or install SQLAlchemy 2.1 "
            "or later.",
        ) from error
    return TrackingStore(tracking_uri, given, source, folder)


def _sqlite_uri(db_path: str) -> str:
    """Return the ``sqlite:///`` URI of `db_path`.

    Spaces and non-ASCII letters stay as they are, because SQLAlchemy 2.0 does not percent-decode
    the database path (2.1 does). Only a path with ``%``, ``?`` or ``#`` needs encoding, which
    works only where SQLAlchemy decodes it.

    Raises:
        ValueError: `db_path` needs encoding and the installed SQLAlchemy does not decode it.
    """
    if not set(db_path) & set(_URI_SPECIAL_CHARACTERS):
        return "sqlite:///" + db_path
    if _compat.sqlalchemy_decodes_database_path():
        return "sqlite:///" + urllib.parse.quote(db_path, safe="/")
    raise ValueError(
        f"the path {db_path!r} contains one of {_URI_SPECIAL_CHARACTERS!r}, which SQLAlchemy "
        f"{_compat.sqlalchemy_version()} cannot read in a sqlite URI"
    )


def _file_instead_of_folder_message(given: str, source: str, path: str) -> str:
    with open(path, "rb") as file:
        header = file.read(len(_SQLITE_HEADER))
    if header == _SQLITE_HEADER:
        return (
            f"{source} {given!r} is a SQLite database file, but a path here names a store folder. "
            f"Pass the database as a URI, tracking_uri={_sqlite_uri(path)!r}, or pass the folder "
            "that should hold the store."
        )
    return (
        f"{source} {given!r} resolves to the file {path!r}, but a path here names a store folder. "
        "Pass a folder (it is created if missing) or a tracking URI such as 'sqlite:///...' or "
        "'http://host:5000'."
    )


def _holds_legacy_file_store(folder: str) -> bool:
    """Return True when `folder` contains experiments of MLflow's file store (``<id>/meta.yaml``)."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return False
    for entry in entries:
        if entry.is_dir() and entry.name.isdigit():
            if os.path.isfile(os.path.join(entry.path, "meta.yaml")):
                return True
    return False


def open_tracking_store(store: TrackingStore) -> None:
    """Make the store ready to use: create a local store, or check that a server answers.

    A store folder and its database are created if missing, with the folder as artifact root.
    An ``http(s)`` server gets one request with a short timeout (see `remote.check_server`).
    Other URIs are used as they are.

    Raises:
        TrackingStoreError: The folder or database cannot be created.
        TrackingServerError: The server cannot be reached in time or rejects the credentials.
    """
    if is_http_uri(store.tracking_uri):
        check_server(store.tracking_uri, store.source)
        return
    if not _is_local_sqlite(store):
        return
    try:
        os.makedirs(store.local_folder, exist_ok=True)
    except OSError as error:
        raise TrackingStoreError(
            store.given,
            store.source,
            f"Cannot create the store folder {store.local_folder!r} (from {store.source} "
            f"{store.given!r}): {error}. Pass a folder you can write to.",
        ) from error
    with _store_lock(store):
        _sql_store(store)


def check_store_for_reading(store: TrackingStore) -> None:
    """Check that an existing store can be read, without writing to it.

    Unlike `open_tracking_store`, this takes no lock and creates nothing, so it works on a store
    folder the user cannot write. An ``http(s)`` server gets the same short check.

    Raises:
        TrackingStoreError: The store does not exist.
        TrackingServerError: The server cannot be reached in time or rejects the credentials.
    """
    require_existing_store(store)
    if is_http_uri(store.tracking_uri):
        check_server(store.tracking_uri, store.source)


def require_existing_store(store: TrackingStore) -> None:
    """Raise unless a local store folder or SQLite file already exists; URIs of servers pass.

    Raises:
        TrackingStoreError: The folder or database file does not exist.
    """
    if store.local_folder is not None:
        if not os.path.isdir(store.local_folder):
            raise TrackingStoreError(
                store.given,
                store.source,
                f"The store folder {store.local_folder!r} (from {store.source} {store.given!r}) "
                "does not exist. Check the path, or train with "
                f"SavedModelMLflowCallback({store.given!r}) first to create it.",
            )
        if _is_local_sqlite(store) and not os.path.isfile(_db_path(store)):
            raise TrackingStoreError(
                store.given,
                store.source,
                f"The folder {store.local_folder!r} (from {store.source} {store.given!r}) holds no "
                f"MLflow store: {TRACKING_DB_NAME} is missing. Pass the folder that "
                "SavedModelMLflowCallback logged to.",
            )
        return
    if store.tracking_uri.startswith("sqlite:"):
        db_path = sqlite_file_path(store.tracking_uri)
        if db_path is not None and not os.path.isfile(db_path):
            raise TrackingStoreError(
                store.given,
                store.source,
                f"The SQLite database {db_path!r} (from {store.source} {store.given!r}) does not "
                "exist. Check the path.",
            )


def sqlite_file_path(tracking_uri: str) -> Optional[str]:
    """Return the file path of a ``sqlite:///`` URI, or None for an in-memory database."""
    path = urllib.parse.unquote(tracking_uri[len("sqlite:///") :]).split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return path


def _is_local_sqlite(store: TrackingStore) -> bool:
    return store.local_folder is not None and store.tracking_uri.startswith("sqlite:")


def _db_path(store: TrackingStore) -> str:
    return os.path.join(store.local_folder, TRACKING_DB_NAME)


@contextlib.contextmanager
def _store_lock(store: TrackingStore):
    """Hold an exclusive lock on the store folder's lock file, across processes."""
    lock_path = os.path.join(store.local_folder, LOCK_FILE_NAME)
    try:
        lock_file_handle = open(lock_path, "a+b")
    except OSError as error:
        raise TrackingStoreError(
            store.given,
            store.source,
            f"Cannot open the lock file {lock_path!r} of the store folder {store.local_folder!r} "
            f"(from {store.source} {store.given!r}): {error}. Logging into a store needs write "
            "access to its folder: pass a folder you can write to.",
        ) from error
    with lock_file_handle as lock_file:
        if sys.platform == "win32":
            import msvcrt

            # LK_LOCK retries for about 10 s and then raises OSError, so keep trying.
            while True:
                try:
                    msvcrt.locking(lock_file.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    logger.info("Waiting for another process to release %s.", lock_path)
            try:
                yield
            finally:
                lock_file.seek(0)
                msvcrt.locking(lock_file.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _sql_store(store: TrackingStore):
    """Return an MLflow SQL store whose default artifact root is the store folder."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # Constructing the store creates the database, runs migrations and creates the "Default"
    # experiment, whose artifacts then live in <folder>/0. MLflow 3.17 does this without a lock,
    # so callers hold _store_lock.
    with _root_logging_kept():
        return SqlAlchemyStore(store.tracking_uri, store.local_folder)


@contextlib.contextmanager
def _root_logging_kept():
    """Restore the root logger's handlers and level on exit.

    MLflow 2.22 runs its database migrations through Alembic's ``logging.config.fileConfig``, which
    replaces the root logger's handlers and level, and with them the user's ``logging.basicConfig``.
    """
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def get_or_create_experiment(
    store: TrackingStore, name: str, argument: str = "experiment_name", source: str = "experiment_name argument"
) -> str:
    """Return the id of experiment `name`, creating it inside the store folder when missing.

    Args:
        argument: Name of the argument or environment variable that gave `name`, for errors.
        source: Where `name` came from, quoted in errors.

    Raises:
        InvalidArgumentError: Experiment `name` exists but is deleted, so no run can start in it.
    """
    import mlflow

    client = mlflow.MlflowClient(store.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        _check_not_deleted(store, experiment, argument, source, name)
        return experiment.experiment_id
    if _is_local_sqlite(store):
        with _store_lock(store):
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                return experiment.experiment_id
            return _sql_store(store).create_experiment(name)
    return _create_remote_experiment(client, name)


def check_experiment_id(store: TrackingStore, experiment_id: str, argument: str, source: str) -> None:
    """Raise unless `experiment_id` is the id of an experiment of `store` that is not deleted.

    Raises:
        InvalidArgumentError: No experiment has this id, or the experiment is deleted.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(store.tracking_uri)
    try:
        experiment = client.get_experiment(experiment_id)
    except MlflowException as error:
        # MLflow 3.17 raises RESOURCE_DOES_NOT_EXIST for an unknown id and INVALID_PARAMETER_VALUE
        # for one that is not a whole number.
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise InvalidArgumentError(
            argument,
            experiment_id,
            f"{source} {experiment_id!r} is not the id of an experiment of the store "
            f"{store.display_uri} ({_listed_experiments(client)}). Unset {argument}, or set it to "
            "one of these ids.",
        ) from error
    _check_not_deleted(store, experiment, argument, source, experiment_id)


def _check_not_deleted(store: TrackingStore, experiment, argument: str, source: str, value: str) -> None:
    if experiment.lifecycle_stage != "deleted":
        return
    restore_command = (
        f"MLFLOW_TRACKING_URI={shlex.quote(store.display_uri)} mlflow experiments restore "
        f"--experiment-id {experiment.experiment_id}"
    )
    if argument == "experiment_name":
        other_choice = "pass another experiment_name"
    else:
        other_choice = f"unset {argument} or set it to another experiment"
    raise InvalidArgumentError(
        argument,
        value,
        f"{source} {value!r} names the experiment {experiment.name!r} (id "
        f"{experiment.experiment_id}) of the store {store.display_uri}, which is deleted, and "
        f"MLflow starts no runs in a deleted experiment. Restore it with: {restore_command}. Or "
        f"{other_choice}.",
    )


def _listed_experiments(client) -> str:
    experiments = client.search_experiments(max_results=_LISTED_EXPERIMENTS + 1)
    if not experiments:
        return "it has no experiments"
    listed = ", ".join(f"{found.experiment_id!r} ({found.name})" for found in experiments[:_LISTED_EXPERIMENTS])
    if len(experiments) > _LISTED_EXPERIMENTS:
        listed += ", ..."
    return f"its experiments: {listed}"


def _create_remote_experiment(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name)
    except MlflowException:
        # Another process created it between the lookup and the creation.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
