"""Measure what SavedModelMLflowCallback costs, side by side with what a user would do without it.

Run from the repository root::

    /work/venv/bin/python benchmarks/run.py            # or: bash scripts/benchmark.sh

Each measurement runs in a fresh Python process, so that peak memory, TensorFlow's traced
functions and MLflow's global state of one configuration cannot leak into the next. The one
exception is ``epochs_paired``, which alternates fits with and without the callback in one process.
The configurations of one figure run interleaved (A, B, C, A, B, C...), and each figure is a ratio
of medians, so the load that other processes put on a shared machine affects both sides alike.

The results are printed as a table and written as JSON (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_PREFIX = "BENCHMARK-RESULT "

# Dense stacks: (input and hidden width, hidden layers). Parameters ~ layers * width**2.
MODEL_SHAPES = {
    "1M": (1000, 1),
    "25M": (2500, 4),
    "250M": (7900, 4),
    # The same size in 40 smaller layers: the native Keras model's extra memory follows the
    # largest variable, which is a quarter of the model above and a fortieth here.
    "250M-deep": (2500, 40),
}
DEFAULT_REPEATS = {"1M": 5, "25M": 3, "250M": 1, "250M-deep": 1}
TRAIN_END_CONFIGS = ("recipe", "recipe_archive", "callback_minimal", "callback_archive", "callback_default")
# Each callback configuration and the recipe that writes the same files.
SAME_FILES_RECIPE = {"callback_minimal": "recipe", "callback_archive": "recipe_archive", "callback_default": "recipe_archive"}
EPOCH_CONFIGS = ("none", "callback", "autolog", "mlflow_keras_callback")
EPOCHS = 50
EPOCH_SAMPLES = 2048
EPOCH_BATCH = 32
IMPORT_STATEMENTS = {
    "tensorflow_mlflow": "import tensorflow, mlflow",
    "with_callback": "import tensorflow, mlflow\nfrom keras_mlflow_savedmodel import SavedModelMLflowCallback",
    "package_only": "import keras_mlflow_savedmodel",
}
POLL_SECONDS = 0.02


# Helpers shared by the worker processes.


def folder_size(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                # A file that TensorFlow renamed or removed between listing and stat.
                pass
    return total


class FolderSizePoller:
    """Records the largest total size a folder reaches while it runs, polling from a thread."""

    def __init__(self, folder: str):
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, folder_size(self.folder))
            self._stop.wait(POLL_SECONDS)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, folder_size(self.folder))
        return False


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (VmHWM) of this process; False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def build_model(size: str):
    import keras
    import numpy as np

    width, hidden_layers = MODEL_SHAPES[size]
    layers = [keras.Input((width,))]
    layers += [keras.layers.Dense(width, activation="relu") for _ in range(hidden_layers)]
    layers.append(keras.layers.Dense(10))
    model = keras.Sequential(layers, name=f"dense_{size}")
    model.compile(optimizer="adam", loss="mse")
    # One training step, so the model carries optimizer state as it does after real training.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, width)).astype("float32")
    y = rng.normal(size=(8, 10)).astype("float32")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    return model


def weight_bytes(model) -> int:
    import numpy as np

    total = 0
    for variable in model.weights:
        count = 1
        for dim in variable.shape:
            count *= int(dim)
        total += count * np.dtype(variable.dtype).itemsize
    return total


def local_artifact_folder(client, run_id: str, artifact_path: str) -> str:
    from urllib.parse import unquote, urlparse

    uri = client.get_run(run_id).info.artifact_uri
    path = unquote(urlparse(uri).path) if uri.startswith("file:") else uri
    return os.path.join(path, artifact_path)


def saved_model_bytes(folder: str) -> int:
    """Bytes of the SavedModel proper: saved_model.pb, fingerprint.pb and variables/."""
    total = 0
    for name in ("saved_model.pb", "fingerprint.pb"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            total += os.path.getsize(path)
    return total + folder_size(os.path.join(folder, "variables"))


# Workers: each runs in its own process and prints one JSON result line.


def worker_train_end(spec: dict) -> dict:
    import gc
    import shutil

    root = spec["root"]
    temp = os.path.join(root, "temp")
    os.makedirs(temp)
    # Every temporary folder of this process (the recipe's, Keras's, MLflow's) goes under root.
    tempfile.tempdir = temp

    import mlflow

    from keras_mlflow_savedmodel import SavedModelMLflowCallback

    model = build_model(spec["size"])
    store = os.path.join(root, "store")
    config = spec["config"]
    callback = SavedModelMLflowCallback(
        store,
        verify=config == "callback_default",
        save_keras_archive=config in ("callback_archive", "callback_default"),
    )
    client = mlflow.MlflowClient(callback.tracking_uri)
    started = time.perf_counter()
    if config.startswith("recipe"):
        run_id = mlflow.start_run().info.run_id
    else:
        callback.set_model(model)
        callback.set_params({"epochs": 1, "steps": 1, "verbose": 0})
        callback.on_train_begin()
        run_id = callback.run_id
    begin_seconds = time.perf_counter() - started

    gc.collect()
    disk_before = folder_size(root)
    rss_before = proc_status_kib("VmRSS") * 1024
    peak_reset = reset_peak_rss()
    with FolderSizePoller(root) as poller:
        started = time.perf_counter()
        if config.startswith("recipe"):
            # What a user writes without the callback: export (and for the same files as the
            # callback's default, a .keras archive), log the folder, clean up.
            staging = tempfile.mkdtemp(dir=temp)
            export_folder = os.path.join(staging, "saved_model")
            model.export(export_folder, format="tf_saved_model", verbose=False)
            if config == "recipe_archive":
                model.save(os.path.join(export_folder, "model.keras"))
            mlflow.log_artifacts(export_folder, "model")
            shutil.rmtree(staging)
            mlflow.end_run()
        else:
            callback.on_train_end()
        seconds = time.perf_counter() - started
    peak_rss = proc_status_kib("VmHWM") * 1024
    logged = local_artifact_folder(client, run_id, "model")
    disk_after = folder_size(root)
    return {
        "seconds": seconds,
        "begin_and_end_seconds": begin_seconds + seconds,
        "weight_bytes": weight_bytes(model),
        "extra_peak_rss_bytes": peak_rss - rss_before if peak_reset else None,
        "peak_disk_bytes": poller.peak - disk_before,
        "temporary_disk_bytes": poller.peak - disk_after,
        "saved_model_bytes": saved_model_bytes(logged),
        "logged_folder_bytes": folder_size(logged),
        "graph_bytes": os.path.getsize(os.path.join(logged, "saved_model.pb")),
    }


def worker_write(spec: dict) -> dict:
    """Time the SavedModel write alone, then a plain write of as many bytes with fsync."""
    import numpy as np
    import tensorflow as tf

    from keras_mlflow_savedmodel import _compat

    model = build_model(spec["size"])
    folder = os.path.join(spec["root"], "saved_model")
    started = time.perf_counter()
    _compat.write_saved_model(model, folder)
    write_seconds = time.perf_counter() - started
    written = folder_size(folder)

    chunk = os.urandom(16 * 2**20)
    raw_path = os.path.join(spec["root"], "raw.bin")
    started = time.perf_counter()
    with open(raw_path, "wb") as raw:
        remaining = written
        while remaining > 0:
            remaining -= raw.write(chunk[: min(remaining, len(chunk))])
        raw.flush()
        os.fsync(raw.fileno())
    raw_seconds = time.perf_counter() - started

    # The serving signature survives: `serve` and `serving_default` give the live outputs.
    reloaded = tf.saved_model.load(folder)
    width = MODEL_SHAPES[spec["size"]][0]
    x = np.random.default_rng(1).normal(size=(2, width)).astype("float32")
    live = model(x, training=False).numpy()
    serve = reloaded.serve(tf.constant(x)).numpy()
    serving_default = next(iter(reloaded.signatures["serving_default"](tf.constant(x)).values())).numpy()
    signature_intact = bool(np.allclose(serve, live, atol=1e-5) and np.allclose(serving_default, live, atol=1e-5))
    return {
        "write_seconds": write_seconds,
        "raw_seconds": raw_seconds,
        "bytes": written,
        "weight_bytes": weight_bytes(model),
        "signature_intact": signature_intact,
    }


class _EpochTimer:
    """Keras callback measuring wall and process CPU time from train begin to the last epoch end."""

    def __new__(cls):
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.started = time.perf_counter()
                self.cpu_started = time.process_time()

            def on_epoch_end(self, epoch, logs=None):
                self.ended = time.perf_counter()
                self.cpu_ended = time.process_time()

        return EpochTimer()


def time_epoch_hook(callback) -> list:
    """Wrap `callback.on_epoch_end` to add its wall time to the one-element list returned."""
    total = [0.0]
    original = callback.on_epoch_end

    def timed(epoch, logs=None):
        started = time.perf_counter()
        original(epoch, logs)
        total[0] += time.perf_counter() - started

    callback.on_epoch_end = timed
    return total


def time_log_batch_cpu() -> list:
    """Add the CPU time of every ``MlflowClient.log_batch`` call, in the thread that makes it, to a list.

    The callback sends epoch metrics from a background thread, so its cost is this CPU time
    plus the time inside ``on_epoch_end``.
    """
    import mlflow

    total = [0.0]
    original = mlflow.MlflowClient.log_batch

    def timed(client, *args, **kwargs):
        started = time.thread_time()
        try:
            return original(client, *args, **kwargs)
        finally:
            total[0] += time.thread_time() - started

    mlflow.MlflowClient.log_batch = timed
    return total


def worker_epochs(spec: dict) -> dict:
    import mlflow
    import numpy as np
    import keras

    from keras_mlflow_savedmodel import SavedModelMLflowCallback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(EPOCH_SAMPLES, 32)).astype("float32")
    y = rng.normal(size=(EPOCH_SAMPLES, 1)).astype("float32")
    model = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    # Warm-up: trace the train function outside the measured fit.
    model.fit(x, y, epochs=1, batch_size=EPOCH_BATCH, verbose=0)

    store = os.path.join(spec["root"], "store")
    timer = _EpochTimer()
    config = spec["config"]
    callbacks = []
    run = None
    hook_seconds = [None]
    writer_cpu_seconds = [None]
    if config == "callback":
        callbacks.append(SavedModelMLflowCallback(store, save_keras_archive=False))
        hook_seconds = time_epoch_hook(callbacks[-1])
        writer_cpu_seconds = time_log_batch_cpu()
    elif config in ("autolog", "mlflow_keras_callback"):
        # The same kind of store as the callback's: SQLite with a local artifact folder.
        tracker = SavedModelMLflowCallback(store)
        mlflow.set_tracking_uri(tracker.tracking_uri)
        if config == "autolog":
            mlflow.autolog(log_models=False, log_datasets=False, silent=True)
        else:
            run = mlflow.start_run()
            callbacks.append(mlflow.keras.MlflowCallback())
            hook_seconds = time_epoch_hook(callbacks[-1])
    callbacks.append(timer)
    model.fit(x, y, epochs=EPOCHS, batch_size=EPOCH_BATCH, verbose=0, callbacks=callbacks)
    if run is not None:
        mlflow.end_run()
    return {
        "seconds": timer.ended - timer.started,
        "cpu_seconds": timer.cpu_ended - timer.cpu_started,
        "hook_seconds": hook_seconds[0],
        "writer_cpu_seconds": writer_cpu_seconds[0],
    }


def worker_epochs_paired(spec: dict) -> dict:
    """Alternate fits without tracking and with the callback in one process: none, callback, none..."""
    import keras
    import numpy as np

    from keras_mlflow_savedmodel import SavedModelMLflowCallback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(EPOCH_SAMPLES, 32)).astype("float32")
    y = rng.normal(size=(EPOCH_SAMPLES, 1)).astype("float32")
    model = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(x, y, epochs=1, batch_size=EPOCH_BATCH, verbose=0)
    seconds = {"none": [], "callback": []}
    for pair in range(spec["pairs"]):
        for config in ("none", "callback") if pair % 2 == 0 else ("callback", "none"):
            timer = _EpochTimer()
            callbacks = [timer]
            if config == "callback":
                store = os.path.join(spec["root"], "store")
                callbacks.insert(0, SavedModelMLflowCallback(store, save_keras_archive=False, verify=False))
            model.fit(x, y, epochs=EPOCHS, batch_size=EPOCH_BATCH, verbose=0, callbacks=callbacks)
            seconds[config].append(timer.ended - timer.started)
    return seconds


WORKERS = {
    "train_end": worker_train_end,
    "write": worker_write,
    "epochs": worker_epochs,
    "epochs_paired": worker_epochs_paired,
}


def run_worker(kind: str, spec: dict) -> dict:
    """Run one measurement in a fresh process and return its result."""
    with tempfile.TemporaryDirectory(prefix="kms-benchmark-") as root:
        spec = dict(spec, root=root)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPOSITORY)
        completed = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
        )
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"{kind} {spec} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")


def time_import(statement: str) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPOSITORY)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, env=env, capture_output=True)
    return time.perf_counter() - started


# The orchestrator.


def median_of(results, key):
    values = [result[key] for result in results if result.get(key) is not None]
    return statistics.median(values) if values else None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_train_end(sizes, repeats) -> dict:
    figures = {}
    for size in sizes:
        runs = {config: [] for config in TRAIN_END_CONFIGS}
        for repeat in range(repeats[size]):
            # Rotate the order so that no configuration always runs first.
            shift = repeat % len(TRAIN_END_CONFIGS)
            order = TRAIN_END_CONFIGS[shift:] + TRAIN_END_CONFIGS[:shift]
            for config in order:
                result = run_worker("train_end", {"size": size, "config": config})
                log(f"train end {size} {config}: {result['seconds']:.2f} s")
                runs[config].append(result)
        figures[size] = {config: {"runs": results} for config, results in runs.items()}
        for config, entry in figures[size].items():
            for key in ("seconds", "begin_and_end_seconds", "extra_peak_rss_bytes", "peak_disk_bytes", "temporary_disk_bytes", "saved_model_bytes",
                        "logged_folder_bytes", "graph_bytes", "weight_bytes"):
                entry[f"median_{key}"] = median_of(entry["runs"], key)
    return figures


def measure_write(sizes, repeats) -> dict:
    figures = {}
    for size in sizes:
        results = []
        for _ in range(repeats[size]):
            result = run_worker("write", {"size": size})
            log(f"write {size}: {result['write_seconds']:.2f} s, raw {result['raw_seconds']:.2f} s")
            results.append(result)
        figures[size] = {
            "runs": results,
            "median_write_seconds": median_of(results, "write_seconds"),
            "median_raw_seconds": median_of(results, "raw_seconds"),
            "bytes": results[-1]["bytes"],
            "weight_bytes": results[-1]["weight_bytes"],
            "signature_intact": all(result["signature_intact"] for result in results),
        }
    return figures


def measure_epochs(repeats: int) -> dict:
    runs = {config: [] for config in EPOCH_CONFIGS}
    for repeat in range(repeats):
        order = EPOCH_CONFIGS[repeat % 4 :] + EPOCH_CONFIGS[: repeat % 4]
        for config in order:
            result = run_worker("epochs", {"config": config})
            log(f"epochs {config}: {result['seconds']:.2f} s")
            runs[config].append(result)
    return {
        config: {
            "runs": results,
            "median_seconds": median_of(results, "seconds"),
            "median_cpu_seconds": median_of(results, "cpu_seconds"),
            "median_hook_seconds": median_of(results, "hook_seconds"),
            "median_writer_cpu_seconds": median_of(results, "writer_cpu_seconds"),
        }
        for config, results in runs.items()
    }


def measure_imports(repeats: int) -> dict:
    times = {name: [] for name in IMPORT_STATEMENTS}
    for _ in range(repeats):
        for name, statement in IMPORT_STATEMENTS.items():
            times[name].append(time_import(statement))
    log("imports: " + ", ".join(f"{name} {statistics.median(values):.2f} s" for name, values in times.items()))
    return {name: {"seconds": values, "median_seconds": statistics.median(values)} for name, values in times.items()}


def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            info["cpu_model"] = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None
            )
        info["memory_bytes"] = proc_meminfo_total()
    except OSError:
        pass
    versions = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf, keras, mlflow; print(tf.__version__, keras.__version__, mlflow.__version__)"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    ).stdout.split()
    info.update(dict(zip(("tensorflow", "keras", "mlflow"), versions)))
    info["load_average_at_start"] = os.getloadavg()
    return info


def proc_meminfo_total() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def summarize(results: dict) -> list:
    """Return the table rows: figure, case, value, target, and whether the target is met."""
    rows = []

    def add(figure, case, value, target=None, met=None, unit="x"):
        rows.append({"figure": figure, "case": case, "value": value, "unit": unit, "target": target, "met": met})

    for size, configs in results.get("train_end", {}).items():
        recipe = configs["recipe"]["median_seconds"]
        for config, baseline in SAME_FILES_RECIPE.items():
            value = ratio(configs[config]["median_seconds"], configs[baseline]["median_seconds"])
            target = "<= 1.05" if config != "callback_default" else None
            add("1 train end / recipe, same files", f"{size} {config} / {baseline}", value, target,
                None if target is None else value <= 1.05)
        for config in ("callback_archive", "callback_default"):
            add("1 train end / SavedModel-only recipe", f"{size} {config}",
                ratio(configs[config]["median_seconds"], recipe))
        for config, baseline in SAME_FILES_RECIPE.items():
            # The callback does some work at train begin (opening the store, importing what
            # MLmodel needs), so begin and end together are compared too.
            add("1 train begin + end / recipe's start_run + end, same files", f"{size} {config} / {baseline}",
                ratio(configs[config]["median_begin_and_end_seconds"], configs[baseline]["median_begin_and_end_seconds"]))
        for config in TRAIN_END_CONFIGS:
            entry = configs[config]
            extra = ratio(entry["median_extra_peak_rss_bytes"], entry["median_weight_bytes"])
            limited = config in ("callback_minimal", "callback_archive")
            add("3 extra peak RSS / weights", f"{size} {config}", extra,
                "<= 0.10" if limited else None, None if not limited or extra is None else extra <= 0.10)
            if config in SAME_FILES_RECIPE:
                baseline = configs[SAME_FILES_RECIPE[config]]
                added = None
                if entry["median_extra_peak_rss_bytes"] is not None and baseline["median_extra_peak_rss_bytes"] is not None:
                    added = entry["median_extra_peak_rss_bytes"] - baseline["median_extra_peak_rss_bytes"]
                add("3 extra peak RSS minus the same-files recipe's, / weights", f"{size} {config}",
                    ratio(added, entry["median_weight_bytes"]))
            add("3 peak disk written / weights", f"{size} {config}",
                ratio(entry["median_peak_disk_bytes"], entry["median_weight_bytes"]))
            add("3 peak temporary disk / weights", f"{size} {config}",
                ratio(entry["median_temporary_disk_bytes"], entry["median_weight_bytes"]))
        for config in ("recipe", "callback_minimal", "callback_archive"):
            entry = configs[config]
            value = ratio(entry["median_saved_model_bytes"], entry["median_weight_bytes"] + entry["median_graph_bytes"])
            target = "<= 1.05" if config == "callback_minimal" else None
            add("6 SavedModel / (weights + graph)", f"{size} {config}", value, target,
                None if target is None else value <= 1.05)
            add("6 logged folder / weights", f"{size} {config}",
                ratio(entry["median_logged_folder_bytes"], entry["median_weight_bytes"]))

    epochs = results.get("epochs")
    if epochs:
        none = epochs["none"]["median_seconds"]
        autolog = ratio(epochs["autolog"]["median_seconds"], none) - 1
        for config in EPOCH_CONFIGS[1:]:
            overhead = ratio(epochs[config]["median_seconds"], none) - 1
            met = overhead <= 0.02 and overhead < autolog if config == "callback" else None
            add("2 per-epoch overhead", config, overhead, "<= 0.02 and < autolog" if config == "callback" else None,
                met, unit="fraction")
            add("2 process CPU overhead", config,
                ratio(epochs[config]["median_cpu_seconds"], epochs["none"]["median_cpu_seconds"]) - 1, unit="fraction")
            hook = epochs[config]["median_hook_seconds"]
            if hook is not None:
                add("2 time inside on_epoch_end / fit", config, ratio(hook, epochs[config]["median_seconds"]),
                    unit="fraction")
            writer = epochs[config].get("median_writer_cpu_seconds")
            if hook is not None and writer is not None:
                own = ratio(hook + writer, epochs[config]["median_seconds"])
                add("2 own time: on_epoch_end + metric thread CPU / fit", config, own, "<= 0.02", own <= 0.02,
                    unit="fraction")

    paired = results.get("epochs_paired")
    if paired:
        overhead = ratio(paired["callback"]["median_seconds"], paired["none"]["median_seconds"]) - 1
        add("2 per-epoch overhead, one process", "callback vs none, alternating", overhead, "<= 0.02",
            overhead <= 0.02, unit="fraction")

    imports = results.get("imports")
    if imports:
        base = imports["tensorflow_mlflow"]["median_seconds"]
        added = ratio(imports["with_callback"]["median_seconds"], base) - 1
        add("4 import added / import tensorflow, mlflow", "from keras_mlflow_savedmodel import SavedModelMLflowCallback",
            added, "<= 0.05", added <= 0.05, unit="fraction")
        add("4 import time", "import keras_mlflow_savedmodel alone", imports["package_only"]["median_seconds"], unit="s")

    for size, entry in results.get("write", {}).items():
        write_speed = entry["bytes"] / entry["median_write_seconds"]
        raw_speed = entry["bytes"] / entry["median_raw_seconds"]
        add("5 SavedModel write speed / raw write speed", size, write_speed / raw_speed)
        add("5 SavedModel write speed", size, write_speed / 1e6, unit="MB/s")
        add("6 serving signature intact", size, entry["signature_intact"], "True", entry["signature_intact"], unit="")
    return rows


def print_table(rows) -> None:
    header = f"{'figure':<44} {'case':<46} {'value':>10}  {'target':<24} met"
    print(header)
    print("-" * len(header))
    for row in rows:
        value = row["value"]
        if isinstance(value, float):
            text = f"{value:.3f}"
        else:
            text = str(value)
        if row["unit"] and row["unit"] != "x":
            text += f" {row['unit']}" if row["unit"] != "fraction" else ""
        met = ""
        if row["met"] is not None:
            met = "yes" if row["met"] else "NO"
        print(f"{row['figure']:<44} {row['case']:<46} {text:>10}  {row['target'] or '':<24} {met}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=os.path.join(REPOSITORY, "benchmarks", "results.json"),
                        help="JSON file to write the results to (default: benchmarks/results.json).")
    parser.add_argument("--sizes", default=",".join(MODEL_SHAPES),
                        help=f"Model sizes, comma-separated ({', '.join(MODEL_SHAPES)}).")
    parser.add_argument("--repeats", type=int, default=None,
                        help="Repetitions of each configuration; default 5 for 1M, 3 for 25M, 1 for the 250M models.")
    parser.add_argument("--epoch-repeats", type=int, default=5, help="Repetitions of each 50-epoch fit.")
    parser.add_argument("--import-repeats", type=int, default=5, help="Repetitions of each import.")
    parser.add_argument("--only", default="train_end,write,epochs,imports",
                        help="Figures to measure, comma-separated: train_end, write, epochs, imports.")
    args = parser.parse_args(argv)

    if args.worker:
        result = WORKERS[args.worker](json.loads(args.spec))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    sizes = [size for size in args.sizes.split(",") if size]
    repeats = {size: args.repeats or DEFAULT_REPEATS[size] for size in sizes}
    only = set(args.only.split(","))
    started = time.perf_counter()
    results = {"machine": machine_info(), "command": " ".join(sys.argv), "repeats": repeats}
    if "imports" in only:
        results["imports"] = measure_imports(args.import_repeats)
    if "epochs" in only:
        results["epochs"] = measure_epochs(args.epoch_repeats)
        paired = run_worker("epochs_paired", {"pairs": args.epoch_repeats + 1})
        results["epochs_paired"] = {config: {"seconds": values, "median_seconds": statistics.median(values)}
                                    for config, values in paired.items()}
        log("epochs paired: " + ", ".join(f"{config} {entry['median_seconds']:.2f} s"
                                          for config, entry in results["epochs_paired"].items()))
    if "write" in only:
        results["write"] = measure_write(sizes, {size: min(repeats[size], 3) for size in sizes})
    if "train_end" in only:
        results["train_end"] = measure_train_end(sizes, repeats)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["total_seconds"] = time.perf_counter() - started
    results["table"] = summarize(results)
    print_table(results["table"])
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as output:
        json.dump(results, output, indent=2)
    print(f"\nWrote {args.output} in {results['total_seconds']:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
