#!/usr/bin/env bash
# Run the test suite in .venv; extra arguments go to pytest (for example -k autolog).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$repo_root"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "$venv/bin/python" -m pytest "$@"
