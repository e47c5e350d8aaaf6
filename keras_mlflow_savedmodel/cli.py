"""Command-line interface: ``keras-mlflow-savedmodel`` and ``python -m keras_mlflow_savedmodel``."""

from __future__ import annotations

import argparse
import sys

from keras_mlflow_savedmodel.errors import TrackingStoreError
from keras_mlflow_savedmodel.store import resolve_tracking_store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-mlflow-savedmodel",
        description="Find and open the MLflow store that SavedModelMLflowCallback logs to.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    where = commands.add_parser(
        "where",
        help="Print the tracking URI a path or URI resolves to and the mlflow ui command for it.",
    )
    where.add_argument("store", metavar="PATH_OR_URI", help="Store folder or tracking URI.")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        store = resolve_tracking_store(arguments.store, source="PATH_OR_URI")
    except TrackingStoreError as error:
        print(f"keras-mlflow-savedmodel: error: {error}", file=sys.stderr)
        return 2
    print(f"tracking URI:   {store.display_uri}")
    if store.local_folder is not None:
        print(f"artifacts in:   {store.local_folder}")
    print(f"open it with:   {store.ui_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
