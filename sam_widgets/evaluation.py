"""Simulated clicks, IoU and clicks-to-IoU (NoC): the interactive-segmentation protocol, in one place.

The clicker (``next_click``) is the one of RITM (Sofiiuk et al., "Reviving Iterative Training with
Mask Guidance for Interactive Segmentation", 2021; ``isegm/inference/clicker.py``), used since by
SimpleClick, FocalClick and FocSAM to report NoC: the false-negative (``gt & ~pred``) and
false-positive (``pred & ~gt``) masks are each padded by 1 pixel (so the image edge counts as
boundary), an exact L2 distance transform is taken, pixels already clicked are set to 0; the click
is **positive** if the largest false-negative distance exceeds the largest false-positive one
(strictly), else **negative**, at the first pixel (row-major) of largest distance on that side.

For one ground-truth object (HxW bool) and a predictor whose image is set (segment_anything's
``SamPredictor`` or ``CachedPredictor``):

- **1 click**: ``next_click`` of an empty prediction: a positive point at the object pixel
  farthest from its boundary; multimask output, the mask with the highest predicted IoU is kept
  (SAM's answer to an ambiguous single point);
- **corrective clicks** (up to ``n_clicks`` in all): ``next_click`` of the current mask; every point
  so far, one mask (``multimask_output=False``) and, with ``feed_logits`` (default, SAM's own
  interactive setting: the SAM paper's simulated interaction (Appendix A, "Training algorithm")
  gives the previous iteration's unthresholded mask logits as an extra prompt, as does
  segment_anything's predictor notebook), the previous low-res logits as ``mask_input``;
- **box**: the tight bounding box of the object, one mask.

``click_curve`` gives the IoU after each of up to ``max_clicks`` clicks; ``noc`` the number of clicks
to reach an IoU (NoC@85, NoC@90; a failure counts the cap, 20 in the literature); ``noc_summary``
turns curves into NoC@k, mIoU@k and the share of failures, with 95% bootstrap intervals.
``evaluate_samples`` runs the protocol on every object of a list of ``datasets.Sample``;
``summarize`` turns records into mIoU (bootstrap intervals) and the Pearson r between the model's
predicted IoU and the true IoU over every mask it returned. ``replay`` runs the prompts a person
made in the widget (a ``Session``, a folder it saved, or plain prompts) on another model.
Used by ``sam_widgets.bench`` and ``sam_widgets.micro.evaluate``.

Which protocol the published figures used: FocSAM (Huang et al., CVPR 2024, Table 1) reports SAM
ViT-H NoC@90 of 1.88 GrabCut, 2.09 Berkeley, 7.62 SBD, 5.19 DAVIS with this clicker, 20 clicks at
most; its description of SAM's pipeline (Fig. 2) feeds the previous mask back with the clicks,
i.e. ``feed_logits=True`` (read from the paper, not from its code).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from . import measure
from .viz import mask_iou

__all__ = [
    "PROMPTS",
    "ObjectResult",
    "mask_iou",
    "NOC_THRESHOLDS",
    "MIOU_AT",
    "center_point",
    "next_click",
    "corrective_click",
    "click_curve",
    "noc",
    "noc_summary",
    "tight_box",
    "evaluate_object",
    "evaluate_samples",
    "curves_of",
    "summarize",
    "pearson_r",
    "bootstrap_ci",
    "replay",
    "format_replay",
]

#: The IoU thresholds of NoC reported by default (NoC@85, NoC@90), and the literature's cap.
NOC_THRESHOLDS = (0.85, 0.90)
MAX_CLICKS = 20
#: The clicks after which mIoU is reported (mIoU@1, @3, @5, @10).
MIOU_AT = (1, 3, 5, 10)

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


def _clicked_map(clicked: Any, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool of the pixels already clicked, from a bool mask or an iterable of (x, y[, label])."""
    done = np.zeros(shape, bool)
    if clicked is None:
        return done
    arr = np.asarray(clicked)
    if arr.dtype == bool and arr.shape == shape:
        return arr.copy()
    for c in clicked:
        x, y = int(round(float(c[0]))), int(round(float(c[1])))
        if 0 <= y < shape[0] and 0 <= x < shape[1]:
            done[y, x] = True
    return done


