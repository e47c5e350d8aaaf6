"""With EarlyStopping(restore_best_weights=True), the logged model is the model fit returns."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import models
from keras_mlflow_savedmodel import SavedModelMLflowCallback, load_model


def best_is_first_epoch():
    # Loss goes down while training, so with mode="max" the first epoch is the best and the
    # second one stops training: the restored weights differ from the last epoch's.
    return keras.callbacks.EarlyStopping(monitor="loss", mode="max", patience=1, restore_best_weights=True)


class LastEpochWeights(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.weights = self.model.get_weights()


def fit_with(tmp_path, order):
    model = models.sequential_model()
    x, y = models.make_data()
    logging_callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    early_stopping = best_is_first_epoch()
    last_epoch = LastEpochWeights()
    ordered = {"early_stopping_first": [early_stopping, logging_callback], "early_stopping_last": [logging_callback, early_stopping]}
    model.fit(x, y, epochs=5, batch_size=16, callbacks=[last_epoch] + ordered[order], verbose=0)
    return model, x, logging_callback, last_epoch.weights


@pytest.mark.parametrize("order", ["early_stopping_first", "early_stopping_last"])
def test_logged_model_has_restored_weights(tmp_path, order):
    model, x, callback, _ = fit_with(tmp_path, order)

    restored = load_model(callback.model_uri)
    np.testing.assert_allclose(restored.predict(x), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("order", ["early_stopping_first", "early_stopping_last"])
def test_logged_model_is_not_last_epoch(tmp_path, order):
    model, x, callback, last_weights = fit_with(tmp_path, order)
    model.set_weights(last_weights)

    restored = load_model(callback.model_uri)
    assert not np.allclose(restored.predict(x), model.predict(x, verbose=0), atol=1e-6)


class LoggingEarlyStopping(keras.callbacks.EarlyStopping):
    def on_train_end(self, logs=None):
        super().on_train_end(logs)


def test_overridden_train_end_after_callback_warns(tmp_path):
    model = models.sequential_model()
    x, y = models.make_data()
    callback = SavedModelMLflowCallback(str(tmp_path / "store"))
    early_stopping = LoggingEarlyStopping(monitor="loss", mode="max", patience=1, restore_best_weights=True)

    with pytest.warns(UserWarning, match="Put SavedModelMLflowCallback after it"):
        model.fit(x, y, epochs=3, batch_size=16, callbacks=[callback, early_stopping], verbose=0)
