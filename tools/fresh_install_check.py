"""A reader's first run, checked: a fresh venv, the helpers installed by the setup cell itself, no data.

    python tools/fresh_install_check.py [--chapters 01 … 08] [--latest] [--keep DIR]  # make fresh-install-check

1. ``python -m venv`` in a scratch folder with only the Jupyter parts a platform already has (``papermill``,
   ``ipykernel``) and the oldest TensorFlow and Keras that ``pyproject.toml`` declares (``--latest``: whatever
   pip resolves instead).
   The committed checkout is cloned and tagged ``v<version>`` (what is committed is what is installed); the
   chapters' setup cells, pointed at that clone instead of the public repository, install the helpers from
   the tag themselves. No ``requirements.txt``: the package's own dependencies must be enough.
2. A generated PBC zip with the published image count of every class (17,092 tiny JPEGs, nested, with macOS
   junk) is served on 127.0.0.1; ``$BLOODCELLS_PBC_URL`` points the download at it. No ``BLOODCELLS_DATA_DIR``,
   no ``../shared``, no local weights: Keras' own ``weights="imagenet"`` download runs, its requests for the
   official files routed (by a ``sitecustomize`` in the venv) to 127.0.0.1, which serves VGG19's official file
   (Keras' cache holds it) and MobileNetV2's 224-px no-top weights in Keras' layout. Keras verifies ResNet50's
   download against the official file's hash, and the local ResNet50 weights are a conversion with other
   bytes, so chapter 5 reads that local file (``WEIGHTS``), as an air-gapped lab would; its download path is
   tested in ``tests/test_weights.py`` with Keras' download stubbed. Without a local copy of a network, its
   chapter cannot be checked: the check fails unless ``--chapters`` leaves it out.
3. Chapters 1-6 are copied into a folder outside the checkout and executed there in smoke mode, as a reader
   on Colab would open them one by one. Each must run to its end; chapter 1 must report the downloaded
   images, the records must carry the zip's SHA-256, and each transfer chapter's record must name the file
   Keras downloaded (chapter 5: the local file it read).
   Chapter 3 reads the ablation records of the book's tag: the tag's ``results/`` is served as GitHub serves
   the archive of a tag (``$BLOODCELLS_RESULTS_URL``).
4. Chapters 7 and 8, which train nothing, each run alone in an empty folder of their own and in **book mode**,
   from the results of the book's tag (downloaded, as on a fresh Colab machine where no training chapter ran
   before): every value they glue into their prose must equal the committed notebook's (numbers to 1e-9).

Prints one line per step and a summary; exit code 0 when every chapter ran and agreed, within ``--budget``
minutes (15). Needs the package registry.
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


DATA_FREE = {"07", "08"}
"""Chapters that read only the book's committed results (downloaded from the tag), never the images."""
MYST_NB = "myst-nb>=1,<2"  # what jupyter-book 1.x brings; with it, helpers.book.glue records its values


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


KERAS_FILES = {  # the official file Keras' weights="imagenet" fetches for each network, 224 px, no top
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenetv2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
}
CHAPTER_FAMILY = {"04": "vgg19", "05": "resnet50", "06": "mobilenetv2"}
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"
SITECUSTOMIZE = f'''"""Fresh-install check only: Keras' weight downloads go to the stand-in server on 127.0.0.1."""
import os
import urllib.request

_origin = os.environ.get("BLOODCELLS_CHECK_KERAS_ORIGIN")
if _origin:
    _urlopen = urllib.request.urlopen

    def urlopen(url, *args, **kwargs):
        full = url if isinstance(url, str) else url.full_url
        if full.startswith("{KERAS_ORIGIN}"):
            url = _origin + "/" + full.rsplit("/", 1)[1]
        return _urlopen(url, *args, **kwargs)

    urllib.request.urlopen = urlopen
'''


KERAS_CHECKS_HASH = {"vgg19", "resnet50"}
"""Networks whose download Keras verifies against the official file's hash: only the official bytes pass."""


