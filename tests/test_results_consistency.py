"""Numbers in the book agree with the results registry (``results/<model>.json``).

Every executed notebook stores its glued values (``helpers.book.glue`` → ``myst_nb.glue``) in cell
outputs: an output whose ``metadata.scrapbook.name`` is the glue name and whose data holds the
value's ``text/plain`` (prefixed ``application/papermill.record/`` when not displayed). A glued
number whose NAME points into a record must equal that record's value (up to the rounding of the
glued text). The naming convention (documented in ``results/GLUE.md``):

    <model>_<path>     e.g.  transfer_vgg19_test_accuracy, transfer_vgg19_val_macro_f1,
                             transfer_vgg19_test_per_class_ig_f1, transfer_vgg19_train_seconds

``<model>`` is a record's ``model`` field, or a trailing ``_``-separated part of it ("vgg19" for
"transfer_vgg19") when that is unambiguous; ``<path>`` is a path of keys into the record joined by
``_``; in a ``val``/``test`` block ``acc`` and ``f1`` are accepted for ``accuracy`` and
``macro_f1``. A glued name that ends like a split metric (``…_test_acc``, ``…_val_macro_f1``)
but resolves to no record is reported too: it is a result the registry cannot vouch for.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat
import pytest

from helpers.book import GLUE_PREFIX

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

BLOCK_ALIASES = {"acc": "accuracy", "f1": "macro_f1"}
LOOKS_LIKE_RESULT = re.compile(r"(^|_)(val|test)_(acc|accuracy|f1|macro_f1|weighted_f1)$")
_NUMBER = re.compile(r"^(?:np\.(?:float|int|uint)\d*\()?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\)?$")


# ---------------------------------------------------------------------------------------------
# Reading glued values and records
# ---------------------------------------------------------------------------------------------
def parse_number(text: str) -> float | None:
    """The number in a glued ``text/plain`` ("0.93", "np.float64(0.93)", "12"), else None."""
    m = _NUMBER.match(text.strip())
    return float(m.group(1)) if m else None


def glued_values(nb: nbformat.NotebookNode) -> dict[str, str]:
    """``{glue name: text/plain}`` of every glued value in an executed notebook (:func:`helpers.book.glued_values`)."""
    from helpers.book import glued_values as read

    return read(nb)


def load_records(directory: Path) -> dict[str, dict[str, Any]]:
    """``{model: record}`` for every results record in ``directory`` (other JSON files ignored)."""
    records = {}
    for p in sorted(directory.glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise AssertionError(f"{p} is not readable JSON: {e}") from e
        if isinstance(rec, dict) and "model" in rec and ("test" in rec or "val" in rec):
            records[str(rec["model"])] = rec
    return records


# ---------------------------------------------------------------------------------------------
# Resolving a glue name into a record
# ---------------------------------------------------------------------------------------------
def _aliases(model: str) -> list[str]:
    """"transfer_vgg19" → ["transfer_vgg19", "vgg19"]."""
    parts = model.split("_")
    return ["_".join(parts[i:]) for i in range(len(parts))]


def resolve_path(obj: Any, rest: str, in_block: bool = False) -> tuple[bool, Any]:
    """Follow ``rest`` (keys joined by ``_``) into a nested record; (found, value)."""
    if not isinstance(obj, Mapping):
        return False, None
    keys = {str(k): k for k in obj}
    if in_block:
        keys.update({a: t for a, t in BLOCK_ALIASES.items() if t in obj and a not in keys})
    if rest in keys:
        return True, obj[keys[rest]]
    for name, key in sorted(keys.items(), key=lambda kv: -len(kv[0])):
        if rest.startswith(name + "_"):
            found, value = resolve_path(obj[key], rest[len(name) + 1:], in_block=name in ("val", "test"))
            if found:
                return True, value
    return False, None


def resolve(name: str, records: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """Every (model, value) that glue ``name`` resolves to, longest model alias first."""
    hits: list[tuple[int, str, Any]] = []
    for model, rec in records.items():
        for alias in _aliases(model):
            if name.startswith(alias + "_"):
                found, value = resolve_path(rec, name[len(alias) + 1:])
                if found:
                    hits.append((len(alias), model, value))
                    break
    if not hits:
        return []
    best = max(h[0] for h in hits)
    return [(m, v) for n, m, v in hits if n == best]


def agrees(text: str, recorded: Any) -> bool:
    """A glued number equals the recorded one, up to the decimals shown in the glued text. A recorded table
    (columns of lists, as ``helpers.results.add_tables`` keeps a probe or speed table) agrees when one of its
    cells does: the page quotes one row of it."""
    if isinstance(recorded, Mapping) and recorded and all(isinstance(v, list) for v in recorded.values()):
        return any(agrees(text, cell) for column in recorded.values() for cell in column)
    m = _NUMBER.match(text.strip())
    if not m or isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
        return False
    number = m.group(1)
    glued = float(number)
    mantissa = re.split(r"[eE]", number)[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if re.search(r"[eE]", number):
        decimals = 15  # scientific notation: compare (nearly) exactly
    tol = max(0.5 * 10 ** -decimals, 1e-9 * max(1.0, abs(float(recorded))))
    return math.isclose(glued, float(recorded), abs_tol=tol, rel_tol=1e-9)


def check_glue(glued: Mapping[str, str], records: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(problems, checked names) for one notebook's glued values against the records."""
    problems, checked = [], []
    for name, text in sorted(glued.items()):
        if parse_number(text) is None:
            continue  # a string, list, figure…: not a registry number
        hits = resolve(name, records)
        if not hits:
            if LOOKS_LIKE_RESULT.search(name):
                problems.append(f"{name} = {text} looks like a result but matches no record in results/ "
                                f"(models: {sorted(records) or 'none'}); name it <model>_<split>_<metric>")
            continue
        if len({m for m, _ in hits}) > 1:
            problems.append(f"{name} is ambiguous: it resolves into the records of {sorted(m for m, _ in hits)}")
            continue
        model, recorded = hits[0]
        checked.append(name)
        if not agrees(text, recorded):
            problems.append(f"{name} = {text} in the book, but results/{model}.json says {recorded!r}")
    return problems, checked


