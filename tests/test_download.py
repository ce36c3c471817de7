"""helpers.download against generated files served on 127.0.0.1 (the real hosts are never contacted).

A good zip (nested, with macOS junk), a wrong checksum, a truncated file, a connection that drops
mid-file and a zip missing a class: each has one clear outcome and leaves nothing half-written.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from localserver import LocalServer

from helpers import CLASSES
from helpers import download as dl

COUNTS = {"basophil": 3, "eosinophil": 2, "erythroblast": 1, "ig": 2, "lymphocyte": 1, "monocyte": 1,
          "neutrophil": 2, "platelet": 1}


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 100, 150)).save(buf, "JPEG")
    return buf.getvalue()


def make_zip(counts=COUNTS, junk: bool = True) -> bytes:
    buf, img = io.BytesIO(), _jpeg()
    with zipfile.ZipFile(buf, "w") as zf:
        for cls, n in counts.items():
            for i in range(n):
                zf.writestr(f"PBC_dataset_normal_DIB/PBC_dataset_normal_DIB/{cls}/{cls[:2].upper()}_{i}.jpg", img)
            if junk:
                zf.writestr(f"__MACOSX/PBC_dataset_normal_DIB/{cls}/._{cls}_0.jpg", b"junk")
                zf.writestr(f"PBC_dataset_normal_DIB/PBC_dataset_normal_DIB/{cls}/.DS_Store", b"junk")
    return buf.getvalue()


@pytest.fixture()
def server():
    s = LocalServer()
    yield s
    s.close()


def _left(dest: Path) -> list[str]:
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) if dest.exists() else []


def test_good_download_is_verified_unpacked_without_junk_and_cached(server, tmp_path):
    body = make_zip()
    server.files["/pbc.zip"] = body
    root, summary = dl.fetch_pbc(tmp_path, url=server.url + "/pbc.zip", expected=COUNTS, progress=False)
    assert dl.count_images(root) == COUNTS
    assert summary["zip_sha256"] == hashlib.sha256(body).hexdigest()
    assert summary["n_images"] == sum(COUNTS.values())
    assert not list(tmp_path.rglob("__MACOSX")) and not list(tmp_path.rglob(".DS_Store"))
    assert not (tmp_path / dl.PBC_ZIP).exists()  # the verified folder is the cache, not the zip
    n = len(server.hits)
    root2, summary2 = dl.fetch_pbc(tmp_path, url=server.url + "/pbc.zip", expected=COUNTS, progress=False)
    assert (root2, summary2["zip_sha256"]) == (root, summary["zip_sha256"]) and len(server.hits) == n


def test_a_given_checksum_is_checked(server, tmp_path):
    server.files["/pbc.zip"] = make_zip()
    with pytest.raises(dl.DownloadError, match="checksum"):
        dl.fetch_pbc(tmp_path, url=server.url + "/pbc.zip", sha256="0" * 64, expected=COUNTS, progress=False)
    assert _left(tmp_path) == []


def test_a_truncated_file_is_refused_and_removed(server, tmp_path):
    body = make_zip()
    server.files["/pbc.zip"] = body[: len(body) // 2]
    with pytest.raises(dl.DownloadError, match="incomplete or corrupt|corrupt"):
        dl.fetch_pbc(tmp_path, url=server.url + "/pbc.zip", expected=COUNTS, progress=False)
    assert _left(tmp_path) == []


def test_an_interrupted_download_leaves_nothing(server, tmp_path):
    body = make_zip()
    server.files["/pbc.zip"] = body
    server.drop["/pbc.zip"] = len(body) // 3
    with pytest.raises(dl.DownloadError, match="failed"):
        dl.fetch_pbc(tmp_path, url=server.url + "/pbc.zip", expected=COUNTS, progress=False)
    assert _left(tmp_path) == []


def test_a_zip_missing_a_class_is_refused(server, tmp_path):
    server.files["/pbc.zip"] = make_zip({k: v for k, v in COUNTS.items() if k != "monocyte"})
    with pytest.raises(dl.DownloadError, match="monocyte"):
        dl.fetch_pbc(tmp_path, url=server.url + "/pbc.zip", expected=COUNTS, progress=False)
    assert _left(tmp_path) == []


def test_wrong_counts_are_refused(server, tmp_path):
    server.files["/pbc.zip"] = make_zip({**COUNTS, "platelet": 2})
    with pytest.raises(dl.DownloadError, match="platelet: 2 instead of 1"):
        dl.fetch_pbc(tmp_path, url=server.url + "/pbc.zip", expected=COUNTS, progress=False)
    assert _left(tmp_path) == []


def test_the_official_counts_sum_to_the_release():
    assert sum(dl.PBC_COUNTS.values()) == 17092
    assert sum(dl.BLOODMNIST_SPLIT.values()) == 17092


def test_an_entry_outside_the_folder_is_refused(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.jpg", b"x")
    server.files["/pbc.zip"] = buf.getvalue()
    with pytest.raises(dl.DownloadError, match="outside"):
        dl.fetch_pbc(tmp_path / "d", url=server.url + "/pbc.zip", expected=COUNTS, progress=False)
    assert not (tmp_path / "evil.jpg").exists()


def _npz(sizes=(5, 2, 3), hw=8) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 8, (n, 1))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def test_bloodmnist_download_is_md5_checked_and_loads(server, tmp_path, monkeypatch):
    body = _npz()
    server.files["/bloodmnist_64.npz"] = body
    monkeypatch.setitem(dl.BLOODMNIST_MD5, 64, hashlib.md5(body).hexdigest())
    path = dl.fetch_bloodmnist(64, tmp_path, url=server.url + "/bloodmnist_64.npz", progress=False)
    splits = dl.load_bloodmnist(path, expected={"train": 5, "val": 2, "test": 3})
    assert {k: v[0].shape for k, v in splits.items()} == {"train": (5, 8, 8, 3), "val": (2, 8, 8, 3),
                                                            "test": (3, 8, 8, 3)}
    assert splits["train"][1].ndim == 1
    with pytest.raises(dl.DownloadError, match="official split"):
        dl.load_bloodmnist(path)  # the generated file is not the official 11,959 / 1,712 / 3,421


def test_bloodmnist_with_a_wrong_md5_is_refused(server, tmp_path):
    server.files["/bloodmnist_64.npz"] = _npz()
    with pytest.raises(dl.DownloadError, match="checksum"):
        dl.fetch_bloodmnist(64, tmp_path, url=server.url + "/bloodmnist_64.npz", progress=False)
    assert _left(tmp_path) == []


def test_bloodmnist_bad_files_are_clear_errors(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(dl.DownloadError, match="readable"):
        dl.load_bloodmnist(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", train_images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(dl.DownloadError, match="lacks"):
        dl.load_bloodmnist(tmp_path / "y.npz")
    with pytest.raises(ValueError, match="sizes"):
        dl.fetch_bloodmnist(32, tmp_path)


def test_locate_data_downloads_when_nothing_is_configured_and_records_the_zip(server, tmp_path, monkeypatch):
    """The chapters' own path: no data configured → the zip is fetched, verified and recorded in provenance."""
    from helpers import config, data

    body = make_zip()
    server.files["/pbc.zip"] = body
    monkeypatch.setattr(dl, "PBC_COUNTS", COUNTS)
    monkeypatch.delenv("BLOODCELLS_DATA_DIR", raising=False)
    monkeypatch.setenv(dl.PBC_URL_ENV, server.url + "/pbc.zip")
    monkeypatch.setattr(config, "KAGGLE_INPUT", tmp_path / "none")
    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path / "out"))
    root = data.locate_data()
    assert root.is_relative_to(tmp_path / "out" / "data") and dl.count_images(root) == COUNTS
    prov = data._download_provenance(root)
    assert prov["download"]["zip_sha256"] == hashlib.sha256(body).hexdigest()
    assert data.locate_data() == root and len(server.hits) == 1  # cached: downloaded once


