"""Measured speed and measured IoU, in one run.

Speed: stock segment_anything.SamPredictor against CachedPredictor, on the same model object and
the same image:

- ``set_image_ms``: the first encoding of an image (stock, and ours on a cache miss);
- ``click_ms``: one ``predict`` with a single positive point and multimask output (the decoder
  plus upscaling the masks to the image size), median over many clicks;
- ``revisit_ms``: ``set_image`` of an image seen before (stock re-encodes; ours hits the cache);
- ``peak_mb``: peak memory added while encoding (CUDA: max allocated; CPU: process RSS, sampled);
  on CPU also ``peak_rss_mb``, the process's whole RSS at that peak (weights and libraries included);
- ``view_ms``: ours, a click with masks at the widget's display size (longest side 768).

Medians over ``repeats`` warm runs, with min and max; stock and ours take turns, one measurement
each, so that a change of the machine's load during the run affects both alike.

IoU (``evaluate_iou``): every object of a dataset with ground truth (``sam_widgets.datasets``)
through the protocol of ``sam_widgets.evaluation`` (1 click, 3 clicks, box), with the encoder
time of each image. Never from random weights: those give timing only, marked
"random weights: no IoU". ``python -m sam_widgets.bench --help``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

    from .datasets import Sample

__all__ = [
    "Timing",
    "ModelResult",
    "IoUResult",
    "NO_IOU_RANDOM",
    "QUOTED",
    "bench_model",
    "evaluate_iou",
    "resolve_weights",
    "run",
    "machine_info",
    "format_table",
    "format_iou_table",
    "format_prompt_table",
    "write_results",
    "plot_speed_vs_iou",
    "plot_examples",
    "main",
]

#: The status of an IoU entry measured on random weights: there is none, on purpose.
NO_IOU_RANDOM = "random weights: no IoU"

#: Figures quoted in this project's brief for the official models ("said to be A100"): encoder ms
#: per image and 1-click mIoU. Not measured here, not from the SAM paper: drawn hollow, labelled so.
QUOTED: dict[str, dict[str, float]] = {
    "vit_h": {"encoder_ms": 110.0, "miou": 0.88},
    "vit_l": {"encoder_ms": 80.0, "miou": 0.86},
    "vit_b": {"encoder_ms": 50.0, "miou": 0.83},
}
QUOTED_HARDWARE = "A100 (quoted, not measured here)"


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


@dataclass
class ModelResult:
    model: str
    weights: str
    device: str
    precision: str
    image_size: tuple[int, int]
    stock: dict[str, Any] = field(default_factory=dict)
    ours: dict[str, Any] = field(default_factory=dict)
    ratio: dict[str, float] = field(default_factory=dict)  # stock / ours: > 1 means we are faster
    iou: dict[str, Any] | None = None  # an IoUResult as a dict, when IoU was asked for


@dataclass
class IoUResult:
    """IoU and encoder time of one model on one dataset.

    ``status`` is ``"measured"``, or ``NO_IOU_RANDOM`` for random weights (then ``miou``, ``ci95``,
    ``pearson_r`` and ``per_object`` stay empty: timing only). ``encoder_ms`` summarises
    ``encoder_ms_runs``: the image encoder's time (``CachedPredictor.stats.encoder_ms``, without
    resizing or hashing) for each sample (measured) or for ``repeats`` encodings (random weights),
    after a warm-up encoding that is not timed. ``miou`` maps ``1_click``,
    ``2_clicks``, ``3_clicks``, ``box`` to the mean IoU over objects, ``ci95`` to its 95% bootstrap
    interval; ``pearson_r`` correlates predicted and true IoU over every mask returned.
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


def _time_ms(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t0) * 1000


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc's malloc_trim), so RSS growth is measurable."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): RSS may then under-report growth
        pass


