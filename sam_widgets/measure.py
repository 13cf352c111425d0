"""Measurement, in one place: times (``Timing``, ``time_ms``, ``encoder_ms``, ``sync_for``), peak
memory (``PeakMemory``, ``PeakRSS``), and the figures quoted about SAM that measured ones are set
against (``QUOTED``, each with its source).

``bench`` (stock SamPredictor against CachedPredictor: ``bench_model``; IoU: ``evaluate_iou``),
``evaluation`` (the encoder time of each sample), ``compare`` (notebook 03's checkpoints side by
side: ``run_model``) and ``anatomy`` (notebook 02) build on these. torch is imported only when a
CUDA device is measured.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._io import cuda_sync
from ._memory import PeakRSS

__all__ = [
    "Timing",
    "time_ms",
    "encoder_ms",
    "sync_for",
    "PeakMemory",
    "PeakRSS",
    "QUOTED",
    "QUOTED_SPEED_IOU",
    "QUOTED_MOBILE_SAM",
]

#: Figures quoted about SAM, not measured here, each with where it comes from: the one table the
#: notebooks set measured figures against (never on the same footing: plots draw them hollow).
QUOTED: dict[str, dict[str, Any]] = {
    "patch_tokens": {
        "value": "64x64x256 after patch embedding",
        "source": "a claim in popular write-ups, as the project's design notes point out; the code "
        "gives 64x64xembed_dim after patch embedding, and the neck makes 256",
    },
    "speed_vs_iou": {  # image-encoder ms per image and 1-click mIoU of the official models
        "value": {
            "vit_h": {"encoder_ms": 110.0, "miou": 0.88},
            "vit_l": {"encoder_ms": 80.0, "miou": 0.86},
            "vit_b": {"encoder_ms": 50.0, "miou": 0.83},
        },
        "hardware": "A100 (quoted, not measured here)",
        "source": "the figures most often quoted (mIoU, encoder ms), said to be on an A100; as given "
        "in the project's teaching-notebooks issue, not measured here and not from the SAM paper",
    },
}
#: ``QUOTED["speed_vs_iou"]["value"]``: model -> {"encoder_ms", "miou"}, as ``bench``'s plots draw it.
QUOTED_SPEED_IOU: dict[str, dict[str, float]] = QUOTED["speed_vs_iou"]["value"]

#: MobileSAM as its authors report it (not measured here): README of ChaoningZhang/MobileSAM and the
#: paper (Zhang et al., "Faster Segment Anything: Towards Lightweight SAM for Mobile Applications",
#: arXiv:2306.14289). Times on "a single GPU" (model not named there); quality only relative to SAM.
QUOTED_MOBILE_SAM: dict[str, object] = {
    "encoder_ms": 8.0,
    "decoder_ms": 4.0,
    "sam_vit_h_encoder_ms": 452.0,
    "encoder_params_m": 5.0,
    "sam_vit_h_encoder_params_m": 611.0,
    "quality": "performs on par with the original SAM (at least visually)",
    "hardware": "a single GPU (not named)",
    "source": "MobileSAM README (github.com/ChaoningZhang/MobileSAM) and arXiv:2306.14289",
}


@dataclass
class Timing:
    """Milliseconds over repeated runs."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples_ms: list[float]) -> Timing:
        return cls(statistics.median(samples_ms), min(samples_ms), max(samples_ms), len(samples_ms))


def time_ms(fn: Callable[[], Any], sync: Callable[[], None] = lambda: None) -> float:
    """Wall time of ``fn()`` in ms; ``sync`` (e.g. ``torch.cuda.synchronize``) runs before and
    after, so queued GPU work is counted where it is caused."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t0) * 1000


def sync_for(device: Any) -> Callable[[], None]:
    """The ``sync`` of a timing on ``device`` (a ``torch.device``): ``_io.cuda_sync`` of it on a
    CUDA device, so that its queued work is counted; nothing elsewhere."""
    if getattr(device, "type", None) == "cuda":
        return functools.partial(cuda_sync, device)
    return _no_sync


def _no_sync() -> None:
    pass


def encoder_ms(predictor: Any, image: Any, sync: Callable[[], None] | None = None) -> float:
    """``predictor.set_image(image)``; returns its encoder time in ms.

    The encoder's own time when the predictor reports it (``CachedPredictor.stats.encoder_ms``:
    no resizing or hashing), else the wall time of ``set_image`` (a stock ``SamPredictor``);
    ``sync`` (``sync_for(device)``) runs before the clock stops.
    """
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


class PeakMemory:
    """Peak memory added during a block, in bytes: CUDA max allocated, or sampled process RSS on
    the CPU (``peak_rss_bytes``: the whole process's RSS at that peak, weights included)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.peak_bytes = 0
        self.peak_rss_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            import torch

            cuda_sync(self.device)
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        # trim: memory freed by an earlier run (e.g. stock's) would hide this run's growth
        self._rss = PeakRSS(interval=0.002, trim=True).__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            import torch

            cuda_sync(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
            return
        self._rss.__exit__(*exc)
        self.peak_bytes = self._rss.bytes
        self.peak_rss_bytes = self._rss.peak_rss_bytes
