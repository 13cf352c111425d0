"""Speed: stock SamPredictor against CachedPredictor on one model (``bench_model``), and where the
numbers come from (``machine_info``). What each timing measures: ``sam_widgets.bench``."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..measure import PeakMemory, Timing, sync_for, time_ms
from ..record import record_of
from .weights import resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

__all__ = ["BenchResult", "machine_info", "bench_model"]


@dataclass
class BenchResult:
    """One model in one bench run: stock SamPredictor against CachedPredictor (``stock``, ``ours``:
    ``set_image_ms``, ``click_ms``, ``view_ms``, ``revisit_ms`` as ``measure.Timing`` dicts in ms,
    ``peak_mb``, ``peak_rss_mb``, ``encoder_runs``), their ``ratio``, and the IoU and GEMM-floor
    figures when asked for. (Notebook 03's one model on one image is ``compare.ModelResult``.)"""

    model: str
    weights: str
    device: str
    precision: str
    image_size: tuple[int, int]
    stock: dict[str, Any] = field(default_factory=dict)
    ours: dict[str, Any] = field(default_factory=dict)
    ratio: dict[str, float] = field(default_factory=dict)  # stock / ours: > 1 means we are faster
    iou: dict[str, Any] | None = None  # an IoUResult as a dict, when IoU was asked for
    floor: dict[str, Any] | None = None  # encoder GFLOP/s against the machine's GEMM floor (bench.floor)


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU, threads, GPU, versions, date."""
    import torch

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        from importlib.metadata import version

        import segment_anything  # noqa: F401

        info["segment_anything"] = version("segment-anything")
        info["sam_widgets"] = version("sam-widgets")
    except Exception:  # pragma: no cover - not installed as a distribution
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or "unknown"


def _bench_image(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A deterministic test image (H, W): smooth background with a few bright shapes."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, 90)], -1)
    for _ in range(4):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(min(h, w) // 10, min(h, w) // 4)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def bench_model(
    name: str,
    *,
    weights: str = "auto",
    device: str = "auto",
    precision: str = "fp32",
    repeats: int = 3,
    clicks: int = 20,
    image_size: tuple[int, int] = (768, 1024),
    progress: bool = True,
    sam: Sam | None = None,
    fast: bool | None = None,
) -> BenchResult:
    """Time stock SamPredictor and CachedPredictor on one model, the same image and prompts.

    ``weights="auto"`` uses pretrained weights when they are available offline (micro always; an
    official checkpoint if cached) and random weights otherwise: timing does not depend on them.
    ``sam``: an already loaded model (from ``load_sam``) to time instead of loading ``name``.
    ``fast``: as ``load_sam``'s (None: on with ``precision="auto"``). Stock always runs
    segment_anything's own modules (the fast paths are switched off for it, on for ours), and
    ours is also timed with masks at the widget's display size (``view_ms``, longest side 768).
    """
    from segment_anything import SamPredictor
    from tqdm.auto import tqdm

    from ..architectures import MODEL_NAMES
    from ..fast import disable_fast, enable_fast, is_fast
    from ..models import load_sam, precision_label
    from ..predictor import CachedPredictor

    if sam is None:
        if weights == "auto":
            weights = resolve_weights(name, "auto", random_weights=True) or "random"
        sam = load_sam(
            name, weights=weights, device=device, precision=precision, fast=fast, progress=progress
        )
    else:
        if record_of(sam).weights != "unknown":
            weights = record_of(sam).weights
    dev = sam.device
    sync = sync_for(dev)
    images = [_bench_image(image_size, seed) for seed in range(repeats + 1)]
    h, w = image_size
    point = dict(point_coords=np.array([[w * 0.5, h * 0.5]]), point_labels=np.array([1]))
    result = BenchResult(
        model=name,
        weights=weights,
        device=str(dev),
        precision=precision_label(sam),
        image_size=image_size,
    )
    ours_fast = is_fast(sam)
    view = (round(h * min(1.0, 768 / max(h, w))), round(w * min(1.0, 768 / max(h, w))))  # the widget's canvas
    steps = tqdm(total=2 * (repeats + 2), desc=f"bench {name}", disable=not progress, leave=False)

    # Stock and ours take turns, one measurement each, so that a machine whose load changes during
    # the run slows both alike; the fast paths are switched on for ours and off for stock.
    predictors = {"stock": SamPredictor(sam), "ours": CachedPredictor(sam)}
    runs = {"stock": 0, "ours": 0}  # encoder runs per predictor, after warm-up
    current = ["stock"]
    hook = sam.image_encoder.register_forward_hook(
        lambda *_: runs.__setitem__(current[0], runs[current[0]] + 1)
    )

    def use(label: str):
        (enable_fast if label == "ours" and ours_fast else disable_fast)(sam)
        current[0] = label
        return predictors[label]

    for label in predictors:
        p = use(label)
        p.set_image(images[-1])  # warm-up (allocator, kernels), not timed
        for _ in range(3):  # one click left the first model of a run ~1.5x slower per click (issue 17)
            p.predict(**point)
        steps.update(1)
    runs.update(stock=0, ours=0)
    times: dict[str, dict[str, list[float]]] = {
        label: {"encode": [], "click": [], "view": [], "revisit": []} for label in predictors
    }
    peak = {label: 0 for label in predictors}
    peak_rss = {label: 0 for label in predictors}  # CPU: the whole process's RSS, weights included
    for img in images[:repeats]:
        for label in predictors:
            p = use(label)
            with PeakMemory(dev) as mem:
                times[label]["encode"].append(time_ms(lambda p=p, img=img: p.set_image(img), sync))
            peak[label] = max(peak[label], mem.peak_bytes)
            peak_rss[label] = max(peak_rss[label], mem.peak_rss_bytes)
            steps.update(1)
    for _ in range(clicks):
        for label in predictors:
            p = use(label)
            times[label]["click"].append(time_ms(lambda p=p: p.predict(**point), sync))
            if label == "ours":  # stock has no display-size path: its masks are the image's size
                times[label]["view"].append(time_ms(lambda p=p: p.predict(**point, out_size=view), sync))
    for img in images[:repeats]:
        for label in predictors:
            p = use(label)
            times[label]["revisit"].append(time_ms(lambda p=p, img=img: p.set_image(img), sync))
    steps.update(2)
    for label, t in times.items():
        setattr(
            result,
            label,
            {
                "set_image_ms": asdict(Timing.of(t["encode"])),
                "click_ms": asdict(Timing.of(t["click"])),
                "view_ms": asdict(Timing.of(t["view"] or t["click"])),
                "revisit_ms": asdict(Timing.of(t["revisit"])),
                "peak_mb": peak[label] / 2**20,
                "peak_rss_mb": peak_rss[label] / 2**20,
                "encoder_runs": runs[label],
            },
        )
    steps.close()
    hook.remove()
    for key in ("set_image_ms", "click_ms", "view_ms", "revisit_ms"):
        result.ratio[key] = result.stock[key]["median"] / max(result.ours[key]["median"], 1e-6)
    record = record_of(sam)
    if record.name in MODEL_NAMES:
        from .floor import floor_report

        encode = {label: getattr(result, label)["set_image_ms"]["median"] for label in predictors}
        result.floor = floor_report(record.name, dev, encode, record.precision)
    return result
