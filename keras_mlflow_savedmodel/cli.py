"""Command-line interface: ``keras-mlflow-savedmodel`` and ``python -m keras_mlflow_savedmodel``.

Every command resolves PATH_OR_URI with the same code as ``SavedModelMLflowCallback(PATH_OR_URI)``,
so it opens the store the callback logs to. Bad input exits with status 2 and one ``error:`` line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from keras_mlflow_savedmodel import ui_server, upload
from keras_mlflow_savedmodel.errors import KerasMlflowSavedModelError
from keras_mlflow_savedmodel.remote import is_http_uri, redact_secrets
from keras_mlflow_savedmodel.store import (
    TrackingStore,
    check_store_for_reading,
    require_existing_store,
    resolve_tracking_store,
)

PROG = "keras-mlflow-savedmodel"
STORE_SOURCE = "PATH_OR_URI"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_RUN_LIMIT = 50


class UsageError(KerasMlflowSavedModelError):
    """The command line asks for something that cannot be done with the given input."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: pass a whole number from 1 to 65535")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: pass a whole number of 1 or more")
    return value


def _add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "store",
        metavar=STORE_SOURCE,
        nargs="?",
        help="Store folder or tracking URI, as passed to SavedModelMLflowCallback. Omitted: "
        "MLFLOW_TRACKING_URI, then MLflow's default, as for tracking_uri=None.",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``keras-mlflow-savedmodel`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find, list and open the MLflow store that SavedModelMLflowCallback logs to.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    where = commands.add_parser(
        "where",
        help="Print the resolved tracking URI, the artifact location and the mlflow ui command.",
        description="Print the tracking URI and artifact location a store folder or URI resolves "
        "to, and the plain mlflow ui command that opens it. Starts nothing.",
    )
    _add_store_argument(where)

    ui = commands.add_parser(
        "ui",
        help="Start the MLflow UI on the store, with its artifacts browsable.",
        description="Start the MLflow UI (mlflow server) on the store and print its URL. Ctrl-C "
        "stops it.",
    )
    _add_store_argument(ui)
    ui.add_argument(
        "--host",
        default=ui_server.DEFAULT_HOST,
        help="Network interface the UI listens on (default: %(default)s, this machine only).",
    )
    ui.add_argument(
        "--port", type=_port, default=ui_server.DEFAULT_PORT, help="TCP port the UI listens on (default: %(default)s)."
    )
    ui.add_argument(
        "--workers",
        type=_positive_int,
        default=ui_server.DEFAULT_WORKERS,
        help="Number of server worker processes (default: %(default)s).",
    )

    runs = commands.add_parser(
        "runs",
        help="Print a table of runs: id, name, status, start time, final metrics, SavedModel.",
        description="Print the runs of the store, newest first: id, name, status, start time, "
        "final metric values, and the artifact path and size of each logged SavedModel.",
    )
    _add_store_argument(runs)
    runs.add_argument("--experiment", metavar="NAME", help="Show only the runs of this experiment (default: all).")
    runs.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_RUN_LIMIT,
        help="Maximum number of runs shown per experiment (default: %(default)s).",
    )
    upload.add_cli_command(commands)
    return parser


def main(argv=None) -> int:
    """Run the command line `argv` (default: ``sys.argv[1:]``) and return the exit status."""
    arguments = build_parser().parse_args(argv)
    from mlflow.exceptions import MlflowException

    store = None
    try:
        if arguments.command == "upload":
            return upload.run_cli_command(arguments)
        store = resolve_tracking_store(arguments.store, source=STORE_SOURCE)
        if arguments.command == "where":
            return _where(store)
        if arguments.command == "ui":
            return _ui(store, arguments)
        return _runs(store, arguments)
    except KerasMlflowSavedModelError as error:
        _print_error(error, store)
        return EXIT_BAD_INPUT
    except MlflowException as error:
        _print_error(error, store)
        return EXIT_FAILED


def _print_error(error: BaseException, store: Optional[TrackingStore]) -> None:
    # One line, so that the message reads as the command's answer and not as a traceback.
    message = " ".join(str(error).split())
    if store is not None:
        message = redact_secrets(message, store.tracking_uri)
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _where(store: TrackingStore) -> int:
    require_existing_store(store)
    print(f"tracking URI:   {store.display_uri}   (from {store.source})")
    if store.local_folder is not None:
        print(f"artifacts in:   {store.local_folder}")
    elif is_http_uri(store.tracking_uri):
        print("artifacts in:   chosen by the tracking server")
    else:
        print("artifacts in:   the artifact location of each experiment")
    if is_http_uri(store.tracking_uri):
        print(f"open it at:     {store.ui_command()}")
    else:
        print(f"open it with:   {store.ui_command()}")
    return EXIT_OK


def _ui(store: TrackingStore, arguments) -> int:
    if is_http_uri(store.tracking_uri):
        raise UsageError(
            f"{STORE_SOURCE} {store.display_uri!r} is a tracking server, which serves the MLflow "
            f"UI itself: open {store.display_uri} in a browser."
        )
    # No lock and nothing created, so that a store the user cannot write opens too, for browsing.
    check_store_for_reading(store)
    return ui_server.serve(store, arguments.host, arguments.port, arguments.workers)


def _runs(store: TrackingStore, arguments) -> int:
    from keras_mlflow_savedmodel import runs_table

    check_store_for_reading(store)
    experiments = runs_table.choose_experiments(store, arguments.experiment)
    for index, experiment in enumerate(experiments):
        if index:
            print()
        print(runs_table.format_experiment(store, experiment, arguments.limit))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
