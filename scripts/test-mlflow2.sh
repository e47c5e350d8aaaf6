#!/usr/bin/env bash
# Run the tests against MLflow 2 (the last MLflow 2 release and SQLAlchemy < 2.1) in .venv-mlflow2.
# Extra arguments go to pytest; without any, the whole suite runs.
set -euo pipefail
export KERAS_MLFLOW_SAVEDMODEL_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-mlflow2"
export KERAS_MLFLOW_SAVEDMODEL_EXTRAS="test,demo,legacy,mlflow2"
exec bash "$(dirname "${BASH_SOURCE[0]}")/test.sh" "$@"
