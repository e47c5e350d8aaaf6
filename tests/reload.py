"""Reload helpers that run in a fresh Python process, where the tests' custom classes do not exist."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

# Runs in the child: load the SavedModel with TensorFlow alone and run its serving signature.
_SERVE_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    folder, inputs_path, outputs_path = sys.argv[1:4]
    loaded = tf.saved_model.load(folder)
    serving = loaded.signatures["serving_default"]
    inputs = np.load(inputs_path)
    (argument_name,) = serving.structured_input_signature[1].keys()
    outputs = serving(**{argument_name: tf.constant(inputs)})
    (output,) = outputs.values()
    np.save(outputs_path, output.numpy())
    """
)


def predict_in_fresh_process(folder, inputs, work_dir, env=None):
    """Load the SavedModel `folder` in a new interpreter and return its serving outputs."""
    work_dir = str(work_dir)
    inputs_path = os.path.join(work_dir, "reload-inputs.npy")
    outputs_path = os.path.join(work_dir, "reload-outputs.npy")
    np.save(inputs_path, inputs)
    child_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    child_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_SCRIPT, str(folder), inputs_path, outputs_path],
        cwd=work_dir,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(outputs_path)
