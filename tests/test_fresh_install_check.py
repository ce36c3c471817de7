"""The fresh-install check's comparison of a chapter run alone with its committed page (tools/fresh_install_check.py).

The check itself (``make fresh-install-check``) builds a venv and downloads packages, so it is not part of the
tests; what decides whether it passes — reading the glued values back and comparing them — is tested here.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("fresh_install_check", ROOT / "tools" / "fresh_install_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _notebook(path: Path, values: dict[str, str]) -> Path:
    outputs = [{"output_type": "display_data", "metadata": {"scrapbook": {"name": n, "mime_prefix": ""}},
                "data": {"application/papermill.record/text/plain": v}} for n, v in values.items()]
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "", "metadata": {},
                                           "outputs": outputs}], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def test_glued_values_are_read_back_and_compared(tmp_path):
    from helpers.book import glued_values

    tool = _tool()
    committed = glued_values(_notebook(tmp_path / "a.ipynb", {"acc": "0.9843495272253016", "n": "3067",
                                                               "best": "'transfer_mobilenetv2_tta'"}))
    assert committed == {"acc": "0.9843495272253016", "n": "3067", "best": "'transfer_mobilenetv2_tta'"}
    same = {"acc": "0.98434952722530161", "n": "3067", "best": "'transfer_mobilenetv2_tta'"}
    assert tool.glue_differences(committed, same) == []  # equal within 1e-9
    other = {"acc": "0.9801", "n": "3067", "extra": "1"}
    diffs = tool.glue_differences(committed, other)
    assert any(d.startswith("acc: committed") for d in diffs)
    assert "best: not glued by the fresh run" in diffs and "extra: glued only by the fresh run" in diffs
    assert tool.glue_differences({"t": "'a'"}, {"t": "'b'"}) == ["t: committed \"'a'\", fresh \"'b'\""]


def test_every_chapter_is_checked_and_each_transfer_chapter_gets_its_networks_official_file():
    from helpers.weights import FILE_NAMES

    tool = _tool()
    assert sorted(tool.CHAPTER_FAMILY) == ["04", "05", "06"]
    for family, name in tool.KERAS_FILES.items():
        assert name in FILE_NAMES[family], f"{name} is not a file the helpers find for {family}"
    chapters = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    src = (ROOT / "tools" / "fresh_install_check.py").read_text()
    default = src.split('ap.add_argument("--chapters", nargs="+", default=')[1].split(")")[0]
    assert sorted(json.loads(default)) == chapters, default  # the default list is every chapter of the book
