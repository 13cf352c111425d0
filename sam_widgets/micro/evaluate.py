"""Measure the micro SAM on held-out scenes through SamPredictor (the real inference path).

    python -m sam_widgets.micro.evaluate --scenes 200 --out runs/micro_eval.json

Every object (visible area >= --min-area pixels) of each held-out scene goes through the protocol
of ``sam_widgets.evaluation`` (the SAM paper's): 1 click at the object's center, 2 corrective
clicks at the largest error region with the previous low-res logits as mask prompt, and the tight
box. Also Pearson r between predicted and true IoU over every mask returned, and the median time
of set_image (encoder ms) and of one 1-click predict (click ms) on this CPU. The same mIoU per
object size (``SIZE_BINS``, visible pixels at 256x256), and with ``--ceiling`` the best any
model could reach through SAM's 64x64 low-res masks (``lowres_ceiling``).

The ambiguity set (``--ambiguity-scenes``, on by default; ``evaluate_ambiguity``): nested scenes
(``data.ambiguity_set``, never trained on) whose parts, objects and groups contain one another.
Each part, object or group that has a level above or below it (of at least --min-area px) gets
one click at its center; the levels containing that click are all valid answers. Reported per
level: the best-of-3 IoU (the best of SamPredictor's three candidates against that level), and
how often the highest-scored candidate is the level the click most likely meant: the level whose
center was clicked, or any level whose own center lies within MEANT_RADIUS px of the click.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sam_widgets.evaluation import center_point, evaluate_samples, summarize
from sam_widgets.viz import mask_iou as iou

__all__ = [
    "evaluate",
    "format_table",
    "lowres_ceiling",
    "main",
    "SIZE_BINS",
    "evaluate_ambiguity",
    "ambiguity_queries",
    "MEANT_RADIUS",
]

SIZE_BINS = ((100, 300), (300, 1000), (1000, 3000), (3000, None))  # object area in pixels: [lo, hi)
SETTINGS = ("1_click", "3_clicks", "box")
#: A click means the level whose center it is, and any level whose center is this close (px).
MEANT_RADIUS = 3.0


def _samples(split: str, scenes: int) -> list:
    from sam_widgets.datasets import Sample, synthetic

    from .data import validation_set

    if split == "heldout":
        return synthetic(scenes)
    if split == "validation":
        return [
            Sample(f"val-{i}", im, m, ("shape",) * len(m)) for i, (im, m) in enumerate(validation_set(scenes))
        ]
    raise ValueError(f"split must be 'heldout' or 'validation', got {split!r}")


def evaluate(
    sam,
    scenes: int = 200,
    min_area: int = 100,
    threads: int = 2,
    split: str = "heldout",
    ceiling: bool = False,
    ambiguity_scenes: int = 0,
) -> dict:
    """Run the protocol above on `scenes` scenes of `split`; returns the metrics as a dict.

    ``split="validation"`` (``data.validation_set``) is for choosing between training runs; the
    held-out figures (the default) are then measured once, on the run chosen. ``ceiling``: also
    ``lowres_ceiling`` of the same objects, averaged (key ``"lowres_ceiling"``).
    ``ambiguity_scenes`` > 0: also ``evaluate_ambiguity`` on that many nested scenes of the same
    split (key ``"ambiguity"``)."""
    import torch
    from segment_anything import SamPredictor

    if split not in ("heldout", "validation"):
        raise ValueError(f"split must be 'heldout' or 'validation', got {split!r}")
    samples = _samples(split, scenes)
    torch.set_num_threads(threads)
    with torch.inference_mode():
        records, enc_ms = evaluate_samples(
            SamPredictor(sam), samples, n_clicks=3, min_area=min_area, progress=False
        )
    s = summarize(records)
    by_size = {}
    for lo, hi in SIZE_BINS:
        sub = [r for r in records if r["area_px"] >= lo and (hi is None or r["area_px"] < hi)]
        sizes = f"{lo}-{hi}" if hi else f">={lo}"
        miou = summarize(sub)["miou"]
        by_size[sizes] = {"objects": len(sub)} | {k: miou.get(k) for k in SETTINGS}
    res = {
        "split": split,
        "scenes": scenes,
        "objects": s["objects"],
        "min_area_px": min_area,
        "miou_1_click": s["miou"]["1_click"],
        "miou_2_clicks": s["miou"]["2_clicks"],
        "miou_3_clicks": s["miou"]["3_clicks"],
        "miou_box": s["miou"]["box"],
        # a float as before: nan when undefined (every prediction or every IoU the same)
        "pearson_r_pred_vs_true_iou": float("nan") if s["pearson_r"] is None else s["pearson_r"],
        "encoder_ms_median": float(np.median(enc_ms)),
        "click_ms_median": s["click_ms_median"],
        "threads": threads,
        "ci95": {k: s["ci95"].get(k) for k in SETTINGS},
        "miou_by_size_px": by_size,
    }
    if ceiling:
        masks = [m for sample in samples for m in sample.masks if m.sum() >= min_area]
        res["lowres_ceiling"] = float(np.mean(lowres_ceiling(masks)))
    if ambiguity_scenes > 0:
        res["ambiguity"] = evaluate_ambiguity(sam, ambiguity_scenes, split, min_area, threads)
    return res


def ambiguity_queries(scene, min_area: int = 100) -> list[dict]:
    """The clicks of the ambiguity protocol on one NestedScene (see the module docstring).

    Returns one dict per click: ``clicked`` (mask index), ``xy`` (x, y), ``chain`` (indices of
    the masks containing the click, finest first: the valid levels) and ``meant`` (the subset the
    click most likely meant: the clicked level and any whose center is within MEANT_RADIUS px).
    Only masks that have a parent or a child and at least ``min_area`` px are clicked, and only
    clicks with at least two valid levels (the ambiguous ones) are kept.
    """
    masks, parent = scene.masks, scene.parent
    has_child = set(int(p) for p in parent if p >= 0)
    centers = [center_point(m) for m in masks]
    out = []
    for i, m in enumerate(masks):
        if m.sum() < min_area or (parent[i] < 0 and i not in has_child):
            continue
        x, y = centers[i]
        chain = scene.chain(x, y)
        if len(chain) < 2:
            continue
        meant = [j for j in chain if j == i or np.hypot(centers[j][0] - x, centers[j][1] - y) <= MEANT_RADIUS]
        out.append({"clicked": i, "xy": (x, y), "chain": chain, "meant": meant})
    return out


def evaluate_ambiguity(
    sam, scenes: int = 100, split: str = "heldout", min_area: int = 100, threads: int = 2
) -> dict:
    """SAM's ambiguity on ``scenes`` nested scenes of ``split`` (``data.ambiguity_set``).

    ``sam``: a Sam, or a predictor with SamPredictor's set_image/predict. Every click of
    ``ambiguity_queries`` goes through it with multimask_output=True.
    Returns {"split", "scenes", "clicks", "best_of_3": {level: mean over the clicks' valid levels
    of that kind of the best IoU among the 3 candidates}, "levels": {level: count},
    "top_is_meant": {"all": fraction, level clicked: fraction}: how often the highest-scored
    candidate's closest valid level (by IoU) is one the click meant}; None where there is no
    click of a kind.
    """
    import torch
    from segment_anything import SamPredictor

    from .data import LEVELS, ambiguity_set

    data = ambiguity_set(scenes, split=split)
    torch.set_num_threads(threads)
    pred = sam if hasattr(sam, "predict") else SamPredictor(sam)
    best: dict[str, list[float]] = {k: [] for k in LEVELS}
    top: dict[str, list[bool]] = {k: [] for k in LEVELS}
    with torch.inference_mode():
        for scene in data:
            queries = ambiguity_queries(scene, min_area)
            if not queries:
                continue
            pred.set_image(scene.image)
            for q in queries:
                cand, scores, _ = pred.predict(np.array([q["xy"]]), np.array([1]), multimask_output=True)
                ious = np.array([[iou(c, scene.masks[j]) for j in q["chain"]] for c in cand])  # (3, L)
                for col, j in enumerate(q["chain"]):
                    best[scene.level[j]].append(float(ious[:, col].max()))
                closest = q["chain"][int(np.argmax(ious[int(np.argmax(scores))]))]
                top[scene.level[q["clicked"]]].append(closest in q["meant"])
    every = [t for v in top.values() for t in v]
    return {
        "split": split,
        "scenes": scenes,
        "clicks": len(every),
        "best_of_3": {k: float(np.mean(v)) if v else None for k, v in best.items()},
        "levels": {k: len(v) for k, v in best.items()},
        "top_is_meant": {"all": float(np.mean(every)) if every else None}
        | {k: float(np.mean(v)) if v else None for k, v in top.items()},
    }


def lowres_ceiling(masks, low: int = 64, size: int = 256, steps: int = 60) -> list[float]:
    """Per mask, the IoU of the best mask SAM's decoder could give through ``low``x``low`` logits.

    SamPredictor upsamples the decoder's low-res logits bilinearly to the input and thresholds at
    0, so a mask thinner than a few low-res pixels cannot be drawn exactly, whatever the weights.
    For each HxW bool mask (``size``x``size``), logits are fitted to it by ``steps`` Adam steps on
    the BCE of their upsampled values (from the area average); the IoU of the result is returned.
    """
    import torch
    import torch.nn.functional as F

    def up(x):
        return F.interpolate(x, (size, size), mode="bilinear", align_corners=False)

    out = []
    for m in masks:
        g = torch.from_numpy(np.asarray(m, dtype=np.float32))[None, None]
        if g.shape[-2:] != (size, size):
            raise ValueError(f"masks must be {size}x{size}, got {tuple(g.shape[-2:])}")
        logits = ((F.adaptive_avg_pool2d(g, low) - 0.5) * 20).requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=0.5)
        for _ in range(steps):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(up(logits), g).backward()
            opt.step()
        with torch.no_grad():
            out.append(iou(up(logits)[0, 0].numpy() > 0, np.asarray(m, bool)))
    return out


def format_table(res: dict) -> str:
    rows = [
        (f"{res.get('split', 'heldout')} objects", f"{res['objects']} in {res['scenes']} scenes"),
        ("mIoU, 1 click", f"{res['miou_1_click']:.3f}"),
        ("mIoU, 2 clicks", f"{res['miou_2_clicks']:.3f}"),
        ("mIoU, 3 clicks", f"{res['miou_3_clicks']:.3f}"),
        ("mIoU, box", f"{res['miou_box']:.3f}"),
        ("Pearson r, predicted vs true IoU", f"{res['pearson_r_pred_vs_true_iou']:.3f}"),
        ("encoder (set_image), median ms", f"{res['encoder_ms_median']:.1f}"),
        ("one click (predict), median ms", f"{res['click_ms_median']:.1f}"),
    ]
    for sizes, b in res.get("miou_by_size_px", {}).items():
        vals = " / ".join("-" if b[k] is None else f"{b[k]:.3f}" for k in SETTINGS)
        rows.append((f"  objects {sizes} px ({b['objects']}): 1 click / 3 clicks / box", vals))
    if "lowres_ceiling" in res:
        rows.append(("ceiling of 64x64 low-res masks, mean IoU", f"{res['lowres_ceiling']:.3f}"))
    amb = res.get("ambiguity")
    if amb:
        rows.append(
            (f"ambiguity set ({amb['split']})", f"{amb['clicks']} ambiguous clicks in {amb['scenes']} scenes")
        )
        for k, v in amb["best_of_3"].items():
            if v is not None:
                rows.append((f"  best-of-3 IoU, {k} ({amb['levels'][k]})", f"{v:.3f}"))
        for k, v in amb["top_is_meant"].items():
            if v is not None:
                rows.append((f"  top-scored candidate is the meant level, {k} clicks", f"{v:.3f}"))
    w = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="state dict (default: shipped)")
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--min-area", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/micro_eval.json"))
    p.add_argument("--ceiling", action="store_true", help="also the low-res mask ceiling (a minute)")
    p.add_argument(
        "--ambiguity-scenes",
        type=int,
        default=100,
        help="nested scenes of the ambiguity set (of --split) to evaluate; 0 skips it",
    )
    p.add_argument(
        "--split",
        choices=("heldout", "validation"),
        default="heldout",
        help="validation: for choosing between runs, so the held-out set stays unbiased",
    )
    a = p.parse_args(argv)
    import torch

    from sam_widgets.micro import build_micro

    if a.weights is None:
        sam = build_micro()
    else:
        sam = build_micro(weights=False)
        state = torch.load(a.weights, map_location="cpu", weights_only=True)
        sam.load_state_dict({k: v.float() for k, v in state.items()})
    if a.ambiguity_scenes < 0:
        p.error(f"--ambiguity-scenes must be >= 0, got {a.ambiguity_scenes}")
    res = evaluate(sam.eval(), a.scenes, a.min_area, a.threads, a.split, a.ceiling, a.ambiguity_scenes)
    res["weights"] = str(a.weights or "shipped")
    print(format_table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
