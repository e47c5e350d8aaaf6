"""Training scripts for the failure tests, run in a fresh process as ``python failure_scripts.py MODE WORK_DIR``.

Modes:
    crash: the drop-in callback with an exception raised in the second epoch and not caught.
    sigterm: the drop-in callback with ``log_partial_model=True``; writes ``ready`` after the first
        epoch and trains until the test sends SIGTERM.
    read-only: the experiment's artifact folder is made read-only before fit; writes
        ``result.json`` with the error and ``predictions.npz`` with the model's outputs.
    read-only-own-run: as read-only, but fit runs in the script's own run with
        ``on_log_error="warn"``, and the script then fails that run with an error of its own.
Each mode writes ``run.json`` with the run id as soon as training begins.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import models  # noqa: E402
from keras_mlflow_savedmodel import ModelLoggingError, SavedModelMLflowCallback  # noqa: E402
from keras_mlflow_savedmodel.upload import KEPT_FOLDER_NAME  # noqa: E402

STORE_FOLDER = "store"
TEMP_FOLDER = "tmp"


class Scenario(keras.callbacks.Callback):
    """Writes the run id at train begin, then crashes or idles as the mode requests."""

    def __init__(self, mode, work_dir, saved_model_callback):
        super().__init__()
        self.mode = mode
        self.work_dir = work_dir
        self.saved_model_callback = saved_model_callback

    def on_train_begin(self, logs=None):
        with open(os.path.join(self.work_dir, "run.json"), "w") as file:
            json.dump({"run_id": self.saved_model_callback.run_id}, file)

    def on_epoch_end(self, epoch, logs=None):
        if self.mode == "crash" and epoch == 1:
            raise ValueError("bad batch in epoch 1")
        if self.mode == "sigterm" and epoch == 0:
            open(os.path.join(self.work_dir, "ready"), "w").close()

    def on_train_batch_end(self, batch, logs=None):
        if self.mode == "sigterm":
            time.sleep(0.05)


def main(mode: str, work_dir: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store = os.path.join(work_dir, STORE_FOLDER)
    temp_dir = os.path.join(work_dir, TEMP_FOLDER)
    os.makedirs(temp_dir, exist_ok=True)
    callback = SavedModelMLflowCallback(
        store,
        temp_dir=temp_dir,
        upload_retries=0,
        log_partial_model=(mode == "sigterm"),
        on_log_error="warn" if mode == "read-only-own-run" else "raise",
    )
    if mode.startswith("read-only"):
        import mlflow

        experiment_id = mlflow.get_experiment_by_name("Default").experiment_id
        experiment_folder = os.path.join(store, experiment_id)
        os.makedirs(experiment_folder, exist_ok=True)
        os.chmod(experiment_folder, 0o555)

    model = models.sequential_model()
    x, y = models.make_data()
    epochs = 10_000 if mode == "sigterm" else 2
    scenario = Scenario(mode, work_dir, callback)
    if mode == "read-only-own-run":
        result = fit_in_own_failing_run(model, x, y, callback, scenario, store)
    elif mode == "read-only":
        try:
            model.fit(x, y, epochs=epochs, batch_size=16, callbacks=[callback, scenario], verbose=0)
        except ModelLoggingError as error:
            result = {"kept_folder": error.kept_folder, "run_id": error.run_id, "message": str(error)}
        else:
            result = {"kept_folder": None}
    else:
        model.fit(x, y, epochs=epochs, batch_size=16, callbacks=[callback, scenario], verbose=0)
        return
    with open(os.path.join(work_dir, "result.json"), "w") as file:
        json.dump(result, file)
    np.savez(os.path.join(work_dir, "predictions.npz"), x=x, predictions=model.predict(x, verbose=0))


def fit_in_own_failing_run(model, x, y, callback, scenario, store):
    """Fit inside the script's own run, then fail that run with an error after training."""
    import warnings

    import mlflow

    try:
        with mlflow.start_run() as run:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                model.fit(x, y, epochs=2, batch_size=16, callbacks=[callback, scenario], verbose=0)
            raise ValueError("evaluation after training failed")
    except ValueError:
        pass
    kept_folder = os.path.join(store, KEPT_FOLDER_NAME, run.info.run_id, "model")
    return {"kept_folder": kept_folder, "run_id": run.info.run_id}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
