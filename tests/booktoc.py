"""The book's source folder and the pages of its ``_toc.yml`` (shared by test_book and test_site)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

ROOT = Path(os.environ.get("BLOODCELLS_BOOK_SOURCE") or Path(__file__).resolve().parents[1]).resolve()


def toc_pages(toc_file: Path = ROOT / "_toc.yml") -> list[str]:
    """Document names (no suffix) in _toc.yml, in reading order: root, parts, chapters, sections."""
    toc = yaml.safe_load(toc_file.read_text())
    out: list[str] = [str(toc["root"])]

    def walk(node) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "file" in node:
                out.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key, []))

    walk(toc)
    return [re.sub(r"\.(md|ipynb)$", "", p) for p in out]
