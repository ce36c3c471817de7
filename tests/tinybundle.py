"""A tiny trained bundle for the tests that need one (serving, the command line): a small CNN trained for one
epoch on a few images and saved by :func:`helpers.runs.save_run`, its record and sidecar labelled as such."""
from __future__ import annotations

import os
import time
from pathlib import Path

NOTE = "tiny model trained by the tests; not a result"


def tiny_bundle(data, models_dir: str | os.PathLike, image_size: int = 32, name: str = "tiny_cnn",
                seed: int = 42, results_directory: str | os.PathLike | None = None) -> Path:
    """Train the tiny CNN on ``data`` and save it as a bundle under ``models_dir``; returns the bundle folder."""
    import keras

    from helpers.pipeline import make_dataset
    from helpers.predictions import predict_split
    from helpers.runs import FROM_SCRATCH, save_run

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((image_size, image_size, 3), name="image")
    x = L.Rescaling(1 / 255)(inp)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(8, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name=name)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(make_dataset(data.paths("train"), data.labels("train"), image_size, 32, shuffle=True, seed=seed),
              epochs=1, verbose=0, shuffle=False)
    secs = time.perf_counter() - t0
    preds = {split: predict_split(model, data, split, image_size) for split in ("val", "test")}
    run = save_run(model, name, data, preds, image_size=image_size, epochs=1, train_seconds=secs,
                   weights_source=dict(FROM_SCRATCH), seed=seed, mode="smoke", record={"note": NOTE},
                   bundle={"train_seconds": round(secs, 2), "note": NOTE},
                   results_directory=results_directory or Path(models_dir) / ".smoke-results",
                   models_directory=models_dir)
    return run.bundle
