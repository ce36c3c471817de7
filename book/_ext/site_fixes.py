"""Small fixes to the HTML that jupyter-book 1.x writes, found by the browser test (tests/test_site.py).

* jupyter-book reads the sources twice, so sphinx-thebe's inline ``const THEBE_JS_URL = …`` script
  is added twice to every page and the second copy throws "Identifier 'THEBE_JS_URL' has already
  been declared": identical scripts are kept once.
* pydata-sphinx-theme logs "Got invalid theme mode: ." on a reader's first visit (empty
  localStorage) unless a default mode is configured: default to ``auto`` (follow the system).
* The chapters' code and printed output are written to 80 columns, but at the theme's code font size a code
  box of the article column holds about 77: ``static/bloodcells.css`` sets a size at which 80 fit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parent / "static"


def _script_key(js: Any) -> tuple[str, str]:
    """A script's identity: its file and attributes (inline body included), not its priority."""
    return str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items()))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def default_theme_mode(app, config) -> None:
    config.html_context.setdefault("default_mode", "auto")


def add_static(app, config) -> None:
    config.html_static_path.append(str(STATIC))


def setup(app) -> dict[str, Any]:
    app.connect("config-inited", default_theme_mode)
    app.connect("config-inited", add_static)
    app.add_css_file("bloodcells.css")
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
