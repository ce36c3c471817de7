"""Notebook conveniences: logging that shows skipped files, and ``glue`` for numbers in prose."""
from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

PAGE_WIDTH = 80
"""Characters a line of the page's output box shows without scrolling sideways."""


def page_fill(text: str, width: int = PAGE_WIDTH) -> str:
    """``text`` wrapped at spaces to the page's width, each line on its own, continuations indented."""
    import textwrap

    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False,
                                    break_on_hyphens=False) for line in text.splitlines() or [""])


class _PageFormatter(logging.Formatter):
    """An INFO line is the message alone; anything louder says what it is. A line longer than the page is
    wrapped at spaces, its continuation indented, so the output box never scrolls sideways."""

    def __init__(self, width: int = PAGE_WIDTH) -> None:
        super().__init__("%(levelname)s: %(message)s")
        self.width = width

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage() if record.levelno == logging.INFO else super().format(record)
        return page_fill(text, self.width)


def setup_logging(level: int = logging.INFO) -> None:
    """Show the helpers' log lines (skipped files, data source, weights used) in notebook output."""
    logger = logging.getLogger("helpers")
    if not any(getattr(h, "_bloodcells", False) for h in logger.handlers):
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(_PageFormatter())
        h._bloodcells = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.setLevel(level)
    logger.propagate = False


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's ``{glue}`` roles (myst-nb).

    Outside a Jupyter Book environment (plain Colab or Kaggle, without ``myst_nb``) it does nothing:
    the values are for the book's prose, and the notebook shows the same numbers in its tables.
    """
    value = _plain(value)
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=display)


def glue_all(prefix: str, values: Mapping[str, Any]) -> None:
    """Glue every value of ``values`` as ``<prefix>_<key>``: a chapter's numbers about one model in one call."""
    for key, value in values.items():
        glue(f"{prefix}_{key}", value)


def _plain(value: Any) -> Any:
    """numpy scalars → Python numbers, so that format specs like ``:,d`` work in the prose."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    return value


GLUE_PREFIX = "application/papermill.record/"
"""How papermill stores a value glued without display: its mimetypes carry this prefix."""


def glued_values(notebook: str | os.PathLike | dict) -> dict[str, str]:
    """``{name: text/plain}`` of every value an executed notebook (a path, or the notebook already read) glued,
    shown or not, read from its outputs: an output whose ``metadata.scrapbook.name`` names it."""
    out: dict[str, str] = {}
    if not isinstance(notebook, dict):
        with open(notebook, encoding="utf-8") as fh:
            notebook = json.load(fh)
    cells = notebook.get("cells", [])
    for cell in cells:
        for o in cell.get("outputs", []):
            name = ((o.get("metadata") or {}).get("scrapbook") or {}).get("name")
            data = {k.removeprefix(GLUE_PREFIX): v for k, v in (o.get("data") or {}).items()}
            text = data.get("text/plain")
            if name and text is not None:
                out[name] = "".join(text) if isinstance(text, list) else str(text)
    return out
