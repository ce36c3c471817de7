"""``tf.data`` input pipelines: decode → resize → cache → shuffle → batch → augment → prefetch.

Why this order (chapter 2 measures it): decoding and resizing are the expensive steps and
are the same every epoch, so they run once, in parallel, and their uint8 result is cached in
memory; shuffling and random augmentation must differ every epoch, so they come after the
cache; prefetching overlaps the next batch's preparation with the current training step.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow at module import


def validate_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``64`` or ``(64, 64)`` → ``(64, 64)``; a clear error for anything else."""
    def _is_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if _is_int(image_size):
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(map(_is_int, image_size)):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(f"IMAGE_SIZE must be an integer or a (height, width) pair of integers, "
                         f"got {image_size!r}; set it to e.g. 64.")
    if min(size) < 8 or max(size) > 1024:
        raise ValueError(f"IMAGE_SIZE must be between 8 and 1024 pixels, got {image_size!r}; set it to e.g. 64.")
    return size


def resize_uint8(image, size: tuple[int, int], antialias: bool = True):
    """The book's one resize: bilinear (antialiased) to ``size``, rounded and clipped to ``uint8``.

    Every caller goes through it: the training pipeline (:func:`decode_resize`), the predict command
    (:func:`to_model_input`) and chapter 2's figures (:mod:`helpers.preprocess`).
    ``image`` is an (H, W, C) or (N, H, W, C) array or tensor of any real dtype; returns a ``uint8`` tensor.
    """
    import tensorflow as tf

    img = tf.image.resize(image, size, antialias=antialias)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def to_model_input(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """Resize with the training pipeline's :func:`resize_uint8` → float32 (S, S, 3)."""
    return resize_uint8(rgb, (image_size, image_size)).numpy().astype("float32")


def decode_rgb(data):
    """Decode encoded image bytes (JPEG, PNG, BMP, GIF) to a ``uint8`` (H, W, 3) tensor, as training does."""
    import tensorflow as tf

    return tf.io.decode_image(data, channels=3, expand_animations=False)


def decode_resize(path, image_size: tuple[int, int]):
    """Read one image file, decode it to RGB, resize it (a uint8 tensor)."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                               expand_animations=False)
    return resize_uint8(image, image_size)


def check_dataset(paths: Sequence[str], labels, image_size: int | Sequence[int],
                  batch_size: int) -> tuple[int, int]:
    """Refuse what :func:`make_dataset` cannot use, with a clear message; returns the ``(height, width)``."""
    from .config import positive_int

    size = validate_image_size(image_size)
    positive_int(batch_size, "BATCH_SIZE")
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if len(paths) == 0:
        raise ValueError("no images to make a dataset from (the split is empty)")
    missing = [p for p in map(str, paths) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image file(s) do not exist (e.g. {missing[0]}); the data folder "
                                "changed since it was scanned. Run load_split again.")
    return size


def make_dataset(paths: Sequence[str], labels, image_size: int = 64,
                 batch_size: int = 32, *, shuffle: bool = False,
                 augment=None, cache: bool = True, seed: int = 42,
                 prefetch: bool = True):
    """A batched ``tf.data.Dataset`` of (float32 images in [0, 255], labels).

    Read and decode in parallel, resize, cache, shuffle, batch, augment
    (after the cache, so that every epoch sees new variants), prefetch.
    """
    import tensorflow as tf

    size = check_dataset(paths, labels, image_size, batch_size)
    labels = np.asarray(labels, dtype="int32")
    ds = tf.data.Dataset.from_tensor_slices((list(map(str, paths)), labels))
    ds = ds.map(lambda p, y: (decode_resize(p, size), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()  # uint8 images of the chosen size, kept after epoch 1
    if shuffle:
        ds = ds.shuffle(min(len(paths), 20_000), seed=seed,
                        reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y),
                num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:  # random layers, called on whole batches
        ds = ds.map(lambda x, y: (augment(x, training=True), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


def load_images(paths: Sequence[str], image_size: int | Sequence[int] = 64) -> np.ndarray:
    """Decode and resize ``paths`` into one ``uint8`` array (N, H, W, 3), e.g. for figures."""
    if len(paths) == 0:
        h, w = validate_image_size(image_size)
        return np.zeros((0, h, w, 3), dtype="uint8")
    ds = make_dataset(paths, np.zeros(len(paths), "int32"), image_size, batch_size=256, cache=False)
    return np.concatenate([x.numpy().astype("uint8") for x, _ in ds])
