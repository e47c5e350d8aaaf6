"""Legacy Keras (tf_keras) model kinds round-trip, pass the reload check and train further after reload.

Each model trains in its own process under TF_USE_LEGACY_KERAS=1 and reloads in another one
where its custom classes do not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest

from keras_mlflow_savedmodel.verification import PASSED, VERIFICATION_TAG

pytest.importorskip("tf_keras")

LEGACY_ENV = {"TF_USE_LEGACY_KERAS": "1"}
TRAINING_SCRIPT = os.path.join(os.path.dirname(__file__), "legacy_fidelity_training.py")
KINDS = [
    "adapted_normalization",
    "custom_train_step",
    "early_stopping_first",
    "early_stopping_last",
    "mixed_precision",
    "multi_input_output",
    "string_lookup",
    "variable_length_integers",
]

# Runs in the child: the serving signature takes named inputs and returns named outputs.
_SERVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    folder, work_dir, output_names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    loaded = tf.saved_model.load(folder)
    serving = loaded.signatures["serving_default"]
    with np.load(work_dir + "/inputs.npz") as stored:
        inputs = {name: tf.constant(stored[name]) for name in stored.files}
    if len(inputs) == 1:
        (argument,) = serving.structured_input_signature[1]
        inputs = {argument: next(iter(inputs.values()))}
    outputs = serving(**inputs)
    ordered = [outputs[name] for name in output_names] if len(outputs) > 1 else list(outputs.values())
    np.savez(work_dir + "/served.npz", *[tensor.numpy() for tensor in ordered])
    """
)

# Runs in the child: revive the Keras model and train it one more epoch.
_TRAIN_FURTHER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from keras_mlflow_savedmodel import load_model

    model_uri, tracking_uri, work_dir = sys.argv[1:4]
    model = load_model(model_uri, tracking_uri=tracking_uri)
    with np.load(work_dir + "/inputs.npz") as stored:
        inputs = [stored[name] for name in stored.files]
    x = inputs[0] if len(inputs) == 1 else inputs
    before = [weight.copy() for weight in model.get_weights()]
    targets = model.predict(x, verbose=0)
    model.compile("adam", "mse")
    shifted = [target + 1.0 for target in targets] if isinstance(targets, list) else targets + 1.0
    model.fit(x, shifted, epochs=1, verbose=0)
    changed = any(not np.allclose(old, new) for old, new in zip(before, model.get_weights()))
    print("trained", type(model).__module__, changed)
    """
)


def run_child(arguments, work_dir, env):
    child_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    child_env.update(env)
    result = subprocess.run([sys.executable, *arguments], cwd=str(work_dir), env=child_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def train_legacy(store, work_dir, kind):
    stdout = run_child([TRAINING_SCRIPT, str(store), str(work_dir), kind], work_dir, LEGACY_ENV)
    return json.loads(stdout.strip().splitlines()[-1])


def logged_folder(store, run):
    experiment_id = mlflow.MlflowClient(run["tracking_uri"]).get_run(run["run_id"]).info.experiment_id
    return os.path.join(str(store), experiment_id, run["run_id"], "artifacts", "model")


def flat_outputs(path):
    with np.load(path) as stored:
        return [stored[f"arr_{index}"] for index in range(len(stored.files))]


@pytest.mark.parametrize("kind", KINDS)
def test_legacy_kind_round_trips(tmp_path, kind):
    store = tmp_path / "store"
    run = train_legacy(store, tmp_path, kind)

    run_child(["-c", _SERVE_SCRIPT, logged_folder(store, run), str(tmp_path), json.dumps(run["output_names"])], tmp_path, {})
    served = flat_outputs(tmp_path / "served.npz")
    expected = flat_outputs(tmp_path / "predictions.npz")
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("kind", ["multi_input_output", "string_lookup"])
def test_legacy_kind_passes_reload_check(tmp_path, kind):
    run = train_legacy(tmp_path / "store", tmp_path, kind)

    tags = mlflow.MlflowClient(run["tracking_uri"]).get_run(run["run_id"]).data.tags
    assert tags[VERIFICATION_TAG] == PASSED


@pytest.mark.parametrize("kind", ["multi_input_output", "custom_train_step"])
def test_legacy_revived_model_trains_further(tmp_path, kind):
    run = train_legacy(tmp_path / "store", tmp_path, kind)

    stdout = run_child(["-c", _TRAIN_FURTHER_SCRIPT, run["model_uri"], run["tracking_uri"], str(tmp_path)], tmp_path, LEGACY_ENV)
    assert "trained tf_keras" in stdout
    assert stdout.strip().endswith("True")


def test_legacy_model_predicts_through_pyfunc(tmp_path):
    run = train_legacy(tmp_path / "store", tmp_path, "adapted_normalization")
    with np.load(tmp_path / "inputs.npz") as stored:
        features = stored["features"]

    mlflow.set_tracking_uri(run["tracking_uri"])
    loaded = mlflow.pyfunc.load_model(run["model_uri"])
    (expected,) = flat_outputs(tmp_path / "predictions.npz")
    np.testing.assert_allclose(loaded.predict(features), expected, atol=1e-5)
