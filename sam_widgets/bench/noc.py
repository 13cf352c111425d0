"""Clicks-to-IoU in the bench: the NoC table and its summary.csv columns (``sam-widgets bench --noc``).

``evaluate_iou(..., noc=True)`` runs every object through ``max_clicks`` simulated clicks
(``sam_widgets.evaluation``: RITM's clicker, the previous logits fed back) and stores
``noc_summary`` in ``IoUResult.noc``: NoC@85, NoC@90 (a failure counts ``max_clicks``), the share of
objects that never reach 0.85 / 0.90, and mIoU after 1, 3, 5, 10 clicks, each with its 95%
bootstrap interval over objects.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NOC_COLUMNS", "PUBLISHED_NOC", "noc_row", "format_noc_table"]

#: Published clicks-to-IoU, not measured here: drawn hollow and labelled, never beside measured bars.
#: FocSAM (Huang et al., "FocSAM: Delving Deeply into Focused Objects in Segmenting Anything", CVPR
#: 2024, Table 1), its SAM ViT-H baseline: RITM's clicker, at most 20 clicks, the previous mask fed
#: back; on the standard benchmarks' own images and masks (not on this package's datasets).
PUBLISHED_NOC: dict[str, Any] = {
    "source": "FocSAM (CVPR 2024), Table 1",
    "model": "vit_h",
    "metric": "NoC@90",
    "max_clicks": 20,
    "values": {"GrabCut": 1.88, "Berkeley": 2.09, "SBD": 7.62, "DAVIS": 5.19},
}

#: Columns added to summary.csv (empty when NoC was not asked for).
NOC_COLUMNS = [
    "max_clicks",
    *[f"noc_{k}{s}" for k in ("85", "90") for s in ("", "_ci95_lo", "_ci95_hi")],
    *[f"failures_{k}{s}" for k in ("85", "90") for s in ("", "_ci95_lo", "_ci95_hi")],
    *[f"miou_at_{k}{s}" for k in ("1", "3", "5", "10") for s in ("", "_ci95_lo", "_ci95_hi")],
]


def noc_row(iou: dict[str, Any] | None) -> dict[str, Any]:
    """The ``NOC_COLUMNS`` of one model's ``IoUResult`` (as a dict); {} without NoC."""
    n = (iou or {}).get("noc") or {}
    if not n.get("objects"):
        return {}
    row: dict[str, Any] = {"max_clicks": n["max_clicks"]}
    for name, src in (("noc", "noc"), ("failures", "failures"), ("miou_at", "miou_at")):
        for k, v in n.get(src, {}).items():
            row[f"{name}_{k}"] = v
            ci = n.get(f"{src}_ci95", {}).get(k)
            if ci:
                row[f"{name}_{k}_ci95_lo"], row[f"{name}_{k}_ci95_hi"] = ci
    return {k: v for k, v in row.items() if k in NOC_COLUMNS}


def _ci(v: float | None, ci: list[float] | None, fmt: str) -> str:
    if v is None:
        return "-"
    return f"{v:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else f"{v:{fmt}}"


def format_noc_table(results: list[Any]) -> str:
    """One row per model: NoC@85, NoC@90 (95% intervals), failures, mIoU after 1/3/5/10 clicks."""
    rows = []
    for r in results:
        iou = getattr(r, "iou", None) if not isinstance(r, dict) else r.get("iou", r)
        if iou and (iou.get("noc") or {}).get("objects"):
            rows.append(iou)
    if not rows:
        return "(no NoC: no model with trained weights was measured)"
    head = (
        f"{'model':<10} {'objects':>7} {'NoC@85':>19} {'NoC@90':>19} {'fail@85':>8} {'fail@90':>8} "
        f"{'mIoU@1':>7} {'mIoU@3':>7} {'mIoU@5':>7} {'mIoU@10':>7}"
    )
    lines = [head, "-" * len(head)]
    for iou in rows:
        n = iou["noc"]
        nocs = [_ci(n["noc"].get(k), n["noc_ci95"].get(k), ".2f") for k in ("85", "90")]
        fails = [f"{n['failures'].get(k, 0):.1%}" for k in ("85", "90")]
        at = [f"{n['miou_at'][k]:.3f}" if k in n["miou_at"] else "-" for k in ("1", "3", "5", "10")]
        lines.append(
            f"{iou['model']:<10} {n['objects']:>7} {nocs[0]:>19} {nocs[1]:>19} {fails[0]:>8} {fails[1]:>8} "
            f"{at[0]:>7} {at[1]:>7} {at[2]:>7} {at[3]:>7}"
        )
    cap = rows[0]["noc"]["max_clicks"]
    lines.append(
        f"NoC: clicks to reach the IoU (a failure counts {cap}); fail: share of objects that never reach it "
        f"in {cap} clicks; [95% bootstrap interval over objects]"
    )
    return "\n".join(lines)
