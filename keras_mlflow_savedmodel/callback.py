"""`SavedModelMLflowCallback`: log the trained Keras model to MLflow as a TensorFlow SavedModel."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Optional

from keras_mlflow_savedmodel import _checks, _compat, distributed, run_lifecycle, training_params, upload
from keras_mlflow_savedmodel import early_stopping, fidelity, mlflow_model
from keras_mlflow_savedmodel.errors import (
    ModelExportError,
    ModelLoggingError,
    ModelVerificationError,
    StoreMismatchError,
)
from keras_mlflow_savedmodel.saving import log_saved_model
from keras_mlflow_savedmodel.remote import redact_uri
from keras_mlflow_savedmodel.store import (
    PathOrUri,
    check_experiment_id,
    get_or_create_experiment,
    open_tracking_store,
    resolve_tracking_store,
    same_store,
)

logger = logging.getLogger(__name__)

DEFAULT_ARTIFACT_PATH = "model"
DEFAULT_EXPERIMENT_NAME = "Default"
EXPERIMENT_ID_ENV = "MLFLOW_EXPERIMENT_ID"
EXPERIMENT_NAME_ENV = "MLFLOW_EXPERIMENT_NAME"
# Used instead of "model" when mlflow.autolog(log_models=True) logs its own model as "model".
AUTOLOG_SAFE_ARTIFACT_PATH = "saved_model"

# MLflow 3.17 copies mlflow.set_experiment() into MLFLOW_EXPERIMENT_ID, so after a callback has
# activated its experiment the variable no longer shows what the user set. Values written that way
# are remembered here, by variable name, and not read back as the user's choice.
_ENVIRONMENT_WRITTEN_BY_MLFLOW: dict = {}


class SavedModelMLflowCallback(_compat.callback_base_class()):
    """Log the trained model to MLflow as a TensorFlow SavedModel, next to the run's metrics.

    Creating the callback resolves the tracking store and makes it MLflow's tracking URI (and
    `experiment_name` its experiment) for this process. This happens here and not at train begin
    because ``mlflow.autolog()`` starts its run inside ``fit`` before any callback hook runs, and
    that run must land in the store this callback names.

    At train begin the callback uses the active run if there is one (a ``with mlflow.start_run():``
    block, or the run ``mlflow.autolog()`` opened for this ``fit``) and never ends it. Otherwise it
    starts a run and ends it at train end. Unless MLflow autologging is on for Keras, it logs the
    basic training params and every epoch's metrics with ``step=epoch``. At train end it writes the
    SavedModel to a staging folder, logs it under `artifact_path` and removes the folder. For a
    local store the staging folder is beside the run's artifacts and the model is moved in.

    A run the callback started ends FAILED when ``fit`` raises, and KILLED on KeyboardInterrupt
    or SIGTERM: exactly in the context-manager form (``with SavedModelMLflowCallback(...) as cb:``),
    otherwise when the exception reaches the top of the script, at process exit, or at the next
    ``fit`` (see `run_lifecycle`). In multi-worker training only the chief (`distributed.is_chief`)
    creates the run, logs and uploads; every worker writes the SavedModel.

    Args:
        tracking_uri: A folder for a self-contained local store (created if missing; relative
            paths and ``~`` are resolved now, against the current working directory), or a
            tracking URI such as ``"sqlite:///..."`` or ``"http://host:5000"``, used unchanged.
            None uses ``MLFLOW_TRACKING_URI``, then MLflow's current tracking URI.
        experiment_name: Experiment for new runs, created if missing. None uses
            ``MLFLOW_EXPERIMENT_ID``, then ``MLFLOW_EXPERIMENT_NAME``, then the experiment set with
            ``mlflow.set_experiment()`` on this store, then the store's "Default" experiment.
        run_name: Name of the run the callback starts. Not applied to a run that is already active.
        artifact_path: Artifact folder of the SavedModel inside the run. When
            ``mlflow.autolog(log_models=True)`` logs its own model as ``"model"``, the default
            becomes ``"saved_model"`` so that the two stay apart.
        tags: Tags set on the run at train begin.
        log_params: Log epochs, batch size, optimizer, learning rate and parameter counts.
        log_metrics: Log every epoch's metrics.
        temp_dir: Folder to write the SavedModel in before logging it. None uses a hidden
            folder beside the run's artifacts for a local store, so that the model is moved in
            and not copied, and the system's temporary folder for other stores. Free space is
            checked against the model's estimated size before writing, on this folder's disk and
            on a local store's disk.
        kept_dir: Folder that keeps a SavedModel that could not be logged, as
            ``<kept_dir>/<run_id>/<artifact_path>``. None uses ``<store folder>/kept-models`` for a
            local store folder, else ``~/.local/share/keras-mlflow-savedmodel/kept-models``.
            ``keras-mlflow-savedmodel upload <folder>`` logs a kept folder into its run later.
        upload_retries: Retries of an upload that failed with a transient error (connection,
            timeout, HTTP 408/429/5xx), waiting 2, 4, 8... seconds between attempts.
        on_log_error: ``"raise"`` raises the error when the model cannot be written or logged,
            ``"warn"`` issues a RuntimeWarning instead. The run ends FAILED either way.
        log_partial_model: On KeyboardInterrupt or SIGTERM during fit, log the model as it is
            before ending the run KILLED, and tag the run ``keras_mlflow_savedmodel.partial_model``.
            The interrupt reaches this callback only in the context-manager form, at an uncaught
            exception in a script, or at process exit.
        input_example: One batch of inputs in the structure the model takes (an array, a list
            or tuple of arrays, or a dict of arrays). The reload check runs on it, and it is
            stored in ``MLmodel`` when it is one array or a dict keyed by the input names.
            None checks inputs built from the serving signature instead.
        save_keras_archive: Also log the native Keras model (Keras 3) with its optimizer state, as
            ``keras_model/``, the unzipped form of a ``.keras`` archive, so that
            ``load_model(model_uri, trainable=True)`` returns a model that trains further.
        on_verify_failure: What happens when the reloaded SavedModel does not reproduce the
            live model: ``"raise"`` raises `ModelVerificationError` and ends the run FAILED,
            ``"warn"`` issues a RuntimeWarning. The model is logged and tagged either way.
        verify: Run the reload check at train end. ``verify=False`` skips it, and with it the
            reading of the whole SavedModel back into memory, and sets no verification tags.
        registered_model_name: Register the logged model under this name in the Model Registry.

    Attributes:
        run_id: Id of the run used by the last ``fit``, set from train begin on.
        model_uri: ``"runs:/<run_id>/<artifact_path>"`` of the logged SavedModel.
        tracking_uri: The resolved tracking URI.
        ui_command: The ``mlflow ui`` command that opens the store, quoted for a POSIX shell.
        registered_model_version: Version created in the Model Registry, as a string, or None.
        verification: `VerificationResult` of the reload check of the last logged model.

    Raises:
        InvalidArgumentError: An argument has a value that cannot be used, or the experiment
            chosen by name or id (argument or environment variable) is missing or deleted.
        TrackingStoreError: The store cannot be used, or an active run lives in another store.
        ModelVerificationError: At train end, the reloaded SavedModel did not reproduce the
            live model and ``on_verify_failure="raise"``.
        LayerExportError: At train end, Keras could not export the model; the error names the
            layer and where the trained weights were logged.

    Example:

    ```python
    cb = SavedModelMLflowCallback("mlflow-store", experiment_name="digits")
    model.fit(x, y, epochs=5, callbacks=[cb])
    restored = keras_mlflow_savedmodel.load_model(cb.model_uri)
    ```
    """

    def __init__(
        self,
        tracking_uri: Optional[PathOrUri] = None,
        *,
        experiment_name: Optional[str] = None,
        run_name: Optional[str] = None,
        artifact_path: str = DEFAULT_ARTIFACT_PATH,
        tags: Optional[dict] = None,
        log_params: bool = True,
        log_metrics: bool = True,
        temp_dir: Optional[PathOrUri] = None,
        kept_dir: Optional[PathOrUri] = None,
        upload_retries: int = upload.DEFAULT_UPLOAD_RETRIES,
        on_log_error: str = "raise",
        log_partial_model: bool = False,
        input_example=None,
        save_keras_archive: bool = True,
        on_verify_failure: str = "raise",
        verify: bool = True,
        registered_model_name: Optional[str] = None,
    ):
        super().__init__()
        _checks.check_tracking_uri(tracking_uri)
        _checks.check_optional_name("experiment_name", experiment_name)
        _checks.check_optional_name("run_name", run_name)
        self._artifact_path = _checks.check_artifact_path(artifact_path)
        self._tags = _checks.check_tags(tags)
        _checks.check_bool("log_params", log_params)
        _checks.check_bool("log_metrics", log_metrics)
        _checks.check_temp_dir(temp_dir)
        _checks.check_optional_folder("kept_dir", kept_dir)
        _checks.check_non_negative_int("upload_retries", upload_retries)
        _checks.check_choice("on_log_error", on_log_error, ("raise", "warn"))
        _checks.check_bool("log_partial_model", log_partial_model)
        _checks.check_input_example(input_example)
        _checks.check_bool("save_keras_archive", save_keras_archive)
        _checks.check_choice("on_verify_failure", on_verify_failure, ("raise", "warn"))
        _checks.check_bool("verify", verify)
        _checks.check_optional_name("registered_model_name", registered_model_name)
        self._experiment_name = experiment_name
        self._run_name = run_name
        self._log_params = log_params
        self._log_metrics = log_metrics
        # Resolved now, like the store path, so that "~" and a later os.chdir() do not matter.
        self._temp_dir = _absolute_folder(temp_dir)
        self._kept_dir = _absolute_folder(kept_dir)
        self._upload_retries = upload_retries
        self._on_log_error = on_log_error
        self._log_partial_model = log_partial_model
        self._input_example = input_example
        self._save_keras_archive = save_keras_archive
        self._on_verify_failure = on_verify_failure
        self._verify = verify
        self._registered_model_name = registered_model_name
        self._owned_run: Optional[run_lifecycle.OwnedRun] = None
        # Only the chief touches the store: other workers of a multi-worker job must not race
        # it creating the database, runs or experiments.
        self._chief = distributed.is_chief()

        self._store = resolve_tracking_store(tracking_uri)
        if self._chief:
            open_tracking_store(self._store)
            self._experiment_id, self._experiment_source = self._choose_experiment()
            self._activate_store()

        self.tracking_uri = self._store.tracking_uri
        self.ui_command = self._store.ui_command()
        self.run_id: Optional[str] = None
        self.model_uri: Optional[str] = None
        self.registered_model_version: Optional[str] = None
        self.verification = None
        self._owns_run = False
        self._logs_training = False
        self._used_artifact_path = self._artifact_path
        self._metrics_writer: Optional[training_params.EpochMetricsWriter] = None
        self._folder_report = None
        self._run_artifact_uri: Optional[str] = None

    @property
    def artifact_path(self) -> str:
        """Artifact folder of the SavedModel in the run, after any rename away from a taken path."""
        return self._used_artifact_path

    # Keras hooks

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        """End the run this callback started and left open: KILLED on KeyboardInterrupt and SIGTERM,
        FAILED on any other exception. The exception is not suppressed."""
        self._close_metrics_writer()
        if self._owned_run is not None:
            self._owned_run.end(run_lifecycle.status_for(exc_value))
        return False

    def on_train_begin(self, logs=None):
        fidelity.check_backend(self._save_keras_archive)
        run_lifecycle.end_dangling_runs()
        self._chief = distributed.is_chief(getattr(self.model, "distribute_strategy", None))
        if not self._chief:
            return
        self._activate_store()
        mlflow_model.import_mlmodel_modules()
        run = self._choose_run()
        self._run_artifact_uri = run.info.artifact_uri
        autolog_flavors = _compat.autologging_flavors_enabled()
        self._logs_training = not autolog_flavors
        self._used_artifact_path = self._free_artifact_path(self._pick_artifact_path(autolog_flavors))
        self.model_uri = f"runs:/{self.run_id}/{self._used_artifact_path}"

        if self._tags:
            from mlflow.entities import RunTag

            tags = [RunTag(key, value) for key, value in self._tags.items()]
            self._client().log_batch(self.run_id, tags=tags)
        if self._logs_training and self._log_params:
            self._log_training_params()
        if self._logs_training and self._log_metrics:
            self._close_metrics_writer()
            self._metrics_writer = training_params.EpochMetricsWriter(self._client(), self.run_id)
        self._log_train_begin(run)

    def on_epoch_end(self, epoch, logs=None):
        if self._metrics_writer is not None:
            metrics = training_params.epoch_metrics(logs, epoch)
            if metrics:
                self._metrics_writer.log(metrics)

    def on_train_end(self, logs=None):
        if not self._chief:
            distributed.write_and_discard(self.model, self._temp_dir)
            return
        self._close_metrics_writer()
        # Before writing, so that the logged weights are the ones fit returns.
        early_stopping.apply_pending_restores(self, self.model)
        try:
            logged = self._log_model(self._used_artifact_path)
        except (ModelExportError, ModelLoggingError) as error:
            if isinstance(error, ModelLoggingError):
                self._record_status_after_upload(error.kept_folder)
            self._end_owned_run("FAILED")
            if self._on_log_error == "raise":
                raise
            warnings.warn(str(error), RuntimeWarning, stacklevel=2)
            return
        except BaseException as error:
            self._end_owned_run(run_lifecycle.status_for(error))
            raise
        logger.info(
            "Logged the SavedModel (%s) to %s: %.1f MB in %.1f s. Load it with "
            "keras_mlflow_savedmodel.load_model(%r).",
            logged.saved_format,
            logged.artifact_uri,
            logged.size_bytes / 1e6,
            logged.seconds,
            self.model_uri,
        )
        try:
            fidelity.record_logged_model(self, logged)
        except ModelVerificationError:
            self._end_owned_run("FAILED")
            raise
        self._end_owned_run("FINISHED")

    # Steps

    def _client(self):
        import mlflow

        return mlflow.MlflowClient(self._store.tracking_uri)

    def _choose_experiment(self):
        """Return the experiment id for new runs and where the choice came from.

        The order: the experiment_name argument, then MLFLOW_EXPERIMENT_ID and
        MLFLOW_EXPERIMENT_NAME, then the experiment the user set with mlflow.set_experiment()
        while this store was already MLflow's tracking URI, then the store's "Default".
        """
        import mlflow

        if self._experiment_name is not None:
            return get_or_create_experiment(self._store, self._experiment_name), "experiment_name argument"
        environment_id = _user_environment(EXPERIMENT_ID_ENV)
        if environment_id:
            source = f"environment variable {EXPERIMENT_ID_ENV}"
            check_experiment_id(self._store, environment_id, EXPERIMENT_ID_ENV, source)
            return environment_id, source
        environment_name = _user_environment(EXPERIMENT_NAME_ENV)
        if environment_name:
            source = f"environment variable {EXPERIMENT_NAME_ENV}"
            return get_or_create_experiment(self._store, environment_name, EXPERIMENT_NAME_ENV, source), source
        if same_store(mlflow.get_tracking_uri(), self._store.tracking_uri):
            current_id = _compat.current_experiment_id()
            if current_id is not None:
                return current_id, "mlflow.set_experiment()"
        source = "MLflow's default"
        return get_or_create_experiment(self._store, DEFAULT_EXPERIMENT_NAME, "experiment_name", source), source

    def _activate_store(self):
        """Make the store MLflow's tracking URI, or raise if a run is active in another store."""
        import mlflow

        active = mlflow.active_run()
        current_uri = mlflow.get_tracking_uri()
        if active is None:
            if not same_store(current_uri, self._store.tracking_uri):
                mlflow.set_tracking_uri(self._store.tracking_uri)
            mlflow.set_experiment(experiment_id=self._experiment_id)
            for name in (EXPERIMENT_ID_ENV, EXPERIMENT_NAME_ENV):
                _ENVIRONMENT_WRITTEN_BY_MLFLOW[name] = os.environ.get(name)
            return
        if not same_store(current_uri, self._store.tracking_uri):
            raise StoreMismatchError(
                current_uri,
                self._store.tracking_uri,
                self._store.source,
                f"MLflow run {active.info.run_id} is active in the store {redact_uri(current_uri)!r}, but the "
                f"callback's {self._store.source} names the store {self._store.display_uri!r}, so "
                "the trained model would land in a different store than the run. Create the "
                "callback before mlflow.start_run() (it sets MLflow's tracking URI), call "
                "mlflow.set_tracking_uri() with the same store before starting the run, or pass "
                "tracking_uri=None to log into the active run's store.",
            )

    def _choose_run(self):
        import mlflow

        active = mlflow.active_run()
        if active is not None:
            self._owns_run = False
            self._owned_run = None
            self.run_id = active.info.run_id
            if self._run_name is not None and active.info.run_name != self._run_name:
                logger.info(
                    "run_name=%r is not applied: the callback logs into the active run %s (%s).",
                    self._run_name,
                    active.info.run_id,
                    active.info.run_name,
                )
            return active
        run = mlflow.start_run(experiment_id=self._experiment_id, run_name=self._run_name)
        self._owns_run = True
        self.run_id = run.info.run_id
        partial_logger = self._log_partial_model_now if self._log_partial_model else None
        self._owned_run = run_lifecycle.track_run(self.run_id, self._store.tracking_uri, partial_logger)
        return run

    def _pick_artifact_path(self, autolog_flavors) -> str:
        if self._artifact_path != _compat.AUTOLOG_MODEL_NAME:
            return self._artifact_path
        if not autolog_flavors or not _compat.autolog_logs_models(autolog_flavors):
            return self._artifact_path
        logger.warning(
            "mlflow.autolog(log_models=True) logs its own model under %r in run %s, so the "
            "SavedModel is logged under %r to keep the two apart. Pass another artifact_path, or "
            "call mlflow.autolog(log_models=False), to choose.",
            _compat.AUTOLOG_MODEL_NAME,
            self.run_id,
            AUTOLOG_SAFE_ARTIFACT_PATH,
        )
        return AUTOLOG_SAFE_ARTIFACT_PATH

    def _free_artifact_path(self, artifact_path: str) -> str:
        """Return `artifact_path`, or ``<artifact_path>-<n>`` when the active run already has it.

        A run the callback started is new and empty. In a run started elsewhere, an earlier fit
        or another logger may have used the path, and the new model must not be merged with
        (or be blocked by) what is there.
        """
        if self._owns_run:
            return artifact_path
        parent = artifact_path.rpartition("/")[0]
        try:
            entries = self._client().list_artifacts(self.run_id, parent or None)
            existing_paths = {entry.path for entry in entries}
        except Exception as error:  # noqa: BLE001 - cannot tell, so keep the path the user chose
            logger.debug("Cannot list the artifacts of run %s: %s", self.run_id, error)
            return artifact_path
        if artifact_path not in existing_paths:
            return artifact_path
        number = 2
        while f"{artifact_path}-{number}" in existing_paths:
            number += 1
        free_path = f"{artifact_path}-{number}"
        logger.warning(
            "Run %s already has artifacts under %r, so this model is logged under %r. Pass another "
            "artifact_path to choose.",
            self.run_id,
            artifact_path,
            free_path,
        )
        return free_path

    def _log_training_params(self):
        from mlflow.entities import Param

        params = training_params.training_params(self.model, self.params or {})
        client = self._client()
        existing = client.get_run(self.run_id).data.params
        new = []
        for key, value in params.items():
            if key not in existing:
                new.append(Param(key, str(value)))
            elif existing[key] != str(value):
                logger.warning(
                    "Param %r of run %s is already %r, so the new value %r is not logged "
                    "(MLflow params cannot change).",
                    key,
                    self.run_id,
                    existing[key],
                    str(value),
                )
        if new:
            client.log_batch(self.run_id, params=new)

    def _log_train_begin(self, run):
        experiment = self._client().get_experiment(run.info.experiment_id)
        logger.info(
            "Logging to MLflow run %s (%s) in experiment %r (from %s) of the store %s (from %s). "
            "See it with: %s",
            run.info.run_id,
            run.info.run_name,
            experiment.name,
            self._experiment_source if self._owns_run else "the active run",
            self._store.display_uri,
            self._store.source,
            self.ui_command,
        )

    def _log_model(self, artifact_path: str):
        kept_roots = upload.kept_roots(self._kept_dir, self._store.local_folder)
        self._folder_report = None
        return log_saved_model(
            self.model,
            self._client(),
            self.run_id,
            artifact_path,
            self._temp_dir,
            upload_retries=self._upload_retries,
            kept_roots=kept_roots,
            tracking_uri=self._store.tracking_uri,
            complete_folder=functools.partial(self._complete_folder, artifact_path),
            with_keras_model=self._save_keras_archive,
            run_artifact_uri=self._run_artifact_uri,
        )

    def _complete_folder(self, artifact_path: str, folder: str, saved_format: str):
        # Kept so that a failed upload can still tell whether the reload check failed too.
        self._folder_report = fidelity.complete_folder(self, artifact_path, folder, saved_format)
        return self._folder_report

    def _record_status_after_upload(self, kept_folder: str):
        """Record beside the kept SavedModel that the failed upload is the only reason this run fails.

        ``keras-mlflow-savedmodel upload`` then sets the run to FINISHED once it has logged the model.
        Nothing is recorded for a run the callback did not start, or when the reload check failed
        with ``on_verify_failure="raise"``, because the run would have failed without the upload.
        """
        if self._owned_run is None:
            return
        result = self._folder_report.verification if self._folder_report is not None else None
        if result is not None and not (result.passed or result.skipped) and self._on_verify_failure == "raise":
            return
        upload.record_status_after_upload(kept_folder, "FINISHED")

    def _log_partial_model_now(self):
        """Log the model as it is during an interrupted fit, and tag the run to mark it partial."""
        logged = self._log_model(self._used_artifact_path)
        self._client().set_tag(self.run_id, run_lifecycle.PARTIAL_MODEL_TAG, self._used_artifact_path)
        logger.warning("Logged the partial model of the interrupted fit to %s.", logged.artifact_uri)

    def _close_metrics_writer(self):
        if self._metrics_writer is not None:
            self._metrics_writer.close()
            self._metrics_writer = None

    def _end_owned_run(self, status: str):
        self._close_metrics_writer()
        if self._owned_run is not None:
            self._owned_run.end(status)
        self._owns_run = False


def _user_environment(name: str):
    """Return the environment variable `name` unless MLflow wrote it for an earlier callback."""
    value = os.environ.get(name)
    if name in _ENVIRONMENT_WRITTEN_BY_MLFLOW and value == _ENVIRONMENT_WRITTEN_BY_MLFLOW[name]:
        return None
    return value


def _absolute_folder(value):
    """Return `value` with ``~`` expanded and made absolute, or None for None."""
    if value is None:
        return None
    return os.path.abspath(os.path.expanduser(os.fspath(value)))
