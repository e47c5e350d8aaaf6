"""The chief rule for multi-worker training: which process creates the run and uploads the model."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from typing import Optional

from keras_mlflow_savedmodel import _compat

logger = logging.getLogger(__name__)

TF_CONFIG_ENV = "TF_CONFIG"
THROWAWAY_PREFIX = "keras-mlflow-savedmodel-worker-"


def is_chief(strategy=None) -> bool:
    """Return True when this process is the one that creates the run, logs metrics and uploads.

    With ``tf.distribute.MultiWorkerMirroredStrategy`` the chief is the task of type ``"chief"``,
    or worker 0 when the cluster has no ``"chief"`` task (TensorFlow's own rule). Every other
    process, and any process whose ``TF_CONFIG`` names it an ``"evaluator"`` or ``"ps"`` task,
    is not the chief. Without ``TF_CONFIG`` and without a multi-worker strategy, for example
    with ``MirroredStrategy`` on one machine, the process is the chief.

    A worker that is not the chief must still write the SavedModel. Saving a model with
    distributed variables runs collective operations, so every worker has to take part. A worker
    that skipped the export would leave the others waiting for it forever. Non-chief workers
    therefore export to a throw-away folder (`write_and_discard`) and delete it.

    Args:
        strategy: The model's ``tf.distribute`` strategy, or None to read ``TF_CONFIG``.

    Raises:
        InvalidArgumentError: ``TF_CONFIG`` is set but is not valid JSON.
    """
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    task_type = getattr(resolver, "task_type", None)
    if task_type is not None:
        cluster = resolver.cluster_spec().as_dict()
        return _is_chief_task(task_type, resolver.task_id, cluster)
    task_type, task_id, cluster = _task_from_tf_config()
    if task_type is None:
        return True
    return _is_chief_task(task_type, task_id, cluster)


def _is_chief_task(task_type: str, task_id: Optional[int], cluster: dict) -> bool:
    if task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and not cluster.get("chief")


def _task_from_tf_config():
    """Return ``(task type, task index, cluster dict)`` from ``TF_CONFIG``, or Nones when unset."""
    from keras_mlflow_savedmodel.errors import InvalidArgumentError

    raw = os.environ.get(TF_CONFIG_ENV, "").strip()
    if not raw:
        return None, None, {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(
            TF_CONFIG_ENV,
            raw,
            f"The environment variable {TF_CONFIG_ENV} is not valid JSON ({error}): {raw!r}. "
            "Set it to the JSON TensorFlow expects, such as "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}, '
            "or unset it for single-process training.",
        ) from error
    task = config.get("task") or {}
    return task.get("type"), task.get("index"), config.get("cluster") or {}


def write_and_discard(model, temp_dir=None) -> None:
    """Write `model` as a SavedModel to a throw-away folder and delete it, as non-chief workers must.

    The folder is removed even when writing raises, including on KeyboardInterrupt.
    """
    folder = tempfile.mkdtemp(prefix=THROWAWAY_PREFIX, dir=temp_dir)
    try:
        _compat.write_saved_model(model, os.path.join(folder, "saved_model"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    logger.debug("Wrote the SavedModel on a non-chief worker and deleted it.")


def call_outside_strategy(function, *args):
    """Call ``function(*args)`` where no ``tf.distribute`` strategy is in scope, and return its result.

    Keras runs callbacks inside the strategy's scope. There, ``tf.saved_model.load`` creates
    distributed variables, and under MultiWorkerMirroredStrategy that runs collective operations
    that only the chief would enter, so the chief would wait for the other workers forever. A
    strategy scope applies to one thread only, so a new thread starts with the default strategy.
    Exceptions of `function`, KeyboardInterrupt included, are raised again in the caller.
    """
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return function(*args)
    outcome = {}

    def target():
        try:
            outcome["result"] = function(*args)
        except BaseException as error:  # handed to the caller, which raises it again
            outcome["error"] = error

    worker = threading.Thread(target=target, name="keras-mlflow-savedmodel-outside-strategy")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
