"""Keras 3 models of the kinds people train, each with tiny data: ``build(kind) -> (model, x, y)``.

Every custom class lives in this module, which a fresh reload process cannot import.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

ROWS = 16


def _rng():
    return np.random.default_rng(0)


class GatedSum(keras.Model):
    """Subclassed model with two named inputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.left = keras.layers.Dense(4)
        self.right = keras.layers.Dense(4)
        self.head = keras.layers.Dense(1)

    def call(self, inputs):
        return self.head(self.left(inputs["numbers"]) * keras.ops.sigmoid(self.right(inputs["extra"])))


class PairNet(keras.Model):
    """Subclassed model that takes a tuple of two inputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(4)
        self.head = keras.layers.Dense(1)

    def call(self, inputs):
        first, second = inputs
        return self.head(self.hidden(first) + second)


class HalfStepModel(keras.Model):
    """Overrides train_step: applies half of every gradient step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.head = keras.layers.Dense(1)

    def call(self, inputs):
        return self.head(self.hidden(inputs))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply([gradient * 0.5 for gradient in gradients], self.trainable_variables)
        return {"loss": loss}


class Offset(keras.layers.Layer):
    """Custom layer with a constructor argument and no get_config."""

    def __init__(self, start, **kwargs):
        super().__init__(**kwargs)
        self.start = start

    def build(self, input_shape):
        self.offset = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="offset")

    def call(self, inputs):
        return inputs + self.offset + self.start


@keras.saving.register_keras_serializable(package="fidelity_tests")
class Power(keras.layers.Layer):
    """Registered custom layer with get_config."""

    def __init__(self, exponent=2.0, **kwargs):
        super().__init__(**kwargs)
        self.exponent = exponent

    def call(self, inputs):
        return keras.ops.sign(inputs) * keras.ops.abs(inputs) ** self.exponent

    def get_config(self):
        return {**super().get_config(), "exponent": self.exponent}


def multi_input_output():
    rng = _rng()
    numbers = keras.Input((4,), name="numbers")
    extra = keras.Input((3,), name="extra")
    joined = keras.layers.Concatenate()([numbers, extra])
    score = keras.layers.Dense(1, name="score")(joined)
    classes = keras.layers.Dense(3, activation="softmax", name="classes")(joined)
    model = keras.Model([numbers, extra], [score, classes])
    model.compile("adam", ["mse", "sparse_categorical_crossentropy"])
    x = [rng.normal(size=(ROWS, 4)).astype("float32"), rng.normal(size=(ROWS, 3)).astype("float32")]
    y = [rng.normal(size=(ROWS, 1)).astype("float32"), rng.integers(0, 3, size=(ROWS,))]
    return model, x, y


def dict_inputs():
    rng = _rng()
    inputs = {"numbers": keras.Input((4,), name="numbers"), "extra": keras.Input((3,), name="extra")}
    joined = keras.layers.Concatenate()([inputs["numbers"], inputs["extra"]])
    model = keras.Model(inputs, {"score": keras.layers.Dense(1)(joined)})
    model.compile("adam", {"score": "mse"})
    x = {"numbers": rng.normal(size=(ROWS, 4)).astype("float32"), "extra": rng.normal(size=(ROWS, 3)).astype("float32")}
    return model, x, {"score": rng.normal(size=(ROWS, 1)).astype("float32")}


def subclassed_dict_inputs():
    rng = _rng()
    model = GatedSum()
    model.compile("adam", "mse")
    x = {"numbers": rng.normal(size=(ROWS, 4)).astype("float32"), "extra": rng.normal(size=(ROWS, 3)).astype("float32")}
    return model, x, rng.normal(size=(ROWS, 1)).astype("float32")


def subclassed_tuple_inputs():
    rng = _rng()
    model = PairNet()
    model.compile("adam", "mse")
    x = (rng.normal(size=(ROWS, 5)).astype("float32"), rng.normal(size=(ROWS, 4)).astype("float32"))
    return model, x, rng.normal(size=(ROWS, 1)).astype("float32")


