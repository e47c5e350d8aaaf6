"""Train a legacy Keras (tf_keras) model through the callback; run as a script in a subprocess.

Usage: python legacy_training.py STORE WORK_DIR {sequential,functional,subclassed,integer_lookup}
Writes inputs.npy and predictions.npy to WORK_DIR and prints the run as JSON on the last line.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mlflow_savedmodel import SavedModelMLflowCallback  # noqa: E402


class ScaleShift(tf.keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")
        self.shift = self.add_weight(name="shift", shape=(input_shape[-1],), initializer="zeros")

    def call(self, inputs):
        return inputs * self.scale + self.shift


class TwoLayerNet(tf.keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale_shift = ScaleShift()
        self.hidden = tf.keras.layers.Dense(16, activation="relu")
        self.head = tf.keras.layers.Dense(3, activation="softmax")

    def call(self, inputs):
        return self.head(self.hidden(self.scale_shift(inputs)))


def build(kind):
    if kind == "sequential":
        return tf.keras.Sequential(
            [tf.keras.Input((8,)), ScaleShift(), tf.keras.layers.Dense(3, activation="softmax")]
        )
    if kind == "functional":
        inputs = tf.keras.Input((8,), name="features")
        outputs = tf.keras.layers.Dense(3, activation="softmax")(ScaleShift()(inputs))
        return tf.keras.Model(inputs, outputs)
    if kind == "integer_lookup":
        # Legacy Keras lists a VocabWeightHandler, not a variable, among this layer's weights.
        inputs = tf.keras.Input((8,), dtype="int64")
        looked_up = tf.keras.layers.IntegerLookup(vocabulary=[0, 1, 2, 3])(inputs)
        embedded = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(6, 2)(looked_up))
        return tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation="softmax")(embedded))
    return TwoLayerNet()


def main():
    store, work_dir, kind = sys.argv[1:4]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 8)).astype("float32")
    if kind == "integer_lookup":
        x = rng.integers(0, 5, size=(48, 8)).astype("int64")
    y = rng.integers(0, 3, size=(48,))
    model = build(kind)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    callback = SavedModelMLflowCallback(store, experiment_name="legacy")
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)

    np.save(os.path.join(work_dir, "inputs.npy"), x)
    np.save(os.path.join(work_dir, "predictions.npy"), model.predict(x, verbose=0))
    keras_module = type(model).__mro__[1].__module__
    print(json.dumps({"run_id": callback.run_id, "model_uri": callback.model_uri, "tracking_uri": callback.tracking_uri, "keras_module": keras_module}))


if __name__ == "__main__":
    main()
