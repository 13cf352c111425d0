"""Measured speed: stock segment_anything.SamPredictor against CachedPredictor, in one run.

For each model it times, on the same model object and the same image:

- ``set_image_ms``: the first encoding of an image (stock, and ours on a cache miss);
- ``click_ms``: one ``predict`` with a single positive point and multimask output (the decoder
  plus upscaling the masks to the image size), median over many clicks;
- ``revisit_ms``: ``set_image`` of an image seen before (stock re-encodes; ours hits the cache);
- ``peak_mb``: peak memory added while encoding (CUDA: max allocated; CPU: process RSS, sampled).

Medians over ``repeats`` warm runs, with min and max. ``python -m sam_widgets.bench --help``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Timing", "ModelResult", "bench_model", "run", "machine_info", "main"]


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


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU, threads, GPU, versions, date."""
    import torch

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "platform": platform.platform(),
        "processor": _cpu_name(),
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
) -> ModelResult:
    """Time stock SamPredictor and CachedPredictor on one model, the same image and prompts.

    ``weights="auto"`` uses pretrained weights when they are available offline (micro always; an
    official checkpoint if cached) and random weights otherwise: timing does not depend on them.
    """
    import torch
    from segment_anything import SamPredictor
    from tqdm.auto import tqdm

    from . import checkpoints
    from .models import load_sam
    from .predictor import CachedPredictor

    if weights == "auto":
        weights = "pretrained" if name == "micro" or name in checkpoints.cached_models() else "random"
    sam = load_sam(name, weights=weights, device=device, precision=precision, progress=progress)
    dev = sam.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    images = [_bench_image(image_size, seed) for seed in range(repeats + 1)]
    h, w = image_size
    point = dict(point_coords=np.array([[w * 0.5, h * 0.5]]), point_labels=np.array([1]))
    result = ModelResult(
        model=name,
        weights=weights,
        device=str(dev),
        precision=getattr(sam, "sam_widgets_precision", precision),
        image_size=image_size,
    )
    steps = tqdm(total=2 * (repeats + 2), desc=f"bench {name}", disable=not progress, leave=False)

    encoder_runs = [0]
    sam.image_encoder.register_forward_hook(lambda *_: encoder_runs.__setitem__(0, encoder_runs[0] + 1))
    for label, predictor in (("stock", SamPredictor(sam)), ("ours", CachedPredictor(sam))):
        predictor.set_image(images[-1])  # warm-up (allocator, kernels), not timed
        encoder_runs[0] = 0
        predictor.predict(**point)
        steps.update(1)
        encode, peak = [], 0
        for img in images[:repeats]:
            with _PeakMemory(dev) as mem:
                encode.append(_time_ms(lambda p=predictor, img=img: p.set_image(img), sync))
            peak = max(peak, mem.peak_bytes)
            steps.update(1)
        click = [_time_ms(lambda p=predictor: p.predict(**point), sync) for _ in range(clicks)]
        revisit = [_time_ms(lambda p=predictor, img=img: p.set_image(img), sync) for img in images[:repeats]]
        steps.update(1)
        setattr(
            result,
            label,
            {
                "set_image_ms": asdict(Timing.of(encode)),
                "click_ms": asdict(Timing.of(click)),
                "revisit_ms": asdict(Timing.of(revisit)),
                "peak_mb": peak / 2**20,
                "encoder_runs": encoder_runs[0],
            },
        )
    steps.close()
    for key in ("set_image_ms", "click_ms", "revisit_ms"):
        result.ratio[key] = result.stock[key]["median"] / max(result.ours[key]["median"], 1e-6)
    return result


def format_table(results: list[ModelResult]) -> str:
    """A fixed-width table: one row per model and predictor, with the stock/ours ratio."""
    head = (
        f"{'model':<7} {'weights':<10} {'device':<6} {'prec':<5} {'predictor':<9} "
        f"{'set_image ms':>13} {'click ms':>9} {'revisit ms':>11} {'peak MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        for label in ("stock", "ours"):
            m = getattr(r, label)
            lines.append(
                f"{r.model:<7} {r.weights:<10} {r.device:<6} {r.precision:<5} {label:<9} "
                f"{m['set_image_ms']['median']:>13.1f} {m['click_ms']['median']:>9.2f} "
                f"{m['revisit_ms']['median']:>11.2f} {m['peak_mb']:>8.0f}"
            )
        q = r.ratio
        lines.append(
            f"{'':<7} {'':<10} {'':<6} {'':<5} {'ratio':<9} {q['set_image_ms']:>12.2f}x "
            f"{q['click_ms']:>8.2f}x {q['revisit_ms']:>10.0f}x"
        )
    return "\n".join(lines)


def run(models: list[str], **kwargs: Any) -> dict[str, Any]:
    """Bench each model; return ``{"machine": ..., "settings": ..., "results": [...]}``."""
    results = [bench_model(m, **kwargs) for m in models]
    return {
        "machine": machine_info(),
        "settings": kwargs,
        "results": [asdict(r) for r in results],
        "_objects": results,
    }


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
        help="auto: pretrained if available offline, else random (timing only)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=3, help="timed encodings per predictor")
    parser.add_argument("--clicks", type=int, default=20, help="timed clicks per predictor")
    parser.add_argument("--image-size", default="768x1024", help="HxW of the test image")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def main_from_args(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        h, w = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--image-size {args.image_size!r}: write it as HxW, e.g. 768x1024") from None
    if args.repeats < 1 or args.clicks < 1:
        raise SystemExit("--repeats and --clicks must be at least 1")
    out = run(
        models,
        weights=args.weights,
        device=args.device,
        precision=args.precision,
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
    print(format_table(objects))
    if any(r.weights == "random" for r in objects):
        print("(random weights: timing only, masks are noise)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_widgets.bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
