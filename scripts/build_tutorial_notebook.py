"""Write docs/tutorial.ipynb from docs/tutorial.md, so that the two never drift apart: the
page's prose becomes Markdown cells, its code one code cell per numbered step ("# 1. ...").
The notebook is stored unexecuted; tests/test_tutorial.py runs it on a kernel of this venv
and checks that it is what this script writes.

    python scripts/build_tutorial_notebook.py          # rewrite docs/tutorial.ipynb
    python scripts/build_tutorial_notebook.py --check  # exit 1 when it is out of date
"""

import argparse
import re
import sys
from pathlib import Path

import nbformat

DOCS = Path(__file__).resolve().parents[1] / "docs"


def notebook_of(markdown):
    """The nbformat notebook of the tutorial page's text."""
    before, code, after = re.split(r"```python\n(.*?)```\n", markdown, maxsplit=1, flags=re.S)
    steps = re.split(r"\n(?=# \d+\. )", code.strip("\n"))
    cells = [nbformat.v4.new_markdown_cell(before.strip())]
    cells += [nbformat.v4.new_code_cell(step.strip("\n")) for step in steps]
    cells.append(nbformat.v4.new_markdown_cell(after.strip()))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"  # stable ids: the file only changes with the page
    return notebook


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python scripts/build_tutorial_notebook.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only say whether docs/tutorial.ipynb is up to date")
    args = parser.parse_args(argv)
    text = nbformat.writes(notebook_of((DOCS / "tutorial.md").read_text()))
    target = DOCS / "tutorial.ipynb"
    if args.check:
        if not target.exists() or target.read_text() != text:
            sys.exit("docs/tutorial.ipynb is out of date: python scripts/build_tutorial_notebook.py")
        return
    target.write_text(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
