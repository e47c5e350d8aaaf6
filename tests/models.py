"""Tiny Keras 3 models with custom layers that have their own weights, and data to train them."""

from __future__ import annotations

import numpy as np


def make_data(rows=64, features=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = rng.integers(0, classes, size=(rows,))
    return x, y


def custom_classes():
    import keras

    class ScaleShift(keras.layers.Layer):
        """Per-feature scale and shift, with weights of its own."""

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")
            self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="shift")

        def call(self, inputs):
            return inputs * self.scale + self.shift

    class TwoLayerNet(keras.Model):
        """A subclassed model that uses the custom layer."""

        def __init__(self, classes=3, **kwargs):
            super().__init__(**kwargs)
            self.scale_shift = ScaleShift()
            self.hidden = keras.layers.Dense(16, activation="relu")
            self.head = keras.layers.Dense(classes, activation="softmax")

        def call(self, inputs):
            return self.head(self.hidden(self.scale_shift(inputs)))

    return ScaleShift, TwoLayerNet


def sequential_model(features=8, classes=3):
    import keras

    scale_shift, _ = custom_classes()
    model = keras.Sequential(
        [
            keras.Input((features,)),
            scale_shift(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def functional_model(features=8, classes=3):
    import keras

    scale_shift, _ = custom_classes()
    inputs = keras.Input((features,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(scale_shift()(inputs))
    outputs = keras.layers.Dense(classes, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def subclassed_model(features=8, classes=3):
    _, two_layer_net = custom_classes()
    model = two_layer_net(classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
