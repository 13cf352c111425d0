"""Tables (fixed-width text) and files (bench.json, summary.csv, per_object.csv) of a bench run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .noc import NOC_COLUMNS, noc_row
from .timing import BenchResult

__all__ = [
    "format_table",
    "format_iou_table",
    "format_prompt_table",
    "SUMMARY_COLUMNS",
    "PER_OBJECT_COLUMNS",
    "write_results",
]


def format_table(results: list[BenchResult]) -> str:
    """A fixed-width table: one row per model and predictor, with the stock/ours ratio."""
    head = (
        f"{'model':<10} {'weights':<10} {'device':<6} {'prec':<9} {'predictor':<9} "
        f"{'set_image ms':>13} {'click ms':>9} {'view ms':>8} {'revisit ms':>11} {'peak MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if not r.stock:  # IoU only (timing=False)
            continue
        for label in ("stock", "ours"):
            m = getattr(r, label)
            prec = r.precision.removesuffix("-fast") if label == "stock" else r.precision
            view = m.get("view_ms", m["click_ms"])["median"]
            lines.append(
                f"{r.model:<10} {r.weights:<10} {r.device:<6} {prec:<9} {label:<9} "
                f"{m['set_image_ms']['median']:>13.1f} {m['click_ms']['median']:>9.2f} {view:>8.2f} "
                f"{m['revisit_ms']['median']:>11.2f} {m['peak_mb']:>8.0f}"
            )
        q = r.ratio
        lines.append(
            f"{'':<10} {'':<10} {'':<6} {'':<9} {'ratio':<9} {q['set_image_ms']:>12.2f}x "
            f"{q['click_ms']:>8.2f}x {q.get('view_ms', q['click_ms']):>7.2f}x {q['revisit_ms']:>10.0f}x"
        )
    return "\n".join(lines)


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def format_iou_table(results: list[BenchResult] | list[dict[str, Any]]) -> str:
    """One row per model: encoder ms (median over runs), mIoU per prompt, Pearson r, status."""
    rows = [r.iou if isinstance(r, BenchResult) else r.get("iou", r) for r in results]
    rows = [r for r in rows if r]
    head = (
        f"{'model':<10} {'weights':<10} {'encoder ms':>11} {'objects':>7} {'1 click':>8} {'3 clicks':>8} "
        f"{'box':>6} {'r(pred,true)':>12}  status"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        enc = r["encoder_ms"]["median"] if r.get("encoder_ms") else None
        m = r.get("miou", {})
        lines.append(
            f"{r['model']:<10} {r['weights']:<10} {_f(enc, '.1f'):>11} {r['objects']:>7} "
            f"{_f(m.get('1_click')):>8} {_f(m.get('3_clicks')):>8} {_f(m.get('box')):>6} "
            f"{_f(r.get('pearson_r')):>12}  {r['status']}"
        )
    return "\n".join(lines)


def format_prompt_table(results: list[BenchResult] | list[dict[str, Any]]) -> str:
    """mIoU per prompt setting (rows) and model (columns), each with its 95% bootstrap interval."""
    rows = [r.iou if isinstance(r, BenchResult) else r.get("iou", r) for r in results]
    rows = [r for r in rows if r and r.get("miou")]
    prompts = [p for p in ("1_click", "2_clicks", "3_clicks", "box") if any(p in r["miou"] for r in rows)]
    width = 22
    lines = [f"{'prompt':<10}" + "".join(f"{r['model']:>{width}}" for r in rows)]
    lines.append("-" * len(lines[0]))
    for p in prompts:
        cells = []
        for r in rows:
            v, ci = r["miou"].get(p), r["ci95"].get(p)
            cells.append("-" if v is None else f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.3f}")
        lines.append(f"{p.replace('_', ' '):<10}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


#: Columns of summary.csv (one row per model); IoU columns are empty when there is no IoU.
SUMMARY_COLUMNS = [
    "model",
    "weights",
    "device",
    "precision",
    "iou_status",
    "dataset",
    "samples",
    "objects",
    "encoder_ms_median",
    "encoder_ms_min",
    "encoder_ms_max",
    "encoder_runs",
    "click_ms_median",
    *[
        f"miou_{p}{s}"
        for p in ("1_click", "2_clicks", "3_clicks", "box")
        for s in ("", "_ci95_lo", "_ci95_hi")
    ],
    "pearson_r",
    *NOC_COLUMNS,
    "set_image_ms_stock",
    "set_image_ms_ours",
    "click_ms_ours",
    "revisit_ms_ours",
    "processor",
    "gpu",
    "cpu_count",
    "torch_threads",
    "python",
    "torch",
    "segment_anything",
    "sam_widgets",
    "platform",
    "date",
]

#: Columns of per_object.csv that come first (then the IoU columns, in protocol order).
PER_OBJECT_COLUMNS = ["model", "sample", "object", "label", "area_px"]


def _summary_row(r: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    iou = r.get("iou") or {}
    row: dict[str, Any] = {
        "model": r["model"],
        "weights": r["weights"],
        "device": r["device"],
        "precision": r["precision"],
        "iou_status": iou.get("status", "not asked"),
        "dataset": iou.get("dataset", ""),
        "samples": iou.get("samples", ""),
        "objects": iou.get("objects", ""),
        "click_ms_median": iou.get("click_ms_median"),
        "pearson_r": iou.get("pearson_r"),
    }
    enc = iou.get("encoder_ms")
    if enc:
        row.update(
            encoder_ms_median=enc["median"],
            encoder_ms_min=enc["min"],
            encoder_ms_max=enc["max"],
            encoder_runs=enc["n"],
        )
    for p, v in iou.get("miou", {}).items():
        row[f"miou_{p}"] = v
        ci = iou.get("ci95", {}).get(p)
        if ci:
            row[f"miou_{p}_ci95_lo"], row[f"miou_{p}_ci95_hi"] = ci
    row.update(noc_row(iou))
    if r.get("stock"):
        row.update(
            set_image_ms_stock=r["stock"]["set_image_ms"]["median"],
            set_image_ms_ours=r["ours"]["set_image_ms"]["median"],
            click_ms_ours=r["ours"]["click_ms"]["median"],
            revisit_ms_ours=r["ours"]["revisit_ms"]["median"],
        )
    row.update({k: machine.get(k) for k in SUMMARY_COLUMNS if k in machine})
    return {k: ("" if v is None else v) for k, v in row.items() if k in SUMMARY_COLUMNS}


def write_results(out: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write a ``run`` result: ``bench.json`` (everything), ``summary.csv``, ``per_object.csv``.

    summary.csv has one row per model (``SUMMARY_COLUMNS``: timing, IoU, the machine and versions);
    per_object.csv one row per object and model (sample, object, label, area_px, iou_1_click,
    iou_2_clicks, iou_3_clicks, iou_box, score_1_click, click_ms). Returns the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in out.items() if not k.startswith("_")}
    paths = [folder / "bench.json", folder / "summary.csv", folder / "per_object.csv"]
    paths[0].write_text(json.dumps(data, indent=2))
    with paths[1].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        w.writeheader()
        for r in data["results"]:
            w.writerow(_summary_row(r, data["machine"]))
    records = [rec for r in data["results"] for rec in ((r.get("iou") or {}).get("per_object") or [])]
    columns = list(PER_OBJECT_COLUMNS)
    for rec in records:
        columns += [k for k in rec if k not in columns and k not in ("predicted", "true")]
    with paths[2].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    return paths
