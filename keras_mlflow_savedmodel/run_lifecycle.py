"""Ending the runs that SavedModelMLflowCallback starts with the status of what happened to fit.

Keras calls no callback hook when ``fit`` raises, and MLflow's exit handler (registered when
``mlflow`` is imported, MLflow 3.17) ends a leftover active run as FINISHED. So a run the
callback starts is tracked here from train begin until it ends, and it is ended by the first of:

- train end: FINISHED, or FAILED when the model could not be logged;
- ``__exit__`` of the context-manager form: KILLED for KeyboardInterrupt and SIGTERM, FAILED for
  any other exception;
- ``sys.excepthook``, when an exception reaches the top of a script (chained to the hook that was
  set before);
- an ``atexit`` handler, registered after MLflow's so that it runs first;
- the next train begin of any callback of this package: a notebook has no process exit, and a run
  left RUNNING by an interrupted ``fit`` must not be inherited by the next one.

While a tracked run is open, SIGTERM raises `TrainingTerminated` in the main thread, so that
``fit`` unwinds as it does on Ctrl-C and the process then exits with status 143. This happens only
when no other SIGTERM handler was set. Runs the callback did not start are never touched.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from typing import Callable, Dict, Optional

from keras_mlflow_savedmodel.remote import redact_secrets, redact_uri, redacted_stdout

logger = logging.getLogger(__name__)

TERMINATED_EXIT_CODE = 128 + int(signal.SIGTERM)
# Run tag set when the model logged is the one of an interrupted fit; its value is the artifact path.
PARTIAL_MODEL_TAG = "keras_mlflow_savedmodel.partial_model"


class TrainingTerminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives while a run of this package is open.

    It derives from SystemExit so that ``except Exception`` in user code and in Keras lets it
    through, and the process exits with the conventional status 143 for SIGTERM.
    """

    def __init__(self):
        super().__init__(TERMINATED_EXIT_CODE)


def status_for(error: Optional[BaseException]) -> str:
    """Return the MLflow run status for a ``fit`` that ended with `error` (None: no error)."""
    if error is None:
        return "FINISHED"
    if isinstance(error, (KeyboardInterrupt, TrainingTerminated)):
        return "KILLED"
    return "FAILED"


class OwnedRun:
    """A run that a callback started and must end.

    Attributes:
        run_id: The run's id.
        tracking_uri: The store of the run.
    """

    def __init__(self, run_id: str, tracking_uri: str, log_partial_model: Optional[Callable[[], None]]):
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self._log_partial_model = log_partial_model
        self.ended = False
        # The Keras CallbackList of the fit that started the run, so that other callbacks of the
        # same fit do not take this run for a dangling one.
        self.fit_callbacks = None

    def end(self, status: str) -> None:
        """End the run with `status`, logging the partial model first when it is KILLED and asked for.

        Errors of the store are logged and not raised, because this often runs while another
        exception propagates, and that exception must not be replaced. A second KeyboardInterrupt
        while the partial model is logged stops that, and is raised after the run is ended.
        """
        if self.ended:
            return
        self.ended = True
        _OPEN_RUNS.pop(self.run_id, None)
        _restore_sigterm_handler_when_idle()
        second_interrupt = None
        if status == "KILLED" and self._log_partial_model is not None:
            try:
                self._log_partial_model()
            except Exception as error:  # any failure: the interrupt that is propagating wins
                logger.error("Could not log the partial model of run %s: %s", self.run_id, error)
            except KeyboardInterrupt as interrupt:
                # A second Ctrl-C while the partial model is written: end the run, then stop.
                logger.error("Stopped logging the partial model of run %s: interrupted again.", self.run_id)
                second_interrupt = interrupt
        try:
            self._set_status(status)
        finally:
            if second_interrupt is not None:
                raise second_interrupt

    def _set_status(self, status: str) -> None:
        import mlflow

        try:
            active = mlflow.active_run()
            with redacted_stdout(self.tracking_uri):
                if active is not None and active.info.run_id == self.run_id:
                    mlflow.end_run(status=status)
                else:
                    mlflow.MlflowClient(self.tracking_uri).set_terminated(self.run_id, status=status)
        except Exception as error:  # any store failure: see the docstring
            logger.error(
                "Could not end MLflow run %s as %s in %s: %s: %s",
                self.run_id,
                status,
                redact_uri(self.tracking_uri),
                type(error).__name__,
                redact_secrets(str(error), self.tracking_uri),
            )
            return
        logger.info("Ended MLflow run %s as %s.", self.run_id, status)