def custom_train_step():
    rng = _rng()
    model = HalfStepModel()
    model.compile("adam", "mse")
    return model, rng.normal(size=(ROWS, 6)).astype("float32"), rng.normal(size=(ROWS, 1)).astype("float32")


def text_vectorization():
    texts = np.array(["red apple", "green pear", "red pear", "blue sky"] * (ROWS // 4))
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    vectorize.adapt(texts)
    inputs = keras.Input((1,), dtype="string")
    hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(vectorize(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile("adam", "mse")
    return model, tf.constant(texts[:, None]), np.arange(ROWS, dtype="float32")[:, None]


def string_lookup():
    words = np.array([["cat", "dog"], ["dog", "owl"], ["owl", "yak"], ["cat", "cat"]] * (ROWS // 4))
    inputs = keras.Input((2,), dtype="string")
    lookup = keras.layers.StringLookup(vocabulary=["cat", "dog", "owl"], output_mode="int")
    hidden = keras.layers.Flatten()(keras.layers.Embedding(5, 3)(lookup(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile("adam", "mse")
    return model, tf.constant(words), np.ones((ROWS, 1), dtype="float32")


def adapted_normalization():
    rng = _rng()
    x = rng.normal(loc=50.0, scale=10.0, size=(ROWS, 4)).astype("float32")
    normalize = keras.layers.Normalization()
    normalize.adapt(x)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(normalize(inputs)))
    model.compile("adam", "mse")
    return model, x, rng.normal(size=(ROWS, 1)).astype("float32")


def preprocessing_layers():
    rng = _rng()
    x = rng.uniform(0.0, 10.0, size=(ROWS, 3)).astype("float32")
    discretize = keras.layers.Discretization(num_bins=4)
    discretize.adapt(x)
    inputs = keras.Input((3,))
    bins = keras.layers.CategoryEncoding(num_tokens=4, output_mode="multi_hot")(discretize(inputs))
    scaled = keras.layers.Rescaling(0.1, offset=-0.5)(inputs)
    joined = keras.layers.Concatenate()([bins, scaled])
    model = keras.Model(inputs, keras.layers.Dense(1)(joined))
    model.compile("adam", "mse")
    return model, x, rng.normal(size=(ROWS, 1)).astype("float32")


def variable_length_integers():
    rng = _rng()
    inputs = keras.Input((None,), dtype="int32")
    hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(12, 4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    model.compile("adam", "mse")
    x = rng.integers(0, 12, size=(ROWS, 7)).astype("int32")
    return model, x, rng.normal(size=(ROWS, 2)).astype("float32")


def mixed_precision():
    rng = _rng()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        outputs = keras.layers.Dense(1, dtype="float32")(hidden)
        model = keras.Model(inputs, outputs)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.compile("adam", "mse")
    return model, rng.normal(size=(ROWS, 6)).astype("float32"), rng.normal(size=(ROWS, 1)).astype("float32")


def custom_layer_without_config():
    rng = _rng()
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Offset(np.float32(0.5))(inputs)))
    model.compile("adam", "mse")
    return model, rng.normal(size=(ROWS, 5)).astype("float32"), rng.normal(size=(ROWS, 2)).astype("float32")


def registered_custom_layer():
    rng = _rng()
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Power(1.5)(inputs)))
    model.compile("adam", "mse")
    return model, rng.normal(size=(ROWS, 5)).astype("float32"), rng.normal(size=(ROWS, 2)).astype("float32")


BUILDERS = {
    "multi_input_output": multi_input_output,
    "dict_inputs": dict_inputs,
    "subclassed_dict_inputs": subclassed_dict_inputs,
    "subclassed_tuple_inputs": subclassed_tuple_inputs,
    "custom_train_step": custom_train_step,
    "text_vectorization": text_vectorization,
    "string_lookup": string_lookup,
    "adapted_normalization": adapted_normalization,
    "preprocessing_layers": preprocessing_layers,
    "variable_length_integers": variable_length_integers,
    "mixed_precision": mixed_precision,
    "custom_layer_without_config": custom_layer_without_config,
    "registered_custom_layer": registered_custom_layer,
}


def build(kind):
    return BUILDERS[kind]()