def keras_file(family: str) -> tuple[bytes | None, Path | None]:
    """What stands in for Keras' download of ``family``'s ImageNet file (224 px, no top), from the local copy
    (``$KERAS_WEIGHTS_DIR`` or Keras' cache): the file's own bytes where it is Keras' official file; for a
    network whose download Keras does not verify, the local weights re-saved in the official file's layout;
    otherwise no bytes, and the local file (the chapter then reads it, as an air-gapped lab would). ``(None,
    None)`` where there is no local copy."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from helpers.weights import WeightsNotFoundError, application, resolve_weights

    try:
        local = Path(resolve_weights(family, allow_download=False)["path"])
    except WeightsNotFoundError:
        return None, None
    if local.name == KERAS_FILES[family]:
        return local.read_bytes(), local
    if family in KERAS_CHECKS_HASH:
        return None, local
    model = application(family)(include_top=False, weights=str(local), input_shape=(224, 224, 3))
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return buf.getvalue(), local


def serve(files: dict[str, bytes]) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``files`` (name → bytes) on 127.0.0.1; returns the server and its base address."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = files.get(self.path.split("?")[0].lstrip("/"))
            if body is None:
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
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


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


def package_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return next(ln.split('"')[1] for ln in text.splitlines() if ln.startswith("version = "))


def oldest_stack() -> list[str]:
    """``tensorflow==X`` and ``keras==Y`` for the minimum versions ``pyproject.toml`` declares."""
    text = (ROOT / "pyproject.toml").read_text()
    out = []
    for name in ("tensorflow", "keras"):
        low = next(ln.split(">=")[1].split('"')[0] for ln in text.splitlines() if ln.strip().startswith(f'"{name}>='))
        out.append(f"{name}=={low}.*")
    return out


def glue_differences(committed: dict[str, str], fresh: dict[str, str], tol: float = 1e-9) -> list[str]:
    """Where a fresh run glues another value than the committed notebook (numbers within ``tol``), or glues
    a value the committed notebook does not, or misses one."""
    import ast

    def value(text: str):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    out = [f"{n}: not glued by the fresh run" for n in sorted(set(committed) - set(fresh))]
    out += [f"{n}: glued only by the fresh run" for n in sorted(set(fresh) - set(committed))]
    for n in sorted(set(committed) & set(fresh)):
        a, b = value(committed[n]), value(fresh[n])
        same = (abs(a - b) <= tol * max(1.0, abs(a)) if isinstance(a, (int, float)) and isinstance(b, (int, float))
                and not isinstance(a, bool) else a == b)
        if not same:
            out.append(f"{n}: committed {committed[n][:80]!r}, fresh {fresh[n][:80]!r}")
    return out


def reader_copy(nb: Path, dest: Path, repo: str) -> None:
    """The chapter as a reader gets it, its setup cell installing from ``repo`` instead of the public one."""
    cells = json.loads(nb.read_text())
    setup = next(c for c in cells["cells"] if c["cell_type"] == "code")
    src = "".join(setup["source"])
    if 'REPO = "git+' not in src:
        raise SystemExit(f"FAILED: {nb.name}'s setup cell names no REPO to install from")
    setup["source"] = "\n".join(f'REPO = "git+file://{repo}"' if ln.startswith("REPO = ") else ln
                                 for ln in src.splitlines())
    dest.write_text(json.dumps(cells))


def main(argv: list[str] | None = None) -> int:
    from helpers.book import glued_values

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chapters", nargs="+", default=["01", "02", "03", "04", "05", "06", "07", "08"])
    ap.add_argument("--latest", action="store_true",
                    help="whatever TensorFlow and Keras pip resolves (default: the oldest the package declares)")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder, removed)")
    ap.add_argument("--budget", type=float, default=15.0, help="minutes the whole check may take")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fresh-install-"))
    work.mkdir(parents=True, exist_ok=True)
    venv, book, repo = work / "venv", work / "reader", work / "repo"
    py = venv / "bin" / "python"
    times: dict[str, float] = {}
    try:
        if not py.exists():
            times["venv"] = step("fresh venv", [sys.executable, "-m", "venv", str(venv)])
            step("pip itself up to date (Colab's and Kaggle's are)",
                 [str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        else:  # a kept venv: the setup cell must install the helpers again, from the current commit
            step("remove the helpers installed by an earlier check",
                 [str(py), "-m", "pip", "uninstall", "--quiet", "-y", "bloodcells-helpers"])
        stack = [] if args.latest else oldest_stack()
        times["install"] = step(f"pip install papermill, ipykernel {' '.join(stack)} (what a platform has)",
                                [str(py), "-m", "pip", "install", "--quiet", "papermill", "ipykernel", *stack])
        if set(args.chapters) & DATA_FREE:  # glue() records values only where myst-nb is importable
            times["myst-nb"] = step("pip install myst-nb (only to read back the values chapters 7 and 8 glue)",
                                    [str(py), "-m", "pip", "install", "--quiet", MYST_NB])
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(site, "sitecustomize.py").write_text(SITECUSTOMIZE)
        tag = f"v{package_version()}"
        shutil.rmtree(repo, ignore_errors=True)
        step(f"clone the committed checkout and tag it {tag} (stands in for the public repository)",
             ["git", "clone", "--quiet", str(ROOT), str(repo)])
        step(f"tag {tag}", ["git", "-C", str(repo), "tag", tag])
        files = {"PBC_dataset_normal_DIB.zip": official_zip()}
        chapters = list(args.chapters)
        local_weights: dict[str, Path] = {}  # chapter → the local file it reads instead of a download
        for chapter, family in CHAPTER_FAMILY.items():
            if chapter in chapters:
                weights, local = keras_file(family)
                if local is None:
                    raise SystemExit(f"FAILED: chapter {chapter} cannot be checked: no local {family} file "
                                     "($KERAS_WEIGHTS_DIR or Keras' cache) to serve as Keras' download (set it, or "
                                     f"leave {chapter} out of --chapters)")
                if weights is None:
                    local_weights[chapter] = local
                    print(f"  chapter {chapter} reads the local {local.name}: Keras verifies {family}'s download "
                          "against the official file, of which there is no copy here")
                else:
                    files[KERAS_FILES[family]] = weights
        files["book-results.tar.gz"] = subprocess.run(  # the tag's results/, as GitHub's archive of the tag
            ["git", "-C", str(repo), "archive", "--format=tar.gz", f"--prefix=bloodcells-book-{tag}/", tag,
             "results"], capture_output=True, check=True).stdout
        httpd, base = serve(files)
        url = f"{base}/PBC_dataset_normal_DIB.zip"
        sha = hashlib.sha256(files["PBC_dataset_normal_DIB.zip"]).hexdigest()
        print(f"  serving a generated {len(files['PBC_dataset_normal_DIB.zip']) / 2**20:.1f} MB zip (17,092 images) "
              f"and {sum(n in KERAS_FILES.values() for n in files)} weight file(s) at {base}")
        shutil.rmtree(book, ignore_errors=True)
        book.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOODCELLS_", "KERAS_"))}
        env.update(BLOODCELLS_PBC_URL=url, BLOODCELLS_RESULTS_URL=f"{base}/book-results.tar.gz",
                   BLOODCELLS_MODE="smoke", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg",
                   BLOODCELLS_CHECK_KERAS_ORIGIN=base, KERAS_HOME=str(work / "keras_home"),
                   PYTHONPATH="", VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
        shutil.rmtree(work / "keras_home", ignore_errors=True)
        disagree: dict[str, list[str]] = {}
        for chapter in chapters:
            nb = next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))
            alone = chapter in DATA_FREE  # in a folder of its own: nothing a training chapter wrote is there
            where = work / f"reader-{chapter}" if alone else book
            if alone:
                shutil.rmtree(where, ignore_errors=True)
                where.mkdir()
            reader_copy(nb, where / nb.name, str(repo))
            mode = "book" if alone else "smoke"
            download = ["-p", "ALLOW_DOWNLOAD", "True"] if chapter in CHAPTER_FAMILY else []
            if chapter in local_weights:
                download = ["-p", "WEIGHTS", str(local_weights[chapter])]
            times[chapter] = step(f"chapter {nb.stem} in {mode} mode, alone, outside the checkout",
                                  [str(py), "-m", "papermill", nb.name, f"executed_{nb.name}", "-p", "MODE",
                                   mode, *download, "--kernel", "python3", "--no-progress-bar"], cwd=where,
                                  env={**env, "BLOODCELLS_MODE": mode})
            if alone:
                committed, fresh = glued_values(nb), glued_values(where / f"executed_{nb.name}")
                disagree[chapter] = glue_differences(committed, fresh)
                print(f"  chapter {chapter}: {len(set(committed) & set(fresh))} glued values compared with the "
                      f"committed notebook, {len(disagree[chapter])} differ")
        httpd.shutdown()
        installed = subprocess.run([str(py), "-m", "pip", "show", "bloodcells-helpers"], capture_output=True,
                                   text=True).stdout
        print(f"  installed by the setup cell: {' '.join(ln for ln in installed.splitlines()[:2])}")
        if f"Version: {package_version()}" not in installed:
            raise SystemExit("FAILED: the setup cell did not install the helpers at the book's version")
        done = [json.loads(p.read_text()) for p in (book / "outputs").rglob(".download.json")]
        records = sorted(r for r in (book / "results").glob("*.json") if r.name != "notebook_timings.json")
        shas = {json.loads(r.read_text()).get("data", {}).get("download", {}).get("zip_sha256") for r in records}
        print(f"  download: {[d.get('n_images') for d in done]} images verified and unpacked under outputs/; "
              f"records: {', '.join(r.stem for r in records) or 'none'}; the zip's sha256 in them: "
              f"{'yes' if shas == {sha} else shas}")
        if set(chapters) - DATA_FREE and [d.get("n_images") for d in done] != [17092]:
            raise SystemExit("FAILED: the chapters did not download and verify the 17,092-image zip once")
        if records and shas != {sha}:
            raise SystemExit("FAILED: the records do not carry the downloaded zip's SHA-256")
        for chapter, family in CHAPTER_FAMILY.items():
            if chapter not in chapters:
                continue
            rec = json.loads((book / "results" / f"transfer_{family}.json").read_text())
            src = rec["weights_source"]
            print(f"  chapter {chapter}'s weights: {src['kind']}, {src['file']}")
            want = (("imagenet-local-file", local_weights[chapter].name) if chapter in local_weights
                    else ("imagenet-download", KERAS_FILES[family]))
            if (src["kind"], src["file"]) != want:
                raise SystemExit(f"FAILED: chapter {chapter} did not train on {want[1]} ({want[0]})")
        for chapter, diffs in disagree.items():
            if diffs:
                raise SystemExit(f"FAILED: chapter {chapter} alone, from the book's results, does not give the "
                                 "committed numbers:\n  " + "\n  ".join(diffs[:20]))
        minutes = (time.perf_counter() - started) / 60
        print("fresh install check passed: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
              + f"; {minutes:.1f} min in all (budget {args.budget:.0f} min)")
        if minutes > args.budget:
            raise SystemExit(f"FAILED: the check took {minutes:.1f} min, more than its {args.budget:.0f} min")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
