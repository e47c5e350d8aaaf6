"""The free-space check before writing, on small real file systems (tmpfs, mounted as root)."""

from __future__ import annotations

import os
import subprocess

import keras
import mlflow
import numpy as np
import pytest

from keras_mlflow_savedmodel import InsufficientSpaceError, SavedModelMLflowCallback


@pytest.fixture
def small_disk(tmp_path):
    """Yield a folder on a new 8 MB tmpfs; skip when this process may not mount one."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fit_wide_model(callback):
    # About 9 MB of float32 weights, and 27 MB with Adam's two slots: more than the small disk.
    model = keras.Sequential([keras.Input((1500,)), keras.layers.Dense(1500), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 1500)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[callback], verbose=0)


def test_full_store_disk_names_store(small_disk):
    store = small_disk / "store"
    callback = SavedModelMLflowCallback(str(store))
    with pytest.raises(InsufficientSpaceError) as raised:
        fit_wide_model(callback)

    message = str(raised.value)
    assert "MB free" in message
    assert str(small_disk) in message
    assert "Free space on the store's disk" in message
    run = mlflow.MlflowClient(callback.tracking_uri).get_run(callback.run_id)
    assert run.info.status == "FAILED"
    run_folder = store / run.info.experiment_id / callback.run_id
    assert not [name for name in os.listdir(run_folder) if name.startswith(".")]


def test_full_temp_dir_suggests_other_temp_dir(tmp_path, small_disk):
    callback = SavedModelMLflowCallback(str(tmp_path / "store"), temp_dir=str(small_disk))
    with pytest.raises(InsufficientSpaceError) as raised:
        fit_wide_model(callback)

    assert "Pass temp_dir=" in str(raised.value)
    assert os.listdir(small_disk) == []


def test_archive_counts_toward_needed_space(tmp_path, small_disk):
    # The SavedModel alone (9 MB) does not fit either, so compare the two estimates.
    required = []
    for keep_archive in (False, True):
        callback = SavedModelMLflowCallback(
            str(tmp_path / f"store-{keep_archive}"), temp_dir=str(small_disk), save_keras_archive=keep_archive
        )
        with pytest.raises(InsufficientSpaceError) as raised:
            fit_wide_model(callback)
        required.append(raised.value.required_bytes)

    assert required[1] > 2.5 * required[0]


def test_temp_dir_elsewhere_still_checks_store_disk(tmp_path, small_disk):
    # The model is written in temp_dir but ends up on the store's disk, which is too small.
    temp_root = tmp_path / "big-disk"
    temp_root.mkdir()
    callback = SavedModelMLflowCallback(str(small_disk / "store"), temp_dir=str(temp_root))
    with pytest.raises(InsufficientSpaceError) as raised:
        fit_wide_model(callback)

    assert str(small_disk) in str(raised.value)
    assert "Free space on the store's disk" in str(raised.value)
    assert os.listdir(temp_root) == []

