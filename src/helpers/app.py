"""The classifier as a web app (Gradio), served on this machine only.

    python -m helpers.app [MODEL_DIR] [--port 7860]     # make demo

Drop one or many cell images: each gets its three most likely classes with their probabilities, a
Grad-CAM overlay (where the network looked) and a warning when the image is unlike the training cells
(:mod:`helpers.ood`). The page says which model answers (its bundle, test accuracy and data). The
answers are those of ``python -m helpers.predict`` for the same files: both call
:func:`helpers.predict.classify`.

Nothing leaves the machine: the server listens on 127.0.0.1, no share link, no analytics, and the
theme uses the system's fonts (no web fonts or scripts from a CDN), so it works in an air-gapped lab.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

NO_BUNDLE = ("no published model at {path}. Run `make book` and `make bench` (the benchmark configures the book's "
             "final model for serving there), or pass the folder of a model bundle: "
             "python -m helpers.app outputs/models/<name>")


def model_card(side: dict[str, Any], folder: Path, runtime: str | None = None) -> str:
    """Markdown saying which model answers: its bundle, its test accuracy, the views and runtime it is
    served with, and the data it learnt from."""
    test = (side.get("metrics") or {}).get("test") or {}
    data = side.get("data") or {}
    acc = f"{test['accuracy']:.2%} test accuracy (n = {test.get('n', '?')})" if "accuracy" in test else \
        "no test accuracy recorded"
    ood = side.get("ood") or {}
    warn = (f"Warnings: confidence below {ood['threshold']:.2f} (flags {ood.get('false_alarm_rate', 0):.0%} of "
            "ordinary validation cells), tiny or far-from-square images." if ood.get("threshold") is not None
            else "Warnings: tiny or far-from-square images (this bundle stores no confidence threshold).")
    source = side.get("source_bundle") or (side.get("selected") or {}).get("source_bundle") or folder.name
    counts = data.get("counts") or {}
    trained = (f"{data.get('root_name', 'PBC')}: {counts.get('train', '?'):,} training, {counts.get('val', '?'):,} "
               f"validation, {counts.get('test', '?'):,} test images (split `{data.get('split_fingerprint', '?')}`)"
               if counts else data.get("dataset", "not recorded"))
    views = int((side.get("tta") or {}).get("views", 1))
    served = f"{views} view{'s' * (views != 1)}" + (f", {runtime}" if runtime else "")
    name = f"`{folder.name}` (`{source}` configured for serving)" if side.get("serving") else f"`{source}`"
    return (f"**Model:** {name} — {acc}; input {side['image_size']} px, {served}; "
            f"classes: {', '.join(side['classes'])}.  \n**Data:** {trained}.  \n{warn}")


def _answers(model, side, paths: Sequence[str],
             run=None) -> tuple[list[list[Any]], list[tuple[np.ndarray, str]], dict]:
    from .predict import classify

    rows, gallery, first = [], [], {}
    for ans in classify(model, side, paths, explain=True, run=run):
        name = Path(ans.path).name
        if ans.error:
            rows.append([name, "—", "", "—", "", "—", "", f"not classified: {ans.error}"])
            continue
        top = ans.top(3)
        cells = [x for c, p in top for x in (c, f"{p:.3f}")]
        cells += [""] * (6 - len(cells))
        rows.append([name, *cells, "; ".join(ans.warnings) or "—"])
        if ans.overlay is not None:
            gallery.append((ans.overlay, f"{name}: {top[0][0]} {top[0][1]:.2f}" + (" ⚠" if ans.warnings else "")))
        if not first:
            first = {c: float(p) for c, p in top}
    return rows, gallery, first


HEADERS = ["file", "top 1", "p1", "top 2", "p2", "top 3", "p3", "warning"]


def build_app(folder: str | os.PathLike):
    """The Gradio Blocks app serving the bundle in ``folder``."""
    import gradio as gr

    from .export import load_bundle

    folder = Path(folder)
    model, side = load_bundle(folder)
    from .serve import bundle_runner

    serve = bundle_runner(model, side, folder)

    def run(files):
        if not files:
            return gr.update(value=None), [], {}, "Drop one or more cell images above."
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
        rows, gallery, first = _answers(model, side, paths, serve)
        bad = sum(1 for r in rows if r[-1].startswith("not classified"))
        msg = f"{len(rows) - bad} image(s) classified" + (f", {bad} could not be read (see the table)." if bad else ".")
        return rows, gallery, first, msg

    with gr.Blocks(title="Blood-cell classifier", analytics_enabled=False) as demo:
        gr.Markdown("# Blood-cell classifier\nDrop microscope images of single blood cells (JPEG, PNG, BMP, TIFF).")
        gr.Markdown(model_card(side, folder, serve.runtime), elem_id="model-card")
        files = gr.File(label="Cell images", file_count="multiple", elem_id="upload")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            label = gr.Label(num_top_classes=3, label="First image: three most likely classes", elem_id="top3")
            gallery = gr.Gallery(label="Grad-CAM: where the network looked", columns=4, elem_id="gradcam")
        table = gr.Dataframe(headers=HEADERS, label="Every image", interactive=False, elem_id="results")
        files.change(run, inputs=files, outputs=[table, gallery, label, status])
    return demo


def theme():
    """Gradio's default look with the system's fonts (no web-font download)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch(folder: str | os.PathLike, port: int = 7860, block: bool = True):
    """Serve the app on 127.0.0.1:``port`` (no share link); returns the Blocks object when not blocking."""
    demo = build_app(folder)
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=not block,
                show_error=True, theme=theme(), quiet=True)
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    from .config import output_dir
    from .export import BundleError
    from .predict import quiet_tensorflow

    quiet_tensorflow()
    ap = argparse.ArgumentParser(prog="python -m helpers.app", description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", nargs="?", help="model bundle (default: outputs/models/served, the book's "
                    "final model as `make bench` configured it for serving, else outputs/models/best)")
    ap.add_argument("--port", type=int, default=7860)
    args = ap.parse_args(argv)
    models = output_dir() / "models"
    folder = Path(args.model_dir) if args.model_dir else next(
        (models / n for n in ("served", "best") if (models / n).is_dir()), models / "best")
    if not folder.is_dir():
        print(f"error: {NO_BUNDLE.format(path=folder)}", file=sys.stderr)
        return 2
    try:
        launch(folder, args.port)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, ImportError, RuntimeError) as e:  # its serving runtime cannot start
        print(f"error: {folder}: cannot start its serving runtime ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