def _depth(err: np.ndarray) -> np.ndarray:
    """L2 distance of each pixel of ``err`` (HxW bool) to the nearest pixel outside it, the image edge
    counting as outside (padded by 1 px); 0 outside ``err``. Computed on ``err``'s bounding box plus a
    1-pixel ring, which gives the same distances: any outside pixel is at least as far as the ring."""
    out = np.zeros(err.shape)
    ys, xs = np.nonzero(err)
    if len(ys) == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    out[y0:y1, x0:x1] = ndimage.distance_transform_edt(np.pad(err[y0:y1, x0:x1], 1))[1:-1, 1:-1]
    return out


def next_click(
    pred_mask: np.ndarray, gt_mask: np.ndarray, clicked: Any = None
) -> tuple[tuple[int, int], bool] | None:
    """The next simulated click by RITM's rule: ``((x, y), is_positive)``; None when nothing is left.

    Arguments:
      pred_mask: HxW bool, the current prediction (all False before the first click).
      gt_mask: HxW bool, the ground truth.
      clicked: the pixels clicked so far, excluded: an iterable of (x, y) or (x, y, label), or an
        HxW bool mask; None for none.

    The false-negative and false-positive masks are padded by 1 pixel (the image edge is boundary)
    and L2-distance transformed (exact, ``scipy.ndimage.distance_transform_edt``, as OpenCV's
    ``DIST_L2`` with a precise mask in RITM); clicked pixels get distance 0. Positive when the
    largest false-negative distance is strictly larger than the largest false-positive one, else
    negative; the click is the first pixel in row-major order at that largest distance. Returns None
    when the prediction is perfect or every wrong pixel has been clicked.
    """
    pred, gt = np.asarray(pred_mask, dtype=bool), np.asarray(gt_mask, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred_mask and gt_mask must be HxW of one shape, got {pred.shape} and {gt.shape}.")
    free = ~_clicked_map(clicked, gt.shape)
    dists = [_depth(err) * free for err in (gt & ~pred, pred & ~gt)]
    fn_max, fp_max = float(dists[0].max()), float(dists[1].max())
    if fn_max == 0 and fp_max == 0:
        return None
    positive = fn_max > fp_max
    d = dists[0] if positive else dists[1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return (int(x), int(y)), bool(positive)


def corrective_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], int] | None:
    """The earlier clicker of this package (kept for ``micro.evaluate``'s older figures): ((x, y),
    label), label 1 positive / 0 negative; None if pred == gt. ``next_click`` is the standard one.

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
    predictor: Any,
    gt: np.ndarray,
    n_clicks: int = 3,
    keep_masks: bool = False,
    *,
    feed_logits: bool = True,
    box: bool = True,
) -> ObjectResult:
    """Run the protocol of this module on one object; ``predictor`` has the image set already.

    Arguments:
      predictor: a ``SamPredictor`` (or ``CachedPredictor``) after ``set_image``.
      gt: HxW bool ground truth, the image's size, not empty.
      n_clicks: clicks in all (1 + corrective ones, each by ``next_click``), >= 1.
      keep_masks: also return the predicted masks (for pictures).
      feed_logits: pass the previous low-res logits as ``mask_input`` with each corrective click.
      box: also measure the tight box prompt (``iou_box``; NaN when False).
    """
    if n_clicks < 1:
        raise ValueError(f"n_clicks must be >= 1, got {n_clicks}.")
    gt = np.asarray(gt, dtype=bool)
    if not gt.any():
        raise ValueError("evaluate_object of an empty ground truth: there is no object to click.")
    first = next_click(np.zeros_like(gt), gt)
    assert first is not None  # gt is not empty
    (x, y), _ = first
    points, labels = [(x, y)], [1]
    t = time.perf_counter()
    m, s, low = predictor.predict(np.array(points), np.array(labels), multimask_output=True)
    click_ms = (time.perf_counter() - t) * 1e3
    res = ObjectResult([], float("nan"), 0.0, [(x, y, 1)], click_ms=click_ms)
    res.predicted += [float(v) for v in s]
    res.true += [mask_iou(mm, gt) for mm in m]
    k = int(np.argmax(s))
    pred, logits = np.asarray(m[k], dtype=bool), low[k : k + 1]
    res.score_1_click = float(s[k])
    res.iou_clicks.append(res.true[k])
    if keep_masks:
        res.masks["1 click"] = pred
    for _ in range(n_clicks - 1):
        nxt = next_click(pred, gt, points)
        if nxt is not None:  # a perfect mask (or nothing left to click) needs no more clicks: it stays
            (x, y), positive = nxt
            points.append((x, y))
            labels.append(int(positive))
            res.clicks.append((x, y, int(positive)))
            m, s, logits = predictor.predict(
                np.array(points),
                np.array(labels),
                mask_input=logits if feed_logits else None,
                multimask_output=False,
            )
            pred = np.asarray(m[0], dtype=bool)
            res.predicted.append(float(s[0]))
            res.true.append(mask_iou(pred, gt))
        res.iou_clicks.append(mask_iou(pred, gt))
    if keep_masks and n_clicks > 1:
        res.masks[f"{n_clicks} clicks"] = pred
    if box:
        m, s, _ = predictor.predict(box=tight_box(gt), multimask_output=False)
        res.predicted.append(float(s[0]))
        res.true.append(mask_iou(m[0], gt))
        res.iou_box = res.true[-1]
        if keep_masks:
            res.masks["box"] = m[0]
    return res


def click_curve(
    predictor: Any,
    image: np.ndarray | None,
    gt_mask: np.ndarray,
    max_clicks: int = MAX_CLICKS,
    *,
    feed_logits: bool = True,
) -> list[float]:
    """The IoU after each of ``max_clicks`` simulated clicks (``next_click``) on one object.

    Arguments:
      predictor: a ``SamPredictor`` or ``CachedPredictor``.
      image: HxWx3 uint8 RGB, passed to ``predictor.set_image``; None when it is set already (several
        objects of one image: encode once).
      gt_mask: HxW bool, the object, not empty.
      max_clicks: the cap (20 in the literature).
      feed_logits: the previous low-res logits go back as ``mask_input`` (SAM's setting); False
        sends the clicks alone.

    Returns a list of ``max_clicks`` IoUs in [0, 1]: element i is the IoU after i + 1 clicks. Once the
    mask is perfect (or every wrong pixel was clicked) the IoU stays. ``noc(curve, 0.9)`` is NoC@90.
    """
    if image is not None:
        predictor.set_image(image)
    return evaluate_object(predictor, gt_mask, max_clicks, feed_logits=feed_logits, box=False).iou_clicks


def noc(ious: Iterable[float], threshold: float, max_clicks: int | None = None) -> int:
    """Number of clicks to reach IoU >= ``threshold``: 1-based index of the first such IoU in ``ious``
    (the IoU after each click); ``max_clicks`` (default ``len(ious)``) when it is never reached.

    As RITM's ``compute_noc_metric``: a failure counts as the cap, so NoC@90 of 20 means "20 or never".
    """
    v = np.asarray(list(ious), dtype=float)
    cap = len(v) if max_clicks is None else int(max_clicks)
    if cap < 1:
        raise ValueError(f"max_clicks must be >= 1, got {cap} (an empty curve needs max_clicks).")
    hit = np.nonzero(v[:cap] >= threshold)[0]
    return int(hit[0]) + 1 if len(hit) else cap


def _pct(t: float) -> str:
    return f"{round(t * 100):d}"


def noc_summary(
    curves: Iterable[Iterable[float]],
    thresholds: Iterable[float] = NOC_THRESHOLDS,
    at: Iterable[int] = MIOU_AT,
    max_clicks: int | None = None,
) -> dict[str, Any]:
    """NoC@k, the share of failures and mIoU@k over objects, each with a 95% bootstrap interval.

    Arguments:
      curves: per object, the IoU after each click (``click_curve``), all of one length.
      thresholds: IoUs for NoC (0.85, 0.90 -> keys ``"85"``, ``"90"``).
      at: clicks after which to report mIoU (those beyond the curves' length are left out).
      max_clicks: the cap (default: the curves' length).

    Returns ``{"objects": n, "max_clicks": cap, "noc": {"85": mean}, "noc_ci95": {"85": [lo, hi]},
    "failures": {"85": share that never reaches 0.85}, "failures_ci95": {...}, "failed": {"85":
    count}, "miou_at": {"1": mean IoU after 1 click, ...}, "miou_at_ci95": {...}, "curve": mean IoU
    after each click}``; empty dicts with no curves.
    """
    arr = [np.asarray(list(c), dtype=float) for c in curves]
    if arr and len({len(a) for a in arr}) != 1:
        raise ValueError(f"curves of different lengths {sorted({len(a) for a in arr})}: give one cap.")
    cap = max_clicks if max_clicks is not None else (len(arr[0]) if arr else 0)
    out: dict[str, Any] = {
        "objects": len(arr),
        "max_clicks": cap,
        "noc": {},
        "noc_ci95": {},
        "failures": {},
        "failures_ci95": {},
        "failed": {},
        "miou_at": {},
        "miou_at_ci95": {},
        "curve": [],
    }
    if not arr:
        return out
    m = np.stack(arr)
    for t in thresholds:
        key = _pct(t)
        nocs = [noc(c, t, cap) for c in m]
        fails = [0.0 if (c[:cap] >= t).any() else 1.0 for c in m]
        out["noc"][key] = float(np.mean(nocs))
        out["noc_ci95"][key] = list(bootstrap_ci(nocs) or ())
        out["failures"][key] = float(np.mean(fails))
        out["failures_ci95"][key] = list(bootstrap_ci(fails) or ())
        out["failed"][key] = int(sum(fails))
    for k in at:
        if 1 <= k <= m.shape[1]:
            out["miou_at"][str(k)] = float(m[:, k - 1].mean())
            out["miou_at_ci95"][str(k)] = list(bootstrap_ci(m[:, k - 1]) or ())
    out["curve"] = [float(v) for v in m.mean(axis=0)]
    return out


def evaluate_samples(
    predictor: Any,
    samples: Iterable[Any],
    *,
    n_clicks: int = 3,
    min_area: int = 100,
    progress: bool = True,
    desc: str = "IoU",
    sync: Callable[[], None] | None = None,
    feed_logits: bool = True,
    noc_thresholds: Iterable[float] | None = None,
) -> tuple[list[dict[str, Any]], list[float]]:
    """Run ``evaluate_object`` on every object of at least ``min_area`` pixels of every sample.

    Arguments:
      predictor: a ``SamPredictor`` or ``CachedPredictor``; ``set_image`` is called per sample.
      samples: objects with ``name``, ``image`` (HxWx3 uint8), ``masks`` (NxHxW bool), ``labels``
        (``datasets.Sample``).
      n_clicks: clicks per object (20 for NoC).
      progress: a tqdm bar over objects.
      sync: called after ``set_image`` before the clock stops (``measure.sync_for(device)``).
      feed_logits: see ``evaluate_object``.
      noc_thresholds: also record ``noc_85``, ``noc_90``, ... per object (cap ``n_clicks``).

    Returns:
      records: one dict per object: sample, object (index in the sample), label, area_px,
        iou_1_click ... iou_{n}_clicks, iou_box, score_1_click (predicted IoU of the kept mask),
        click_ms (the first click's predict), noc_* when asked, and the lists predicted / true
        (for ``summarize``).
      encoder_ms: per sample, the encoder's own time when the predictor reports it
        (``CachedPredictor.stats.encoder_ms``: no resizing or hashing), else the wall time of
        ``set_image``; in ms.
    """
    from tqdm.auto import tqdm

    samples = list(samples)
    thresholds = list(noc_thresholds or ())
    todo = [[i for i, gt in enumerate(s.masks) if int(gt.sum()) >= min_area] for s in samples]
    records: list[dict[str, Any]] = []
    encoder_ms: list[float] = []
    bar = tqdm(total=sum(map(len, todo)), desc=desc, unit="object", disable=not progress, leave=False)
    try:
        for sample, objects in zip(samples, todo, strict=True):
            encoder_ms.append(measure.encoder_ms(predictor, sample.image, sync))
            for i in objects:
                gt = sample.masks[i]
                r = evaluate_object(predictor, gt, n_clicks, feed_logits=feed_logits)
                rec: dict[str, Any] = {
                    "sample": sample.name,
                    "object": i,
                    "label": sample.labels[i] if i < len(sample.labels) else "",
                    "area_px": int(gt.sum()),
                }
                for c, v in enumerate(r.iou_clicks, 1):
                    rec["iou_1_click" if c == 1 else f"iou_{c}_clicks"] = v
                for t in thresholds:
                    rec[f"noc_{_pct(t)}"] = noc(r.iou_clicks, t)
                rec.update(
                    iou_box=r.iou_box,
                    score_1_click=r.score_1_click,
                    click_ms=r.click_ms,
                    predicted=r.predicted,
                    true=r.true,
                )
                records.append(rec)
                bar.update(1)
    finally:
        bar.close()
    return records, encoder_ms


def curves_of(records: list[dict[str, Any]]) -> list[list[float]]:
    """The IoU-after-each-click curves (``iou_1_click``, ``iou_2_clicks``, ...) of ``evaluate_samples``
    records, for ``noc_summary``."""
    out = []
    for r in records:
        c, k = [], 1
        while (key := "iou_1_click" if k == 1 else f"iou_{k}_clicks") in r:
            c.append(float(r[key]))
            k += 1
        out.append(c)
    return out


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


# ----------------------------------------------------------------------------- replay


def _as_predictor(model: Any) -> Any:
    """A predictor from a model name (``load_sam``), a ``Sam`` module, or a predictor (kept)."""
    if hasattr(model, "predict") and hasattr(model, "set_image"):
        return model
    from .predictor import CachedPredictor

    if isinstance(model, str):
        from .models import load_sam

        model = load_sam(model)
    return CachedPredictor(model)


def _prompts_of_session(session: Any) -> list[dict[str, Any]]:
    """Per object of every image of a live ``Session``: its image, prompts, candidates and masks."""
    items = []
    here = session.current
    try:
        for index in range(len(session)):
            objects = session.objects_on(index)
            if not objects:
                continue
            if session.current != index:
                session.go(index)
            image = session.image
            for o in objects:
                items.append(
                    {
                        "image_name": session.names[index],
                        "image": image,
                        "label": o.label,
                        "points": [list(p) for p in o.points],
                        "labels": list(o.point_labels),
                        "box": None if o.box is None else list(o.box),
                        "original": None if o.candidates is None else o.candidates[o.chosen],
                        "original_scores": None if o.scores is None else list(o.scores),
                        "original_chosen": o.chosen,
                        "final": o.mask,
                    }
                )
    finally:
        if session.current != here:
            session.go(here)
    return items


def _session_from_folder(folder: Any, images: Any, predictor: Any) -> Any:
    """``Session.from_folder`` over ``images`` (a list, or a folder holding the saved file names)."""
    import json
    from pathlib import Path

    from .session import ANNOTATIONS_FILE, Session

    folder = Path(folder)
    if images is None:
        raise ValueError(
            f"replay of the saved folder {folder} needs the images it was made on: pass images=[...] "
            "(arrays or paths, as given to the widget) or images=<folder holding them>."
        )
    ann = folder / ANNOTATIONS_FILE
    if not ann.is_file():
        raise FileNotFoundError(f"No {ANNOTATIONS_FILE} in {folder}: is it a folder written by Session.save?")
    try:
        saved = json.loads(ann.read_text(encoding="utf-8"))["sam_widgets"]["images"]
        names = [str(s["name"]) for s in saved]
    except (ValueError, KeyError, TypeError):
        names = None  # Session.from_folder says what is wrong with the file
    if isinstance(images, (str, Path)) and Path(images).is_dir():
        image_dir = Path(images)
        paths = [image_dir / s["file_name"] for s in saved]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"images named in {ann} are not in {image_dir}: {missing[:3]}; pass images=[...] instead."
            )
        return Session.from_folder(folder, paths, predictor, names=names)
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    images = list(images)
    # arrays have no file names: they take the saved names, in the saved order
    arrays = (
        names is not None and len(images) == len(names) and all(isinstance(i, np.ndarray) for i in images)
    )
    return Session.from_folder(folder, images, predictor, names=names if arrays else None)


def replay(
    saved_session_or_prompts: Any,
    model: Any,
    *,
    images: Any = None,
    refine_with_logits: bool | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run the prompts a person made, in the same order, on another model; compare the masks.

    Answers "what would vit_h have given me for the same clicks?".

    Arguments:
      saved_session_or_prompts: a live ``Session``; a folder written by ``Session.save`` (then
        ``images`` are needed); or a list of dicts, one per object: ``image`` (HxWx3 uint8),
        ``points`` ([[x, y], ...] in image pixels, in click order), ``labels`` (1/0 per point),
        optional ``box`` ([x0, y0, x1, y1]), ``label``, ``image_name``, and ``mask`` (HxW bool, the
        person's final mask; without it the IoU against it is None).
      model: the other checkpoint: a name for ``load_sam`` ("vit_h", "micro"), a ``Sam`` module, or a
        predictor (``CachedPredictor``).
      images: for a saved folder, the images of the session (list of arrays or paths), or the folder
        holding the files named in its ``annotations.json``.
      refine_with_logits: feed the previous low-res logits with each new click, as ``Session`` does
        when built with ``refine_with_logits=True``. Default: the live session's setting, else False
        (the ``Session`` default; a saved folder does not record it).
      progress: a tqdm bar over objects.

    The replay predicts once per prompt step, as the widget did: after click 1, clicks 1-2, ...;
    a box is taken as drawn before the first click (a saved session keeps the box, not when it was
    drawn; without ``refine_with_logits`` the final mask does not depend on it). Several candidates
    only for a single point without a box (the session's rule); the kept one is the highest scored,
    unless the person chose another candidate of the final step in the widget: then the same index.

    Returns one dict per object: ``image``, ``label``, ``clicks`` (number of points), ``box``
    (bool), ``iou_models`` (replayed final mask vs the mask the original model gave for the same
    prompts; None for plain prompts), ``iou_final`` (replayed vs the person's final mask),
    ``iou_per_step`` (replayed mask after each step vs the person's final mask), ``score`` (the
    replayed model's predicted IoU), ``mask`` (HxW bool, the replayed final mask). Objects without
    prompts (a mask added as is) are listed with ``status`` "no prompts" and no IoU.
    """
    from pathlib import Path

    from tqdm.auto import tqdm

    predictor = _as_predictor(model)
    source = saved_session_or_prompts
    if isinstance(source, (str, Path)):
        source = _session_from_folder(source, images, predictor)
    if hasattr(source, "objects_on"):
        if refine_with_logits is None:
            refine_with_logits = bool(getattr(source, "refine_with_logits", False))
        items = _prompts_of_session(source)
    else:
        items = []
        for i, p in enumerate(source):
            if "image" not in p:
                raise ValueError(f"prompt {i}: needs 'image' (HxWx3 uint8) and 'points' and/or 'box'.")
            items.append(
                {
                    "image_name": p.get("image_name", f"image_{i}"),
                    "image": np.asarray(p["image"]),
                    "label": p.get("label", f"object {i + 1}"),
                    "points": [list(q) for q in p.get("points", [])],
                    "labels": list(p.get("labels", [1] * len(p.get("points", [])))),
                    "box": p.get("box"),
                    "original": None,
                    "original_scores": None,
                    "original_chosen": None,
                    "final": None if p.get("mask") is None else np.asarray(p["mask"], dtype=bool),
                }
            )
    refine = bool(refine_with_logits)
    results: list[dict[str, Any]] = []
    encoded: Any = None
    for it in tqdm(items, desc="replay", unit="object", disable=not progress, leave=False):
        pts, lab, box = it["points"], it["labels"], it["box"]
        if len(pts) != len(lab):
            raise ValueError(f"{it['label']}: {len(pts)} points but {len(lab)} labels.")
        row: dict[str, Any] = {
            "image": it["image_name"],
            "label": it["label"],
            "clicks": len(pts),
            "box": box is not None,
        }
        if not pts and box is None:
            results.append(
                {
                    **row,
                    "status": "no prompts",
                    "iou_models": None,
                    "iou_final": None,
                    "iou_per_step": [],
                    "score": None,
                    "mask": None,
                }
            )
            continue
        if encoded is not it["image"]:
            predictor.set_image(it["image"])
            encoded = it["image"]
        # the person's explicit choice among the final step's candidates, replayed as an index
        keep_index = None
        sc, ch = it["original_scores"], it["original_chosen"]
        if sc is not None and ch is not None and ch != int(np.argmax(sc)):
            keep_index = int(ch)
        steps = range(1, len(pts) + 1) if pts else [0]
        box_arr = None if box is None else np.asarray(box, dtype=np.float64)
        prev_logits, mask, score, per_step = None, None, None, []
        for k in steps:
            coords = np.asarray(pts[:k], dtype=np.float64).reshape(-1, 2) if k else None
            labels = np.asarray(lab[:k], dtype=np.int64) if k else None
            masks, scores, logits = predictor.predict(
                point_coords=coords,
                point_labels=labels,
                box=box_arr,
                mask_input=prev_logits if refine else None,
                multimask_output=(k == 1 and box is None),
            )
            j = int(np.argmax(scores))
            if k == steps[-1] and keep_index is not None and keep_index < len(masks):
                j = keep_index
            mask, score = np.asarray(masks[j], dtype=bool), float(scores[j])
            prev_logits = np.array(logits[j][None])
            if it["final"] is not None:
                per_step.append(mask_iou(mask, it["final"]))
        results.append(
            {
                **row,
                "status": "replayed",
                "iou_models": None if it["original"] is None else mask_iou(mask, it["original"]),
                "iou_final": None if it["final"] is None else mask_iou(mask, it["final"]),
                "iou_per_step": per_step,
                "score": score,
                "mask": mask,
            }
        )
    return results


def format_replay(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of ``replay``'s rows (image, object, clicks, box, IoUs, score)."""
    head = (
        f"{'image':<16} {'object':<12} {'clicks':>6} {'box':>4} {'IoU vs orig.':>12} "
        f"{'IoU vs final':>12} {'score':>6}"
    )
    lines = [head, "-" * len(head)]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for r in rows:
        lines.append(
            f"{str(r['image'])[:16]:<16} {str(r['label'])[:12]:<12} {r['clicks']:>6} "
            f"{'yes' if r['box'] else 'no':>4} {f(r['iou_models']):>12} {f(r['iou_final']):>12} "
            f"{f(r['score']):>6}" + ("" if r["status"] == "replayed" else f"  {r['status']}")
        )
    return "\n".join(lines)
