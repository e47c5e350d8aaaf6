"""Training script for the distributed tests, run as ``python distributed_training.py MODE STORE OUT``.

MODE is ``mirrored`` (MirroredStrategy over two logical CPU devices) or ``multi-worker``
(MultiWorkerMirroredStrategy; ``TF_CONFIG`` names the task). The script writes the run id and
the model's predictions on the training inputs to OUT (a .npz file).

Keras 3.15's fit fails under MultiWorkerMirroredStrategy before any callback runs ("Attempt to
convert a value (PerReplica...) to a Tensor", also for a one-layer model), so ``multi-worker``
needs ``TF_USE_LEGACY_KERAS=1`` and trains a tf_keras model.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import models  # noqa: E402


def legacy_model():
    """Return a small compiled tf.keras model (tf_keras under TF_USE_LEGACY_KERAS=1)."""
    model = tf.keras.Sequential(
        [
            tf.keras.Input((8,)),
            tf.keras.layers.Dense(16, activation="relu"),
            tf.keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def main(mode: str, store: str, out_path: str, temp_dir: str) -> None:
    if mode == "mirrored":
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()

    from keras_mlflow_savedmodel import SavedModelMLflowCallback

    callback = SavedModelMLflowCallback(store, experiment_name="distributed", temp_dir=temp_dir)
    with strategy.scope():
        model = models.sequential_model() if mode == "mirrored" else legacy_model()
    x, y = models.make_data()
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    predictions = model.predict(x, verbose=0)
    np.savez(
        out_path,
        run_id=np.array(callback.run_id or ""),
        replicas=np.array(strategy.num_replicas_in_sync),
        x=x,
        predictions=predictions,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
