#!/usr/bin/env bash
# Train a small CNN with a custom layer on scikit-learn's digits, log it to ./demo-store, reload it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$repo_root"
exec "$venv/bin/python" examples/digits_demo.py "$@"
