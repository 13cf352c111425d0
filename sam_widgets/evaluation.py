"""Simulated clicks and IoU: the interactive-segmentation protocol of the SAM paper, in one place.

For one ground-truth object (HxW bool) and a predictor whose image is set (segment_anything's
``SamPredictor`` or ``CachedPredictor``):

- **1 click**: a positive point at the object pixel farthest from its boundary (the image edge
  counts as boundary), multimask output, the mask with the highest predicted IoU is kept;
- **corrective clicks** (up to ``n_clicks`` in all): the next point is the farthest-from-boundary
  pixel of the largest connected error region, positive in a missed region (ground truth, not
  predicted), negative in a false positive one; every point so far plus the previous low-res
  logits as ``mask_input``, one mask (``multimask_output=False``), as SAM's interactive evaluation;
- **box**: the tight bounding box of the object, one mask.

``evaluate_samples`` runs this on every object of a list of ``datasets.Sample`` and returns one
record per object; ``summarize`` turns records into mIoU (with bootstrap confidence intervals) and
the Pearson r between the model's predicted IoU and the true IoU over every mask it returned.
Used by ``sam_widgets.bench`` and ``sam_widgets.micro.evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from .viz import mask_iou

__all__ = [
    "PROMPTS",
    "ObjectResult",
    "mask_iou",
    "center_point",
    "corrective_click",
    "tight_box",
    "evaluate_object",
    "evaluate_samples",
    "set_image_timed",
    "summarize",
    "pearson_r",
    "bootstrap_ci",
]

#: The prompt settings summarised, in reading order: key in records -> words for tables.
PROMPTS = {
    "iou_1_click": "1 click",
    "iou_2_clicks": "2 clicks",
    "iou_3_clicks": "3 clicks",
    "iou_box": "box",
}


def center_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) in pixels of the pixel of ``mask`` (HxW bool, not empty) farthest from its boundary.

    The image edges count as boundary. Ties go to the first pixel in row-major order.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("center_point of an empty mask: there is no pixel to click.")
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return int(x), int(y)


def corrective_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], int] | None:
    """The next simulated click: ((x, y), label), label 1 positive / 0 negative; None if pred == gt.

    The click goes to the center (``center_point``) of the largest 4-connected error region:
    positive when that region is a miss (``gt & ~pred``), negative when it is a false positive
    (``pred & ~gt``). On a tie in size the miss wins.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}.")
    best: tuple[int, np.ndarray, int] | None = None
    for region, label in ((gt & ~pred, 1), (pred & ~gt, 0)):
        lab, n = ndimage.label(region)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (int(sizes[k]), lab == k + 1, label)
    if best is None:
        return None
    return center_point(best[1]), best[2]


