"""Reload a Keras 3 SavedModel in a fresh process and run its ``serve`` endpoint on nested inputs.

The tests' custom classes do not exist in that process: only TensorFlow and NumPy are imported.
Inputs and outputs cross the process boundary as flat lists in ``.npz`` files, in the order of
``tf.nest.flatten`` (dict keys sorted), which both sides share.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

_SERVE_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    folder, inputs_path, outputs_path = sys.argv[1:4]
    loaded = tf.saved_model.load(folder)
    with np.load(inputs_path) as stored:
        flat = [tf.constant(stored[f"arr_{index}"]) for index in range(len(stored.files))]
    arguments = tf.nest.pack_sequence_as(loaded.serve.input_signature, flat)
    outputs = loaded.serve(*arguments)
    np.savez(outputs_path, *[tensor.numpy() for tensor in tf.nest.flatten(outputs)])
    """
)


def to_numpy(value):
    """Return `value` (an array or a tensor) as a NumPy array; strings become bytes arrays."""
    array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    if array.dtype == object:
        array = array.astype(bytes)
    return array


def flat_numpy(structure):
    import tensorflow as tf

    return [to_numpy(value) for value in tf.nest.flatten(structure)]


def serve_in_fresh_process(folder, inputs, work_dir, env=None):
    """Load the SavedModel `folder` in a new interpreter, call ``serve(inputs)``, return flat outputs."""
    work_dir = str(work_dir)
    inputs_path = os.path.join(work_dir, "serve-inputs.npz")
    outputs_path = os.path.join(work_dir, "serve-outputs.npz")
    np.savez(inputs_path, *flat_numpy(inputs))
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
    with np.load(outputs_path) as stored:
        return [stored[f"arr_{index}"] for index in range(len(stored.files))]