class _PeakMemory:
    """Peak memory added during a block: CUDA max allocated, or sampled process RSS on CPU."""

    def __init__(self, device) -> None:
        self.device = device
        self.peak_bytes = 0

    def __enter__(self) -> _PeakMemory:
        import psutil
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        _trim_heap()  # memory freed by an earlier run (e.g. stock's) would hide this run's growth
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, self._proc.memory_info().rss)
                self._stop.wait(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_bytes = self._peak - self._base
        self.peak_rss_bytes = self._peak


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
) -> ModelResult:
    """Time stock SamPredictor and CachedPredictor on one model, the same image and prompts.

    ``weights="auto"`` uses pretrained weights when they are available offline (micro always; an
    official checkpoint if cached) and random weights otherwise: timing does not depend on them.
    ``sam``: an already loaded model (from ``load_sam``) to time instead of loading ``name``.
    ``fast``: as ``load_sam``'s (None: on with ``precision="auto"``). Stock always runs
    segment_anything's own modules (the fast paths are switched off for it, on for ours), and
    ours is also timed with masks at the widget's display size (``view_ms``, longest side 768).
    """
    import torch
    from segment_anything import SamPredictor
    from tqdm.auto import tqdm

    from .fast import disable_fast, enable_fast, is_fast
    from .models import load_sam, precision_label
    from .predictor import CachedPredictor

    if sam is None:
        if weights == "auto":
            weights = resolve_weights(name, "auto", random_weights=True) or "random"
        sam = load_sam(
            name, weights=weights, device=device, precision=precision, fast=fast, progress=progress
        )
    else:
        weights = getattr(sam, "sam_widgets_weights", weights)
    dev = sam.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    images = [_bench_image(image_size, seed) for seed in range(repeats + 1)]
    h, w = image_size
    point = dict(point_coords=np.array([[w * 0.5, h * 0.5]]), point_labels=np.array([1]))
    result = ModelResult(
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
            with _PeakMemory(dev) as mem:
                times[label]["encode"].append(_time_ms(lambda p=p, img=img: p.set_image(img), sync))
            peak[label] = max(peak[label], mem.peak_bytes)
            peak_rss[label] = max(peak_rss[label], getattr(mem, "peak_rss_bytes", 0))
            steps.update(1)
    for _ in range(clicks):
        for label in predictors:
            p = use(label)
            times[label]["click"].append(_time_ms(lambda p=p: p.predict(**point), sync))
            if label == "ours":  # stock has no display-size path: its masks are the image's size
                times[label]["view"].append(_time_ms(lambda p=p: p.predict(**point, out_size=view), sync))
    for img in images[:repeats]:
        for label in predictors:
            p = use(label)
            times[label]["revisit"].append(_time_ms(lambda p=p, img=img: p.set_image(img), sync))
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
    return result


def format_table(results: list[ModelResult]) -> str:
    """A fixed-width table: one row per model and predictor, with the stock/ours ratio."""
    head = (
        f"{'model':<7} {'weights':<10} {'device':<6} {'prec':<9} {'predictor':<9} "
        f"{'set_image ms':>13} {'click ms':>9} {'view ms':>8} {'revisit ms':>11} {'peak MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if not r.stock:  # IoU only (timing=False)
            continue
        for label in ("stock", "ours"):
            m = getattr(r, label)
            prec = r.precision.removesuffix("-fast") if label == "stock" else r.precision
            view = m.get("view_ms", m["click_ms"])["median"]
            lines.append(
                f"{r.model:<7} {r.weights:<10} {r.device:<6} {prec:<9} {label:<9} "
                f"{m['set_image_ms']['median']:>13.1f} {m['click_ms']['median']:>9.2f} {view:>8.2f} "
                f"{m['revisit_ms']['median']:>11.2f} {m['peak_mb']:>8.0f}"
            )
        q = r.ratio
        lines.append(
            f"{'':<7} {'':<10} {'':<6} {'':<9} {'ratio':<9} {q['set_image_ms']:>12.2f}x "
            f"{q['click_ms']:>8.2f}x {q.get('view_ms', q['click_ms']):>7.2f}x {q['revisit_ms']:>10.0f}x"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- IoU


def resolve_weights(name: str, weights: str = "auto", random_weights: bool = False) -> str | None:
    """The weights to load for ``name``: ``"pretrained"``, ``"random"``, or None (skip it).

    ``weights="auto"``: pretrained when available offline (micro's bundled file, an official
    checkpoint in the cache); otherwise random weights if ``random_weights`` (timing only), else
    None. ``"pretrained"`` and ``"random"`` are returned as asked.
    """
    if weights not in ("auto", "pretrained", "random"):
        raise ValueError(f"weights={weights!r}: use 'auto', 'pretrained' or 'random'.")
    if weights != "auto":
        return weights
    if name == "micro":
        from .micro import WEIGHTS_PATH

        available = WEIGHTS_PATH.is_file()
    else:
        from . import checkpoints

        available = name in checkpoints.cached_models()
    if available:
        return "pretrained"
    return "random" if random_weights else None


def _skip_message(name: str) -> str:
    if name == "micro":
        return "micro: its weights file is missing from this install (reinstall sam-widgets)"
    return (
        f"{name}: no checkpoint in the cache; `sam-widgets download {name}` fetches it "
        "(or --random-weights: its architecture with random weights, timing only, no IoU)"
    )


def _sync_for(sam: Sam) -> Callable[[], None] | None:
    import torch

    dev = sam.device
    return (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None


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

    A model with random weights gets ``status=NO_IOU_RANDOM`` and timing only: its masks are noise.
    """
    from .evaluation import evaluate_samples, set_image_timed, summarize
    from .models import load_sam
    from .predictor import CachedPredictor

    if not samples:
        raise ValueError("evaluate_iou needs at least one sample.")
    if isinstance(sam, str):
        sam = load_sam(
            sam, weights=weights or "pretrained", device=device, precision=precision, progress=progress
        )
    name = getattr(sam, "sam_widgets_name", "model")
    weights = getattr(sam, "sam_widgets_weights", weights)
    if weights not in ("pretrained", "random"):
        raise ValueError(
            f"evaluate_iou: the weights of this {type(sam).__name__} are unknown; load it with load_sam(), "
            "or pass weights='pretrained' (trained) or weights='random' (timing only, no IoU)."
        )
    sync = _sync_for(sam)
    predictor = CachedPredictor(sam, cache_bytes=0)  # no cache: every set_image runs the encoder
    result = IoUResult(
        model=name,
        weights=weights,
        device=str(sam.device),
        precision=getattr(sam, "sam_widgets_precision", precision),
        dataset=dataset,
        status=NO_IOU_RANDOM if weights == "random" else "measured",
        samples=len(samples),
        min_area_px=min_area,
    )
    if warmup:
        predictor.set_image(samples[0].image)
    if weights == "random":
        for i in range(repeats):
            result.encoder_ms_runs.append(set_image_timed(predictor, samples[i % len(samples)].image, sync))
    else:
        records, result.encoder_ms_runs = evaluate_samples(
            predictor,
            samples,
            n_clicks=n_clicks,
            min_area=min_area,
            progress=progress,
            desc=f"IoU {name}",
            sync=sync,
        )
        summary = summarize(records)
        result.objects = summary["objects"]
        result.miou, result.ci95 = summary["miou"], summary["ci95"]
        result.pearson_r, result.click_ms_median = summary["pearson_r"], summary["click_ms_median"]
        result.per_object = [{"model": name, **r} for r in records]
    if result.encoder_ms_runs:
        result.encoder_ms = asdict(Timing.of(result.encoder_ms_runs))
    return result


# ----------------------------------------------------------------------------- one run


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
    **kwargs: Any,
) -> dict[str, Any]:
    """Bench each model; return ``{"machine", "settings", "dataset", "results", "skipped"}``.

    Arguments:
      weights, random_weights: per model, as ``resolve_weights``; a model it skips is listed in
        ``"skipped"`` with the way to get its weights.
      timing: time stock SamPredictor against CachedPredictor (``bench_model``).
      iou_samples: when given, also ``evaluate_iou`` on them (``results[i]["iou"]``).
      kwargs: ``bench_model``'s device, precision, repeats, clicks, image_size, progress.
    """
    from .models import load_sam

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
            r = ModelResult(
                model=name,
                weights=w,
                device=str(sam.device),
                precision=getattr(sam, "sam_widgets_precision", "fp32"),
                image_size=tuple(kwargs.get("image_size", (768, 1024))),
            )
        if iou_samples is not None:
            res = evaluate_iou(
                sam,
                iou_samples,
                dataset=dataset,
                n_clicks=n_clicks,
                min_area=min_area,
                repeats=kwargs.get("repeats", 3),
                progress=kwargs.get("progress", True),
            )
            r.iou = asdict(res)
        results.append(r)
        del sam
    settings = dict(kwargs, weights=weights, random_weights=random_weights, timing=timing)
    if iou_samples is not None:
        settings.update(n_clicks=n_clicks, min_area=min_area)
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


# ----------------------------------------------------------------------------- tables and files


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def format_iou_table(results: list[ModelResult] | list[dict[str, Any]]) -> str:
    """One row per model: encoder ms (median over runs), mIoU per prompt, Pearson r, status."""
    rows = [r.iou if isinstance(r, ModelResult) else r.get("iou", r) for r in results]
    rows = [r for r in rows if r]
    head = (
        f"{'model':<7} {'weights':<10} {'encoder ms':>11} {'objects':>7} {'1 click':>8} {'3 clicks':>8} "
        f"{'box':>6} {'r(pred,true)':>12}  status"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        enc = r["encoder_ms"]["median"] if r.get("encoder_ms") else None
        m = r.get("miou", {})
        lines.append(
            f"{r['model']:<7} {r['weights']:<10} {_f(enc, '.1f'):>11} {r['objects']:>7} "
            f"{_f(m.get('1_click')):>8} {_f(m.get('3_clicks')):>8} {_f(m.get('box')):>6} "
            f"{_f(r.get('pearson_r')):>12}  {r['status']}"
        )
    return "\n".join(lines)


def format_prompt_table(results: list[ModelResult] | list[dict[str, Any]]) -> str:
    """mIoU per prompt setting (rows) and model (columns), each with its 95% bootstrap interval."""
    rows = [r.iou if isinstance(r, ModelResult) else r.get("iou", r) for r in results]
    rows = [r for r in rows if r and r.get("miou")]
    prompts = [p for p in ("1_click", "2_clicks", "3_clicks", "box") if any(p in r["miou"] for r in rows)]
    width = 22
    lines = [f"{'prompt':<10}" + "".join(f"{r['model']:>{width}}" for r in rows)]
    lines.append("-" * len(lines[0]))
    for p in prompts:
        cells = []
        for r in rows:
            v, ci = r["miou"].get(p), r["ci95"].get(p)
            cells.append("-" if v is None else f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.3f}")
        lines.append(f"{p.replace('_', ' '):<10}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


#: Columns of summary.csv (one row per model); IoU columns are empty when there is no IoU.
SUMMARY_COLUMNS = [
    "model",
    "weights",
    "device",
    "precision",
    "iou_status",
    "dataset",
    "samples",
    "objects",
    "encoder_ms_median",
    "encoder_ms_min",
    "encoder_ms_max",
    "encoder_runs",
    "click_ms_median",
    *[
        f"miou_{p}{s}"
        for p in ("1_click", "2_clicks", "3_clicks", "box")
        for s in ("", "_ci95_lo", "_ci95_hi")
    ],
    "pearson_r",
    "set_image_ms_stock",
    "set_image_ms_ours",
    "click_ms_ours",
    "revisit_ms_ours",
    "processor",
    "gpu",
    "cpu_count",
    "torch_threads",
    "python",
    "torch",
    "segment_anything",
    "sam_widgets",
    "platform",
    "date",
]

#: Columns of per_object.csv that come first (then the IoU columns, in protocol order).
PER_OBJECT_COLUMNS = ["model", "sample", "object", "label", "area_px"]


def _summary_row(r: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    iou = r.get("iou") or {}
    row: dict[str, Any] = {
        "model": r["model"],
        "weights": r["weights"],
        "device": r["device"],
        "precision": r["precision"],
        "iou_status": iou.get("status", "not asked"),
        "dataset": iou.get("dataset", ""),
        "samples": iou.get("samples", ""),
        "objects": iou.get("objects", ""),
        "click_ms_median": iou.get("click_ms_median"),
        "pearson_r": iou.get("pearson_r"),
    }
    enc = iou.get("encoder_ms")
    if enc:
        row.update(
            encoder_ms_median=enc["median"],
            encoder_ms_min=enc["min"],
            encoder_ms_max=enc["max"],
            encoder_runs=enc["n"],
        )
    for p, v in iou.get("miou", {}).items():
        row[f"miou_{p}"] = v
        ci = iou.get("ci95", {}).get(p)
        if ci:
            row[f"miou_{p}_ci95_lo"], row[f"miou_{p}_ci95_hi"] = ci
    if r.get("stock"):
        row.update(
            set_image_ms_stock=r["stock"]["set_image_ms"]["median"],
            set_image_ms_ours=r["ours"]["set_image_ms"]["median"],
            click_ms_ours=r["ours"]["click_ms"]["median"],
            revisit_ms_ours=r["ours"]["revisit_ms"]["median"],
        )
    row.update({k: machine.get(k) for k in SUMMARY_COLUMNS if k in machine})
    return {k: ("" if v is None else v) for k, v in row.items() if k in SUMMARY_COLUMNS}


def write_results(out: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write a ``run`` result: ``bench.json`` (everything), ``summary.csv``, ``per_object.csv``.

    summary.csv has one row per model (``SUMMARY_COLUMNS``: timing, IoU, the machine and versions);
    per_object.csv one row per object and model (sample, object, label, area_px, iou_1_click,
    iou_2_clicks, iou_3_clicks, iou_box, score_1_click, click_ms). Returns the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in out.items() if not k.startswith("_")}
    paths = [folder / "bench.json", folder / "summary.csv", folder / "per_object.csv"]
    paths[0].write_text(json.dumps(data, indent=2))
    with paths[1].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        w.writeheader()
        for r in data["results"]:
            w.writerow(_summary_row(r, data["machine"]))
    records = [rec for r in data["results"] for rec in ((r.get("iou") or {}).get("per_object") or [])]
    columns = list(PER_OBJECT_COLUMNS)
    for rec in records:
        columns += [k for k in rec if k not in columns and k not in ("predicted", "true")]
    with paths[2].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    return paths


# ----------------------------------------------------------------------------- pictures


def plot_speed_vs_iou(
    results: list[ModelResult] | list[dict[str, Any]],
    machine: dict[str, Any] | None = None,
    prompt: str = "1_click",
    quoted: dict[str, dict[str, float]] | None = QUOTED,
    ax: Any = None,
) -> Any:
    """Encoder time (log x) against mIoU, one point per model; returns the matplotlib Axes.

    Measured models: filled markers, x error bars from the fastest to the slowest encoding, y error
    bars the 95% bootstrap interval of the mIoU. Random-weight models: a dotted vertical line at
    their encoder time, labelled "random weights, timing only" (no IoU). ``quoted`` figures: hollow
    markers labelled "quoted, not measured here". The title names the hardware (``machine``).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    xs: list[float] = []
    rows = [r.iou if isinstance(r, ModelResult) else r.get("iou", r) for r in results]
    rows = [r for r in rows if r and r.get("encoder_ms")]
    for i, r in enumerate(rows):
        enc = r["encoder_ms"]
        x = enc["median"]
        xs += [enc["min"], enc["max"]]
        color = f"C{i}"
        if r["status"] != "measured" or prompt not in r.get("miou", {}):
            ax.axvline(x, color=color, ls=":", lw=1.5)
            ax.annotate(
                f"{r['model']}: random weights,\ntiming only ({x:,.0f} ms)",
                (x, 0.98),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
                color=color,
            )
            continue
        y = r["miou"][prompt]
        ci = r["ci95"].get(prompt) or [y, y]
        ax.errorbar(
            x,
            y,
            xerr=[[x - enc["min"]], [enc["max"] - x]],
            yerr=[[y - ci[0]], [ci[1] - y]],
            fmt="o",
            color=color,
            ms=8,
            capsize=4,
            label=f"{r['model']} ({r['weights']}): {y:.2f}, {x:,.0f} ms",
        )
        ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(8, 6))
    for j, (name, q) in enumerate((quoted or {}).items()):
        xs.append(q["encoder_ms"])
        ax.plot(
            q["encoder_ms"],
            q["miou"],
            "s",
            mfc="none",
            mec="0.4",
            ms=9,
            label="quoted, not measured here (said to be A100)" if j == 0 else None,
        )
        ax.annotate(
            f"{name} (quoted)",
            (q["encoder_ms"], q["miou"]),
            textcoords="offset points",
            xytext=(6, -12 if j % 2 == 0 else 7),  # alternate below/above: close points stay legible
            fontsize=8,
            color="0.4",
        )
    ax.set_xscale("log")
    if xs:  # room for the labels, and at least a decade so the log scale reads as one
        lo, hi = min(xs) / 1.6, max(xs) * 2.5
        if hi / lo < 10:
            mid = (lo * hi) ** 0.5
            lo, hi = mid / 10**0.5, mid * 10**0.5
        ax.set_xlim(lo, hi)
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    decades = np.log10(ax.get_xlim()[1] / ax.get_xlim()[0])
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("image encoder time per image, ms (log scale)")
    ax.set_ylabel(f"mIoU, {prompt.replace('_', ' ')}")
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    if machine:
        hw = machine.get("gpu") or machine.get("processor", "unknown")
        n = machine.get("torch_threads")
        threads = f", {n} torch thread{'s' if n != 1 else ''}" if n and not machine.get("gpu") else ""
        ax.set_title(f"measured on {hw}{threads}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_examples(sam: Sam, samples: list[Sample], n: int = 3, n_clicks: int = 3, axes: Any = None) -> Any:
    """Ground truth and the masks of 1 click, ``n_clicks`` clicks and box for the largest object of
    the first ``n`` samples: a grid of n rows x 4 images, the true outline dashed white on each
    prediction, positive clicks as green stars, negative ones as red crosses. Returns the axes."""
    import matplotlib.pyplot as plt

    from .evaluation import evaluate_object, tight_box
    from .predictor import CachedPredictor
    from .viz import overlay_masks

    predictor = CachedPredictor(sam)
    chosen = samples[:n]
    if axes is None:
        _, axes = plt.subplots(len(chosen), 4, figsize=(12, 3.2 * len(chosen)), squeeze=False)
    for row, s in zip(axes, chosen, strict=True):
        k = int(np.argmax(s.masks.reshape(len(s.masks), -1).sum(1)))
        gt = s.masks[k]
        predictor.set_image(s.image)
        res = evaluate_object(predictor, gt, n_clicks=n_clicks, keep_masks=True)
        ious = {"1 click": res.iou_clicks[0], f"{n_clicks} clicks": res.iou_clicks[-1], "box": res.iou_box}
        row[0].imshow(overlay_masks(s.image, gt[None], colors=[(86, 180, 233)]))
        row[0].set_title(f"{s.name}: ground truth ({s.labels[k]})", fontsize=9)
        clicks = {"1 click": res.clicks[:1], f"{n_clicks} clicks": res.clicks, "box": []}
        for ax, (what, mask) in zip(row[1:], res.masks.items(), strict=False):
            ax.imshow(overlay_masks(s.image, mask[None], colors=[(230, 159, 0)]))
            ax.contour(gt, levels=[0.5], colors="white", linewidths=1, linestyles="dashed")
            ax.set_title(f"{what}: IoU {ious[what]:.2f}", fontsize=9)
            for x, y, label in clicks[what]:  # green star positive, red cross negative
                ax.plot(x, y, "*" if label else "X", color="lime" if label else "red", ms=12, mec="k")
            if what == "box":
                x0, y0, x1, y1 = tight_box(gt)
                ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.5))
        for ax in row:
            ax.axis("off")
    return axes


# ----------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default="micro,vit_b",
        help="comma-separated: vit_b, vit_l, vit_h, micro (default: micro,vit_b)",
    )
    parser.add_argument(
        "--weights",
        default="auto",
        choices=["auto", "pretrained", "random"],
        help="auto: pretrained if available offline; a model without them is skipped unless "
        "--random-weights. random: every model at random init (timing only, no IoU)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="time official models whose checkpoint is not downloaded with random weights "
        "(timing only: their IoU is skipped and marked 'random weights: no IoU')",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="ours' precision; auto (as load_sam): the fastest path that keeps the masks, and the "
        "fast paths on; fp32 without --fast: segment_anything's own code, bit for bit (default: auto)",
    )
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time ours on the fast paths (sam_widgets.fast); stock always runs stock code "
        "(default: on with --precision auto, off otherwise)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed encodings per predictor")
    parser.add_argument("--clicks", type=int, default=20, help="timed clicks per predictor")
    parser.add_argument("--image-size", default="768x1024", help="HxW of the timing test image")
    parser.add_argument(
        "--timing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time stock SamPredictor against CachedPredictor (default: on)",
    )
    parser.add_argument(
        "--iou",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure IoU (1 click, 3 clicks, box) on --dataset (default: on)",
    )
    parser.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (held-out scenes), skimage (scikit-image photos), or "
        "coco:<annotation.json>:<image_dir> (default: synthetic)",
    )
    parser.add_argument("--samples", type=int, default=10, help="images of the dataset to use (default: 10)")
    parser.add_argument("--min-area", type=int, default=100, help="skip objects smaller than this, pixels")
    parser.add_argument(
        "--out", type=Path, default=None, help="write bench.json, summary.csv, per_object.csv here"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results JSON here")


def main_from_args(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        h, w = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--image-size {args.image_size!r}: write it as HxW, e.g. 768x1024") from None
    if args.repeats < 1 or args.clicks < 1:
        raise SystemExit("--repeats and --clicks must be at least 1")
    if args.samples < 1:
        raise SystemExit("--samples must be at least 1")
    if not (args.timing or args.iou):
        raise SystemExit("--no-timing and --no-iou together leave nothing to measure")
    from .models import MODEL_NAMES

    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        raise SystemExit(f"--models {args.models!r}: choose from {', '.join(MODEL_NAMES)}")
    samples = None
    if args.iou:
        from . import datasets

        samples = datasets.load(args.dataset, limit=args.samples)
        if not samples:
            raise SystemExit(f"--dataset {args.dataset!r}: no image with an object in it")
    out = run(
        models,
        weights=args.weights,
        random_weights=args.random_weights,
        timing=args.timing,
        iou_samples=samples,
        dataset=args.dataset,
        min_area=args.min_area,
        device=args.device,
        precision=args.precision,
        fast=args.fast,
        repeats=args.repeats,
        clicks=args.clicks,
        image_size=(h, w),
    )
    objects = out.pop("_objects")
    m = out["machine"]
    print(
        f"# {m['date']} | {m['processor']} | torch {m['torch']} | {m['torch_threads']} threads"
        + (f" | {m['gpu']}" if "gpu" in m else "")
    )
    for line in out["skipped"].values():
        print(f"skipped {line}")
    if args.timing and objects:
        print(format_table(objects))
        if any(r.weights == "random" for r in objects):
            print("(random weights: timing only, masks are noise)")
    if samples is not None and objects:
        d = out["dataset"]
        print(f"\nIoU on {d['name']}: {d['samples']} images, objects of >= {args.min_area} pixels")
        print(format_iou_table(objects))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    if args.out:
        for path in write_results(out, args.out):
            print(f"wrote {path}")
    if not objects:
        print("nothing was measured: every model was skipped", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_widgets.bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
