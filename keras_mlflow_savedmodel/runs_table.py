"""The ``runs`` command's table: runs of a store with their final metrics and logged SavedModels."""

from __future__ import annotations

import datetime
from typing import Optional

from keras_mlflow_savedmodel.errors import InvalidArgumentError
from keras_mlflow_savedmodel.store import TrackingStore

SAVED_MODEL_FILE = "saved_model.pb"
# How deep below the run's artifact root a SavedModel folder is looked for ("model" is depth 1).
MAX_SEARCH_DEPTH = 3
COLUMNS = ("RUN ID", "NAME", "STATUS", "STARTED", "METRICS", "SAVEDMODEL")


def _client(store: TrackingStore):
    import mlflow

    return mlflow.MlflowClient(store.tracking_uri)


def choose_experiments(store: TrackingStore, name: Optional[str]) -> list:
    """Return the experiment named `name`, or every active experiment when `name` is None.

    Raises:
        InvalidArgumentError: No experiment is named `name`.
    """
    client = _client(store)
    if name is None:
        return list(client.search_experiments(order_by=["name ASC"]))
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        names = sorted(found.name for found in client.search_experiments())
        raise InvalidArgumentError(
            "--experiment",
            name,
            f"--experiment {name!r} is not an experiment of the store {store.display_uri}. "
            f"Its experiments: {', '.join(repr(found) for found in names) or 'none'}.",
        )
    return [experiment]


def find_saved_models(client, run_id: str, path: Optional[str] = None, depth: int = 0) -> list:
    """Return ``(artifact_path, size_bytes)`` of each folder in the run that holds ``saved_model.pb``."""
    entries = client.list_artifacts(run_id, path)
    if any(not entry.is_dir and entry.path.rsplit("/", 1)[-1] == SAVED_MODEL_FILE for entry in entries):
        return [(path, _folder_size(client, run_id, entries))]
    if depth >= MAX_SEARCH_DEPTH:
        return []
    found = []
    for entry in entries:
        if entry.is_dir:
            found += find_saved_models(client, run_id, entry.path, depth + 1)
    return found


def _folder_size(client, run_id: str, entries) -> int:
    total = 0
    for entry in entries:
        if entry.is_dir:
            total += _folder_size(client, run_id, client.list_artifacts(run_id, entry.path))
        else:
            total += entry.file_size or 0
    return total


def format_size(size_bytes: int) -> str:
    """Return a size as ``"812 B"``, ``"40.2 KB"`` or ``"3.1 MB"`` (powers of 1000)."""
    if size_bytes < 1000:
        return f"{size_bytes} B"
    if size_bytes < 1000**2:
        return f"{size_bytes / 1000:.1f} KB"
    return f"{size_bytes / 1000**2:.1f} MB"


def format_metrics(metrics: dict) -> str:
    """Return the final metric values as ``"loss=0.512 val_loss=0.6"``, sorted by name."""
    return " ".join(f"{key}={value:.4g}" for key, value in sorted(metrics.items())) or "-"


def format_start_time(milliseconds: Optional[int]) -> str:
    """Return a run's start time in local time, to the second."""
    if not milliseconds:
        return "-"
    started = datetime.datetime.fromtimestamp(milliseconds / 1000)
    return started.strftime("%Y-%m-%d %H:%M:%S")


def run_row(client, run) -> tuple:
    """Return the table cells of one run."""
    saved_models = find_saved_models(client, run.info.run_id)
    saved_model_cell = ", ".join(f"{path} ({format_size(size)})" for path, size in saved_models) or "none"
    return (
        run.info.run_id,
        run.info.run_name or "-",
        run.info.status,
        format_start_time(run.info.start_time),
        format_metrics(run.data.metrics),
        saved_model_cell,
    )


def format_table(rows: list) -> str:
    """Return `rows` under ``COLUMNS`` as left-aligned text columns; the last column is not padded."""
    table = [COLUMNS, *rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(COLUMNS) - 1)]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def format_experiment(store: TrackingStore, experiment, limit: int) -> str:
    """Return a heading and the table of the newest `limit` runs of `experiment`."""
    client = _client(store)
    runs = client.search_runs(
        [experiment.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"]
    )
    heading = f"Experiment {experiment.name!r} (id {experiment.experiment_id})"
    if not runs:
        return f"{heading}: no runs"
    if runs.token:
        heading += f", newest {limit} runs (pass --limit to show more)"
    else:
        heading += f", {len(runs)} run{'s' if len(runs) != 1 else ''}"
    return heading + "\n" + format_table([run_row(client, run) for run in runs])
