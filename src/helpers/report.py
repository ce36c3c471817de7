"""Reading the committed benchmark report ``benchmarks/results.json`` (chapter 7 quotes it; a test checks the quotes).

``make bench`` (``benchmarks/run.py``) writes the report; this module only finds it, checks its shape and
copies its headline numbers and tables out, never recomputing them.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

REPORT_ENV = "BLOODCELLS_BENCH_REPORT"
REPORT_RELPATH = os.path.join("benchmarks", "results.json")



def find_report(path: str | os.PathLike | None = None) -> Path | None:
    """The benchmark report ``results.json`` written by ``make bench``, or ``None``.

    Looks at ``path``, then ``$BLOODCELLS_BENCH_REPORT``, then ``benchmarks/results.json`` in
    the working folder and its parent (a notebook runs in ``notebooks/``). A path that was
    given explicitly and does not exist is an error, not a silent ``None``.
    """
    from pathlib import Path

    for given in (path, os.environ.get(REPORT_ENV) or None):
        if given is not None:
            p = Path(given).expanduser()
            if not p.is_file():
                raise FileNotFoundError(f"benchmark report {p} does not exist; run `make bench` to write it, or "
                                        f"leave the path unset to look in ./{REPORT_RELPATH}")
            return p
    for folder in (Path.cwd(), Path.cwd().parent):
        p = folder / REPORT_RELPATH
        if p.is_file():
            return p
    return None


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed report, checked for the parts the book quotes (a clear error otherwise)."""
    import json
    from pathlib import Path

    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{p} is not a readable benchmark report ({e}); re-run `make bench`") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sections"), dict):
        raise ValueError(f"{p} has no 'sections': not a report written by benchmarks/run.py")
    return doc


def report_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The report's headline numbers as one flat dict (the book glues them as ``report_<key>``).

    Sections missing from the report are left out; every value is copied, never recomputed, so
    the book shows exactly what ``BENCHMARKS.md`` shows.
    """
    secs = doc["sections"]
    out: dict[str, Any] = {"finished": str(doc.get("finished", "?")),
                           "git_commit": str(doc.get("git_commit", "?"))[:7]}
    m = doc.get("machine") or {}
    out["cpu_model"] = str(m.get("cpu_model", "?"))
    if m.get("cpus_usable") is not None:
        out["cores"] = int(m["cpus_usable"])
    k = (secs.get("pipeline") or {}).get("key") or {}
    for src, dst in (("naive", "pipeline_naive_img_s"), ("tuned_cached", "pipeline_tuned_img_s"),
                     ("ratio_tuned_cached_vs_naive", "pipeline_ratio_vs_naive"),
                     ("ratio_tuned_aug_vs_naive_aug", "pipeline_ratio_aug_vs_naive_aug"),
                     ("fastest_model_train_per_s", "pipeline_fastest_model_img_s"),
                     ("ratio_tuned_aug_vs_training", "pipeline_ratio_aug_vs_fastest_model")):
        if src in k:
            out[dst] = float(k[src])
    if "fastest_model" in k:
        from .compare import canonical_name  # reports measured before the reference CNNs were renamed

        out["pipeline_fastest_model"] = canonical_name(str(k["fastest_model"]))
    k = (secs.get("inference") or {}).get("key") or {}
    for runtime, ms in (k.get("ms_per_image_1core") or {}).items():
        out[f"inference_{runtime}_ms"] = float(ms)
    if "target_ms" in k:
        out["inference_target_ms"] = float(k["target_ms"])
    if k:
        out["inference_tta_views"] = int(k.get("tta_views") or 1)
    for runtime, ms in (k.get("single_view_ms_per_image_1core") or {}).items():
        out[f"inference_single_view_{runtime}_ms"] = float(ms)
    checks = dict(k.get("runtime_checks") or {})
    if k.get("tflite_check"):  # reports written before ONNX Runtime was compared
        checks.setdefault("tflite", k["tflite_check"])
    for runtime, chk in checks.items():
        if "agreement" in (chk or {}):
            out[f"inference_{runtime}_agreement"] = float(chk["agreement"])
            out[f"inference_{runtime}_n"] = int(chk.get("n", 0))
    served = k.get("served") or {}
    if "test_accuracy" in served:
        out.update(served_runtime=str(served["runtime"]), served_views=int(served["views"]),
                   served_ms=float(served["ms_per_image_1core"]), served_accuracy=float(served["test_accuracy"]),
                   served_source=str(served["source_bundle"]), served_fits=bool(served["fits_target"]))
    if "model" in k:
        out["inference_model"] = str(k["model"]).replace("`", "")  # plain text for the prose
    k = (secs.get("book") or {}).get("key") or {}
    if "total_minutes" in k:
        out["book_minutes"] = float(k["total_minutes"])
        out["book_complete"] = bool(k.get("complete", False))
    return out


def report_targets(doc: dict[str, Any]) -> pd.DataFrame:
    """Every target in the report: section, target, measured value, met, margin."""
    import pandas as pd

    rows = []
    for name, sec in doc["sections"].items():
        for t in sec.get("targets") or []:
            value = next((v for key, v in t.items() if key.startswith("value")), None)
            unit = next((key[len("value_"):] for key in t if key.startswith("value_")), "")
            rows.append({"section": name, "target": t.get("target", "?"),
                         "measured": f"{value:.3g} {unit}".strip() if isinstance(value, (int, float)) else str(value),
                         "met": "yes" if t.get("met") else "no", "margin": t.get("margin", "")})
    return pd.DataFrame(rows, columns=["section", "target", "measured", "met", "margin"])


def training_table(doc: dict[str, Any]) -> pd.DataFrame:
    """The training section's images/s, seconds per epoch and peak memory per model, fastest first."""
    import pandas as pd

    k = (doc["sections"].get("training") or {}).get("key") or {}
    from .compare import canonical_name

    df = pd.DataFrame(k).T.rename(columns={"img_per_s": "images/s", "s_per_epoch": "s per epoch",
                                           "peak_rss_mb": "peak memory (MB)"})
    df.index = [canonical_name(str(i)) for i in df.index]  # old reports name the reference CNNs seed00x_cnn
    return df.sort_values("images/s", ascending=False) if len(df) else df
