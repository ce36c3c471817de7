"""helpers.weights: finding ImageNet weights and recording which were used."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers.io import file_digest
from helpers.weights import (
    KIND_CACHE,
    KIND_DOWNLOAD,
    KIND_LOCAL,
    KIND_RANDOM,
    RANDOM_LABEL,
    WeightsNotFoundError,
    application,
    check_family,
    describe,
    families,
    is_pretrained,
    load_base,
    resolve_weights,
)

WEIGHTS_DIR = os.environ.get("KERAS_WEIGHTS_DIR")
MNV2_FILE = "mobilenet_v2_1.00_224_notop.weights.h5"
RN50_FILE = "resnet50_notop.weights.h5"
# What Keras' weights="imagenet" download must ask for: the no-top files of the 224-px networks the book uses.
KERAS_FILES = {"vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "mobilenetv2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"}
FIRST_CONV = {"vgg19": "block1_conv1", "resnet50": "conv1_conv", "mobilenetv2": "Conv1"}


def _real(name: str) -> Path | None:
    if not WEIGHTS_DIR:
        return None
    p = Path(WEIGHTS_DIR) / name
    return p if p.is_file() else None


needs_mnv2 = pytest.mark.skipif(_real(MNV2_FILE) is None,
                                reason=f"$KERAS_WEIGHTS_DIR unset or without {MNV2_FILE}")
needs_rn50 = pytest.mark.skipif(_real(RN50_FILE) is None,
                                reason=f"$KERAS_WEIGHTS_DIR unset or without {RN50_FILE}")


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """Nothing configured: no $KERAS_WEIGHTS_DIR and an empty Keras cache."""
    monkeypatch.delenv("KERAS_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path


@pytest.fixture
def fake_download(monkeypatch, tmp_path):
    """Keras' file download stubbed: it records the names asked for and writes a random file of Keras' layout."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("KERAS_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    asked: list[str] = []
    kernels: dict[str, np.ndarray] = {}

    def get_file(fname, origin=None, cache_subdir="datasets", **kwargs):
        asked.append(fname)
        family = next(f for f in families() if fname.replace("_", "").startswith(f))
        model = application(family)(include_top=False, weights=None, input_shape=(224, 224, 3))
        kernels[family] = model.get_layer(FIRST_CONV[family]).get_weights()[0]
        path = tmp_path / "keras_home" / cache_subdir / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:  # the legacy layout of Keras' official *.h5 files
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        return str(path)

    monkeypatch.setattr(file_utils, "get_file", get_file)  # the name keras.applications call
    monkeypatch.setattr(keras.utils, "get_file", get_file)
    return asked, kernels, tmp_path / "keras_home" / "models"


def test_family_names_are_normalised_and_unknown_ones_rejected():
    assert check_family("MobileNet_V2") == "mobilenetv2"
    assert check_family("ResNet50") == "resnet50"
    with pytest.raises(ValueError, match="Unknown model 'inception'.*vgg19, resnet50, mobilenetv2"):
        resolve_weights("inception")


def test_missing_file_gives_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights("resnet50", tmp_path / "nope.h5")


def test_folder_without_the_file_names_the_expected_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=RN50_FILE):
        resolve_weights("resnet50", tmp_path)


def test_nothing_found_says_what_to_do(no_weights):
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("vgg19", allow_download=False)
    msg = str(e.value)
    assert "KERAS_WEIGHTS_DIR" in msg and "fetch" in msg and "allow_download" in msg and "allow_random" in msg


def test_allow_random_labels_the_provenance_loudly(no_weights):
    prov = resolve_weights("mobilenetv2", allow_download=False, allow_random=True)
    assert prov["kind"] == KIND_RANDOM and prov["path"] is None and prov["sha256"] is None
    assert RANDOM_LABEL.upper() in prov["note"]
    assert not is_pretrained(prov)
    assert "NOT transfer learning".upper() in " ".join(describe(prov).split())


def test_describe_fits_the_page_and_names_the_file():
    from helpers.book import PAGE_WIDTH

    prov = {"family": "mobilenetv2", "kind": "imagenet-local-file", "path": "/w/x.h5", "sha256": "d" * 64,
            "file": "mobilenet_v2_1.00_224_notop.weights.h5"}
    text = describe(prov)
    assert all(len(line) <= PAGE_WIDTH for line in text.splitlines()) and "\n" in text
    assert "mobilenet_v2_1.00_224_notop.weights.h5 (sha256 dddddddddddd…)" in text
    assert "from a local file" in " ".join(text.split()) and "imagenet-local-file" not in text


