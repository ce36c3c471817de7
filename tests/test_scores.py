"""helpers.scores: the scores a training run saves for the evaluation chapter (no model needed to read them)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

from synthetic import make_synthetic_pbc  # noqa: E402

from helpers import CLASSES  # noqa: E402
from helpers.data import load_split  # noqa: E402
from helpers.explain import logits  # noqa: E402
from helpers.pipeline import load_images  # noqa: E402
from helpers.predictions import predict_split  # noqa: E402
from helpers.runs import FROM_SCRATCH, save_run  # noqa: E402
from helpers.scores import ScoresError, load_all, load_scores  # noqa: E402
from helpers.tta import dihedral, tta_model  # noqa: E402

SIZE = 16
VOC = ("<annotation><filename>{name}.jpg</filename><size><width>64</width><height>48</height></size>"
       "{objects}</annotation>")
OBJ = "<object><name>WBC</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_synthetic_pbc(tmp_path_factory.mktemp("pbc"), n_per_class=12)
    return load_split(root, progress=False)


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    return keras.Model(inp, keras.layers.Dense(len(CLASSES), activation="softmax")(x), name="tiny")


def _bccd(tmp_path):
    root = tmp_path / "BCCD"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    rng = np.random.default_rng(0)
    for i, boxes in enumerate([[(10, 10, 40, 30)], [(5, 5, 30, 40), (30, 8, 60, 44)]]):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"im{i}.jpg")
        (root / "Annotations" / f"im{i}.xml").write_text(
            VOC.format(name=f"im{i}", objects="".join(OBJ.format(*b) for b in boxes)))
    return root


def _save(model, data, tmp_path, name="tiny_run"):
    preds = {s: predict_split(model, data, s, SIZE) for s in ("val", "test")}
    run = save_run(model, name, data, preds, image_size=SIZE, epochs=1, train_seconds=1.0,
                   weights_source=dict(FROM_SCRATCH), seed=1, mode="book", results_directory=tmp_path / "res",
                   models_directory=tmp_path / "models")
    return run, preds


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_scores_round_trip_with_logits_and_bccd(data, tmp_path, monkeypatch):
    monkeypatch.setenv("BLOODCELLS_BCCD_DIR", str(_bccd(tmp_path)))
    run, preds = _save(_model(), data, tmp_path)
    meta = json.loads(run.record_path.read_text())["scores"]
    assert meta["file"] == "scores/tiny_run.npz" and meta["bccd_crops"] == 3 and meta["logits"] is True
    s = load_scores(run.record, tmp_path / "res")
    assert s.image_size == SIZE and s.bccd_ids == ("im0.jpg#0", "im1.jpg#0", "im1.jpg#1")
    for split in ("val", "test"):
        q, p = s.splits[split], preds[split]
        np.testing.assert_array_equal(q.y_true, p.y_true)
        np.testing.assert_array_equal(q.probs, p.probs)
        assert all(not a.startswith("/") and a.split("/")[0] in CLASSES for a in q.paths)  # no machine path
        assert [a.split("/")[-1] for a in q.paths] == [a.split("/")[-1] for a in p.paths]
        np.testing.assert_allclose(_softmax(s.logits[split]), p.probs, atol=1e-5)  # the model's own logits
    assert s.bccd_probs.shape == (3, len(CLASSES)) and s.logits["bccd"].shape == (3, len(CLASSES))
    np.testing.assert_allclose(_softmax(s.logits["bccd"]), s.bccd_probs, atol=1e-5)


def test_a_changed_or_missing_file_is_refused(data, tmp_path, monkeypatch):
    monkeypatch.delenv("BLOODCELLS_BCCD_DIR", raising=False)
    run, _ = _save(_model(), data, tmp_path)
    s = load_scores(run.record, tmp_path / "res")
    assert s.bccd_probs is None and s.logits["bccd"] is None and run.record["scores"]["bccd_crops"] is None
    path = tmp_path / "res" / "scores" / "tiny_run.npz"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ScoresError, match="sha256"):
        load_scores(run.record, tmp_path / "res")
    path.unlink()
    with pytest.raises(ScoresError, match="missing"):
        load_scores(run.record, tmp_path / "res")
    with pytest.raises(ScoresError, match="re-run"):
        load_scores({"model": "old"}, tmp_path / "res")


def test_a_tta_model_saves_the_views_average(data, tmp_path, monkeypatch):
    monkeypatch.delenv("BLOODCELLS_BCCD_DIR", raising=False)
    core = _model(3)
    run, preds = _save(tta_model(core, views=2), data, tmp_path, "tiny_tta")
    s = load_scores(run.record, tmp_path / "res")
    np.testing.assert_array_equal(s.splits["test"].probs, preds["test"].probs)
    x = load_images(data.paths("test"), SIZE).astype("float32")
    views = [logits(core, np.asarray(dihedral(x, k))) for k in range(2)]
    np.testing.assert_allclose(s.logits["test"], np.mean(views, axis=0), atol=1e-5)


def test_without_test_predictions_no_scores_are_written(data, tmp_path):
    model = _model()
    run = save_run(model, "val_only", data, {"val": predict_split(model, data, "val", SIZE)}, image_size=SIZE,
                   epochs=1, train_seconds=1.0, weights_source=dict(FROM_SCRATCH), seed=1,
                   results_directory=tmp_path / "res", save_model=False)
    assert "scores" not in run.record and not (tmp_path / "res" / "scores").exists()


def test_load_all_lines_up_every_scored_model(data, tmp_path, monkeypatch):
    """Models saved with their cells in different orders are compared cell by cell, logits included."""
    from helpers.predictions import predict

    monkeypatch.setenv("BLOODCELLS_BCCD_DIR", str(_bccd(tmp_path)))
    a, b = _model(1), _model(2)
    run_a, _ = _save(a, data, tmp_path, "model_a")
    preds_b = {s: predict(b, data.paths(s)[::-1], data.labels(s)[::-1], SIZE) for s in ("val", "test")}
    run_b = save_run(b, "model_b", data, preds_b, image_size=SIZE, epochs=1, train_seconds=1.0,
                     weights_source=dict(FROM_SCRATCH), seed=1, results_directory=tmp_path / "res", save_model=False)
    records = {"model_a": run_a.record, "model_b": run_b.record, "old_model": {"model": "old_model"}}
    scored = load_all(records, tmp_path / "res")
    assert scored.names == ("model_a", "model_b") and list(scored.left_out) == ["old_model"]
    assert scored.image_size == {"model_a": SIZE, "model_b": SIZE}
    for split in ("val", "test"):
        al = getattr(scored, split)
        assert len(al.y_true) == len(data.paths(split))
        for name in scored.names:  # each model's logits follow the aligned order of its probabilities
            np.testing.assert_allclose(_softmax(scored.logits[split][name]), al.probs[name], atol=1e-5)
        forward = predict_split(b, data, split, SIZE)  # model_b was saved in reverse order
        assert [x.split("/")[-1] for x in al.paths] == [x.split("/")[-1] for x in forward.paths]
        np.testing.assert_allclose(al.probs["model_b"], forward.probs, atol=1e-6)
    assert scored.bccd_ids == load_scores(run_a.record, tmp_path / "res").bccd_ids
    assert set(scored.bccd_probs) == {"model_a", "model_b"}
    assert run_a.record["scores"]["params"] == a.count_params()


def test_book_results_downloads_this_versions_results_once(data, tmp_path, monkeypatch):
    """A fresh machine has no scores: the results/ of the archive of the book's tag are unpacked, nothing else."""
    import io
    import tarfile

    from localserver import LocalServer

    from helpers.scores import RESULTS_URL_ENV, book_results

    monkeypatch.delenv("BLOODCELLS_BCCD_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # outside the checkout, as on Colab
    run, _ = _save(_model(), data, tmp_path / "book")  # what a chapter committed
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted((tmp_path / "book" / "res").rglob("*")):
            if f.is_file():
                tar.add(f, arcname=f"bloodcells-book-0.1.0/results/{f.relative_to(tmp_path / 'book' / 'res')}")
        for name, body in (("bloodcells-book-0.1.0/notebooks/x.ipynb", b"{}"), ("evil/results/../../x", b"!")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    server = LocalServer()
    try:
        server.files["/book.tar.gz"] = buf.getvalue()
        monkeypatch.setenv(RESULTS_URL_ENV, server.url + "/book.tar.gz")
        monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path / "out"))
        monkeypatch.setenv("BLOODCELLS_RESULTS_DIR", str(tmp_path / "empty"))
        got = book_results()
        assert got.parent.parent == tmp_path / "out" / "book-results"
        assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == \
            ["scores/tiny_run.npz", "tiny_run.json"]
        records = {"tiny_run": json.loads((got / "tiny_run.json").read_text())}
        assert load_all(records, got).names == ("tiny_run",)  # checked against the record's sha256
        assert book_results() == got and server.hits == ["/book.tar.gz"]  # downloaded once
        assert book_results(tmp_path / "book" / "res") == tmp_path / "book" / "res"  # a folder given wins
    finally:
        server.close()
    assert not list((tmp_path / "out").rglob("x.ipynb")) and not (tmp_path / "x").exists()


