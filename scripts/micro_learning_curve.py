"""Plot micro's held-out mIoU against training steps and extrapolate the trend to the bar.

    python scripts/micro_learning_curve.py [docs/micro_training_record.json] [docs/micro_learning_curve.png]

The record holds one measured point per training stage (see its "about"). The fit is a straight
line of mIoU on log2(steps), per prompt setting, least squares: what each doubling of training
has bought so far. Extrapolating it says roughly how much training the bar would take if the trend
held, which it need not (curves flatten); it is an estimate, printed and drawn as a dashed line.
Where the record names ``recent_from_steps`` (the stage a change of recipe started from: since run
7, half of each step trains the ambiguity skill), the same fit over the stages from there on is
printed and drawn dash-dotted too: what a doubling buys now, and the bar at that rate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"1_click": "1 click", "3_clicks": "3 clicks", "box": "box"}


def fit(steps: list[int], miou: list[float]) -> tuple[float, float]:
    """(a, b) of miou = a + b * log2(steps), least squares."""
    b, a = np.polyfit(np.log2(steps), miou, 1)
    return float(a), float(b)


def steps_to_reach(a: float, b: float, target: float) -> float:
    """Steps at which the fitted line reaches ``target`` (inf if it does not rise)."""
    return float(2 ** ((target - a) / b)) if b > 0 else float("inf")


def main(record_path: Path, out: Path) -> dict:
    """Draw ``out``; returns the steps at which each setting's trend reaches the bar, and under
    "recent" (when the record names ``recent_from_steps``) the same by the recent trend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = json.loads(record_path.read_text())
    stages = record["stages"]
    steps = [s["steps"] for s in stages]
    since = record.get("recent_from_steps")
    recent = [s for s in stages if since is not None and s["steps"] >= since]
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    needed: dict = {}
    right = max(steps)
    for (key, label), colour in zip(SETTINGS.items(), ("C0", "C1", "C2"), strict=True):
        miou = [s[key] for s in stages]
        a, b = fit(steps, miou)
        target = record["bar"][key]
        needed[key] = steps_to_reach(a, b, target)
        words = f"{label} (+{b:.3f} per doubling"
        print(f"{label}: +{b:.3f} mIoU per doubling of steps; bar {target} at ~{needed[key]:,.0f} steps")
        ax.plot(steps, miou, "o-", color=colour)
        xs = np.geomspace(min(steps), max(max(steps), min(needed[key], 1e7)), 50)
        ax.plot(xs, a + b * np.log2(xs), "--", color=colour, alpha=0.5, lw=1)
        right = max(right, xs[-1])
        if len(recent) >= 3:
            ra, rb = fit([s["steps"] for s in recent], [s[key] for s in recent])
            far = steps_to_reach(ra, rb, target)
            needed.setdefault("recent", {})[key] = far
            words += f"; +{rb:.3f} since {since:,}"
            print(f"{label} since {since:,} steps: +{rb:.3f} per doubling; bar at ~{far:,.0f} steps")
            rx = np.geomspace(since, max(max(steps), min(far, 1e7)), 50)
            ax.plot(rx, ra + rb * np.log2(rx), "-.", color=colour, alpha=0.6, lw=1)
            right = max(right, rx[-1])
        ax.plot([], [], "o-", color=colour, label=words + ")")
        ax.axhline(target, color=colour, ls=":", lw=1)
    ax.set_xscale("log")
    # round step counts as the ticks, none of matplotlib's crowded minor labels
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = [t for t in (1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7) if t <= right * 1.1]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e3:g}k" if v < 1e6 else f"{v / 1e6:g}M"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training steps (4 scenes x 4 objects each), log scale")
    ax.set_ylabel("held-out mIoU (200 scenes)")
    title = "micro: held-out mIoU (dots), log-linear trend (dashed), bar (dotted)"
    if len(recent) >= 3:
        title += f"\ntrend since {since:,} steps (dash-dot)"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return needed


if __name__ == "__main__":
    args = sys.argv[1:]
    record = Path(args[0]) if args else ROOT / "docs" / "micro_training_record.json"
    out = Path(args[1]) if len(args) > 1 else ROOT / "docs" / "micro_learning_curve.png"
    main(record, out)
    print(f"wrote {out}")
