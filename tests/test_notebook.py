"""The quick-start notebook's code cells run top to bottom in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

NOTEBOOK = os.path.join(os.path.dirname(__file__), os.pardir, "notebooks", "quickstart.ipynb")


def test_quickstart_notebook_runs(tmp_path):
    with open(NOTEBOOK, encoding="utf-8") as file:
        notebook = json.load(file)
    code = "\n\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=600
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "largest difference" in result.stdout
    assert os.path.isfile(tmp_path / "notebook-store" / "mlflow.db")
