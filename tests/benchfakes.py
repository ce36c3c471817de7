"""Test doubles shared by the timing, harness and serving tests: a fake clock and a tiny nested model."""
from __future__ import annotations


class FakeClock:
    """Each call to ``fn`` advances time by the next of ``durations``."""

    def __init__(self, durations):
        self.t = 0.0
        self.durations = iter(durations)

    def __call__(self) -> float:
        return self.t

    def step(self) -> int:
        self.t += next(self.durations)
        return 10


def tiny_model(size: int = 16):
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((size, size, 3))
    x = L.Rescaling(1 / 255)(inp)
    x = L.Conv2D(8, 3, activation="relu")(x)
    x = L.BatchNormalization()(x)
    x = L.GlobalAveragePooling2D()(x)
    head_in = keras.Input((8,))
    head = keras.Model(head_in, L.Dense(8, activation="softmax")(L.Dense(16, activation="relu")(head_in)), name="head")
    return keras.Model(inp, head(x), name="tiny")
