"""helpers.layers: every custom layer at module level, registered under the names saved models use; the quarter-turn
layer; and no import cycle between the helpers modules (imports inside functions included)."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers import layers  # noqa: E402
from helpers.layers import CUSTOM_LAYERS, ClipToRange, DihedralViews, MeanOverViews, RandomRot90  # noqa: E402

HELPERS = Path(__file__).resolve().parents[1] / "src" / "helpers"
SAVED_NAMES = {"ClipToRange": "bloodcells>ClipToRange", "RandomRot90": "bloodcells>RandomRot90",
               "DihedralViews": "bloodcells>DihedralViews", "MeanOverViews": "bloodcells>MeanOverViews"}
"""The registered names found in the book's saved bundles (they must never change)."""
OLD_MODULES = {"ClipToRange": "helpers.augment", "RandomRot90": "helpers.models",
               "DihedralViews": "helpers.tta", "MeanOverViews": "helpers.tta"}
"""Where each class lived before helpers.layers; bundles saved then name these modules."""


def _imports(path: Path) -> set[str]:
    """The helpers modules that ``path`` imports anywhere (module level or inside functions)."""
    modules = {p.stem for p in HELPERS.glob("*.py")} - {"__init__"}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 0 and parts[:1] == ["helpers"]:
                parts = parts[1:]
            elif node.level != 1:
                continue
            found.update(parts[:1] or [a.name for a in node.names])  # `from . import a, b` names modules
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("helpers."))
    return (found & modules) - {path.stem}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:  # back to a module on the current path: a cycle
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep, path + [dep])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_import_graph_reader_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "tta.py"
    f.write_text("from .layers import DihedralViews\n\ndef save():\n    from .export import save_bundle\n"
                 "    from . import results, io\n    import helpers.config\n")
    assert _imports(f) == {"layers", "export", "results", "io", "config"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_helpers_modules():
    graph = {p.stem: _imports(p) for p in HELPERS.glob("*.py") if p.stem != "__init__"}
    assert {"layers", "augment", "models", "tta", "export"} <= set(graph)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_layers_module_needs_no_other_helpers_module():
    assert _imports(HELPERS / "layers.py") == set()


def test_every_custom_layer_is_at_module_level_and_registered_under_its_saved_name():
    assert {cls.__name__ for cls in CUSTOM_LAYERS} == set(SAVED_NAMES)
    for cls in CUSTOM_LAYERS:
        assert cls.__module__ == "helpers.layers" and "<locals>" not in cls.__qualname__
        assert getattr(layers, cls.__name__) is cls
        assert keras.saving.get_registered_name(cls) == SAVED_NAMES[cls.__name__]
        assert keras.saving.get_registered_object(SAVED_NAMES[cls.__name__]) is cls


def test_the_other_modules_use_the_same_classes():
    from helpers import export, tta

    assert tta.DihedralViews is DihedralViews and tta.MeanOverViews is MeanOverViews
    export.register_custom_layers()  # only imports helpers.layers; must not fail or redefine anything
    assert keras.saving.get_registered_object("bloodcells>ClipToRange") is ClipToRange


@pytest.mark.parametrize("layer", [ClipToRange(0.0, 1.0, name="c"), RandomRot90(seed=3, name="r"),
                                   DihedralViews(4, name="d"), MeanOverViews(4, name="m")],
                         ids=lambda layer: type(layer).__name__)
def test_configs_saved_by_the_old_modules_still_deserialize(layer):
    config = keras.saving.serialize_keras_object(layer)
    config["module"] = OLD_MODULES[type(layer).__name__]
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(layer) and again.get_config() == layer.get_config()


def test_clip_to_range_clips_and_saves_its_range(tmp_path):
    x = np.array([[-5.0, 0.5, 300.0]], "float32")
    np.testing.assert_array_equal(np.asarray(ClipToRange()(x)), [[0.0, 0.5, 255.0]])
    inp = keras.Input((3,))
    model = keras.Model(inp, ClipToRange(0.0, 1.0, name="clip")(inp))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_array_equal(np.asarray(again(x)), [[0.0, 0.5, 1.0]])


def test_rot90_only_turns_in_training_and_keeps_pixels():
    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    layer = RandomRot90(seed=1)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    turned = [np.asarray(layer(x, training=True)) for _ in range(12)]
    for t in turned:
        for i in range(2):
            assert any(np.array_equal(t[i], np.rot90(x[i], k, axes=(0, 1))) for k in range(4))
    assert any(not np.array_equal(t, x) for t in turned)  # it does turn sometimes


def test_rot90_rejects_non_square_images():
    with pytest.raises(ValueError, match="square"):
        RandomRot90()(np.zeros((1, 4, 6, 3), "float32"), training=True)
