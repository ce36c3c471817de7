"""Every chapter opens with the same setup cell, and its install address comes from one place.

The place is ``repository.url`` in ``_config.yml`` (the site's launch buttons use it too). On Colab and
Kaggle the cell installs the helpers from that repository with ``%pip``, keeping the platform's own
TensorFlow (the package depends on ``tensorflow``, which their GPU builds satisfy); locally, where
``make setup`` installed them, it does nothing. No data needed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def repository_url() -> str:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def package_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return next(ln.split('"')[1] for ln in text.splitlines() if ln.startswith("version = "))


def setup_cell(url: str, book_version: str) -> str:
    """The setup cell: installs the helpers of this version of the book (the tag ``v<version>``) unless the
    book's own package is installed at that version; any other module named ``helpers`` does not count."""
    return ("# Setup: on Colab or Kaggle, install the helpers of this version of the book.\n"
            "from importlib.metadata import PackageNotFoundError, version\n"
            "\n"
            f'BOOK_VERSION = "{book_version}"\n'
            f'REPO = "git+{url}"\n'
            "try:\n"
            '    installed = version("bloodcells-helpers")\n'
            "except PackageNotFoundError:  # a fresh Colab or Kaggle machine\n"
            "    installed = None\n"
            "if installed != BOOK_VERSION:\n"
            '    %pip install -q "bloodcells-helpers @ {REPO}@v{BOOK_VERSION}"\n'
            "import helpers  # before TensorFlow: it picks its CPU kernels, quiets its log")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_first_code_cell_installs_from_the_configured_repository(nb):
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    assert "".join(cells[0]["source"]).strip() == setup_cell(repository_url(), package_version())


def test_the_setup_cell_installs_the_tag_of_the_packages_version():
    from importlib.metadata import version

    cell = setup_cell(repository_url(), package_version())
    assert f'BOOK_VERSION = "{package_version()}"' in cell and "@v{BOOK_VERSION}" in cell
    assert version("bloodcells-helpers") == package_version()  # the installed package is this checkout's
    assert max(map(len, cell.splitlines())) <= 80  # no code line scrolls sideways on the page


def test_the_declared_minimum_versions_are_the_ones_the_code_needs():
    """Keras >= 3.8: chapter 2's colour augmentation uses keras.layers.RandomHue / RandomSaturation."""
    tomllib = pytest.importorskip("tomllib", reason="Python < 3.11 has no tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "keras>=3.8" in deps
    import keras

    assert hasattr(keras.layers, "RandomHue") and hasattr(keras.layers, "RandomSaturation")


def test_the_package_depends_on_tensorflow_not_the_cpu_build():
    tomllib = pytest.importorskip("tomllib", reason="Python < 3.11 has no tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [d.split(">")[0].split("=")[0].split(";")[0].strip() for d in deps]
    assert "tensorflow" in names and "tensorflow-cpu" not in names
    assert "keras-tuner" in names  # helpers.transfer imports it


def test_glue_is_silent_without_jupyter_book(monkeypatch, capsys):
    """On plain Colab (no myst_nb) glue prints nothing: no wall of `name = value` lines."""
    import builtins

    from helpers.book import glue

    real_import = builtins.__import__

    def no_myst(name, *a, **kw):
        if name.startswith("myst_nb"):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_myst)
    glue("some_value", 0.5)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_of_the_parameters_cell(nb, caplog):
    """``papermill -p NAME VALUE`` (and ``papermill --help-notebook``) know a parameter only if papermill can
    parse its line: a second ``=`` on it (e.g. in the comment) hides it, with an "Unable to parse" warning."""
    import ast

    import papermill

    cell = next(c for c in json.loads(nb.read_text())["cells"]
                if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = [t.id for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    with caplog.at_level("WARNING", logger="papermill"):
        found = papermill.inspect_notebook(str(nb))
    assert list(found) == assigned
    assert "Unable to parse" not in caplog.text


def test_the_package_names_the_repository_the_book_is_built_from():
    """The evaluation chapter downloads the results of this version from the repository the package names."""
    from importlib.metadata import metadata

    urls = dict(u.split(", ", 1) for u in metadata("bloodcells-helpers").get_all("Project-URL"))
    assert urls["Repository"] == repository_url()


def test_a_log_line_longer_than_the_page_is_wrapped_not_cut():
    import logging

    from helpers.book import PAGE_WIDTH, _PageFormatter

    fmt = _PageFormatter()
    words = "vgg19 features of train: (9883, 4, 4, 512), read from the cache (computed 2026-12-06 11:01), which"
    info = logging.LogRecord("helpers.x", logging.INFO, __file__, 1, words + " took 204.3 s", None, None)
    lines = fmt.format(info).splitlines()
    assert len(lines) == 2 and all(len(line) <= PAGE_WIDTH for line in lines)
    assert lines[1].startswith("  ") and " ".join(x.strip() for x in lines) == words + " took 204.3 s"
    warn = logging.LogRecord("helpers.x", logging.WARNING, __file__, 1, "short", None, None)
    assert fmt.format(warn) == "WARNING: short"
    path = "/a/" + "b" * 90  # a word longer than the page stays whole: it is never broken inside
    assert path in fmt.format(logging.LogRecord("h", logging.INFO, __file__, 1, f"file {path}", None, None))


def test_glue_all_glues_each_value_under_the_prefix(monkeypatch):
    from helpers import book

    seen = {}
    monkeypatch.setattr(book, "glue", lambda name, value, display=False: seen.__setitem__(name, value))
    book.glue_all("resnet50", {"p1_val": 0.9, "size": 64})
    assert seen == {"resnet50_p1_val": 0.9, "resnet50_size": 64}
