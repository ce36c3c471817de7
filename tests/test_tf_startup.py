"""Importing the helpers switches oneDNN's kernels on (unless the user chose) and keeps TensorFlow's C++
start-up notice out of the output; errors of the import itself still reach the user."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each case starts a Python that imports TensorFlow


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                          timeout=300)


def test_onednn_on_and_no_startup_lines():
    r = _run("import helpers, os; import tensorflow as tf; tf.ones((2, 2)); print(os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    assert "oneDNN" not in r.stderr and "absl::InitializeLog" not in r.stderr, r.stderr


def test_the_users_choice_wins():
    r = _run("import helpers, os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])", TF_ENABLE_ONEDNN_OPTS="0")
    assert r.stdout.strip() == "0"


def test_without_the_helpers_tensorflow_prints_its_notice():
    """The check above can fail: without the hook the notice is there (oneDNN on, logging level 2)."""
    r = _run("import tensorflow", TF_ENABLE_ONEDNN_OPTS="1", TF_CPP_MIN_LOG_LEVEL="2")
    assert "oneDNN custom operations are on" in r.stderr


def test_python_errors_after_the_import_are_not_swallowed():
    r = _run("import helpers, sys; import tensorflow; sys.stderr.write('still here'); raise SystemExit(3)")
    assert r.returncode == 3 and "still here" in r.stderr
