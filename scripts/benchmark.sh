#!/usr/bin/env bash
# Run the benchmarks of benchmarks/run.py in .venv; extra arguments go to it (for example --sizes 1M).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$repo_root"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "$venv/bin/python" benchmarks/run.py "$@"
