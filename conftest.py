"""Session set-up shared by the unit tests (tests/) and the notebook smoke run (notebooks/, nbval).

* Notebooks run in the tiny ``smoke`` mode.
* Results, models and caches go to a temporary folder: tests never touch ``results/`` or a
  data folder.
* Without real data (``$BLOODCELLS_DATA_DIR`` unset or missing, e.g. on a reader's laptop), a
  small synthetic dataset in the PBC layout is generated and used instead.
* On pytest-xdist workers (``make test``: ``-n 2 --dist loadgroup``) each worker has its own scratch folder;
  the notebooks run in order on one worker (chapter 8 reads the models chapters 3-6 saved), the book build is
  shared by the book and browser tests, and a test module's fixtures stay on one worker.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))
_TMP = Path(tempfile.mkdtemp(prefix="bloodcells-tests-"))




def _real_data() -> Path | None:
    raw = os.environ.get("BLOODCELLS_DATA_DIR")
    return Path(raw) if raw and Path(raw).is_dir() else None


def pytest_configure(config) -> None:
    os.environ["BLOODCELLS_MODE"] = "smoke"
    os.environ["BLOODCELLS_RESULTS_DIR"] = str(_TMP / "results")
    os.environ["BLOODCELLS_OUTPUT_DIR"] = str(_TMP / "outputs")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _real_data() is None:
        from synthetic import make_synthetic_pbc

        os.environ["BLOODCELLS_DATA_DIR"] = str(make_synthetic_pbc(_TMP / "synthetic", n_per_class=16))
        os.environ["BLOODCELLS_SYNTHETIC_DATA"] = "1"


def pytest_report_header(config) -> list[str]:
    kind = "synthetic (no real data configured)" if os.environ.get("BLOODCELLS_SYNTHETIC_DATA") else "real"
    return [f"bloodcells: data {os.environ.get('BLOODCELLS_DATA_DIR')} [{kind}]; scratch {_TMP}"]


def _xdist_group(item) -> str:
    path = Path(str(item.path))
    if path.suffix == ".ipynb":
        return "notebooks"
    if path.name in ("test_book.py", "test_site.py"):
        return "site"
    return path.stem


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    """Group the tests for ``--dist loadgroup`` (see the module docstring); ignored without xdist."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))
