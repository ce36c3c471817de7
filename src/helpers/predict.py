"""Classify blood-cell images with a saved model bundle and print the top-3 classes.

    python -m helpers.predict MODEL_DIR IMAGE_OR_FOLDER [...] [--csv out.csv] [--top 3]

Any common format and size works (JPEG, PNG, BMP, TIFF, GIF; grayscale, RGBA, CMYK, 16-bit): what
TensorFlow decodes like Pillow is decoded and resized exactly as in training, the rest is converted
to 8-bit RGB by Pillow (:func:`read_rgb`). A folder laid out in class sub-folders
(``basophil/``, ``eosinophil/`` …) is also scored: accuracy, macro-F1 and a confusion matrix.
An unreadable file gets one clear line and the rest are still processed; the exit code is
non-zero only when no image at all could be read (1) or the arguments are wrong (2).
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import numpy as np

from .data import IMAGE_EXTENSIONS, TF_NATIVE_FORMATS
from .export import BundleError, load_bundle
from .io import atomic_write_text


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

    try:
        return decode_rgb(Path(path).read_bytes()).numpy()
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


def to_model_input(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """Resize with the training pipeline's :func:`helpers.pipeline.resize_uint8` → float32 (S, S, 3)."""
    from .pipeline import resize_uint8

    return resize_uint8(rgb, (image_size, image_size)).numpy().astype("float32")


def load_input(path: str | Path, image_size: int) -> np.ndarray:
    """What the predict command feeds the model for one file: :func:`read_rgb` → :func:`to_model_input`."""
    return to_model_input(read_rgb(path), image_size)


@dataclass
class Item:
    path: Path
    label: str | None  # true class from the folder name, when the folder is laid out by class


def collect(inputs: Sequence[str], classes: Sequence[str]) -> tuple[list[Item], list[tuple[str, str]]]:
    """Expand files and folders into items; missing paths become errors."""
    items: list[Item] = []
    errors: list[tuple[str, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_file():
            items.append(Item(p, None))
        elif p.is_dir():
            subdirs = {d.name for d in p.iterdir() if d.is_dir()}
            labelled = bool(subdirs) and subdirs <= set(classes)
            for f in sorted(p.rglob("*")):
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS:
                    items.append(Item(f, f.relative_to(p).parts[0] if labelled else None))
        else:
            errors.append((raw, "no such file or folder"))
    return items, errors


def predict_items(model, items: Iterable[Item], image_size: int, batch_size: int = 32):
    """Yield ``(item, probabilities or None, error or None)`` for every item, batching readable ones."""
    batch: list[tuple[Item, np.ndarray]] = []

    def flush():
        x = np.stack([a for _, a in batch])
        probs = np.asarray(model(x, training=False))
        out = [(it, pr, None) for (it, _), pr in zip(batch, probs)]
        batch.clear()
        return out

    for it in items:
        try:
            batch.append((it, load_input(it.path, image_size)))
        except ValueError as e:
            yield it, None, str(e)
            continue
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helpers.predict", description=__doc__.split("\n\n")[0])
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
        return 2
    classes = list(side["classes"])
    top = min(args.top, len(classes))
    items, errors = collect(args.inputs, classes)
    for raw, why in errors:
        print(f"error: {raw}: {why}", file=sys.stderr)
    rows, y_true, y_pred, failed = [], [], [], len(errors)
    for it, probs, err in predict_items(model, items, int(side["image_size"]), args.batch_size):
        if err is not None:
            failed += 1
            print(f"error: {it.path}: {err}", file=sys.stderr)
            continue
        order = np.argsort(probs)[::-1][:top]
        ranked = "  ".join(f"{k + 1}. {classes[i]} {probs[i]:.3f}" for k, i in enumerate(order))
        print(f"{it.path}: {ranked}" + (f"  (true: {it.label})" if it.label else ""))
        row = {"path": str(it.path), "true": it.label or ""}
        for k, i in enumerate(order):
            row[f"top{k + 1}"], row[f"p{k + 1}"] = classes[i], f"{probs[i]:.6f}"
        rows.append(row)
        if it.label:
            y_true.append(classes.index(it.label))
            y_pred.append(int(order[0]))
    print(f"\n{len(rows)} image(s) classified, {failed} could not be read.")
    if y_true:
        _print_scores(y_true, y_pred, classes)
    if args.csv and rows:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(args.csv, buf.getvalue())
        print(f"predictions written to {args.csv}")
    return 0 if rows else 1


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
