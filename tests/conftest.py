"""Fixtures shared by the book tests (test_book.py, test_site.py).

The website is built ONCE per test session (``site_build``), into a temporary folder, exactly as
``make site`` builds it (warnings are errors, but the build keeps going so the HTML exists to be
inspected). The source tree is not written to.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# The book's source folder; $BLOODCELLS_BOOK_SOURCE points the book tests at another copy (used to
# try the tests themselves on a scratch book).
ROOT = Path(os.environ.get("BLOODCELLS_BOOK_SOURCE") or Path(__file__).resolve().parents[1]).resolve()


@dataclass(frozen=True)
class SiteBuild:
    """The outcome of one ``jupyter-book build`` of the book."""

    html: Path         # the html folder (<out>/_build/html)
    returncode: int    # 0: built without a warning
    log: str           # stdout + stderr of the build

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.splitlines()[-n:])


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        pytest.skip("jupyter-book is not installed (run `make setup`)")
    return found


@pytest.fixture(scope="session")
def site_build(tmp_path_factory) -> SiteBuild:
    """Build the book once (``jupyter-book build . -W --keep-going``) into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    cmd = [_jupyter_book(), "build", str(ROOT), "--path-output", str(out), "--warningiserror", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    return SiteBuild(html=out / "_build" / "html", returncode=proc.returncode, log=proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def built_site(site_build: SiteBuild) -> Path:
    """The html folder of the session's book build (fails the test when no HTML was produced)."""
    if not (site_build.html / "index.html").exists():
        pytest.fail(f"the book build produced no {site_build.html / 'index.html'}; build log:\n{site_build.tail()}")
    return site_build.html
