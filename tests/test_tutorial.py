"""docs/tutorial.md runs as written: its code, as the notebook docs/tutorial.ipynb that is
generated from it (scripts/build_tutorial_notebook.py), is executed here on a kernel of this
Python, with the figures and prints a student would see."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def test_the_notebook_is_the_page():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_tutorial_notebook.py"),
                           "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_tutorial_notebook_runs_and_compacts():
    nbformat = pytest.importorskip("nbformat", reason="needs nbformat (pip install -e '.[dev]')")
    nbclient = pytest.importorskip("nbclient", reason="needs nbclient (pip install -e '.[dev]')")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    assert "filters left: conv1" in printed and "faster" in printed
    assert "SSL cut:" in printed and "SSL fine-tune epoch  1/1" in printed
    assert "the same predictions on 2,000 of 2,000 images" in printed


def test_tutorial_has_no_training_loop_of_its_own():
    """It uses the engine: no loop over batches, no optimizer or backward of its own."""
    (block,) = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)
    for loop_part in ("data.batches", "backward()", "optim.SGD", "for epoch"):
        assert loop_part not in block