# ---------------------------------------------------------------------------------------------
# The check on the committed book
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_glued_results_match_registry(notebook: Path):
    glued = glued_values(nbformat.read(notebook, as_version=4))
    if not glued:
        pytest.skip(f"{notebook.name} has no glued values (not executed yet?)")
    problems, checked = check_glue(glued, load_records(RESULTS))
    assert not problems, f"{notebook.name} disagrees with results/:\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------------------------------------
# The check itself can fail: a tiny fake notebook and record
# ---------------------------------------------------------------------------------------------
def _fake_notebook(values: Mapping[str, Any], display: Iterable[str] = ()) -> nbformat.NotebookNode:
    outputs = []
    for name, value in values.items():
        prefix = "" if name in display else GLUE_PREFIX
        outputs.append(nbformat.v4.new_output(
            "display_data", data={prefix + "text/plain": value if isinstance(value, str) else repr(value)},
            metadata={"scrapbook": {"name": name, "mime_prefix": prefix}}))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Fake"), nbformat.v4.new_code_cell("glue(...)", outputs=outputs),
                nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")])]
    return nb


def _fake_record(model: str = "transfer_vgg19", acc: float = 0.9312, f1: float = 0.9201) -> dict[str, Any]:
    block = {"n": 100, "accuracy": acc, "macro_f1": f1, "weighted_f1": f1,
             "per_class": {"ig": {"precision": 0.8, "recall": 0.75, "f1": 0.7742, "support": 20}}}
    return {"schema": 1, "model": model, "image_size": 160, "epochs": 3, "train_seconds": 812.4,
            "weights_source": "imagenet", "data": {}, "seed": 42, "git_commit": "x", "val": dict(block),
            "test": dict(block, accuracy=acc - 0.01), "params": 20_000_000}


@pytest.fixture()
def registry(tmp_path: Path) -> dict[str, dict[str, Any]]:
    (tmp_path / "transfer_vgg19.json").write_text(json.dumps(_fake_record()))
    (tmp_path / "notebook_timings.json").write_text(json.dumps({"01.ipynb": {"seconds": 3}}))  # not a record
    return load_records(tmp_path)


def test_fake_notebook_roundtrip_reads_glue(tmp_path: Path):
    path = tmp_path / "fake.ipynb"
    nbformat.write(_fake_notebook({"a": 0.5, "b": "np.float64(0.25)"}, display={"b"}), path)
    assert glued_values(nbformat.read(path, as_version=4)) == {"a": "0.5", "b": "np.float64(0.25)"}


def test_matching_numbers_pass(registry):
    nb = _fake_notebook({"transfer_vgg19_test_accuracy": 0.9212, "vgg19_val_acc": "np.float64(0.9312)",
                         "vgg19_test_per_class_ig_f1": 0.774, "vgg19_train_seconds": 812.4,
                         "vgg19_params": 20_000_000, "vgg19_size": 160, "vgg19_note": "'text'"})
    problems, checked = check_glue(glued_values(nb), registry)
    assert problems == []
    assert set(checked) == {"transfer_vgg19_test_accuracy", "vgg19_val_acc", "vgg19_test_per_class_ig_f1",
                            "vgg19_train_seconds", "vgg19_params"}


@pytest.mark.parametrize("name,value", [
    ("transfer_vgg19_test_accuracy", 0.95),          # a stale table: the record says 0.9212
    ("vgg19_val_macro_f1", "np.float64(0.85)"),
    ("vgg19_test_f1", 0.93),                          # rounding to 2 d.p. would give 0.92
    ("vgg19_params", 123),
])
def test_disagreeing_number_fails(registry, name, value):
    problems, _ = check_glue(glued_values(_fake_notebook({name: value})), registry)
    assert len(problems) == 1 and name in problems[0] and "results/transfer_vgg19.json" in problems[0]


def test_rounded_glue_agrees_only_within_its_decimals(registry):
    assert check_glue({"vgg19_test_acc": "0.92"}, registry)[0] == []       # 0.9212 shown to 2 d.p.
    assert check_glue({"vgg19_test_acc": "0.921"}, registry)[0] == []
    assert check_glue({"vgg19_test_acc": "0.9213"}, registry)[0] != []     # wrong in the 4th decimal


