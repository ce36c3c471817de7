"""The predict command: top-3 output, folder scoring, bad files, exit codes."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic import make_synthetic_pbc

from helpers import CLASSES
from helpers.export import BundleError, load_bundle, read_sidecar, save_bundle
from helpers.predict import EXIT_NONE, EXIT_PARTIAL, main, read_rgb


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(CLASSES), activation="softmax")(x)
    model = keras.Model(inp, out, name="tiny")
    d = tmp_path_factory.mktemp("bundle") / "tiny"
    save_bundle(model, d, image_size=32, weights_source={"kind": "none (trained from scratch)"})
    return d


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = make_synthetic_pbc(tmp_path_factory.mktemp("syn"), n_per_class=2, size=40)
    return root / "PBC_dataset_normal_DIB"


def test_bundle_roundtrip(bundle):
    model, side = load_bundle(bundle)
    assert side["classes"] == list(CLASSES) and side["image_size"] == 32
    x = np.zeros((1, 32, 32, 3), "float32")
    assert model(x).shape == (1, len(CLASSES))


def test_bundle_errors(tmp_path):
    with pytest.raises(BundleError, match="not a model folder"):
        read_sidecar(tmp_path / "nope")
    (tmp_path / "model.keras").write_bytes(b"")
    with pytest.raises(BundleError, match="bundle.json"):
        read_sidecar(tmp_path)


def test_single_image_prints_top3(bundle, labelled, capsys):
    img = next((labelled / "monocyte").iterdir())
    assert main([str(bundle), str(img)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith(str(img)))
    assert "1. " in line and "2. " in line and "3. " in line and "4. " not in line


def test_labelled_folder_scored_and_csv(bundle, labelled, tmp_path, capsys):
    out_csv = tmp_path / "pred.csv"
    assert main([str(bundle), str(labelled), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "confusion matrix" in out
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 2 * len(CLASSES)
    assert {r["true"] for r in rows} == set(CLASSES)
    assert all(r["top1"] in CLASSES for r in rows)


def test_bad_files_reported_rest_processed(bundle, labelled, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("not an image")
    good = next((labelled / "platelet").iterdir())
    out_csv = tmp_path / "partial.csv"
    rc = main([str(bundle), str(bad), str(good), str(tmp_path / "missing.png"), "--csv", str(out_csv)])
    cap = capsys.readouterr()
    assert rc == EXIT_PARTIAL  # some inputs failed: documented exit code 1, the rest classified
    assert "empty.jpg" in cap.err and "notes.jpg" in cap.err and "missing.png" in cap.err
    assert "1 image(s) classified (" in cap.out and "3 could not be classified" in cap.out
    assert [r["path"] for r in csv.DictReader(out_csv.open())] == [str(good)]  # the CSV holds what was classified


def test_nothing_readable_exits_3(bundle, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"\x89PNG broken")
    assert main([str(bundle), str(tmp_path / "x.png")]) == EXIT_NONE


def test_a_file_beside_the_class_folders_is_classified_without_a_label(bundle, labelled, tmp_path, capsys):
    import shutil

    root = tmp_path / "lab"
    shutil.copytree(labelled, root)
    loose = root / "loose.jpg"
    shutil.copy(next((labelled / "platelet").iterdir()), loose)
    out_csv = tmp_path / "lab.csv"
    assert main([str(bundle), str(root), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out  # the labelled images are still scored
    rows = {r["path"]: r for r in csv.DictReader(out_csv.open())}
    assert rows[str(loose)]["true"] == "" and len(rows) == 2 * len(CLASSES) + 1


def test_an_empty_folder_is_one_error_line(bundle, labelled, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    good = next((labelled / "platelet").iterdir())
    assert main([str(bundle), str(tmp_path / "empty"), str(good)]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert len([l for l in err.splitlines() if "empty" in l and "no image files" in l]) == 1


def test_tiny_and_strip_images_are_answered_with_a_warning(bundle, tmp_path, capsys):
    Image.new("RGB", (1, 1), (120, 40, 160)).save(tmp_path / "dot.png")
    Image.new("RGB", (1000, 3), (120, 40, 160)).save(tmp_path / "strip.png")
    out_csv = tmp_path / "w.csv"
    assert main([str(bundle), str(tmp_path / "dot.png"), str(tmp_path / "strip.png"), "--csv", str(out_csv)]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out_csv.open())}
    assert "tiny image" in rows["dot.png"]["warning"]
    assert "extreme aspect ratio" in rows["strip.png"]["warning"]
    assert "2 with a warning" in capsys.readouterr().out


def test_the_command_prints_no_tensorflow_start_up_lines(bundle, labelled):
    import os
    import subprocess
    import sys

    good = next((labelled / "platelet").iterdir())
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "helpers.predict", str(bundle), str(good)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    noise = [l for l in proc.stderr.splitlines() if l.strip()]
    assert noise == [], noise


def test_bad_model_dir_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "nomodel"), str(tmp_path)]) == 2
    assert "not a model folder" in capsys.readouterr().err


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("RGB", "BMP"),
                                      ("RGB", "TIFF"), ("I;16", "PNG"), ("P", "GIF")])
def test_read_rgb_formats(tmp_path, mode, fmt):
    arr = (np.arange(30 * 20) % 251).reshape(20, 30).astype("uint8")
    if mode == "I;16":
        im = Image.fromarray(arr.astype("uint16") * 257, mode="I;16")
    elif mode in ("L", "P"):
        im = Image.fromarray(arr, mode="L").convert(mode)
    else:
        im = Image.fromarray(np.stack([arr] * 3, axis=2), mode="RGB").convert(mode)
    p = tmp_path / f"img.{fmt.lower()}"
    im.save(p, format=fmt)
    rgb = read_rgb(p)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    if mode in ("L", "I;16", "RGB") and fmt != "JPEG":
        assert np.abs(rgb[..., 0].astype(int) - arr.astype(int)).max() <= 1


@pytest.mark.skipif(not os.environ.get("BLOODCELLS_ORIGINALS_DIR"), reason="BLOODCELLS_ORIGINALS_DIR not set")
def test_real_originals(bundle, capsys):
    root = Path(os.environ["BLOODCELLS_ORIGINALS_DIR"]) / "PBC_dataset_normal_DIB"
    assert main([str(bundle), str(root / "basophil"), str(root / "ig")]) == 0
    out = capsys.readouterr().out
    assert "50 image(s) classified (0 with a warning), 0 could not be classified" in out


def test_bundle_predictions_roundtrip(tmp_path):
    import keras

    from helpers.export import load_predictions
    from helpers.predictions import Predictions

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.Flatten()(inp)))
    probs = np.full((3, len(CLASSES)), 1 / len(CLASSES), "float32")
    d = save_bundle(model, tmp_path / "m", image_size=8, weights_source="none",
                    predictions={"test": Predictions(["a.jpg", "b.jpg", "c.jpg"], [0, 1, 2], probs)})
    pred = load_predictions(d, "test")
    assert list(pred.paths) == ["a.jpg", "b.jpg", "c.jpg"] and pred.probs.shape == probs.shape
    with pytest.raises(BundleError, match="no saved val predictions"):
        load_predictions(d, "val")
    save_bundle(model, d, image_size=8, weights_source="none")  # overwrite in place: old files replaced
    with pytest.raises(BundleError):
        load_predictions(d, "test")


def _served_vs_trained(paths: list[Path], size: int) -> float:
    """Largest grey-level gap between what the predict command feeds the model and the training batch."""
    from helpers.pipeline import make_dataset
    from helpers.predict import read_rgb, to_model_input  # what classify() does to each file

    served = np.stack([to_model_input(read_rgb(p), size) for p in paths])
    x, _ = next(iter(make_dataset([str(p) for p in paths], np.zeros(len(paths), "int32"), size,
                                  batch_size=len(paths))))
    assert served.dtype == np.float32 and served.shape == tuple(x.shape)
    return float(np.abs(served - x.numpy()).max())


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "L"), ("JPEG", "L")])
def test_serving_path_equals_the_training_pipeline(tmp_path, fmt, mode):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:45, 0:60]
    img = np.stack([128 + 90 * np.sin(xx / 7 + c) * np.cos(yy / 5) for c in range(3)], axis=2)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype("uint8")  # smooth + noise, not square
    p = tmp_path / f"cell.{fmt.lower()}"
    Image.fromarray(img, "RGB").convert(mode).save(p, format=fmt)
    assert _served_vs_trained([p], 32) <= 1.0


@pytest.mark.skipif(not os.environ.get("BLOODCELLS_DATA_DIR"), reason="BLOODCELLS_DATA_DIR not set")
def test_serving_path_equals_the_training_pipeline_on_real_images():
    paths = sorted(Path(os.environ["BLOODCELLS_DATA_DIR"]).rglob("*.jpg"))[:4]
    if not paths:
        pytest.skip("no JPEG files under $BLOODCELLS_DATA_DIR")
    assert _served_vs_trained(paths, 64) <= 1.0


def test_a_served_bundle_answers_with_its_runtime(bundle, labelled, tmp_path, capsys):
    """A bundle whose sidecar names a serving runtime (``make bench`` writes one) is served by it, and
    gives the same answers as Keras; a missing runtime file is one error line and exit code 2."""
    import json
    import shutil

    from helpers import serve

    served = tmp_path / "served"
    shutil.copytree(bundle, served)
    side = json.loads((served / "bundle.json").read_text())
    side["serving"] = {"runtime": "onnx", "views": 1, "threads": 1}
    (served / "bundle.json").write_text(json.dumps(side))
    img = str(next((labelled / "neutrophil").iterdir()))
    assert main([str(served), img]) == 2
    assert "model.onnx is missing" in capsys.readouterr().err
    model, _ = load_bundle(bundle)
    (served / serve.RUNTIME_FILES["onnx"]).write_bytes(serve.to_onnx(model))
    assert main([str(served), img]) == 0
    out_served = capsys.readouterr().out
    assert "runtime ONNX Runtime" in out_served
    assert main([str(bundle), img]) == 0
    out_keras = capsys.readouterr().out
    assert "runtime Keras" in out_keras
    top = [next(ln for ln in o.splitlines() if ln.startswith(img)).split("  ")[0].rsplit(" ", 1)[0]
           for o in (out_served, out_keras)]  # "path: 1. class" without the probability's last digits
    assert top[0] == top[1] and "1. " in top[0]


def test_a_truncated_jpeg_never_reaches_tensorflow(tmp_path, monkeypatch):
    """TensorFlow's JPEG decoder logs its own error lines (``jpeg_mem.cc … Premature end of JPEG data``) to
    stderr beside the command's clear message; a JPEG cut short is recognised first and handed to Pillow."""
    import io

    from helpers import pipeline

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    whole, cut = tmp_path / "whole.jpg", tmp_path / "cut.jpg"
    whole.write_bytes(buf.getvalue())
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])
    calls = []
    real = pipeline.decode_rgb
    monkeypatch.setattr(pipeline, "decode_rgb", lambda data: calls.append(len(data)) or real(data))
    assert read_rgb(whole).shape == (64, 64, 3) and len(calls) == 1  # a whole JPEG: the training decoder
    with pytest.raises(ValueError, match="truncated"):
        read_rgb(cut)
    assert len(calls) == 1  # the cut one never went to TensorFlow
