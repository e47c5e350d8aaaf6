"""The basic training parameters and epoch metrics the callback logs when autologging does not."""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from keras_mlflow_savedmodel import _compat

logger = logging.getLogger(__name__)

# Keras's own default when fit() gets arrays and no batch_size.
KERAS_DEFAULT_BATCH_SIZE = 32


def fit_batch_size():
    """Return the batch size of the ``Model.fit`` call that is running, or None if unknown.

    Keras does not pass the batch size to callbacks, so this reads the ``batch_size`` argument
    from the frame of the ``fit`` call on the stack. It only reads; nothing is patched.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "fit" and "batch_size" in frame.f_locals:
            batch_size = frame.f_locals["batch_size"]
            if batch_size is not None:
                return int(batch_size)
            data = frame.f_locals.get("x")
            if data is not None and hasattr(data, "shape"):
                return KERAS_DEFAULT_BATCH_SIZE
            return None
        frame = frame.f_back
    return None


def training_params(model, keras_params: dict) -> dict:
    """Return the params to log for a ``fit`` call: epochs, batch size, optimizer and sizes."""
    params = {}
    if keras_params.get("epochs") is not None:
        params["epochs"] = keras_params["epochs"]
    batch_size = fit_batch_size()
    if batch_size is not None:
        params["batch_size"] = batch_size
    if keras_params.get("steps") is not None:
        params["steps_per_epoch"] = keras_params["steps"]

    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        params["optimizer"] = type(optimizer).__name__
        learning_rate = _compat.optimizer_learning_rate(optimizer)
        if learning_rate is not None:
            params["learning_rate"] = learning_rate

    params["trainable_params"] = count_params(model.trainable_weights)
    params["total_params"] = count_params(model.weights)
    return params


def count_params(weights) -> int:
    # Legacy Keras lists a VocabWeightHandler, which has no shape, among a lookup layer's weights.
    shaped = [weight for weight in weights if hasattr(weight, "shape")]
    return int(sum(math.prod(int(dim) for dim in weight.shape) for weight in shaped))


# Characters MLflow rejects in metric names (it allows letters, digits, "_", "-", ".", " ", "/").
_INVALID_METRIC_CHARACTERS = re.compile(r"[^\w\-. /]")


def mlflow_metric_name(key: str) -> str:
    """Return `key` with each character MLflow rejects in a metric name replaced by ``_``."""
    name = _INVALID_METRIC_CHARACTERS.sub("_", key)
    if name != key and key not in _RENAMED_METRICS:
        _RENAMED_METRICS.add(key)
        logger.warning("Keras metric %r is logged to MLflow as %r, which MLflow accepts.", key, name)
    return name


# Keras metric names already reported as renamed, so each is reported once per process.
_RENAMED_METRICS: set = set()


def epoch_metrics(logs: dict, epoch: int):
    """Return the MLflow ``Metric`` entities for one epoch's logs, skipping non-scalar values."""
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    metrics = []
    for key, value in (logs or {}).items():
        number = _scalar(value)
        if number is not None:
            metrics.append(Metric(key=mlflow_metric_name(key), value=number, timestamp=timestamp, step=epoch))
    return metrics


def _scalar(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


class EpochMetricsWriter:
    """Logs epoch metrics to a run from one background thread, in epoch order, in few batches.

    One ``log_batch`` into a local SQLite store costs about 5 ms of CPU, most of it in Python
    holding the GIL (MLflow 3.17, measured on a 2-core machine), which is several percent of a
    short epoch even from another thread. So the metrics of the epochs that end within
    `FLUSH_SECONDS` of the last batch wait in memory and go out together in the next batch; the
    first epoch and every epoch longer than that are sent at once. A logging error is raised at
    a later `log` call instead of at the epoch that failed. MLflow's own ``synchronous=False``
    mode is not used: it sends one batch per call, and its flush waits up to about half a second
    for its batching loop.
    """

    FLUSH_SECONDS = 1.0

    def __init__(self, client, run_id: str):
        self._client = client
        self._run_id = run_id
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keras-mlflow-savedmodel-metrics")
        self._pending = []
        self._buffer = []
        self._last_sent = -math.inf

    def log(self, metrics) -> None:
        """Add one epoch's `metrics` to the next batch; raise the error of an earlier batch, if any."""
        finished = [future for future in self._pending if future.done()]
        self._pending = [future for future in self._pending if not future.done()]
        for future in finished:
            future.result()
        self._buffer.extend(metrics)
        if not self._pending and time.monotonic() - self._last_sent >= self.FLUSH_SECONDS:
            self._send()

    def _send(self) -> None:
        batch, self._buffer = self._buffer, []
        self._last_sent = time.monotonic()
        self._pending.append(self._executor.submit(self._client.log_batch, self._run_id, metrics=batch))

    def close(self) -> None:
        """Send the waiting metrics, wait until every batch is logged and stop the thread.

        A logging error is logged at WARNING and not raised, because the trained model is logged
        after this and must not be lost to a failed metric.
        """
        if self._buffer:
            self._send()
        self._executor.shutdown(wait=True)
        pending, self._pending = self._pending, []
        errors = [future.exception() for future in pending if future.exception() is not None]
        if errors:
            logger.warning(
                "Could not log %d batches of epoch metrics to run %s: %s: %s",
                len(errors),
                self._run_id,
                type(errors[0]).__name__,
                errors[0],
            )
