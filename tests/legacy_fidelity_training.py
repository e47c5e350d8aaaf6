"""Train one legacy Keras (tf_keras) model kind through the callback; run as a script in a subprocess.

Usage: python legacy_fidelity_training.py STORE WORK_DIR KIND
Writes inputs.npz (keyed by serving input name) and predictions.npz (flat outputs in the order of
the model's outputs) to WORK_DIR and prints the run as JSON on the last line.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mlflow_savedmodel import SavedModelMLflowCallback  # noqa: E402

keras = tf.keras
ROWS = 16


class Offset(keras.layers.Layer):
    """Custom layer with weights and no get_config."""

    def build(self, input_shape):
        self.offset = self.add_weight(name="offset", shape=(input_shape[-1],), initializer="zeros")

    def call(self, inputs):
        return inputs + self.offset


class HalfStepModel(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.head = keras.layers.Dense(1)

    def call(self, inputs):
        return self.head(self.hidden(inputs))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compiled_loss(y, self(x, training=True))
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip([g * 0.5 for g in gradients], self.trainable_variables))
        return {"loss": loss}


def build(kind, rng):
    if kind == "multi_input_output":
        numbers = keras.Input((4,), name="numbers")
        extra = keras.Input((3,), name="extra")
        joined = keras.layers.Concatenate()([Offset()(numbers), extra])
        model = keras.Model([numbers, extra], [keras.layers.Dense(1, name="score")(joined), keras.layers.Dense(2, name="other")(joined)])
        model.compile("adam", "mse")
        x = {"numbers": rng.normal(size=(ROWS, 4)).astype("float32"), "extra": rng.normal(size=(ROWS, 3)).astype("float32")}
        return model, x, [rng.normal(size=(ROWS, 1)), rng.normal(size=(ROWS, 2))]
    if kind == "string_lookup":
        words = np.array([["cat", "dog"], ["dog", "owl"], ["owl", "yak"], ["cat", "cat"]] * (ROWS // 4))
        inputs = keras.Input((2,), dtype="string", name="words")
        lookup = keras.layers.StringLookup(vocabulary=["cat", "dog", "owl"])
        hidden = keras.layers.Flatten()(keras.layers.Embedding(5, 3)(lookup(inputs)))
        model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
        model.compile("adam", "mse")
        return model, {"words": words}, np.ones((ROWS, 1))
    if kind == "adapted_normalization":
        x = rng.normal(loc=50.0, scale=10.0, size=(ROWS, 4)).astype("float32")
        normalize = keras.layers.Normalization()
        normalize.adapt(x)
        inputs = keras.Input((4,), name="features")
        model = keras.Model(inputs, keras.layers.Dense(1)(normalize(inputs)))
        model.compile("adam", "mse")
        return model, {"features": x}, rng.normal(size=(ROWS, 1))
    if kind == "variable_length_integers":
        inputs = keras.Input((None,), dtype="int32", name="tokens")
        hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(12, 4)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
        model.compile("adam", "mse")
        return model, {"tokens": rng.integers(0, 12, size=(ROWS, 7)).astype("int32")}, rng.normal(size=(ROWS, 2))
    if kind == "mixed_precision":
        keras.mixed_precision.set_global_policy("mixed_float16")
        inputs = keras.Input((6,), name="features")
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(hidden))
        keras.mixed_precision.set_global_policy("float32")
        model.compile("adam", "mse")
        return model, {"features": rng.normal(size=(ROWS, 6)).astype("float32")}, rng.normal(size=(ROWS, 1))
    if kind == "custom_train_step":
        model = HalfStepModel()
        model.compile("adam", "mse")
        return model, {"input_1": rng.normal(size=(ROWS, 6)).astype("float32")}, rng.normal(size=(ROWS, 1))
    if kind in ("early_stopping_first", "early_stopping_last"):
        inputs = keras.Input((4,), name="features")
        model = keras.Model(inputs, keras.layers.Dense(1)(Offset()(inputs)))
        model.compile(keras.optimizers.Adam(0.05), "mse")
        return model, {"features": rng.normal(size=(ROWS, 4)).astype("float32")}, rng.normal(size=(ROWS, 1))
    raise ValueError(kind)


def callbacks_for(kind, callback):
    if not kind.startswith("early_stopping"):
        return [callback]
    # Loss goes down while training, so with mode="max" the first epoch is the best one.
    early_stopping = keras.callbacks.EarlyStopping(monitor="loss", mode="max", patience=1, restore_best_weights=True)
    return [early_stopping, callback] if kind == "early_stopping_first" else [callback, early_stopping]


def main():
    store, work_dir, kind = sys.argv[1:4]
    rng = np.random.default_rng(0)
    model, x, y = build(kind, rng)
    fit_x = x if len(x) > 1 else next(iter(x.values()))
    if kind == "multi_input_output":
        fit_x = [x["numbers"], x["extra"]]
    callback = SavedModelMLflowCallback(store, experiment_name="legacy")
    epochs = 4 if kind.startswith("early_stopping") else 1
    model.fit(fit_x, y, epochs=epochs, batch_size=8, callbacks=callbacks_for(kind, callback), verbose=0)

    predictions = model.predict(fit_x, verbose=0)
    flat = predictions if isinstance(predictions, list) else [predictions]
    np.savez(os.path.join(work_dir, "inputs.npz"), **x)
    np.savez(os.path.join(work_dir, "predictions.npz"), *flat)
    output_names = list(getattr(model, "output_names", None) or [])
    print(json.dumps({"run_id": callback.run_id, "model_uri": callback.model_uri, "tracking_uri": callback.tracking_uri, "output_names": output_names, "keras_module": type(model).__mro__[1].__module__}))


if __name__ == "__main__":
    main()
