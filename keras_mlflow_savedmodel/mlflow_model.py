"""The ``MLmodel`` file that makes the logged SavedModel folder an MLflow Model, and its pyfunc loader.

The model signature is read from the SavedModel's own ``serving_default`` signature, so the two
cannot disagree. ``mlflow.pyfunc.load_model`` imports this module and calls `_load_pyfunc`, which
runs that same signature: a single input takes a NumPy array or a pandas DataFrame, several inputs
take a dict of arrays or a DataFrame with one column per input name.
"""

from __future__ import annotations

import logging
import os

from keras_mlflow_savedmodel import _compat

logger = logging.getLogger(__name__)

MLMODEL_FILE = "MLmodel"
FLAVOR_NAME = "keras_mlflow_savedmodel"
SERVING_SIGNATURE = "serving_default"


def _tensor_spec(spec, name):
    import numpy as np
    from mlflow.types.schema import TensorSpec

    shape = tuple(-1 if dim is None else int(dim) for dim in spec.shape.as_list())
    dtype = np.dtype(object) if spec.dtype.name == "string" else np.dtype(spec.dtype.as_numpy_dtype)
    return TensorSpec(dtype, shape, name)


def serving_signature(folder: str):
    """Return the ``ModelSignature`` of the ``serving_default`` signature of the SavedModel in `folder`.

    A single input or output is left unnamed, so a plain array matches it; several are named
    after the signature's argument and output names. The signature is read from
    ``saved_model.pb`` alone: loading the SavedModel would also read every weight into memory.
    """
    import tensorflow as tf
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(folder, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    serving = saved_model.meta_graphs[0].signature_def[SERVING_SIGNATURE]

    def specs_of(tensor_infos):
        return {
            name: tf.TensorSpec(tf.TensorShape(info.tensor_shape), tf.as_dtype(info.dtype), name)
            for name, info in tensor_infos.items()
        }

    input_specs = specs_of(serving.inputs)
    output_specs = specs_of(serving.outputs)

    def schema(specs):
        if len(specs) == 1:
            return Schema([_tensor_spec(next(iter(specs.values())), None)])
        return Schema([_tensor_spec(spec, name) for name, spec in sorted(specs.items())])

    return ModelSignature(inputs=schema(input_specs), outputs=schema(output_specs))


def example_for_signature(input_example, signature):
    """Return `input_example` in a form MLflow can store and check, or None when it has none.

    A single array stays as it is; a dict of arrays is kept when its keys are the signature's
    input names. Lists of arrays have no names, so they are not stored.
    """
    import numpy as np

    if input_example is None:
        return None
    names = signature.inputs.input_names() if signature.inputs.has_input_names() else []
    if isinstance(input_example, dict):
        if set(input_example) == set(names):
            return {key: np.asarray(value) for key, value in input_example.items()}
        return None
    if not names:
        return np.asarray(input_example)
    return None


def import_mlmodel_modules() -> None:
    """Import the MLflow modules that `write_mlmodel` uses.

    Called at train begin, so that a broken MLflow install fails before training and not after.
    Train end then does not wait for the import either: about 30 ms for ``mlflow.pyfunc`` in a
    fresh process with MLflow 3.17, measured on a 2-core machine.
    """
    import mlflow.pyfunc  # noqa: F401
    from mlflow.models import Model  # noqa: F401


def write_mlmodel(folder: str, *, run_id, artifact_path, saved_format, keras_version, input_example=None, extra_files=None):
    """Write the ``MLmodel`` file (and the input example) into the SavedModel `folder`.

    Args:
        folder: The SavedModel folder; ``MLmodel`` is written at its top.
        run_id: The run the folder is logged to.
        artifact_path: The folder's artifact path in the run.
        saved_format: ``"keras3-export"`` or ``"keras2-savedmodel"``.
        keras_version: Version of the Keras that wrote the folder.
        input_example: Inputs for one call of the model, or None.
        extra_files: Dict of file roles to names inside `folder` (the ``.keras`` archive,
            the custom class record), stored in this package's flavor.

    Returns:
        The ``mlflow.models.Model`` written.
    """
    import mlflow
    import tensorflow as tf
    from mlflow.models import Model

    signature = serving_signature(folder)
    mlmodel = Model(artifact_path=artifact_path, run_id=run_id, signature=signature)
    example = example_for_signature(input_example, signature)
    if example is not None:
        _compat.save_mlflow_input_example(mlmodel, example, folder)
    elif input_example is not None:
        logger.info(
            "The input_example is not stored in MLmodel: MLflow stores a single array or a dict "
            "keyed by the input names %s.",
            signature.inputs.input_names(),
        )
    mlflow.pyfunc.add_to_model(mlmodel, loader_module=__name__)
    mlmodel.add_flavor(
        FLAVOR_NAME,
        saved_format=saved_format,
        keras_version=keras_version,
        tensorflow_version=tf.__version__,
        mlflow_version=mlflow.__version__,
        signature_name=SERVING_SIGNATURE,
        **(extra_files or {}),
    )
    mlmodel.save(os.path.join(folder, MLMODEL_FILE))
    return mlmodel


class SavedModelPyfunc:
    """The pyfunc model: runs the ``serving_default`` signature of a SavedModel."""

    def __init__(self, saved_model):
        # The loaded object owns the variables the signature reads, so it is kept alive here.
        self.saved_model = saved_model
        self.serving = saved_model.signatures[SERVING_SIGNATURE]
        self.input_names = sorted(self.serving.structured_input_signature[1])

    def get_raw_model(self):
        """Return the object ``tf.saved_model.load`` returned."""
        return self.saved_model

    def predict(self, model_input, params=None):
        """Run the serving signature and return an array (one output) or a dict of arrays.

        Args:
            model_input: An array or a one-input DataFrame for a one-input model, or a dict of
                arrays (or a DataFrame) keyed by input name.
            params: Not used; accepted because pyfunc passes it.
        """
        import numpy as np
        import pandas as pd
        import tensorflow as tf

        if isinstance(model_input, pd.DataFrame):
            if len(self.input_names) == 1:
                model_input = model_input.to_numpy()
            else:
                model_input = {name: np.stack(model_input[name].to_numpy()) for name in self.input_names}
        if isinstance(model_input, dict):
            feed = {name: tf.constant(np.asarray(value)) for name, value in model_input.items()}
        else:
            (name,) = self.input_names
            feed = {name: tf.constant(np.asarray(model_input))}
        outputs = {name: tensor.numpy() for name, tensor in self.serving(**feed).items()}
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs


def _load_pyfunc(path, model_config=None):
    """Load the SavedModel folder `path` as a pyfunc model; called by ``mlflow.pyfunc.load_model``."""
    import tensorflow as tf

    return SavedModelPyfunc(tf.saved_model.load(path))
