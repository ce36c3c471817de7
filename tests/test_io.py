"""Tests of helpers.io: atomic writes, digests, provenance."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import io as hio


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_bytes_creates_parents_and_replaces(tmp_path):
    p = tmp_path / "a" / "b" / "f.bin"
    hio.atomic_write_bytes(p, b"one")
    assert p.read_bytes() == b"one"
    hio.atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert _leftovers(p.parent) == []


def test_atomic_write_failure_mid_write_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    hio.atomic_write_text(p, "old")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hio.os, "fsync", boom)
    with pytest.raises(OSError, match="No space left"):
        hio.atomic_write_text(p, "new content that never lands")
    assert p.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_write_json_unserialisable_keeps_old_file(tmp_path):
    p = tmp_path / "r.json"
    hio.atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        hio.atomic_write_json(p, {"a": 2, "b": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert _leftovers(tmp_path) == []


def test_atomic_write_json_numpy_and_paths_sorted(tmp_path):
    p = hio.atomic_write_json(tmp_path / "x.json", {"z": np.int64(3), "a": np.float32(0.5),
                                                    "arr": np.arange(3), "p": Path("a/b")})
    text = p.read_text()
    assert json.loads(text) == {"z": 3, "a": 0.5, "arr": [0, 1, 2], "p": "a/b"}
    assert text.index('"a"') < text.index('"z"') and text.endswith("\n")


def test_file_digest_matches_hashlib(tmp_path):
    p = tmp_path / "f"
    data = os.urandom(3000)
    p.write_bytes(data)
    assert hio.file_digest(p) == hashlib.sha256(data).hexdigest()
    assert hio.file_digest(p, "md5", chunk=7) == hashlib.md5(data).hexdigest()


def test_text_digest_short_and_stable():
    assert hio.text_digest("abc") == hashlib.sha256(b"abc").hexdigest()[:16]
    assert len(hio.text_digest("abc", 8)) == 8
    assert hio.text_digest("abc") != hio.text_digest("abd")


def test_git_commit_inside_and_outside_git(tmp_path):
    here = hio.git_commit(Path(__file__).parent)
    assert here is None or (len(here.split("+")[0]) == 40)
    assert hio.git_commit(tmp_path) is None


def test_atomic_dir_replaces_only_on_success(tmp_path):
    from helpers.io import atomic_dir

    target = tmp_path / "bundle"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "a.txt").write_text("2")
            raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    with atomic_dir(target) as d:
        (d / "b.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