def test_result_like_name_without_record_fails(registry):
    problems, _ = check_glue({"rn50_test_acc": "0.9"}, registry)
    assert problems and "matches no record" in problems[0]
    assert check_glue({"rn50_p1_val": "0.9"}, registry)[0] == []          # not result-like: not checked


def test_ambiguous_alias_fails(tmp_path: Path):
    for model in ("transfer_vgg19", "scratch_vgg19"):
        (tmp_path / f"{model}.json").write_text(json.dumps(_fake_record(model)))
    problems, _ = check_glue({"vgg19_test_acc": "0.9212"}, load_records(tmp_path))
    assert problems and "ambiguous" in problems[0]
    assert check_glue({"scratch_vgg19_test_acc": "0.9212"}, load_records(tmp_path))[0] == []


# ---------------------------------------------------------------------------------------------
# Numbers quoted from the benchmark report (glued as report_<key>) agree with the committed report
# ---------------------------------------------------------------------------------------------
BENCH_REPORT = ROOT / "benchmarks" / "results.json"
BENCH_PREFIX = "report_"


def check_bench_glue(glued: Mapping[str, str], summary: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, checked names): every glued ``report_<key>`` equals ``summary[key]``."""
    problems, checked = [], []
    for name, text in sorted(glued.items()):
        if not name.startswith(BENCH_PREFIX):
            continue
        key = name[len(BENCH_PREFIX):]
        if key not in summary:
            problems.append(f"{name} = {text} is not in the benchmark report's summary (keys: {sorted(summary)})")
            continue
        checked.append(name)
        want = summary[key]
        if isinstance(want, bool) or not isinstance(want, (int, float)):
            ok = text.strip("'\"") == str(want)
        else:
            ok = parse_number(text) is not None and agrees(text, want)
        if not ok:
            problems.append(f"{name} = {text} in the book, but benchmarks/results.json says {want!r}")
    return problems, checked


def test_glued_benchmark_numbers_match_report():
    """Every ``report_*`` value glued anywhere in the book equals the committed report."""
    from helpers.report import load_report, report_summary

    quoting = {}
    for notebook in NOTEBOOKS:
        glued = {k: v for k, v in glued_values(nbformat.read(notebook, as_version=4)).items()
                 if k.startswith(BENCH_PREFIX)}
        if glued:
            quoting[notebook.name] = glued
    if not quoting:
        pytest.skip("no notebook quotes the benchmark report (not executed yet?)")
    assert BENCH_REPORT.is_file(), f"{sorted(quoting)} quote the benchmark report, but {BENCH_REPORT} is missing"
    summary = report_summary(load_report(BENCH_REPORT))
    problems = [f"{name}: {p}" for name, glued in quoting.items() for p in check_bench_glue(glued, summary)[0]]
    assert not problems, "the book disagrees with benchmarks/results.json:\n  " + "\n  ".join(problems)


def test_bench_check_can_fail():
    summary = {"inference_keras_ms": 2.2184, "cpu_model": "AMD EPYC", "book_complete": True}
    assert check_bench_glue({"report_inference_keras_ms": "2.2"}, summary)[0] == []
    assert check_bench_glue({"report_cpu_model": "'AMD EPYC'", "report_book_complete": "True"}, summary)[0] == []
    assert check_bench_glue({"report_inference_keras_ms": "27.0"}, summary)[0]          # an eager-mode number
    assert check_bench_glue({"report_inference_keras_ms": "2.3"}, summary)[0]
    assert check_bench_glue({"report_cpu_model": "'Intel'"}, summary)[0]
    assert "not in the benchmark report" in check_bench_glue({"report_gpu_ms": "1.0"}, summary)[0][0]


def test_a_glued_number_agrees_with_a_row_of_a_recorded_table():
    table = {"image_size": [48, 64, 96], "img/s": [82.1, 46.5, 21.0]}
    assert agrees("46.5", table) and agrees("82", table)
    assert not agrees("47.0", table)
    assert not agrees("46.5", {"img/s": []})


def test_chapter_1_gives_the_fingerprints_every_record_stores():
    """Chapter 1 tells the reader which data and split fingerprints the records carry: they must be those."""
    nb_path = next((ROOT / "notebooks").glob("01_*.ipynb"))
    glued = glued_values(nbformat.read(nb_path, as_version=4))
    full = [r for r in load_records(ROOT / "results").values()
            if r.get("mode") == "book" and (r.get("data") or {}).get("max_per_class") is None]
    assert full, "no full-data book record to compare with"
    data_fps = {r["data"]["data_fingerprint"] for r in full}
    split_fps = {r["data"]["split_fingerprint"] for r in full}
    assert data_fps == {glued["used_fp"].strip("'")}, f"records {data_fps}, chapter 1 {glued['used_fp']}"
    assert split_fps == {glued["split_fp"].strip("'")}, f"records {split_fps}, chapter 1 {glued['split_fp']}"
