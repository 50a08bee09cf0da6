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
    assert "conv" in printed  # the printed plan
