"""docs/tutorial.md runs as written: its code block is executed here unchanged."""

import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


@pytest.mark.slow
def test_tutorial_code_runs_and_compacts(capsys):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    exec(compile(blocks[0], str(TUTORIAL), "exec"), {"__name__": "tutorial"})
    printed = capsys.readouterr().out
    assert "filters left: conv1" in printed and "faster" in printed
    assert "SSL cut:" in printed and "SSL fine-tune epoch  1/1" in printed
    assert "the same predictions on 2,000 of 2,000 images" in printed


def test_tutorial_has_no_training_loop_of_its_own():
    """It uses the engine: no loop over batches, no optimizer or backward of its own."""
    (block,) = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)
    for loop_part in ("data.batches", "backward()", "optim.SGD", "for epoch"):
        assert loop_part not in block
