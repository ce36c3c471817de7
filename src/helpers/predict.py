"""Classify blood-cell images with a saved model bundle and print the top-3 classes.

    python -m helpers.predict MODEL_DIR IMAGE_OR_FOLDER [...] [--csv out.csv] [--top 3]

Any common format and size works (JPEG, PNG, BMP, TIFF, GIF; grayscale, RGBA, CMYK, 16-bit): what
TensorFlow decodes like Pillow is decoded and resized exactly as in training, the rest is converted
to 8-bit RGB by Pillow (:func:`read_rgb`). A folder laid out in class sub-folders
(``basophil/``, ``eosinophil/`` …) is also scored: accuracy, macro-F1 and a confusion matrix.
An unreadable file gets one clear line and the rest are still processed; an image unlike the training
cells (tiny, far from square, or classified with low confidence) is answered with a warning. Exit codes:
0 every input classified, 1 some could not be (the CSV holds the others), 2 unusable arguments or model
bundle, 3 nothing could be classified.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import IMAGE_EXTENSIONS, TF_NATIVE_FORMATS
from .export import BundleError, load_bundle
from .io import atomic_write_text
from .pipeline import to_model_input  # noqa: F401 (re-exported: the command's resize)
from .predictions import inference_fn

# Pixel modes whose pixels TensorFlow's decoder turns into the same RGB as Pillow's (no alpha, 8 bits, not CMYK).
_TF_MODES = {"RGB", "L", "P"}


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an ``uint8`` (H, W, 3) RGB array, exactly as training does when it can.

    JPEG, PNG, BMP and GIF files with 8-bit RGB, grayscale or palette pixels go through the training
    pipeline's decoder (:func:`helpers.pipeline.decode_rgb`), so the command sees the pixels the model
    was trained on. Everything else goes through Pillow: TIFF; transparency composited on white;
    16- and 32-bit grayscale scaled to 8 bits; CMYK converted. Raises ``ValueError`` with the reason.
    """
    from PIL import Image

    with _pillow_errors():
        with Image.open(path) as im:
            tf_can = im.format in TF_NATIVE_FORMATS and im.mode in _TF_MODES and "transparency" not in im.info
            if not tf_can:
                im.load()
                return _pillow_rgb(im)
        rgb = _tf_rgb(path)
        if rgb is not None:
            return rgb
        with Image.open(path) as im:  # TensorFlow refused (e.g. a truncated file): Pillow is more forgiving
            im.load()
            return _pillow_rgb(im)


def _tf_rgb(path: str | Path) -> np.ndarray | None:
    """The training pipeline's decode of ``path``, or ``None`` when TensorFlow cannot decode it."""
    import tensorflow as tf

    from .pipeline import decode_rgb

    data = Path(path).read_bytes()
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        return None  # a JPEG without its end marker is cut short: TensorFlow would log its own error lines
    try:
        return decode_rgb(data).numpy()
    except (tf.errors.OpError, ValueError):
        return None


