"""The page rules of the chapters written in the book's current style (issue #30): what a reader sees.

* code a reader sees fits the page's code box (≤ 80 characters a line: no sideways scrolling);
* no ``glue`` call and no record-keeping in a visible cell (they go into ``remove-cell`` cells);
* no cell prints more than 25 lines (epoch logs become curves or tables), and no printed line is wider than the
  code box (a log line that runs off the page is read by nobody).

Every chapter is on the list.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESTYLED = ["01_background_and_data", "02_preprocessing_and_augmentation", "03_baseline_cnn", "04_transfer_vgg19",
            "05_transfer_resnet50", "06_transfer_mobilenetv2", "07_label_efficiency",
            "08_evaluation"]
HIDDEN = {"remove-cell", "remove-input"}
WIDTH, MAX_LINES = 80, 25


def _visible_code(nb):
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and not HIDDEN & set(cell.metadata.get("tags", [])):
            yield i, cell


def problems(nb) -> list[str]:
    out = []
    for i, cell in _visible_code(nb):
        for line in cell.source.splitlines():
            if len(line) > WIDTH:
                out.append(f"cell {i}: a {len(line)}-character line: {line.strip()[:60]}")
            if line.lstrip().startswith("glue("):
                out.append(f"cell {i}: a visible glue call")
        printed = sum(len(o.get("text", "").splitlines()) for o in cell.get("outputs", [])
                      if o.get("output_type") == "stream")
        if printed > MAX_LINES:
            out.append(f"cell {i}: prints {printed} lines")
    for i, cell in enumerate(nb.cells):  # shown unless the cell or output is removed
        if cell.cell_type != "code" or {"remove-cell", "remove-output"} & set(cell.metadata.get("tags", [])):
            continue
        for o in cell.get("outputs", []):
            wide = [line for line in o.get("text", "").splitlines() if len(line) > WIDTH]
            if o.get("output_type") == "stream" and wide:
                out.append(f"cell {i}: prints a line of {len(wide[0])} characters: {wide[0][:60]}")
    return out


@pytest.mark.parametrize("name", RESTYLED)
def test_the_page_reads_as_a_page(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    found = problems(nb)
    assert not found, f"{name}: " + "; ".join(found)


def test_the_check_can_fail():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1  # " + "y" * 80), nbformat.v4.new_code_cell('glue("a", 1)')]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="line\n" * 30)]
    hidden = nbformat.v4.new_code_cell('glue("b", 2)  # ' + "z" * 90)
    hidden.metadata["tags"] = ["remove-cell"]
    hidden.outputs = [nbformat.v4.new_output("stream", name="stdout", text="w" * 90)]
    nb.cells.append(hidden)
    shown = nbformat.v4.new_code_cell("show()")  # its input hidden, its output on the page
    shown.metadata["tags"] = ["remove-input"]
    shown.outputs = [nbformat.v4.new_output("stream", name="stderr", text="short\n" + "v" * 81)]
    nb.cells.append(shown)
    found = problems(nb)
    assert len(found) == 4 and "cell 2" not in " ".join(found)
    assert "cell 3: prints a line of 81 characters" in " ".join(found)


def page_length(nb) -> tuple[int, int]:
    """Prose words and visible, non-blank code lines of a chapter, its setup and parameters cells aside (every
    chapter has the same ones)."""
    import re

    words = sum(len(re.findall(r"\w+", c.source)) for c in nb.cells if c.cell_type == "markdown")
    lines = 0
    for _, cell in _visible_code(nb):
        tags = set(cell.metadata.get("tags", []))
        if "parameters" in tags or cell.source.startswith("# Setup:"):
            continue
        lines += sum(1 for line in cell.source.splitlines() if line.strip())
    return words, lines


@pytest.mark.parametrize("name", ["05_transfer_resnet50", "06_transfer_mobilenetv2"])
def test_a_later_transfer_chapter_is_at_most_half_of_chapter_4(name):
    # chapter 4 teaches the recipe; 5 and 6 show only what differs for their architecture (issue #30.4)
    read = lambda n: page_length(nbformat.read(ROOT / "notebooks" / f"{n}.ipynb", as_version=4))  # noqa: E731
    (w4, c4), (w, c) = read("04_transfer_vgg19"), read(name)
    assert 2 * w <= w4 and 2 * c <= c4, f"{name}: {w} words, {c} code lines against chapter 4's {w4}, {c4}"


def test_page_length_counts_what_a_reader_reads():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Two words"), nbformat.v4.new_code_cell("# Setup: x\nimport a"),
                nbformat.v4.new_code_cell("a = 1\n\nb = 2"), nbformat.v4.new_code_cell("glue('a', a)")]
    nb.cells[3].metadata["tags"] = ["remove-cell"]
    assert page_length(nb) == (2, 2)
