"""The web app (helpers.app) in a real browser: headless Chromium driven by Playwright.

The app serves a small bundle that the test trains on generated images (a clean checkout has no
``outputs/``) on a free loopback port. The browser uploads a cell image — a real one from the
configured data when there is one — and the three classes it shows must be the command line's answer
for the same file; a non-image gets a clear message; no request leaves 127.0.0.1 (the browser's
requests and the server's outgoing connections are both recorded). A screenshot is saved in
``$BLOODCELLS_OUTPUT_DIR/app-screenshots``.
"""
from __future__ import annotations

import csv
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("BLOODCELLS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None
gradio = pytest.importorskip("gradio", reason="gradio is not installed (`make setup` installs it)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (`make browser` installs it)"),
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not importable"),
]


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


@pytest.fixture(scope="module")
def outgoing():
    """Every outgoing TCP connection of this process to a host other than loopback (refused and recorded)."""
    seen: list[str] = []
    real = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(str(host)):
            seen.append(f"{host}:{address[1]}")
            raise ConnectionRefusedError(f"test_app: no connection to {host} allowed")
        return real(self, address)

    socket.socket.connect = guarded
    try:
        yield seen
    finally:
        socket.socket.connect = real


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny CNN trained for one epoch on generated 'cells', saved as a bundle with an OOD threshold."""
    import keras

    from helpers import CLASSES
    from helpers.export import save_bundle
    from helpers.ood import fit_threshold

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = np.arange(64) % len(CLASSES)
    x = rng.uniform(0, 255, (64, 32, 32, 3)).astype("float32")
    x += (y[:, None, None, None] * 20.0)  # classes differ in brightness
    x = np.clip(x, 0, 255)
    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    h = L.Rescaling(1 / 255)(inp)
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(h)
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(len(CLASSES), activation="softmax", name="probs")(h)
    model = keras.Model(inp, out, name="app_test_cnn")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    probs = model.predict(x, verbose=0)
    folder = tmp_path_factory.mktemp("models") / "app_test_cnn"
    save_bundle(model, folder, image_size=32, weights_source={"kind": "none (trained from scratch)"},
                metrics={"test": {"accuracy": 0.5, "n": 64}}, data={"dataset": "generated"},
                ood=fit_threshold(probs))
    return folder


@pytest.fixture(scope="module")
def cell_image(tmp_path_factory) -> Path:
    """A real PBC cell from the configured data, or a generated one."""
    root = os.environ.get("BLOODCELLS_DATA_DIR")
    if root and not os.environ.get("BLOODCELLS_SYNTHETIC_DATA"):
        found = sorted(Path(root).rglob("*.jpg"))
        if found:
            return found[0]
    from PIL import Image

    p = tmp_path_factory.mktemp("img") / "cell.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (120, 120, 3), dtype=np.uint8)).save(p)
    return p


@pytest.fixture(scope="module")
def app_url(bundle, outgoing):
    from helpers.app import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(bundle, port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(app_url):
    external: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bloodcells-chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                    args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1000})

        def route(r):
            host = urlsplit(r.request.url).hostname or ""
            if r.request.url.startswith(("data:", "blob:")) or _loopback(host):
                return r.continue_()
            external.append(r.request.url)
            return r.abort()

        ctx.route("**/*", route)
        pg = ctx.new_page()
        pg.external = external  # type: ignore[attr-defined]
        pg.goto(app_url, wait_until="networkidle")
        yield pg
        ctx.close()


def _cli_top3(bundle: Path, image: Path, tmp_path: Path) -> list[tuple[str, float]]:
    from helpers.predict import main

    out = tmp_path / "p.csv"
    assert main([str(bundle), str(image), "--csv", str(out)]) == 0
    row = next(csv.DictReader(out.open()))
    return [(row[f"top{k}"], float(row[f"p{k}"])) for k in (1, 2, 3)]


ROWS = "#results [role=row].virtual-row"


def _table_rows(page) -> list[list[str]]:
    """The results table's rows as text (Gradio draws the body as a virtual table of ``role=row`` elements)."""
    js = "rows => rows.map(r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.textContent.trim()))"
    return page.eval_on_selector_all(ROWS, js)


def _upload(page, path: Path) -> list[str]:
    page.set_input_files("#upload input[type=file]", str(path))
    page.wait_for_function(
        "([sel, name]) => Array.from(document.querySelectorAll(sel)).some(r => r.textContent.includes(name))",
        arg=[ROWS, path.name], timeout=60_000)
    return next(r for r in _table_rows(page) if r and r[0] == path.name)


def test_the_page_names_the_model_it_serves(page, bundle):
    card = page.inner_text("#model-card")
    assert bundle.name in card and "test accuracy" in card


def test_an_uploaded_cell_gets_the_command_lines_top3(page, bundle, cell_image, tmp_path):
    row = _upload(page, cell_image)
    shown = [(row[1], float(row[2])), (row[3], float(row[4])), (row[5], float(row[6]))]
    cli = _cli_top3(bundle, cell_image, tmp_path)
    assert [c for c, _ in shown] == [c for c, _ in cli]
    assert np.allclose([p for _, p in shown], [p for _, p in cli], atol=1e-3)
    shots = Path(os.environ.get("BLOODCELLS_OUTPUT_DIR") or tempfile.mkdtemp()) / "app-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "app.png"), full_page=True)


def test_a_non_image_gets_a_clear_message(page, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a cell")
    row = _upload(page, bad)
    assert row[-1].startswith("not classified") and "not an image" in row[-1]


def test_a_tiny_image_is_flagged(page, tmp_path):
    from PIL import Image

    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1), (128, 0, 128)).save(tiny)
    row = _upload(page, tiny)
    assert "tiny image" in row[-1]


def test_no_request_left_the_machine(page, outgoing):
    assert page.external == [], page.external
    assert outgoing == [], outgoing


def test_demo_without_a_bundle_says_which_command_makes_one(tmp_path, capsys):
    from helpers.app import main

    assert main([str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "make book" in err and "no published model" in err
