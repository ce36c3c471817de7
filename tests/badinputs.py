"""The bad-input corpus (issue 7), generated on the fly in a temporary folder (no binary fixtures in git).

:func:`make_corpus` writes a small PBC-layout dataset: a few good images per class (each class a
different solid colour, so a wrong label or a shuffled image is visible in the pixels) plus every
kind of awkward file a reader's download can contain. :data:`CASES` says what must happen to each:

* ``ok``      – decoded correctly by the scan *and* by the ``tf.data`` pipeline (``rgb`` = expected colour);
* ``skipped`` – left out by the scan with exactly one logged line naming the file (``reason`` = regex);
* ``ignored`` – not an image candidate at all (hidden file, other extension), one logged line.

Layout problems (missing/empty/extra class folders, nesting, symlinks, odd data roots) have their own
small builders below. Also home of the ``helpers_log`` fixture shared by the test modules.
"""
from __future__ import annotations

import io
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import CLASSES

WRAPPER = "PBC_dataset_normal_DIB"
GOOD_PER_CLASS = 5
SIZE = (24, 28)  # (height, width) of the generated images: small, and not square


# ------------------------------------------------------------------------------------------------
# pixels and encoders
# ------------------------------------------------------------------------------------------------
def class_colour(k: int) -> tuple[int, int, int]:
    """The solid colour of class number ``k`` (red and green at least 20 apart between classes)."""
    return (30 + 25 * k, 220 - 20 * k, 120)


def solid(rgb, size=SIZE) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, dtype=np.uint8), (*size, 3)).copy()


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise_jpeg(seed: int = 0, size=(64, 64)) -> bytes:
    """A JPEG of random noise: big enough (~10 kB) that cutting it leaves a header but no image."""
    arr = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    return encode(Image.fromarray(arr), "JPEG", quality=95)


def png_rgb16(arr16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write these, so the chunks are written by hand)."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\x00" + arr16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def corrupt_jpeg() -> bytes:
    """A JPEG whose header is fine but whose scan data holds a bogus Huffman-table marker: undecodable."""
    good = noise_jpeg(1)
    i = good.index(b"\xff\xda") + 300  # inside the entropy-coded scan data
    return good[:i] + b"\xff\xc4\x00\x03\x00" + good[i:]


def png_bad_crc() -> bytes:
    """A PNG with one flipped byte in its pixel data (the chunk checksum no longer matches)."""
    good = bytearray(encode(Image.fromarray(solid((7, 7, 7))), "PNG", compress_level=0))
    i = good.index(b"IDAT") + 40
    good[i] ^= 0xFF
    return bytes(good)