def tight_box(mask: np.ndarray) -> np.ndarray:
    """The tight box of a non-empty HxW bool mask: [x0, y0, x1, y1] in pixels, inclusive (XYXY)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("tight_box of an empty mask.")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()])


@dataclass
class ObjectResult:
    """What the protocol measured on one object.

    ``iou_clicks[i]`` is the IoU after ``i + 1`` clicks; ``clicks`` the points as (x, y, label);
    ``predicted`` and ``true`` the model's IoU prediction and the true IoU of every mask it
    returned (3 for the first click, then one per corrective click, one for the box);
    ``masks`` (only with ``keep_masks``) maps "1 click", "N clicks", "box" to HxW bool masks.
    """

    iou_clicks: list[float]
    iou_box: float
    score_1_click: float
    clicks: list[tuple[int, int, int]]
    predicted: list[float] = field(default_factory=list)
    true: list[float] = field(default_factory=list)
    click_ms: float = 0.0
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def evaluate_object(
    predictor: Any, gt: np.ndarray, n_clicks: int = 3, keep_masks: bool = False
) -> ObjectResult:
    """Run the protocol of this module on one object; ``predictor`` has the image set already.

    Arguments:
      predictor: a ``SamPredictor`` (or ``CachedPredictor``) after ``set_image``.
      gt: HxW bool ground truth, the image's size, not empty.
      n_clicks: clicks in all (1 + corrective ones), >= 1.
      keep_masks: also return the predicted masks (for pictures).
    """
    if n_clicks < 1:
        raise ValueError(f"n_clicks must be >= 1, got {n_clicks}.")
    gt = np.asarray(gt, dtype=bool)
    x, y = center_point(gt)
    points, labels = [(x, y)], [1]
    t = time.perf_counter()
    m, s, low = predictor.predict(np.array(points), np.array(labels), multimask_output=True)
    click_ms = (time.perf_counter() - t) * 1e3
    res = ObjectResult([], 0.0, 0.0, [(x, y, 1)], click_ms=click_ms)
    res.predicted += [float(v) for v in s]
    res.true += [mask_iou(mm, gt) for mm in m]
    k = int(np.argmax(s))
    pred, logits = m[k], low[k : k + 1]
    res.score_1_click = float(s[k])
    res.iou_clicks.append(res.true[k])
    if keep_masks:
        res.masks["1 click"] = pred
    for _ in range(n_clicks - 1):
        nxt = corrective_click(pred, gt)
        if nxt is not None:  # a perfect mask needs no more clicks: it stays
            (x, y), label = nxt
            points.append((x, y))
            labels.append(label)
            res.clicks.append((x, y, label))
            m, s, logits = predictor.predict(
                np.array(points), np.array(labels), mask_input=logits, multimask_output=False
            )
            pred = m[0]
            res.predicted.append(float(s[0]))
            res.true.append(mask_iou(pred, gt))
        res.iou_clicks.append(mask_iou(pred, gt))
    if keep_masks and n_clicks > 1:
        res.masks[f"{n_clicks} clicks"] = pred
    m, s, _ = predictor.predict(box=tight_box(gt), multimask_output=False)
    res.predicted.append(float(s[0]))
    res.true.append(mask_iou(m[0], gt))
    res.iou_box = res.true[-1]
    if keep_masks:
        res.masks["box"] = m[0]
    return res


def evaluate_samples(
    predictor: Any,
    samples: Iterable[Any],
    *,
    n_clicks: int = 3,
    min_area: int = 100,
    progress: bool = True,
    desc: str = "IoU",
    sync: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], list[float]]:
    """Run ``evaluate_object`` on every object of at least ``min_area`` pixels of every sample.

    Arguments:
      predictor: a ``SamPredictor`` or ``CachedPredictor``; ``set_image`` is called per sample.
      samples: objects with ``name``, ``image`` (HxWx3 uint8), ``masks`` (NxHxW bool), ``labels``
        (``datasets.Sample``).
      sync: called after ``set_image`` before the clock stops (e.g. ``torch.cuda.synchronize``).

    Returns:
      records: one dict per object: sample, object (index in the sample), label, area_px,
        iou_1_click ... iou_{n}_clicks, iou_box, score_1_click (predicted IoU of the kept mask),
        click_ms (the first click's predict), and the lists predicted / true (for ``summarize``).
      encoder_ms: per sample, the encoder's own time when the predictor reports it
        (``CachedPredictor.stats.encoder_ms``: no resizing or hashing), else the wall time of
        ``set_image``; in ms.
    """
    from tqdm.auto import tqdm

    samples = list(samples)
    records: list[dict[str, Any]] = []
    encoder_ms: list[float] = []
    for sample in tqdm(samples, desc=desc, disable=not progress, leave=False):
        encoder_ms.append(set_image_timed(predictor, sample.image, sync))
        for i, gt in enumerate(sample.masks):
            area = int(gt.sum())
            if area < min_area:
                continue
            r = evaluate_object(predictor, gt, n_clicks)
            rec: dict[str, Any] = {
                "sample": sample.name,
                "object": i,
                "label": sample.labels[i] if i < len(sample.labels) else "",
                "area_px": area,
            }
            for c, v in enumerate(r.iou_clicks, 1):
                rec["iou_1_click" if c == 1 else f"iou_{c}_clicks"] = v
            rec.update(
                iou_box=r.iou_box,
                score_1_click=r.score_1_click,
                click_ms=r.click_ms,
                predicted=r.predicted,
                true=r.true,
            )
            records.append(rec)
    return records, encoder_ms


def set_image_timed(predictor: Any, image: np.ndarray, sync: Callable[[], None] | None) -> float:
    """``predictor.set_image(image)``; returns its encoder ms (see ``evaluate_samples``)."""
    stats = getattr(predictor, "stats", None)
    if stats is not None:
        stats.encoder_ms = None
    t = time.perf_counter()
    predictor.set_image(image)
    if sync is not None:
        sync()
    wall = (time.perf_counter() - t) * 1e3
    reported = getattr(stats, "encoder_ms", None)
    return float(reported) if reported is not None else wall


def pearson_r(x: Iterable[float], y: Iterable[float]) -> float | None:
    """Pearson correlation of two equal-length sequences; None when undefined (n < 2, a constant)."""
    a, b = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"lengths differ: {len(a)} vs {len(b)}.")
    if len(a) < 2:
        return None
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else None


def bootstrap_ci(
    values: Iterable[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval of the mean (deterministic: fixed ``seed``).

    None for no values; (v, v) for a single value.
    """
    v = np.asarray(list(values), dtype=float)
    if len(v) == 0:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """mIoU per prompt setting with its 95% bootstrap CI, Pearson r of predicted vs true IoU.

    Returns ``{"objects": n, "miou": {"1_click": ..., "box": ...}, "ci95": {"1_click": [lo, hi]},
    "pearson_r": r or None, "click_ms_median": ...}``; mIoU values are None with no records.
    """
    keys = [k for k in PROMPTS if records and k in records[0]]
    keys += sorted(k for k in (records[0] if records else {}) if k.startswith("iou_") and k not in keys)
    miou, ci = {}, {}
    for k in keys:
        vals = [r[k] for r in records]
        miou[k[4:]] = float(np.mean(vals))
        lo_hi = bootstrap_ci(vals)
        ci[k[4:]] = list(lo_hi) if lo_hi else None
    predicted = [p for r in records for p in r.get("predicted", [])]
    true = [t for r in records for t in r.get("true", [])]
    clicks = [r["click_ms"] for r in records if "click_ms" in r]
    return {
        "objects": len(records),
        "miou": miou,
        "ci95": ci,
        "pearson_r": pearson_r(predicted, true),
        "click_ms_median": float(np.median(clicks)) if clicks else None,
    }
