"""Measured IoU: one model on samples with ground truth (``evaluate_iou``), with its encoder time.

Never from random weights: those give timing only, marked ``NO_IOU_RANDOM``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..measure import Timing, encoder_ms, sync_for
from ..record import record_of

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

    from ..datasets import Sample

__all__ = ["NO_IOU_RANDOM", "IoUResult", "evaluate_iou"]

#: The status of an IoU entry measured on random weights: there is none, on purpose.
NO_IOU_RANDOM = "random weights: no IoU"


@dataclass
class IoUResult:
    """IoU and encoder time of one model on one dataset.

    ``status`` is ``"measured"``, or ``NO_IOU_RANDOM`` for random weights (then ``miou``, ``ci95``,
    ``pearson_r`` and ``per_object`` stay empty: timing only). ``encoder_ms`` summarises
    ``encoder_ms_runs``: the image encoder's time (``CachedPredictor.stats.encoder_ms``, without
    resizing or hashing) for each sample (measured) or for ``repeats`` encodings (random weights),
    after a warm-up encoding that is not timed. ``miou`` maps ``1_click``,
    ``2_clicks``, ``3_clicks``, ``box`` to the mean IoU over objects, ``ci95`` to its 95% bootstrap
    interval; ``pearson_r`` correlates predicted and true IoU over every mask returned. ``noc``
    (with ``noc=True``): ``evaluation.noc_summary`` of every object's IoU-after-each-click curve.
    """

    model: str
    weights: str
    device: str
    precision: str
    dataset: str
    status: str
    samples: int
    encoder_ms: dict[str, Any] | None = None
    encoder_ms_runs: list[float] = field(default_factory=list)
    objects: int = 0
    miou: dict[str, float] = field(default_factory=dict)
    ci95: dict[str, list[float] | None] = field(default_factory=dict)
    pearson_r: float | None = None
    click_ms_median: float | None = None
    min_area_px: int = 0
    per_object: list[dict[str, Any]] = field(default_factory=list)
    noc: dict[str, Any] = field(default_factory=dict)


def evaluate_iou(
    sam: Sam | str,
    samples: list[Sample],
    *,
    dataset: str = "",
    weights: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    n_clicks: int = 3,
    min_area: int = 100,
    repeats: int = 3,
    warmup: bool = True,
    progress: bool = True,
    noc: bool = False,
    max_clicks: int = 20,
    feed_logits: bool = True,
) -> IoUResult:
    """IoU of one model on ``samples`` (1 click, ``n_clicks`` clicks, box) and its encoder time.

    Arguments:
      sam: a model from ``load_sam``, or a name loaded here with ``weights`` (default
        ``"pretrained"``), ``device`` and ``precision``.
      weights: ``"pretrained"`` or ``"random"``. For a model object, ``load_sam`` records it on
        the model; a model built otherwise needs it said here (no IoU is reported for a model
        whose weights are not known to be trained).
      samples: images with ground truth (``sam_widgets.datasets``).
      dataset: the dataset's name, recorded.
      n_clicks: clicks in all for the click setting (1 positive + corrective ones).
      min_area: objects smaller than this many pixels are skipped.
      repeats: timed encodings for a model with random weights (no IoU is measured for those).
      warmup: encode the first sample once, untimed, before timing (allocator, kernels).
      noc: clicks-to-IoU: every object gets ``max_clicks`` clicks (instead of ``n_clicks``) and
        ``result.noc`` NoC@85/90, failures and mIoU@1/3/5/10 (``evaluation.noc_summary``).
      feed_logits: the previous low-res logits go back with each corrective click (SAM's setting).

    A model with random weights gets ``status=NO_IOU_RANDOM`` and timing only: its masks are noise.
    """
    from ..evaluation import (
        NOC_THRESHOLDS,
        curves_of,
        evaluate_samples,
        noc_summary,
        summarize,
    )
    from ..models import load_sam
    from ..predictor import CachedPredictor

    if not samples:
        raise ValueError("evaluate_iou needs at least one sample.")
    if noc and max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}.")
    if isinstance(sam, str):
        sam = load_sam(
            sam, weights=weights or "pretrained", device=device, precision=precision, progress=progress
        )
    record = record_of(sam)
    loaded = record.weights != "unknown"  # load_sam recorded the model's facts
    name = record.name if loaded else "model"
    weights = record.weights if loaded else weights
    if weights not in ("pretrained", "random"):
        raise ValueError(
            f"evaluate_iou: the weights of this {type(sam).__name__} are unknown; load it with load_sam(), "
            "or pass weights='pretrained' (trained) or weights='random' (timing only, no IoU)."
        )
    sync = sync_for(sam.device)
    predictor = CachedPredictor(sam, cache_bytes=0)  # no cache: every set_image runs the encoder
    result = IoUResult(
        model=name,
        weights=weights,
        device=str(sam.device),
        precision=record.precision if loaded else precision,
        dataset=dataset,
        status=NO_IOU_RANDOM if weights == "random" else "measured",
        samples=len(samples),
        min_area_px=min_area,
    )
    if warmup:
        predictor.set_image(samples[0].image)
    if weights == "random":
        for i in range(repeats):
            result.encoder_ms_runs.append(encoder_ms(predictor, samples[i % len(samples)].image, sync))
    else:
        records, result.encoder_ms_runs = evaluate_samples(
            predictor,
            samples,
            n_clicks=max_clicks if noc else n_clicks,
            min_area=min_area,
            progress=progress,
            desc=f"{'NoC' if noc else 'IoU'} {name}",
            sync=sync,
            feed_logits=feed_logits,
            noc_thresholds=NOC_THRESHOLDS if noc else None,
        )
        summary = summarize(records)
        result.objects = summary["objects"]
        result.miou, result.ci95 = summary["miou"], summary["ci95"]
        result.pearson_r, result.click_ms_median = summary["pearson_r"], summary["click_ms_median"]
        result.per_object = [{"model": name, **r} for r in records]
        if noc:
            result.noc = {"model": name, **noc_summary(curves_of(records), max_clicks=max_clicks)}
    if result.encoder_ms_runs:
        result.encoder_ms = asdict(Timing.of(result.encoder_ms_runs))
    return result