def animated_gif() -> bytes:
    """A two-frame GIF: eosinophil colour first, then black (the pipeline uses the first frame)."""
    frames = [_eo_img(), Image.new("RGB", SIZE[::-1], (0, 0, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


# A real macOS .DS_Store starts like this ("Bud1" buddy allocator); renamed to .jpg it is a classic.
DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(2036)


# ------------------------------------------------------------------------------------------------
# the corpus
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    path: str                          # relative to the dataset root: "<class>/<file>"
    outcome: str                       # "ok" | "skipped" | "ignored"
    make: Callable[[], bytes] | None   # the file's bytes (None: written specially, e.g. a symlink)
    reason: str = ""                   # regex the logged reason must match
    rgb: tuple[int, int, int] | None = None  # expected mean colour after decoding ("ok" cases)

    @property
    def label(self) -> str:
        return self.path.split("/", 1)[0]


EO = class_colour(CLASSES.index("eosinophil"))
_BAD = r"corrupt|truncated|not an image|cannot decode"


def _eo_img(mode: str | None = None) -> Image.Image:
    im = Image.fromarray(solid(EO))
    return im.convert(mode) if mode else im


def _gray_value() -> int:  # Pillow's L conversion of the eosinophil colour
    return int(np.asarray(_eo_img("L"))[0, 0])


CASES: list[Case] = [
    # ---- unusable files: skipped by the scan, one log line each ----------------------------------
    Case("basophil/BA_corrupt.jpg", "skipped", lambda: corrupt_jpeg(), _BAD),
    Case("basophil/BA_truncated.jpg", "skipped", lambda: noise_jpeg(3)[: len(noise_jpeg(3)) * 6 // 10],
         r"truncated|cannot decode"),
    Case("basophil/BA_zero_bytes.jpg", "skipped", lambda: b"", r"empty file \(0 bytes\)"),
    Case("basophil/BA_renamed_DS_Store.jpg", "skipped", lambda: DS_STORE, r"not an image"),
    Case("basophil/BA_text.jpeg", "skipped", lambda: b"<html>404 Not Found</html>\n", r"not an image"),
    Case("basophil/BA_png_tail_cut.png", "skipped", lambda: encode(Image.fromarray(solid((9, 9, 9))), "PNG")[:-4],
         r"training pipeline \(TensorFlow\) cannot decode"),
    Case("basophil/BA_bmp_tail_cut.bmp", "skipped", lambda: encode(Image.fromarray(solid((8, 8, 8))), "BMP")[:-2],
         r"training pipeline \(TensorFlow\) cannot decode|truncated"),
    Case("basophil/BA_tiff.tif", "skipped", lambda: encode(_eo_img(), "TIFF"),
         r"TIFF image is not supported by the training pipeline"),
    Case("basophil/BA_png_bad_crc.png", "skipped", lambda: png_bad_crc(), _BAD),
    Case("basophil/BA_webp_named.jpg", "skipped", lambda: encode(_eo_img(), "WEBP", lossless=True),
         r"WEBP image is not supported by the training pipeline"),
    Case("basophil/BA_broken_link.jpg", "skipped", None, r"cannot read file"),
    # ---- not image candidates: ignored, one log line each ----------------------------------------
    Case("basophil/.DS_Store", "ignored", lambda: DS_STORE, r"hidden file"),
    Case("basophil/._BA_1000.jpg", "ignored", lambda: b"\x00\x05\x16\x07" + bytes(60), r"hidden file"),
    Case("basophil/Thumbs.db", "ignored", lambda: bytes(100), r"not an image extension \(\.db\)"),
    Case("basophil/README", "ignored", lambda: b"notes", r"not an image extension \(none\)"),
    # ---- awkward but valid: decoded correctly by scan and pipeline -------------------------------
    # damaged scan data that both decoders get through (with a "Corrupt JPEG data" warning): kept
    Case("basophil/BA_damaged_but_decodable.jpg", "ok", lambda: noise_jpeg(1)[:600] + bytes(400) + noise_jpeg(2)[600:]),
    Case("eosinophil/EO_png.png", "ok", lambda: encode(_eo_img(), "PNG"), rgb=EO),
    Case("eosinophil/EO_bmp.bmp", "ok", lambda: encode(_eo_img(), "BMP"), rgb=EO),
    Case("eosinophil/EO_gif.gif", "ok", lambda: encode(_eo_img(), "GIF"), rgb=EO),
    Case("eosinophil/EO_palette.png", "ok", lambda: encode(_eo_img().quantize(4), "PNG"), rgb=EO),
    Case("eosinophil/EO_rgba.png", "ok", lambda: encode(_eo_img("RGBA"), "PNG"), rgb=EO),
    Case("eosinophil/EO_grey.jpg", "ok", lambda: encode(_eo_img("L"), "JPEG", quality=95),
         rgb=(_gray_value(),) * 3),
    Case("eosinophil/EO_grey_alpha.png", "ok", lambda: encode(_eo_img("LA"), "PNG"), rgb=(_gray_value(),) * 3),
    Case("eosinophil/EO_bilevel.png", "ok", lambda: encode(Image.new("1", SIZE[::-1], 1), "PNG"),
         rgb=(255, 255, 255)),
    Case("eosinophil/EO_cmyk.jpg", "ok", lambda: encode(_eo_img("CMYK"), "JPEG", quality=95), rgb=EO),
    Case("eosinophil/EO_grey16.png", "ok",
         lambda: encode(Image.fromarray(np.full(SIZE, 0x8040, dtype=np.uint16)), "PNG"), rgb=(0x80,) * 3),
    Case("eosinophil/EO_rgb16.png", "ok", lambda: png_rgb16(solid(EO).astype(np.uint16) * 257), rgb=EO),
    Case("eosinophil/EO_animated.gif", "ok", lambda: animated_gif(), rgb=EO),  # first frame is used
    Case("eosinophil/EO_1x1.png", "ok", lambda: encode(Image.new("RGB", (1, 1), EO), "PNG"), rgb=EO),
    Case("eosinophil/EO_png_named.jpg", "ok", lambda: encode(_eo_img(), "PNG"), rgb=EO),
    Case("eosinophil/EO_progressive.jpeg", "ok", lambda: encode(_eo_img(), "JPEG", quality=92, progressive=True),
         rgb=EO),
    Case("eosinophil/EO_upper.JPG", "ok", lambda: encode(_eo_img(), "JPEG", quality=95), rgb=EO),
    Case("eosinophil/EO with spaces.jpg", "ok", lambda: encode(_eo_img(), "JPEG", quality=94), rgb=EO),
    Case("eosinophil/EO_ünïcødé_日本.jpg", "ok", lambda: encode(_eo_img(), "JPEG", quality=93), rgb=EO),
    Case("eosinophil/sub folder/EO_nested.png", "ok", lambda: encode(_eo_img().rotate(180), "PNG", compress_level=1),
         rgb=EO),
]


def write_good(droot: Path, n_per_class: int = GOOD_PER_CLASS, classes=CLASSES) -> None:
    """``n_per_class`` distinct good JPEGs per class, each class its own colour (blue varies per file)."""
    for k, cls in enumerate(classes):
        d = droot / cls
        d.mkdir(parents=True, exist_ok=True)
        r, g, b = class_colour(k)
        for i in range(n_per_class):
            img = Image.fromarray(solid((r, g, b + 3 * i)))
            img.save(d / f"{cls[:2].upper()}_{1000 + i}.jpg", quality=95)


def make_corpus(root: str | Path, cases: list[Case] = CASES) -> Path:
    """Write good images + every case under ``root/PBC_dataset_normal_DIB``; returns that dataset root."""
    droot = Path(root) / WRAPPER
    write_good(droot)
    for c in cases:
        p = droot / c.path
        p.parent.mkdir(parents=True, exist_ok=True)
        if c.make is None:  # the broken symlink
            os.symlink(droot / "basophil" / "was_deleted.jpg", p)
        else:
            p.write_bytes(c.make())
    return droot


def expected_colour(path: str, cases: list[Case] = CASES) -> tuple[int, int, int] | None:
    """The colour a usable file of the corpus must decode to (good files: their class colour ± blue)."""
    for c in cases:
        if c.path == path:
            return c.rgb
    return class_colour(CLASSES.index(path.split("/", 1)[0]))


def write_large(path: Path, side: int = 8000, rgb=(200, 60, 90)) -> Path:
    """A ``side`` × ``side`` solid JPEG (~64 megapixels: below Pillow's decompression-bomb limit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), rgb).save(path, quality=90)
    return path


# ------------------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------------------
def make_layout(root: str | Path, wrappers: tuple[str, ...] = (WRAPPER,), n_per_class: int = GOOD_PER_CLASS,
                classes=CLASSES) -> Path:
    """Good images under ``root/<wrappers...>/<class>/``; returns the folder holding the class folders."""
    droot = Path(root).joinpath(*wrappers)
    write_good(droot, n_per_class, classes)
    return droot


def snapshot(root: str | Path) -> dict[str, tuple]:
    """Every entry under ``root`` (not following links) with its type, size and mtime: for "nothing written"."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    st = Path(root).lstat()
    out["."] = (st.st_mode, st.st_mtime_ns)
    return out


# ------------------------------------------------------------------------------------------------
# logging fixture
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def helpers_log(caplog):
    """``caplog`` at INFO that sees the ``helpers`` loggers even when a notebook helper
    (:func:`helpers.book.setup_logging`) has turned their propagation off. Each record is captured once."""
    logger = logging.getLogger("helpers")
    old = (logger.level, logger.propagate)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]


def log_lines(caplog, text: str) -> list[str]:
    """Messages of the ``helpers`` loggers that contain ``text``."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("helpers") and text in r.getMessage()]
