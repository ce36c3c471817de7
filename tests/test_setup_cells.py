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


def setup_cell(url: str) -> str:
    return ("# Setup: on Colab/Kaggle install the book's helpers (locally, `make setup` installed them).\n"
            "try:\n"
            "    import helpers\n"
            "except ImportError:  # pragma: no cover\n"
            f'    %pip install -q "bloodcells-helpers @ git+{url}"\n'
            "    import helpers")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_first_code_cell_installs_from_the_configured_repository(nb):
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    assert "".join(cells[0]["source"]).strip() == setup_cell(repository_url())


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
