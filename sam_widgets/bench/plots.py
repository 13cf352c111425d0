"""Pictures: the speed-vs-IoU plot, and example masks next to the ground truth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..measure import QUOTED_SPEED_IOU
from .timing import BenchResult

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

    from ..datasets import Sample

__all__ = ["plot_speed_vs_iou", "plot_examples"]


def plot_speed_vs_iou(
    results: list[BenchResult] | list[dict[str, Any]],
    machine: dict[str, Any] | None = None,
    prompt: str = "1_click",
    quoted: dict[str, dict[str, float]] | None = QUOTED_SPEED_IOU,
    ax: Any = None,
) -> Any:
    """Encoder time (log x) against mIoU, one point per model; returns the matplotlib Axes.

    Measured models: filled markers, x error bars from the fastest to the slowest encoding, y error
    bars the 95% bootstrap interval of the mIoU. Random-weight models: a dotted vertical line at
    their encoder time, labelled "random weights, timing only" (no IoU). ``quoted`` figures: hollow
    markers labelled "quoted, not measured here". The title names the hardware (``machine``).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    xs: list[float] = []
    rows = [r.iou if isinstance(r, BenchResult) else r.get("iou", r) for r in results]
    rows = [r for r in rows if r and r.get("encoder_ms")]
    for i, r in enumerate(rows):
        enc = r["encoder_ms"]
        x = enc["median"]
        xs += [enc["min"], enc["max"]]
        color = f"C{i}"
        if r["status"] != "measured" or prompt not in r.get("miou", {}):
            ax.axvline(x, color=color, ls=":", lw=1.5)
            ax.annotate(
                f"{r['model']}: random weights,\ntiming only ({x:,.0f} ms)",
                (x, 0.98),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
                color=color,
            )
            continue
        y = r["miou"][prompt]
        ci = r["ci95"].get(prompt) or [y, y]
        ax.errorbar(
            x,
            y,
            xerr=[[x - enc["min"]], [enc["max"] - x]],
            yerr=[[y - ci[0]], [ci[1] - y]],
            fmt="o",
            color=color,
            ms=8,
            capsize=4,
            label=f"{r['model']} ({r['weights']}): {y:.2f}, {x:,.0f} ms",
        )
        ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(8, 6))
    for j, (name, q) in enumerate((quoted or {}).items()):
        xs.append(q["encoder_ms"])
        ax.plot(
            q["encoder_ms"],
            q["miou"],
            "s",
            mfc="none",
            mec="0.4",
            ms=9,
            label="quoted, not measured here (said to be A100)" if j == 0 else None,
        )
        ax.annotate(
            f"{name} (quoted)",
            (q["encoder_ms"], q["miou"]),
            textcoords="offset points",
            xytext=(6, -12 if j % 2 == 0 else 7),  # alternate below/above: close points stay legible
            fontsize=8,
            color="0.4",
        )
    ax.set_xscale("log")
    if xs:  # room for the labels, and at least a decade so the log scale reads as one
        lo, hi = min(xs) / 1.6, max(xs) * 2.5
        if hi / lo < 10:
            mid = (lo * hi) ** 0.5
            lo, hi = mid / 10**0.5, mid * 10**0.5
        ax.set_xlim(lo, hi)
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    decades = np.log10(ax.get_xlim()[1] / ax.get_xlim()[0])
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("image encoder time per image, ms (log scale)")
    ax.set_ylabel(f"mIoU, {prompt.replace('_', ' ')}")
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    if machine:
        hw = machine.get("gpu") or machine.get("processor", "unknown")
        n = machine.get("torch_threads")
        threads = f", {n} torch thread{'s' if n != 1 else ''}" if n and not machine.get("gpu") else ""
        ax.set_title(f"measured on {hw}{threads}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_examples(sam: Sam, samples: list[Sample], n: int = 3, n_clicks: int = 3, axes: Any = None) -> Any:
    """Ground truth and the masks of 1 click, ``n_clicks`` clicks and box for the largest object of
    the first ``n`` samples: a grid of n rows x 4 images, the true outline dashed white on each
    prediction, positive clicks as green stars, negative ones as red crosses. Returns the axes."""
    import matplotlib.pyplot as plt

    from ..evaluation import evaluate_object, tight_box
    from ..predictor import CachedPredictor
    from ..viz import overlay_masks

    predictor = CachedPredictor(sam)
    chosen = samples[:n]
    if axes is None:
        _, axes = plt.subplots(len(chosen), 4, figsize=(12, 3.2 * len(chosen)), squeeze=False)
    for row, s in zip(axes, chosen, strict=True):
        k = int(np.argmax(s.masks.reshape(len(s.masks), -1).sum(1)))
        gt = s.masks[k]
        predictor.set_image(s.image)
        res = evaluate_object(predictor, gt, n_clicks=n_clicks, keep_masks=True)
        ious = {"1 click": res.iou_clicks[0], f"{n_clicks} clicks": res.iou_clicks[-1], "box": res.iou_box}
        row[0].imshow(overlay_masks(s.image, gt[None], colors=[(86, 180, 233)]))
        row[0].set_title(f"{s.name}: ground truth ({s.labels[k]})", fontsize=9)
        clicks = {"1 click": res.clicks[:1], f"{n_clicks} clicks": res.clicks, "box": []}
        for ax, (what, mask) in zip(row[1:], res.masks.items(), strict=False):
            ax.imshow(overlay_masks(s.image, mask[None], colors=[(230, 159, 0)]))
            ax.contour(gt, levels=[0.5], colors="white", linewidths=1, linestyles="dashed")
            ax.set_title(f"{what}: IoU {ious[what]:.2f}", fontsize=9)
            for x, y, label in clicks[what]:  # green star positive, red cross negative
                ax.plot(x, y, "*" if label else "X", color="lime" if label else "red", ms=12, mec="k")
            if what == "box":
                x0, y0, x1, y1 = tight_box(gt)
                ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.5))
        for ax in row:
            ax.axis("off")
    return axes
