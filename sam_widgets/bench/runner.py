"""One run: timing and IoU of several models, each loaded once (``run``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..record import record_of
from .iou import evaluate_iou
from .timing import BenchResult, bench_model, machine_info
from .weights import _skip_message, resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    from ..datasets import Sample

__all__ = ["run"]


def run(
    models: list[str],
    *,
    weights: str = "auto",
    random_weights: bool = False,
    timing: bool = True,
    iou_samples: list[Sample] | None = None,
    dataset: str = "",
    n_clicks: int = 3,
    min_area: int = 100,
    noc: bool = False,
    max_clicks: int = 20,
    **kwargs: Any,
) -> dict[str, Any]:
    """Bench each model; return ``{"machine", "settings", "dataset", "results", "skipped"}``.

    Arguments:
      weights, random_weights: per model, as ``resolve_weights``; a model it skips is listed in
        ``"skipped"`` with the way to get its weights.
      timing: time stock SamPredictor against CachedPredictor (``bench_model``).
      iou_samples: when given, also ``evaluate_iou`` on them (``results[i]["iou"]``).
      noc, max_clicks: clicks-to-IoU on them too (``evaluate_iou``'s; ``results[i]["iou"]["noc"]``).
      kwargs: ``bench_model``'s device, precision, repeats, clicks, image_size, progress.
    """
    from ..models import load_sam

    results, skipped = [], {}
    for name in models:
        w = resolve_weights(name, weights, random_weights)
        if w is None:
            skipped[name] = _skip_message(name)
            continue
        sam = load_sam(
            name,
            weights=w,
            device=kwargs.get("device", "auto"),
            precision=kwargs.get("precision", "fp32"),
            fast=kwargs.get("fast"),
            progress=kwargs.get("progress", True),
        )
        if timing:
            r = bench_model(name, **kwargs, sam=sam)
        else:
            r = BenchResult(
                model=name,
                weights=w,
                device=str(sam.device),
                precision=record_of(sam).precision,
                image_size=tuple(kwargs.get("image_size", (768, 1024))),
            )
        if iou_samples is not None:
            res = evaluate_iou(
                sam,
                iou_samples,
                dataset=dataset,
                n_clicks=n_clicks,
                min_area=min_area,
                noc=noc,
                max_clicks=max_clicks,
                repeats=kwargs.get("repeats", 3),
                progress=kwargs.get("progress", True),
            )
            r.iou = asdict(res)
        results.append(r)
        del sam
    settings = dict(kwargs, weights=weights, random_weights=random_weights, timing=timing)
    if iou_samples is not None:
        settings.update(n_clicks=n_clicks, min_area=min_area)
        if noc:
            settings.update(noc=True, max_clicks=max_clicks)
    return {
        "machine": machine_info(),
        "settings": settings,
        "dataset": None
        if iou_samples is None
        else {
            "name": dataset,
            "samples": len(iou_samples),
            "objects": int(sum(len(s.masks) for s in iou_samples)),
            "names": [s.name for s in iou_samples],
        },
        "results": [asdict(r) for r in results],
        "skipped": skipped,
        "_objects": results,
    }