def _pillow_rgb(im) -> np.ndarray:
    """A loaded Pillow image → ``uint8`` RGB (alpha on white, high bit depths scaled, CMYK converted)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / top * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


@contextmanager
def _pillow_errors() -> Iterator[None]:
    """Turn the ways an image file can fail to open into ``ValueError`` with a short reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except IsADirectoryError:
        raise ValueError("is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ValueError("not an image (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"image too large: {e}") from None
    except (OSError, SyntaxError) as e:
        raise ValueError(f"corrupt or truncated image ({e})") from None


@dataclass
class Item:
    path: Path
    label: str | None  # true class from the folder name, when the folder is laid out by class


def collect(inputs: Sequence[str], classes: Sequence[str]) -> tuple[list[Item], list[tuple[str, str]]]:
    """Expand files and folders into items; missing paths and folders without images become errors.

    In a folder whose sub-folders with images are all class names, an image inside ``<class>/`` carries that
    class as its true label; an image lying beside the class folders is classified without one.
    """
    items: list[Item] = []
    errors: list[tuple[str, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_file():
            items.append(Item(p, None))
        elif p.is_dir():
            found = [f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                     and not any(part.startswith(".") for part in f.relative_to(p).parts)]
            subdirs = {f.relative_to(p).parts[0] for f in found if len(f.relative_to(p).parts) > 1}
            labelled = bool(subdirs) and subdirs <= set(classes)
            if not found:
                errors.append((raw, f"folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})"))
            for f in found:
                parts = f.relative_to(p).parts
                items.append(Item(f, parts[0] if labelled and len(parts) > 1 else None))
        else:
            errors.append((raw, "no such file or folder"))
    return items, errors


@dataclass
class Answer:
    """What the classifier says about one file: its probabilities (or why there are none) and warnings."""

    path: str
    classes: Sequence[str]
    probs: np.ndarray | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    label: str | None = None           # true class from a class-folder layout
    overlay: np.ndarray | None = None  # Grad-CAM over the model's input image (uint8), when asked for

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely classes with their probabilities."""
        order = np.argsort(self.probs)[::-1][:k]
        return [(self.classes[i], float(self.probs[i])) for i in order]


def classify(model, side: Mapping[str, Any], inputs: Sequence[str | Path | Item], *, batch_size: int = 32,
             explain: bool = False, run: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[Answer]:
    """Classify files (or :class:`Item`) with a bundle's model and sidecar: one :class:`Answer` each, in order.

    This is the one classification path of the command line and the app. An unreadable file gets an
    ``error``; an image unlike the training cells gets ``warnings`` (:mod:`helpers.ood`: tiny or
    far-from-square images, confidence below the bundle's threshold). ``explain`` adds a Grad-CAM
    overlay of the predicted class (always from the Keras ``model``). ``run`` computes the probabilities
    (:func:`helpers.serve.bundle_runner`: the runtime the bundle is served with); default: ``model`` itself.
    """
    from .ood import confidence_warnings, image_warnings

    classes = list(side["classes"])
    size = int(side["image_size"])
    items = [i if isinstance(i, Item) else Item(Path(i), None) for i in inputs]
    for s in range(0, len(items), batch_size):
        answers, ready = [], []
        for it in items[s:s + batch_size]:
            a = Answer(str(it.path), classes, label=it.label)
            try:
                rgb = read_rgb(it.path)
            except ValueError as e:
                a.error = str(e)
            else:
                a.warnings += image_warnings(rgb.shape[1], rgb.shape[0])
                ready.append((a, to_model_input(rgb, size)))
            answers.append(a)
        if ready:
            x = np.stack([img for _, img in ready])
            probs = np.asarray(run(x) if run is not None else inference_fn(model)(x))
            for (a, _), p, w in zip(ready, probs, confidence_warnings(probs, side.get("ood"))):
                a.probs, a.warnings = p, a.warnings + w
            if explain:
                from .explain import grad_cam, overlay

                cams = grad_cam(model, x)
                for (a, img), h in zip(ready, cams.heatmaps):
                    a.overlay = overlay(img, h)
        yield from answers


def quiet_tensorflow() -> None:
    """Silence TensorFlow's and absl's start-up lines (effective when called before TensorFlow is imported)."""
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        pass


def serving_summary(side: Mapping[str, Any]) -> str:
    """One line on what answers: the views averaged and, when the bundle has one, its own test accuracy."""
    views = int((side.get("tta") or {}).get("views", 1))
    test = (side.get("metrics") or {}).get("test") or {}
    acc = f", test accuracy {test['accuracy']:.2%}" if "accuracy" in test else ""
    return f"{side.get('image_size')} px, {views} view{'s' * (views != 1)}{acc}"


EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_NONE = 0, 1, 2, 3
"""Exit codes: every input classified (0); some classified, some not (1); unusable arguments or model
bundle (2); nothing could be classified (3)."""


def _write_csv(path: str, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    ap = argparse.ArgumentParser(prog="python -m helpers.predict", description=__doc__.split("\n\n")[0],
                                 epilog="exit codes: 0 all classified, 1 some could not be classified, "
                                        "2 bad arguments or model bundle, 3 nothing could be classified")
    ap.add_argument("model_dir", help="folder with model.keras and bundle.json")
    ap.add_argument("inputs", nargs="+", help="image files and/or folders")
    ap.add_argument("--csv", help="also write the predictions to this CSV file")
    ap.add_argument("--top", type=int, default=3, help="how many classes to print per image (default 3)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)
    if args.top < 1 or args.batch_size < 1:
        ap.error("--top and --batch-size must be positive integers")
    try:
        model, side = load_bundle(args.model_dir)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a damaged model.keras: Keras raises many kinds of errors
        print(f"error: {args.model_dir}: the model could not be loaded ({type(e).__name__}: {e})", file=sys.stderr)
        return EXIT_USAGE
    try:
        from .serve import bundle_runner

        run = bundle_runner(model, side, args.model_dir)
    except Exception as e:  # a missing or damaged runtime file: ONNX Runtime and LiteRT raise their own types
        print(f"error: {args.model_dir}: cannot start its serving runtime ({type(e).__name__}: {e})", file=sys.stderr)
        return EXIT_USAGE
    print(f"model {Path(args.model_dir).name}: {serving_summary(side)}; runtime {run.runtime}")
    classes = list(side["classes"])
    top = min(args.top, len(classes))
    items, errors = collect(args.inputs, classes)
    for raw, why in errors:
        print(f"error: {raw}: {why}", file=sys.stderr)
    rows, y_true, y_pred, failed, flagged = [], [], [], len(errors), 0
    for ans in classify(model, side, items, batch_size=args.batch_size, run=run):
        if ans.error is not None:
            failed += 1
            print(f"error: {ans.path}: {ans.error}", file=sys.stderr)
            continue
        ranked = ans.top(top)
        line = "  ".join(f"{k + 1}. {c} {p:.3f}" for k, (c, p) in enumerate(ranked))
        print(f"{ans.path}: {line}" + (f"  (true: {ans.label})" if ans.label else ""))
        for w in ans.warnings:
            print(f"  warning: {w}")
        flagged += bool(ans.warnings)
        row = {"path": ans.path, "true": ans.label or ""}
        for k, (c, p) in enumerate(ranked):
            row[f"top{k + 1}"], row[f"p{k + 1}"] = c, f"{p:.6f}"
        row["warning"] = "; ".join(ans.warnings)
        rows.append(row)
        if ans.label:
            y_true.append(classes.index(ans.label))
            y_pred.append(classes.index(ranked[0][0]))
    print(f"\n{len(rows)} image(s) classified ({flagged} with a warning), {failed} could not be classified.")
    if y_true:
        _print_scores(y_true, y_pred, classes)
    if args.csv and rows:
        _write_csv(args.csv, rows)
        print(f"predictions written to {args.csv}")
    if not rows:
        return EXIT_NONE
    return EXIT_PARTIAL if failed else EXIT_OK


def _print_scores(y_true: list[int], y_pred: list[int], classes: list[str]) -> None:
    import pandas as pd

    from .evaluate import metrics_block

    m = metrics_block(y_true, y_pred, classes)
    print(f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  (n={m['n']}, labels from folder names)")
    cm = pd.DataFrame(m["confusion"], index=classes, columns=classes)
    cm = cm.loc[(cm.sum(axis=1) > 0) | (cm.sum(axis=0) > 0), (cm.sum(axis=0) > 0) | (cm.sum(axis=1) > 0)]
    print("confusion matrix (rows: true, columns: predicted):")
    print(cm.to_string())


if __name__ == "__main__":
    raise SystemExit(main())
