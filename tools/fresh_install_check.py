"""A reader's first run, checked: a fresh venv, the helpers installed as the setup cell installs them, no data.

    python tools/fresh_install_check.py [--chapters 01 03] [--keep DIR]     # make fresh-install-check

1. ``python -m venv`` in a scratch folder; ``pip install "bloodcells-helpers @ git+file://<checkout>"`` — the
   setup cell's ``%pip install "bloodcells-helpers @ git+<repository>"`` with the committed checkout standing in
   for the repository (what is committed is what is installed) — plus the Jupyter parts a platform already has
   (``papermill``, ``ipykernel``). No ``requirements.txt``: the package's own dependencies must be enough.
2. A generated PBC zip with the published image count of every class (17,092 tiny JPEGs, nested, with macOS
   junk) is served on 127.0.0.1; ``$BLOODCELLS_PBC_URL`` points the download at it. No ``BLOODCELLS_DATA_DIR``,
   no ``../shared``, no weights.
3. The chapters are copied into a folder outside the checkout and executed there in smoke mode, as a reader
   on Colab would open them one by one. Each must run to its end; chapter 1 must report the downloaded
   images, and the records must carry the zip's SHA-256.

Prints one line per step and a summary; exit code 0 when every chapter ran. Needs the package registry.
"""
from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def official_zip() -> bytes:
    """A zip in the Mendeley layout with exactly the published count of every class (tiny generated JPEGs)."""
    from PIL import Image

    from helpers.download import PBC_COUNTS

    buf, out = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for k, (cls, n) in enumerate(sorted(PBC_COUNTS.items())):
            for i in range(n):
                buf.seek(0)
                buf.truncate()
                colour = ((37 * k + i) % 256, (91 * k + 60) % 256, (151 * k + 120 + i // 256) % 256)
                Image.new("RGB", (24, 24), colour).save(buf, "JPEG", quality=90)
                zf.writestr(f"PBC_dataset_normal_DIB/PBC_dataset_normal_DIB/{cls}/{cls[:2].upper()}_{i}.jpg",
                            buf.getvalue())
            zf.writestr(f"__MACOSX/PBC_dataset_normal_DIB/{cls}/._{cls}_0.jpg", b"junk")
            zf.writestr(f"PBC_dataset_normal_DIB/PBC_dataset_normal_DIB/{cls}/.DS_Store", b"junk")
    return out.getvalue()


def serve(body: bytes, name: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.split("?")[0] != "/" + name:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/{name}"


def step(label: str, cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    print(f"… {label}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"FAILED: {label} (exit code {proc.returncode})")
    seconds = time.perf_counter() - t0
    print(f"✓ {label} ({seconds:.0f} s)", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chapters", nargs="+", default=["01", "03"])
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fresh-install-"))
    work.mkdir(parents=True, exist_ok=True)
    venv, book = work / "venv", work / "reader"
    py = venv / "bin" / "python"
    times: dict[str, float] = {}
    try:
        if not py.exists():
            times["venv"] = step("fresh venv", [sys.executable, "-m", "venv", str(venv)])
            step("pip itself up to date (Colab's and Kaggle's are)",
                 [str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        else:  # a kept venv: install the helpers (and their dependencies) again from the current commit
            step("remove the helpers installed by an earlier check",
                 [str(py), "-m", "pip", "uninstall", "--quiet", "-y", "bloodcells-helpers"])
        times["install"] = step(
            "pip install the helpers from the checkout (as the setup cell does) + papermill, ipykernel",
            [str(py), "-m", "pip", "install", "--quiet", f"bloodcells-helpers @ git+file://{ROOT}",
             "papermill", "ipykernel"])
        body = official_zip()
        httpd, url = serve(body, "PBC_dataset_normal_DIB.zip")
        sha = hashlib.sha256(body).hexdigest()
        print(f"  serving a generated {len(body) / 2**20:.1f} MB zip (17,092 images) at {url}")
        shutil.rmtree(book, ignore_errors=True)
        book.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOODCELLS_", "KERAS_"))}
        env.update(BLOODCELLS_PBC_URL=url, BLOODCELLS_MODE="smoke", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg",
                   PYTHONPATH="", VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
        for chapter in args.chapters:
            nb = next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))
            shutil.copy(nb, book / nb.name)
            times[chapter] = step(f"chapter {nb.stem} in smoke mode, alone, outside the checkout",
                                  [str(py), "-m", "papermill", nb.name, f"executed_{nb.name}", "-p", "MODE",
                                   "smoke", "--kernel", "python3", "--no-progress-bar"], cwd=book, env=env)
        httpd.shutdown()
        done = [json.loads(p.read_text()) for p in (book / "outputs").rglob(".download.json")]
        records = sorted(r for r in (book / "results").glob("*.json") if r.name != "notebook_timings.json")
        shas = {json.loads(r.read_text()).get("data", {}).get("download", {}).get("zip_sha256") for r in records}
        print(f"  download: {[d.get('n_images') for d in done]} images verified and unpacked under outputs/; "
              f"records: {', '.join(r.stem for r in records) or 'none'}; the zip's sha256 in them: "
              f"{'yes' if shas == {sha} else shas}")
        if [d.get("n_images") for d in done] != [17092]:
            raise SystemExit("FAILED: the chapters did not download and verify the 17,092-image zip once")
        if records and shas != {sha}:
            raise SystemExit("FAILED: the records do not carry the downloaded zip's SHA-256")
        print("fresh install check passed: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
