"""Make the logged weights the weights ``fit`` returns when EarlyStopping restores the best ones.

``EarlyStopping(restore_best_weights=True)`` sets the best weights in its own ``on_train_end``
(Keras 3.15 and tf_keras 2.21 alike), and Keras runs the callbacks' ``on_train_end`` in list order.
When an EarlyStopping comes after the logging callback, the logging callback would write the last
epoch's weights. So before writing, the weights every later EarlyStopping is about to restore are
set on the model now; EarlyStopping then sets the same weights again, which changes nothing.
"""

from __future__ import annotations

import logging
import sys
import warnings

from keras_mlflow_savedmodel import _compat

logger = logging.getLogger(__name__)

# How many frames up from the hook to look for the CallbackList that is calling it.
_MAX_FRAMES = 12


def running_callback_list(callback):
    """Return the list of callbacks that is running `callback`'s hook, or None when unknown.

    Keras calls each hook from a ``CallbackList`` method whose ``self.callbacks`` contains the
    callbacks in the order they run. This reads the calling frames and changes nothing.
    """
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        callbacks = getattr(owner, "callbacks", None)
        if isinstance(callbacks, list) and any(item is callback for item in callbacks):
            return callbacks
        frame = frame.f_back
    return None


def _overrides_train_end(instance, base_classes) -> bool:
    method = type(instance).on_train_end
    return not any(method is base.on_train_end for base in base_classes)


def apply_pending_restores(callback, model) -> list:
    """Set on `model` the best weights that EarlyStopping callbacks after `callback` will restore.

    Returns:
        The EarlyStopping callbacks whose best weights were set, in list order.
    """
    early_stopping_classes = _compat.early_stopping_classes()
    callbacks = running_callback_list(callback)
    if callbacks is None:
        logger.debug("The callback list is unknown, so no EarlyStopping restore is anticipated.")
        return []
    position = next(index for index, item in enumerate(callbacks) if item is callback)
    applied = []
    for later in callbacks[position + 1 :]:
        if not isinstance(later, early_stopping_classes):
            continue
        if not getattr(later, "restore_best_weights", False):
            continue
        if _overrides_train_end(later, early_stopping_classes):
            warnings.warn(
                f"{type(later).__name__} comes after SavedModelMLflowCallback and overrides "
                "on_train_end, so the weights it leaves cannot be known in advance and the "
                "logged model may hold the last epoch's weights. Put SavedModelMLflowCallback "
                "after it in the callbacks list.",
                stacklevel=3,
            )
            continue
        best_weights = getattr(later, "best_weights", None)
        if best_weights is None:
            continue
        model.set_weights(best_weights)
        applied.append(later)
        logger.info(
            "Logging the best weights (epoch %s) that %s restores after this callback.",
            getattr(later, "best_epoch", -1) + 1,
            type(later).__name__,
        )
    return applied
