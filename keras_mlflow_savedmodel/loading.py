"""`load_model`: download a logged SavedModel and load it."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional

from keras_mlflow_savedmodel import _compat, keras_archive
from keras_mlflow_savedmodel.errors import KerasMlflowSavedModelError
from keras_mlflow_savedmodel.store import PathOrUri, require_existing_store, resolve_tracking_store


class ServingModel:
    """A SavedModel written by Keras 3's ``model.export``, loaded with ``tf.saved_model.load``.

    Attributes:
        saved_model: The object ``tf.saved_model.load`` returned.
        signatures: Its signatures; ``"serving_default"`` is the serving signature.
    """

    def __init__(self, saved_model):
        self.saved_model = saved_model
        self.signatures = saved_model.signatures

    def __call__(self, inputs):
        """Run the ``serve`` endpoint on `inputs` and return tensors."""
        return self.saved_model.serve(inputs)

    def predict(self, inputs, batch_size: Optional[int] = None, verbose=None):
        """Run the ``serve`` endpoint on `inputs` and return NumPy arrays.

        Args:
            inputs: What the Keras model took: an array, a list of arrays or a dict of arrays.
            batch_size: Rows per call; None runs all rows in one call.
            verbose: Accepted so that calls written for ``keras.Model.predict`` work; nothing is
                printed either way.
        """
        import numpy as np
        import tensorflow as tf

        if batch_size is None:
            return tf.nest.map_structure(lambda tensor: tensor.numpy(), self(inputs))
        first = tf.nest.flatten(inputs)[0]
        rows = len(first)
        parts = []
        for start in range(0, rows, batch_size):
            batch = tf.nest.map_structure(lambda array: array[start : start + batch_size], inputs)
            parts.append(tf.nest.map_structure(lambda tensor: tensor.numpy(), self(batch)))
        return tf.nest.map_structure(lambda *arrays: np.concatenate(arrays), *parts)


def load_model(
    model_uri: str,
    *,
    tracking_uri: Optional[PathOrUri] = None,
    dst_path: Optional[str] = None,
    trainable: bool = False,
    custom_objects: Optional[dict] = None,
):
    """Download the SavedModel at `model_uri` and load it.

    Args:
        model_uri: ``"runs:/<run_id>/<artifact_path>"`` (``SavedModelMLflowCallback.model_uri``)
            or any artifact URI MLflow can download.
        tracking_uri: Store of the run, as a store folder or URI; None uses MLflow's current
            tracking URI.
        dst_path: Folder to download into and keep. None downloads into a temporary folder that is
            removed once the model is loaded.
        trainable: Return a Keras model that can train further: from the native Keras model
            (``keras_model/``, or ``model.keras`` from older versions) logged beside a Keras 3
            SavedModel, or revived from a legacy Keras SavedModel.
        custom_objects: Dict from class name (or registered name) to class, for custom classes
            of the model. Recorded classes whose module can be imported here are found without it.

    Returns:
        With ``trainable=True``, or for a legacy Keras SavedModel (it has ``keras_metadata.pb``),
        a Keras model. Otherwise a `ServingModel` whose ``predict`` runs the serving signature.

    Raises:
        CustomObjectsError: The model's custom classes can neither be imported nor are in
            `custom_objects`.
        KerasMlflowSavedModelError: ``trainable=True`` and no native Keras model was logged.
    """
    import mlflow
    import tensorflow as tf

    resolved_uri = None
    if tracking_uri is not None:
        store = resolve_tracking_store(tracking_uri)
        # A mistyped folder must not become a new, empty store.
        require_existing_store(store)
        resolved_uri = store.tracking_uri

    download_root = dst_path if dst_path is not None else tempfile.mkdtemp(prefix="keras-mlflow-savedmodel-load-")
    os.makedirs(download_root, exist_ok=True)
    try:
        folder = mlflow.artifacts.download_artifacts(
            artifact_uri=_run_artifact_uri(model_uri, resolved_uri),
            dst_path=download_root,
            tracking_uri=resolved_uri,
        )
        if trainable and keras_archive.find_keras_archive(folder) is not None:
            return keras_archive.load_keras_archive(folder, custom_objects)
        if os.path.isfile(os.path.join(folder, _compat.KERAS_METADATA_FILE)):
            keras_model = _compat.load_legacy_keras_model(folder, custom_objects)
            if keras_model is not None:
                return keras_model
        if trainable:
            raise KerasMlflowSavedModelError(
                f"{model_uri!r} contains no native Keras model ({keras_archive.KERAS_FOLDER}/ or "
                f"{keras_archive.KERAS_ARCHIVE_FILE}), so it loads for serving only. It is "
                "logged when the model's custom layers can be "
                "serialized (see the warning at train end) and save_keras_archive=True. Call "
                "load_model without trainable=True to serve it."
            )
        # tf.saved_model.load reads variables and assets into memory, so the folder can go after.
        return ServingModel(tf.saved_model.load(folder))
    finally:
        if dst_path is None:
            shutil.rmtree(download_root, ignore_errors=True)


def _run_artifact_uri(model_uri: str, tracking_uri: Optional[str]) -> str:
    """Return the artifact store URI behind a ``runs:/`` URI, or `model_uri` unchanged.

    Resolving the run here, in the named store, avoids two MLflow behaviours: MLflow 2.22 resolves
    ``runs:/`` URIs in the global tracking store even when download_artifacts gets another
    ``tracking_uri``, and MLflow 3 merges the files of a LoggedModel of the same name into the
    download.
    """
    import mlflow

    prefix = "runs:/"
    if not model_uri.startswith(prefix):
        return model_uri
    run_id, _, path = model_uri[len(prefix) :].partition("/")
    client = mlflow.MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    artifact_root = client.get_run(run_id).info.artifact_uri.rstrip("/")
    return f"{artifact_root}/{path}" if path else artifact_root
