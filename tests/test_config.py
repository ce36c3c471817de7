"""Tests of helpers.config: run modes, folders, integer parameters."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers import config
from helpers.config import ConfigError, positive_int, resolve_mode


def test_resolve_mode_parameter_when_env_unset(monkeypatch):
    monkeypatch.delenv(config.MODE_ENV, raising=False)
    assert resolve_mode("book") == "book"
    assert resolve_mode(" Smoke ") == "smoke"
    assert resolve_mode(None) == "book"
    assert resolve_mode("") == "book"


def test_resolve_mode_env_overrides_parameter(monkeypatch):
    monkeypatch.setenv(config.MODE_ENV, "smoke")
    assert resolve_mode("book") == "smoke"
    monkeypatch.setenv(config.MODE_ENV, "BOOK")
    assert resolve_mode("smoke") == "book"


@pytest.mark.parametrize("bad", ["fast", "full", "smok", 1, 3.0, ["book"]])
def test_resolve_mode_invalid_parameter(monkeypatch, bad):
    monkeypatch.delenv(config.MODE_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"MODE=.* is not a run mode; set it to one of \('book', 'smoke'\)"):
        resolve_mode(bad)


def test_resolve_mode_invalid_env_names_the_variable(monkeypatch):
    monkeypatch.setenv(config.MODE_ENV, "turbo")
    with pytest.raises(ConfigError, match=r"\$BLOODCELLS_MODE='turbo' is not a run mode"):
        resolve_mode("book")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1)])
def test_positive_int_accepts(value):
    assert positive_int(value, "X") == int(value)
    assert type(positive_int(value, "X")) is int


@pytest.mark.parametrize("value", [0, -1, 2.5, 3.0, "10", True, False, None, [4]])
def test_positive_int_refuses(value):
    with pytest.raises(ConfigError, match=r"X must be a positive integer, got"):
        positive_int(value, "X")


def test_positive_int_none_allowed():
    assert positive_int(None, "MAX_PER_CLASS", allow_none=True) is None
    with pytest.raises(ConfigError, match="MAX_PER_CLASS must be a positive integer or None, got -2"):
        positive_int(-2, "MAX_PER_CLASS", allow_none=True)


def test_output_dir_from_parameter_env_and_default(tmp_path, monkeypatch):
    assert config.output_dir(tmp_path / "a") == (tmp_path / "a").resolve()
    assert (tmp_path / "a").is_dir()  # created on demand
    monkeypatch.setenv(config.OUTPUT_ENV, str(tmp_path / "b"))
    assert config.output_dir() == (tmp_path / "b").resolve()
    assert config.output_dir("") == (tmp_path / "b").resolve()  # empty parameter → environment


def test_output_dir_that_is_a_file(tmp_path):
    f = tmp_path / "outputs"
    f.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"exists but is a file\. Point BLOODCELLS_OUTPUT_DIR at a folder"):
        config.output_dir(f)
    assert f.read_text() == "not a folder"  # nothing lost


def test_results_dir_that_is_a_file(tmp_path, monkeypatch):
    f = tmp_path / "results.json"
    f.write_text("{}")
    monkeypatch.setenv(config.RESULTS_ENV, str(f))
    with pytest.raises(ConfigError, match="results directory .* is a file. Point BLOODCELLS_RESULTS_DIR"):
        config.results_dir()


def test_output_dir_below_a_file_cannot_be_created(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"Cannot create the output directory .*Point BLOODCELLS_OUTPUT_DIR at a "
                                          r"writable folder"):
        config.output_dir(f / "sub")


def test_output_dir_not_writable(tmp_path, monkeypatch):
    """A folder the user may not write to (simulated: permission bits do not stop root, who runs CI)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro and mode & os.W_OK
                        else real_access(p, mode, **kw))
    with pytest.raises(ConfigError, match="not writable"):
        config.output_dir(ro)


def test_weights_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(config.WEIGHTS_ENV, raising=False)
    assert config.weights_dir() is None
    monkeypatch.setenv(config.WEIGHTS_ENV, str(tmp_path))
    assert config.weights_dir() == tmp_path.resolve()


def test_project_root_and_splits_dir():
    root = config.project_root(Path(__file__).parent)
    assert (root / "_toc.yml").is_file()
    assert (root / "src" / "helpers").is_dir()
    assert (config.splits_dir() / "pbc_split.csv").is_file()


def test_data_dir_candidates_order(tmp_path, monkeypatch):
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "env"))
    assert config.data_dir_candidates(tmp_path / "param") == [("parameter DATA_DIR", tmp_path / "param")]
    assert config.data_dir_candidates() == [("$BLOODCELLS_DATA_DIR", tmp_path / "env")]
    monkeypatch.delenv(config.DATA_ENV)
    monkeypatch.setattr(config, "KAGGLE_INPUT", tmp_path / "no-kaggle")
    cands = config.data_dir_candidates()
    assert [s for s, _ in cands] == ["download cache"]
