"""Train a small CNN with a custom layer on scikit-learn's digits and log it to MLflow.

The digits images ship with scikit-learn, so nothing is downloaded. The model is logged as a
SavedModel into the store folder ``demo-store`` (or the folder given as the first argument), then
loaded back from MLflow, and both accuracies are printed with the command that opens the store.
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from keras_mlflow_savedmodel import SavedModelMLflowCallback, load_model  # noqa: E402


class ChannelAffine(keras.layers.Layer):
    """Learned per-channel scale and shift: a custom layer with weights of its own."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.scale = self.add_weight(shape=(channels,), initializer="ones", name="scale")
        self.shift = self.add_weight(shape=(channels,), initializer="zeros", name="shift")

    def call(self, inputs):
        return inputs * self.scale + self.shift


def build_model() -> keras.Model:
    inputs = keras.Input((8, 8, 1), name="image")
    x = ChannelAffine(name="input_affine")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = ChannelAffine(name="feature_affine")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def load_data():
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    return train_test_split(images, digits.target, test_size=0.25, random_state=0, stratify=digits.target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", default="demo-store", help="MLflow store folder (default: demo-store)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default: 15)")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("keras_mlflow_savedmodel").setLevel(logging.INFO)

    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = load_data()
    model = build_model()
    callback = SavedModelMLflowCallback(arguments.store, experiment_name="digits", run_name="digits-cnn")
    model.fit(x_train, y_train, validation_split=0.2, epochs=arguments.epochs, batch_size=32, callbacks=[callback], verbose=2)

    trained_accuracy = np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test)
    restored = load_model(callback.model_uri)
    restored_accuracy = np.mean(np.argmax(restored.predict(x_test), axis=1) == y_test)

    print()
    print(f"Test accuracy of the trained model:           {trained_accuracy:.4f}")
    print(f"Test accuracy of the model loaded from MLflow: {restored_accuracy:.4f}")
    print(f"Model URI: {callback.model_uri}")
    print("Open the MLflow UI on this store with:")
    print(f"  {callback.ui_command}")
    print("(mlflow is installed in the virtual environment: activate it first, or prefix .venv/bin/.)")


if __name__ == "__main__":
    main()