def test_random_must_be_confirmed():
    with pytest.raises(ValueError, match="allow_random=True"):
        resolve_weights("vgg19", "random")
    assert resolve_weights("vgg19", "random", allow_random=True)["kind"] == KIND_RANDOM


def test_keras_cache_is_found_and_hashed(no_weights):
    cache = no_weights / "keras_home" / "models"
    cache.mkdir(parents=True)
    f = cache / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    f.write_bytes(b"not really weights")
    prov = resolve_weights("vgg19", allow_download=False)
    assert prov["kind"] == KIND_CACHE and prov["path"] == str(f.resolve())
    assert prov["sha256"] == file_digest(f)
    assert "not in the list of known files" in prov["note"]


def test_env_var_may_point_at_a_file(monkeypatch, tmp_path):
    f = tmp_path / "my_resnet.h5"
    f.write_bytes(b"x")
    monkeypatch.setenv("KERAS_WEIGHTS_DIR", str(f))
    prov = resolve_weights("resnet50", allow_download=False)
    assert prov["kind"] == KIND_LOCAL and prov["file"] == "my_resnet.h5"


def test_a_broken_file_fails_with_a_clear_message(tmp_path):
    f = tmp_path / "broken.weights.h5"
    f.write_bytes(b"garbage")
    prov = resolve_weights("mobilenetv2", f)
    with pytest.raises(WeightsNotFoundError, match="Loading the mobilenetv2 weights from .* failed"):
        load_base("mobilenetv2", 32, prov)


@pytest.mark.parametrize("family", ["vgg19", "resnet50", "mobilenetv2"])
def test_download_fetches_the_224_file_that_is_then_found_and_loads(family, fake_download):
    asked, kernels, cache = fake_download
    prov = resolve_weights(family, allow_download=True)
    assert asked == [KERAS_FILES[family]]  # MobileNetV2 at 96 px once asked for the 96-px network's file
    assert prov["kind"] == KIND_DOWNLOAD and prov["path"] == str((cache / KERAS_FILES[family]).resolve())
    base = load_base(family, 96, prov, pooling=None)
    np.testing.assert_array_equal(base.get_layer(FIRST_CONV[family]).get_weights()[0], kernels[family])


@needs_mnv2
def test_real_mobilenetv2_file_loads_with_its_checksum():
    import keras

    prov = resolve_weights("mobilenetv2", allow_download=False)
    assert prov["kind"] == KIND_LOCAL and prov["file"] == MNV2_FILE
    assert prov["sha256"] == file_digest(_real(MNV2_FILE))
    assert "sha256 matches" in prov["note"]
    base = load_base("mobilenetv2", 32, prov, pooling=None)
    fresh = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    loaded, random = base.get_layer("Conv1").get_weights()[0], fresh.get_layer("Conv1").get_weights()[0]
    assert not np.allclose(loaded, random)  # the file's kernels replaced the random ones


@needs_rn50
def test_real_resnet50_file_loads_and_a_wrong_family_is_refused():
    prov = resolve_weights("resnet50", allow_download=False)
    assert prov["kind"] == KIND_LOCAL and len(prov["sha256"]) == 64
    base = load_base("resnet50", 32, prov)
    assert base.output.shape[-1] == 2048
    wrong = dict(prov, family="mobilenetv2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(WeightsNotFoundError, match="really mobilenetv2"):
            load_base("mobilenetv2", 32, wrong)


def test_release_words_tell_the_folded_copy_from_keras_file_and_random():
    from helpers.weights import KNOWN_SHA256, release_words

    folded_sha = next(k for k, v in KNOWN_SHA256.items() if "folded" in v)
    folded = {"family": "mobilenetv2", "kind": "imagenet-local-file", "note": KNOWN_SHA256[folded_sha]}
    assert "folded into the convolutions" in release_words(folded)
    keras_file = {"family": "mobilenetv2", "kind": "imagenet-download", "note": "MobileNetV2 (Sandler et al. 2018)"}
    assert release_words(keras_file).startswith("Keras' own ImageNet file")
    assert release_words({"family": "mobilenetv2", "kind": KIND_RANDOM, "note": ""}) == RANDOM_LABEL