def test_calibration_uses_logits_only_where_they_give_the_probabilities(data, tmp_path, monkeypatch):
    monkeypatch.delenv("BLOODCELLS_BCCD_DIR", raising=False)
    core = _model(4)
    runs = {"one": _save(core, data, tmp_path, "one")[0], "tta": _save(tta_model(core, views=2), data, tmp_path,
                                                                       "tta")[0]}
    scored = load_all({n: r.record for n, r in runs.items()}, tmp_path / "res")
    np.testing.assert_array_equal(scored.calibration_logits("test", "one"), scored.logits["test"]["one"])
    z = scored.calibration_logits("test", "tta")  # averaged view logits do not give the averaged probabilities
    np.testing.assert_allclose(_softmax(z), scored.test.probs["tta"], atol=1e-6)


def test_book_results_reads_a_run_s_own_folder_then_the_checkout(tmp_path, monkeypatch):
    """Inside a checkout (the tests, the book build) the committed results are read, never downloaded."""
    from helpers.scores import RESULTS_URL_ENV, book_results

    checkout = tmp_path / "book"
    (checkout / "src" / "helpers").mkdir(parents=True)
    (checkout / "_toc.yml").write_text("root: intro\n")
    (checkout / "results" / "ablation").mkdir(parents=True)
    (checkout / "results" / "ablation" / "recipe_s42.json").write_text("{}")
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("BLOODCELLS_RESULTS_DIR", str(tmp_path / "smoke"))
    monkeypatch.setenv(RESULTS_URL_ENV, "http://127.0.0.1:9/never.tar.gz")  # a download would fail
    assert book_results(needs="ablation/*.json") == checkout / "results"
    (tmp_path / "smoke" / "ablation").mkdir(parents=True)
    (tmp_path / "smoke" / "ablation" / "recipe_s1.json").write_text("{}")
    assert book_results(needs="ablation/*.json") == tmp_path / "smoke"  # the run's own folder first