# ------------------------------------------------------------------------------------------------
# BloodMNIST as class folders with its official split
# ------------------------------------------------------------------------------------------------
SMALL = {"train": 12, "val": 4, "test": 6}


def _small_npz(duplicates: bool = True) -> bytes:
    """A BloodMNIST-layout file of distinct images; with ``duplicates``: train[0] repeats test[0] (same label),
    and val[1] repeats train[1] under another label."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in SMALL.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 8).reshape(-1, 1)
    if duplicates:
        arrays["train_images"][0] = arrays["test_images"][0]
        arrays["train_labels"][0] = arrays["test_labels"][0]
        arrays["val_images"][1] = arrays["train_images"][1]
        arrays["val_labels"][1] = (arrays["train_labels"][1] + 1) % 8
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _serve_small(server, monkeypatch, body: bytes) -> str:
    server.files["/bloodmnist_64.npz"] = body
    monkeypatch.setitem(dl.BLOODMNIST_MD5, 64, hashlib.md5(body).hexdigest())
    for split, n in SMALL.items():  # the default `expected` is this dict: the small file is "official" here
        monkeypatch.setitem(dl.BLOODMNIST_SPLIT, split, n)
    return server.url + "/bloodmnist_64.npz"


def test_bloodmnist_folders_keep_the_official_test_split_and_no_duplicate_crosses(server, tmp_path, monkeypatch):
    from helpers.split import EXCLUDED, load_manifest

    url = _serve_small(server, monkeypatch, _small_npz())
    root, manifest = dl.bloodmnist_folders(64, tmp_path, url=url, progress=False)
    m = load_manifest(manifest).set_index("path")
    assert sorted(p.name for p in root.iterdir()) == sorted(CLASSES)
    assert len(m) == sum(SMALL.values()) and all((root / p).is_file() for p in m.index)
    assert (m["split"] == "test").sum() == SMALL["test"]  # the test split stays the official one
    assert m.loc[f"{CLASSES[0]}/train-00000.png", "split"] == EXCLUDED  # its copy is in test
    mixed = [f"{CLASSES[1]}/train-00001.png", f"{CLASSES[2]}/val-00001.png"]
    assert (m.loc[mixed, "split"] == EXCLUDED).all()  # one image, two labels: both out
    summary = dl.read_complete(root.parent)
    assert summary["excluded_crossing_duplicates"] == 1 and summary["excluded_mixed_label"] == 2
    assert summary["counts"] == {"train": 10, "val": 3, "test": 6}
    hits, stamp = len(server.hits), manifest.stat().st_mtime_ns
    assert dl.bloodmnist_folders(64, tmp_path, url=url, progress=False) == (root, manifest)
    assert len(server.hits) == hits and manifest.stat().st_mtime_ns == stamp  # cached: not downloaded, not rewritten
    other = _small_npz(duplicates=False)  # another file at the same address: the folders are written anew
    server.files["/bloodmnist_64.npz"] = other
    monkeypatch.setitem(dl.BLOODMNIST_MD5, 64, hashlib.md5(other).hexdigest())
    (tmp_path / "bloodmnist_64.npz").unlink()
    dl.bloodmnist_folders(64, tmp_path, url=url, progress=False)
    assert dl.read_complete(root.parent)["excluded_crossing_duplicates"] == 0


def test_load_dataset_bloodmnist_end_to_end(server, tmp_path, monkeypatch):
    from helpers.data import load_dataset

    url = _serve_small(server, monkeypatch, _small_npz(duplicates=False))
    monkeypatch.setenv(dl.BLOODMNIST_URL_ENV, url.replace("_64.npz", "{suffix}.npz"))
    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path / "out"))
    data = load_dataset("bloodmnist", None, image_size=48, progress=False)  # 48 px → the 64-px release
    assert data.dataset == "bloodmnist" and data.classes == CLASSES
    assert {s: len(data.paths(s)) for s in ("train", "val", "test")} == SMALL
    assert data.provenance()["dataset"] == "bloodmnist" and data.manifest_path.name == dl.BLOODMNIST_MANIFEST
    labels = data.labels("test")
    assert list(labels) == list(np.arange(SMALL["test"]) % 8)  # BloodMNIST's label i is CLASSES[i]


def test_bloodmnist_from_data_dir_is_checked_and_only_read(tmp_path, monkeypatch):
    from helpers.config import ConfigError
    from helpers.data import DataNotFoundError, load_dataset

    body = _small_npz(duplicates=False)
    for split, n in SMALL.items():
        monkeypatch.setitem(dl.BLOODMNIST_SPLIT, split, n)
    given = tmp_path / "mine"
    given.mkdir()
    (given / "bloodmnist_64.npz").write_bytes(body)
    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path / "out"))
    with pytest.raises(dl.DownloadError, match="MD5"):
        load_dataset("bloodmnist", given, image_size=64, progress=False)
    monkeypatch.setitem(dl.BLOODMNIST_MD5, 64, hashlib.md5(body).hexdigest())
    data = load_dataset("bloodmnist", given, image_size=64, progress=False)
    assert len(data.files) == sum(SMALL.values())
    assert sorted(p.name for p in given.iterdir()) == ["bloodmnist_64.npz"]  # nothing written beside it
    with pytest.raises(DataNotFoundError, match="bloodmnist_128.npz"):
        load_dataset("bloodmnist", given, image_size=96, progress=False)
    with pytest.raises(ConfigError, match="DATASET"):
        load_dataset("medmnist", given)


def test_bloodmnist_release_for_an_image_size():
    assert [dl.bloodmnist_size_for(s) for s in (28, 32, 64, 96, 128, 160, 224, 300)] == \
        [28, 64, 64, 128, 128, 224, 224, 224]
