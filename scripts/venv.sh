#!/usr/bin/env bash
# Create .venv in the repository and install the package with its test and demo extras into it.
# KERAS_MLFLOW_SAVEDMODEL_VENV and KERAS_MLFLOW_SAVEDMODEL_EXTRAS choose another folder and extras.
# Sourced by demo.sh and test.sh; reinstalls only when setup.cfg changed since the last install.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KERAS_MLFLOW_SAVEDMODEL_VENV:-$repo_root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.installed-from-setup.cfg"

if [ ! -x "$venv/bin/python" ]; then
    echo "Creating the virtual environment $venv (first run: installing TensorFlow and MLflow takes a few minutes)"
    "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || ! cmp -s "$repo_root/setup.cfg" "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$repo_root[${KERAS_MLFLOW_SAVEDMODEL_EXTRAS:-test,demo,legacy}]"
    cp "$repo_root/setup.cfg" "$stamp"
fi