# Runs started by callbacks of this package and not ended yet, by run id. Process-wide, because
# the exit hooks and the next fit must find runs of any callback instance.
_OPEN_RUNS: Dict[str, OwnedRun] = {}
_hooks = {"installed": False, "previous_excepthook": None, "previous_sigterm": None, "sigterm_seen": False}


def track_run(run_id: str, tracking_uri: str, log_partial_model=None) -> OwnedRun:
    """Start tracking a run a callback started, and install the exit hooks once per process."""
    owned = OwnedRun(run_id, tracking_uri, log_partial_model)
    owned.fit_callbacks = _running_callback_list()
    _OPEN_RUNS[run_id] = owned
    _install_process_hooks()
    _install_sigterm_handler()
    return owned


def end_dangling_runs() -> None:
    """End the runs of an earlier ``fit`` that never reached train end.

    The status is KILLED when the last exception that reached the top of the interpreter (a
    script, the REPL, IPython) was a KeyboardInterrupt or SIGTERM, and FAILED otherwise.
    """
    current_callbacks = _running_callback_list()
    dangling = [
        owned
        for owned in _OPEN_RUNS.values()
        if current_callbacks is None or owned.fit_callbacks is not current_callbacks
    ]
    if not dangling:
        return
    # NOTE: sys.last_value may be an older exception than the one that stopped the fit, and a fit
    # nested inside another fit's callback would end the outer fit's run here.
    status = status_for(getattr(sys, "last_value", None) or RuntimeError())
    if _hooks["sigterm_seen"]:
        status = "KILLED"
    for owned in dangling:
        logger.warning(
            "MLflow run %s of an earlier fit that stopped with an exception is still RUNNING; "
            "ending it as %s before this fit starts a new run.",
            owned.run_id,
            status,
        )
        owned.end(status)


def _running_callback_list():
    """Return the Keras ``CallbackList`` whose ``on_train_begin`` is on the stack, or None.

    Keras creates one per ``fit`` call and passes it no identity of the fit, so the list is the
    token that separates the callbacks of one fit from those of an earlier one. Only read.
    """
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if frame.f_code.co_name == "on_train_begin" and type(candidate).__name__ == "CallbackList":
            return candidate
        frame = frame.f_back
    return None


def _end_open_runs(status: str) -> None:
    for owned in list(_OPEN_RUNS.values()):
        owned.end(status)


def _install_process_hooks() -> None:
    if _hooks["installed"]:
        return
    _hooks["installed"] = True
    _hooks["previous_excepthook"] = sys.excepthook
    sys.excepthook = _excepthook
    # atexit runs handlers last-registered first, and MLflow registered its handler on import.
    atexit.register(_at_exit)


def _excepthook(exc_type, exc_value, traceback):
    if _OPEN_RUNS:
        _end_open_runs(status_for(exc_value))
    previous = _hooks["previous_excepthook"] or sys.__excepthook__
    previous(exc_type, exc_value, traceback)


def _at_exit() -> None:
    if not _OPEN_RUNS:
        return
    # A TrainingTerminated or other SystemExit during fit does not reach sys.excepthook.
    _end_open_runs("KILLED" if _hooks["sigterm_seen"] else "FAILED")


def _install_sigterm_handler() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if _hooks["previous_sigterm"] is not None:
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is not signal.SIG_DFL:
        logger.debug("SIGTERM already has a handler (%r); leaving it in place.", current)
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    _hooks["previous_sigterm"] = current


def _restore_sigterm_handler_when_idle() -> None:
    if _OPEN_RUNS or _hooks["previous_sigterm"] is None:
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _hooks["previous_sigterm"])
        _hooks["previous_sigterm"] = None


def _on_sigterm(signum, frame):
    if not _OPEN_RUNS:
        # No run of ours is open: act as the default handler would, and terminate.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _hooks["sigterm_seen"] = True
    logger.warning("SIGTERM received during training; stopping fit.")
    raise TrainingTerminated()
