"""Plot micro's held-out mIoU against training steps and extrapolate the trend to the bar.

    python scripts/micro_learning_curve.py [docs/micro_training_record.json] [docs/micro_learning_curve.png]

The record holds one measured point per training stage (see its "about"). The fit is a straight
line of mIoU on log2(steps), per prompt setting, least squares: what each doubling of training
has bought so far. Extrapolating it says roughly how much training the bar would take if the trend
held, which it need not (curves flatten); it is an estimate, printed and drawn as a dashed line.
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


def main(record_path: Path, out: Path) -> dict[str, float]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = json.loads(record_path.read_text())
    stages = record["stages"]
    steps = [s["steps"] for s in stages]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    needed = {}
    for (key, label), colour in zip(SETTINGS.items(), ("C0", "C1", "C2"), strict=True):
        miou = [s[key] for s in stages]
        a, b = fit(steps, miou)
        target = record["bar"][key]
        needed[key] = steps_to_reach(a, b, target)
        ax.plot(steps, miou, "o-", color=colour, label=f"{label} (+{b:.3f} per doubling)")
        xs = np.geomspace(min(steps), max(max(steps), min(needed[key], 1e7)), 50)
        ax.plot(xs, a + b * np.log2(xs), "--", color=colour, alpha=0.5, lw=1)
        ax.axhline(target, color=colour, ls=":", lw=1)
        print(f"{label}: +{b:.3f} mIoU per doubling of steps; bar {target} at ~{needed[key]:,.0f} steps")
    ax.set_xscale("log")
    ax.set_xlabel("training steps (4 scenes x 4 objects each), log scale")
    ax.set_ylabel("held-out mIoU (200 scenes)")
    ax.set_title("micro: measured held-out mIoU (dots), log-linear trend (dashed), bar (dotted)")
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
