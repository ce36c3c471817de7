"""A screenshot of the web app (helpers.app) serving a bundle, for the book (chapter 7).

    python tools/app_screenshot.py outputs/models/best --out book/images/app.png

Starts the app on a free loopback port, opens it in headless Chromium (Playwright, as the app's
browser test does), uploads a real PBC cell from the configured data (``$BLOODCELLS_DATA_DIR``; a test
cell of the bundle's saved predictions when they can be found), waits for the answer and saves a
palette-quantised PNG (kept small for the book's repository). No request leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pick_cell(bundle: Path, data_dir: str | None) -> Path:
    """A real PBC cell: the first test cell of the bundle's saved predictions that exists, else the
    first image of the configured data folder."""
    from helpers.compare import resolve_paths
    from helpers.export import load_predictions

    try:
        paths = load_predictions(bundle, "test").paths[:50]
        for p in resolve_paths(paths, data_dir):
            if Path(p).is_file():
                return Path(p)
    except Exception:  # noqa: BLE001  (no saved predictions: fall back to the data folder)
        pass
    if data_dir:
        found = sorted(Path(data_dir).rglob("*.jpg"))
        if found:
            return found[0]
    raise SystemExit("no PBC cell image found: set BLOODCELLS_DATA_DIR to the data folder")


def small_png(png: bytes, out: Path, colours: int = 128) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", help="model bundle folder (e.g. outputs/models/best)")
    ap.add_argument("--out", default=str(ROOT / "book" / "images" / "app.png"))
    ap.add_argument("--image", default=None, help="the cell image to upload (default: a real PBC test cell)")
    ap.add_argument("--chromium", default=os.environ.get("BLOODCELLS_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--width", type=int, default=1100)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from helpers.app import launch
    from helpers.predict import quiet_tensorflow

    quiet_tensorflow()
    bundle = Path(args.bundle)
    cell = Path(args.image) if args.image else pick_cell(bundle, os.environ.get("BLOODCELLS_DATA_DIR"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(bundle, port=port, block=False)
    external: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bloodcells-chromium-") as profile, sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=args.chromium, headless=True,
                                                        args=CHROMIUM_ARGS,
                                                        viewport={"width": args.width, "height": 900})

            def route(r):
                url = r.request.url
                host = urlsplit(url).hostname or ""
                if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                    return r.continue_()
                external.append(url)
                return r.abort()

            ctx.route("**/*", route)
            page = ctx.new_page()
            page.goto(f"http://127.0.0.1:{port}", wait_until="networkidle")
            page.set_input_files("#upload input[type=file]", str(cell))
            page.wait_for_function(
                "([sel, name]) => Array.from(document.querySelectorAll(sel)).some(r => r.textContent.includes(name))",
                arg=["#results [role=row].virtual-row", cell.name], timeout=120_000)
            page.wait_for_timeout(1500)  # let the chart and the overlay finish drawing
            png = page.screenshot(full_page=True)
            ctx.close()
    finally:
        demo.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    small_png(png, out)
    print(f"{out.name}: {out.stat().st_size / 1024:.0f} KB, {bundle.name} on {cell.name}"
          + (f"; {len(external)} external request(s) blocked" if external else "; no external request"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
