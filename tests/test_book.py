"""The book builds: ``jupyter-book build . -W --keep-going`` succeeds and every page of ``_toc.yml``
becomes an HTML page.

The build itself is the session fixture ``site_build`` of ``tests/conftest.py`` (one build, into a
temporary folder, shared with ``test_site.py``); it takes a minute or two, hence ``slow``. The source
tree is never written to. The first test needs no build and fails fast when ``_toc.yml`` names a
file that does not exist.
"""
from __future__ import annotations

import re

import pytest
from booktoc import ROOT
from booktoc import toc_pages as toc_docs

from helpers import CLASS_NAMES


def test_toc_lists_existing_files():
    docs = toc_docs()
    assert docs[0] == "book/intro"
    assert len(docs) == len(set(docs)), "a page is listed twice in _toc.yml"
    missing = [d for d in docs if not any((ROOT / f"{d}{ext}").is_file() for ext in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists pages without a source file: {missing}"
    for needed in ("book/running", "book/glossary", "book/bibliography"):
        assert needed in docs


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(site_build):
    warnings = [ln for ln in site_build.log.splitlines() if "WARNING" in ln or "ERROR" in ln]
    assert site_build.returncode == 0, (
        "jupyter-book build -W failed:\n" + "\n".join(warnings[:40]) + "\n--- log tail ---\n" + site_build.tail())


@pytest.mark.slow
def test_index_and_a_page_per_toc_entry(built_site):
    assert (built_site / "index.html").is_file()
    missing = [d for d in toc_docs() if not (built_site / f"{d}.html").is_file()]
    assert not missing, f"no HTML page for {missing} in {built_site}"


@pytest.mark.slow
def test_no_unrendered_roles(built_site):
    """Glue and citation roles that failed would show up as literal text in the page."""
    bad = {}
    for d in toc_docs():
        text = (built_site / f"{d}.html").read_text(encoding="utf-8")
        hits = re.findall(r"\{(?:glue:text|glue|cite|term|doc)\}", text)
        if hits:
            bad[d] = sorted(set(hits))
    assert not bad, f"unrendered MyST roles: {bad}"


@pytest.mark.slow
def test_glossary_defines_every_class(built_site):
    text = (built_site / "book" / "glossary.html").read_text(encoding="utf-8")
    terms = {t.strip().lower() for t in re.findall(r'<dt id="term-[^"]*">([^<]+)', text)}
    missing = [name for name in CLASS_NAMES.values() if name.lower() not in terms]
    assert not missing, f"the glossary lacks {missing}"


@pytest.mark.slow
def test_bibliography_lists_the_dataset(built_site):
    text = (built_site / "book" / "bibliography.html").read_text(encoding="utf-8")
    assert "Acevedo" in text and "Data in Brief" in text
