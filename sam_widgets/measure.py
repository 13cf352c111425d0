"""Measurement, in one place: times (``Timing``, ``time_ms``), peak memory (``PeakMemory``), and
the figures quoted about SAM that measured ones are set against (``QUOTED_SPEED_IOU``).

``bench`` (stock SamPredictor against CachedPredictor, IoU), ``compare`` (notebook 03's
checkpoints side by side) and ``anatomy`` (notebook 02) build on these. torch is imported only
when a CUDA device is measured.
"""

from __future__ import annotations

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
    "PeakMemory",
    "PeakRSS",
    "QUOTED_SPEED_IOU",
    "QUOTED_HARDWARE",
    "QUOTED_SOURCE",
]

#: Figures quoted in this project's brief for the official models: image-encoder ms per image and
#: 1-click mIoU. Not measured here and not from the SAM paper; plots draw them hollow, labelled so.
QUOTED_SPEED_IOU: dict[str, dict[str, float]] = {
    "vit_h": {"encoder_ms": 110.0, "miou": 0.88},
    "vit_l": {"encoder_ms": 80.0, "miou": 0.86},
    "vit_b": {"encoder_ms": 50.0, "miou": 0.83},
}
QUOTED_HARDWARE = "A100 (quoted, not measured here)"
QUOTED_SOURCE = (
    "the figures most often quoted (mIoU, encoder ms), said to be on an A100; as given in the "
    "project's teaching-notebooks issue, not measured here"
)


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
