"""Transfer recipes per profile and family: :func:`recipe` returns a :class:`Recipe` (sizes, epochs, phases).

``"cpu"`` is the book's recipe, measured on a 2-core CPU (cache + head; phase 2 only for MobileNetV2,
whose top does not over-fit the cache; phase 3 from the middle of VGG19 and ResNet50, from the input of
MobileNetV2). ``"gpu"`` runs phase 1 and then phase 3 for every family at 224 px (the ImageNet
networks' own scale; MedMNIST+ reports its best end-to-end results there), 10-15 epochs with a
cosine schedule and early stopping, batch 64; phase 2 is skipped (phase 3 trains the same layers
and all the others), so ``extract`` keeps only the *pooled* features (the whole frozen base, batch by
batch: at 224 px the split layer's activations of every training image would not fit a free Colab's RAM), and on
a GPU every model is built under Keras' ``mixed_float16`` policy (the head's softmax in float32; ``compile``
scales the loss), restored afterwards. ``"auto"`` is gpu when TensorFlow sees a GPU (:func:`resolve_profile`). On
more than one GPU, :func:`distribution_strategy` gives ``tf.distribute.MirroredStrategy``, and the
run builds and compiles every model inside its scope (``start_run(..., strategy=...)``); there every training batch
splits evenly across the GPUs and validation runs outside the strategy (Keras fails on uneven batches).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from .weights import check_family

PROFILES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Recipe:
    """Sizes, epochs and phases of one transfer chapter, for one profile and one architecture.

    ``profile`` is resolved (``"cpu"`` or ``"gpu"``); ``ft_epochs = 0`` skips phase 2 and
    ``e2e_epochs = 0`` skips phase 3. ``replicas`` is the number of GPUs the gpu profile trains on
    (:func:`distribution_strategy`); ``precision`` the Keras dtype policy its models are built under
    (``"mixed_float16"`` in the gpu profile when TensorFlow sees a GPU). ``why`` says in one sentence why the
    profile looks as it does.
    """

    profile: str
    family: str
    image_size: int
    split_layer: str
    batch_size: int = 32
    tuner_trials: int = 8
    tuner_epochs: int = 10
    head_epochs: int = 30
    ft_epochs: int = 5
    ft_lr: float = 1e-4
    e2e_epochs: int = 0
    e2e_lr: float = 3e-4
    e2e_first_layer: str | None = None
    e2e_time_budget_min: float | None = None
    speed_sizes: tuple[int, ...] = ()
    probe_sizes: tuple[int, ...] = ()
    probe_per_class: int = 20
    max_per_class: int | None = None
    spread_seeds: tuple[int, ...] = (42, 43, 44)
    spread_per_class: int = 100
    replicas: int = 1
    precision: str = "float32"
    why: str = ""

    @property
    def pooled_only(self) -> bool:
        """Whether :func:`extract` keeps only the pooled features: the gpu profile, which skips phase 2."""
        return self.profile == "gpu" and not self.ft_epochs

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


_CPU_WHY = ("a 2-core CPU: the frozen lower part runs once and is cached for the head (phase 1); the upper "
            "layers are then fine-tuned on augmented images (phase 3) at the size whose training epoch costs "
            "a few minutes")
_GPU_WHY = ("a GPU: end-to-end fine-tuning of every layer on augmented images at 224 px, the ImageNet "
            "networks' own scale, with a cosine schedule for 10-15 epochs, as the benchmark papers do; "
            "phase 2 is left out, because phase 3 trains the same layers and all the others")
# The CPU profile is the book's recipe, measured on a 2-core CPU: change it only with new measurements.
CPU_RECIPES: dict[str, dict[str, Any]] = {
    # VGG19 and ResNet50: phase 2 on a cache of un-augmented activations over-fits (train 98 % vs val 83-92 %),
    # so the cpu profile fine-tunes on augmented images instead (phase 3), from the middle of the network up.
    # Epochs: with 2 (VGG19) and 3 (ResNet50) the val accuracy still rose at the last epoch (0.891 → 0.937;
    # 0.898 → 0.947 → 0.952), so the schedules are longer: 4 and 5 epochs. Their cost, measured on a 2-core
    # Zen 4 CPU: chapter 4 51 min, chapter 5 30 min, over the 60 min the bench allows the three transfer
    # chapters together (results/transfer_*.json keep each epoch's minutes and val accuracy).
    "vgg19": dict(image_size=64, split_layer="block5_conv2", ft_epochs=0, e2e_epochs=4, e2e_lr=1e-4,
                  e2e_first_layer="block4_conv1", e2e_time_budget_min=None, speed_sizes=(48, 64, 96),
                  probe_sizes=(48, 64, 96, 128), probe_per_class=20),
    "resnet50": dict(image_size=64, split_layer="conv5_block2_out", ft_epochs=0, e2e_epochs=5, e2e_lr=1e-4,
                     e2e_first_layer="conv3_block1_1_conv", e2e_time_budget_min=None,
                     speed_sizes=(64, 96, 128), probe_sizes=(64, 96, 128, 160), probe_per_class=25),
    # phase 3: 12 epochs and no clock (a slower CPU takes longer; the model stays the same). 12, not 6: the
    # pilot with phase 3 twice as long gained beyond the seed noise (results/pilots/transfer_recipes.json)
    "mobilenetv2": dict(image_size=96, split_layer="block_12_add", ft_epochs=4, e2e_epochs=12, e2e_lr=3e-4,
                        e2e_time_budget_min=None, speed_sizes=(64, 96, 128, 160), probe_sizes=(),
                        probe_per_class=20),
}
# The GPU profile: phase 3 at 224 px. VGG19 has no batch norm and the largest gradients, so the lowest
# peak rate; MobileNetV2's depthwise filters tolerate (and need) the highest.
GPU_RECIPES: dict[str, dict[str, Any]] = {
    "vgg19": dict(image_size=224, split_layer="block5_conv2", batch_size=64, ft_epochs=0, e2e_epochs=10,
                  e2e_lr=1e-4, e2e_time_budget_min=60, speed_sizes=(128, 224), probe_sizes=(64, 128, 224)),
    "resnet50": dict(image_size=224, split_layer="conv5_block2_out", batch_size=64, ft_epochs=0,
                     e2e_epochs=12, e2e_lr=2e-4, e2e_time_budget_min=60, speed_sizes=(128, 224),
                     probe_sizes=(64, 128, 224), probe_per_class=25),
    "mobilenetv2": dict(image_size=224, split_layer="block_12_add", batch_size=64, ft_epochs=0,
                        e2e_epochs=15, e2e_lr=3e-4, e2e_time_budget_min=60, speed_sizes=(128, 224)),
}
# Smoke mode (CI): every profile shrinks to a code check of its own phases.
SMOKE = dict(max_per_class=8, image_size=64, tuner_trials=2, tuner_epochs=1, head_epochs=1,
             probe_per_class=2, spread_seeds=(42, 43), spread_per_class=8)


def gpus() -> list[Any]:
    """The GPUs TensorFlow sees."""
    import tensorflow as tf

    return list(tf.config.list_physical_devices("GPU"))


def resolve_profile(profile: str = "auto") -> str:
    """``"cpu"`` or ``"gpu"``: ``"auto"`` is ``"gpu"`` when TensorFlow sees a GPU."""
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    if profile == "auto":
        return "gpu" if gpus() else "cpu"
    return profile


def recipe(family: str, profile: str = "auto", mode: str = "book", **overrides: Any) -> Recipe:
    """The :class:`Recipe` of ``family`` for ``profile`` (resolved) in ``mode``; ``overrides`` win.

    Smoke mode keeps the profile's phases but shrinks sizes and epochs to one of each; overrides
    whose value is ``None`` are ignored (a notebook parameter left at ``None`` means "the profile's").
    """
    family = check_family(family)
    profile = resolve_profile(profile)
    table = GPU_RECIPES if profile == "gpu" else CPU_RECIPES
    fields: dict[str, Any] = {**table[family], "why": _GPU_WHY if profile == "gpu" else _CPU_WHY}
    if profile == "gpu":  # a GPU's tensor cores compute in float16; float16 on a CPU is slow
        fields["replicas"] = max(1, len(gpus()))
        fields["precision"] = "mixed_float16" if gpus() else "float32"
    if mode == "smoke":
        fields.update(SMOKE, speed_sizes=(64,), probe_sizes=(64,) if fields.get("probe_sizes") else (),
                      ft_epochs=min(fields.get("ft_epochs", 5), 1), e2e_epochs=min(fields.get("e2e_epochs", 0), 1),
                      batch_size=min(fields.get("batch_size", 32), 32))
    fields.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(fields) - set(Recipe.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown recipe fields: {sorted(unknown)}")
    return Recipe(profile=profile, family=family, **fields)


def distribution_strategy(profile: str = "cpu", devices: Sequence[str] | None = None):
    """``tf.distribute.MirroredStrategy`` for the gpu profile on more than one GPU (or on ``devices``),
    else TensorFlow's default strategy. Build and compile the model inside ``strategy.scope()``:
    :func:`start_run` and :func:`phase3` do, given ``strategy=``."""
    import tensorflow as tf

    if devices is not None:
        return tf.distribute.MirroredStrategy(list(devices))
    if resolve_profile(profile) == "gpu" and len(gpus()) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@contextmanager
def build_scope(strategy, precision: str = "float32") -> Iterator[None]:
    """Build and compile models inside ``strategy``'s scope (``None``: TensorFlow's default) under Keras' global
    dtype policy ``precision`` (``"mixed_float16"``: float16 computations, float32 variables). The previous
    policy is restored afterwards: models built later, e.g. by a cpu run in the same process, are unaffected."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        with strategy.scope() if strategy is not None else nullcontext():
            yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
