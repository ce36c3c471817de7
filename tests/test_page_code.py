"""The code a chapter shows is the library's code: one implementation, on the page and in ``helpers``.

A code cell whose first line is ``# helpers/<module>.py`` shows functions of that module. Each function it
defines must be the library's, compared as syntax trees (formatting and comments aside); the function's own
imports may stay off the page, which imports once at the top.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MARK = re.compile(r"^# helpers/(\w+)\.py\s*$")


def _defs(source: str) -> dict[str, ast.AST]:
    """Top-level functions and classes of ``source``, without the imports that open a function body."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            first = 1 if _docstring(node) else 0
            while len(node.body) > first + 1 and isinstance(node.body[first], (ast.Import, ast.ImportFrom)):
                node.body.pop(first)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = node
    return out


def _docstring(node) -> bool:
    return bool(node.body) and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)


def marked_cells(nb_path: Path) -> list[tuple[str, str]]:
    """``(module, code)`` of every cell marked as the library's code."""
    out = []
    for cell in nbformat.read(nb_path, as_version=4).cells:
        lines = cell.source.splitlines()
        if cell.cell_type == "code" and lines and MARK.match(lines[0]):
            out.append((MARK.match(lines[0]).group(1), cell.source))
    return out


def mismatches(module: str, code: str) -> list[str]:
    page = _defs(code)
    library = _defs((ROOT / "src" / "helpers" / f"{module}.py").read_text())
    if not page:
        return ["the cell is marked as library code but defines no function"]
    return [f"{name}: not in helpers/{module}.py" if name not in library
            else f"{name}: differs from helpers/{module}.py"
            for name, node in page.items() if name not in library or ast.dump(node) != ast.dump(library[name])]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_code_on_the_page_is_the_librarys(nb):
    problems = [f"{nb.name}: {p}" for module, code in marked_cells(nb) for p in mismatches(module, code)]
    assert not problems, "\n".join(problems)


def test_the_pipeline_is_on_chapter_2s_page():
    cells = marked_cells(ROOT / "notebooks" / "02_preprocessing_and_augmentation.ipynb")
    assert any(m == "pipeline" and "def make_dataset" in c for m, c in cells)


def test_a_changed_line_is_caught():
    code = (ROOT / "src" / "helpers" / "pipeline.py").read_text()
    start = code.index("def make_dataset(")
    func = code[start:code.index("\n\n\ndef ", start)]
    assert mismatches("pipeline", func) == []
    assert mismatches("pipeline", func.replace("deterministic=True", "deterministic=False")) == \
        ["make_dataset: differs from helpers/pipeline.py"]
    assert mismatches("pipeline", "def make_dataset2():\n    pass\n") == ["make_dataset2: not in helpers/pipeline.py"]
