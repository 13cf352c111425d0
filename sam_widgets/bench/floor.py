"""The machine's own GEMM floor, and each encoder's distance from it.

An image encoder is mostly matrix products, so its time can be no less than its FLOPs divided by
the rate this machine multiplies matrices at. ``gemm_rate`` measures that rate (GFLOP/s) with
``torch.matmul`` on products of the shapes a ViT encoder runs (tokens x width x 4 width, both
ways, and a square one), in fp32 and, where the CPU has bf16 instructions (AVX512_BF16 or AMX) or
on a GPU, in bf16; the best of them is the floor's rate. ``encoder_gflop`` counts a model's encoder
FLOPs at its input size with torch's FlopCounterMode (on the meta device: no memory, no time).
``floor_report`` puts them together for one timed model: achieved GFLOP/s = FLOPs / set_image
time, and the fraction of the floor for the precision the model ran in.

Same thread count as the encoder (torch's setting). ``python -m sam_widgets.bench`` prints it.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from ..measure import sync_for

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "gemm_rate",
    "gemm_floor",
    "encoder_gflop",
    "floor_report",
    "format_floor",
    "format_targets",
    "SHAPES",
]

#: (m, k, n) of the timed products: vit_b's MLP on 4096 tokens, both ways, and a square one.
SHAPES = ((4096, 768, 3072), (4096, 3072, 768), (2048, 2048, 2048))


def _has_cpu_bf16() -> bool:
    import torch

    cpu = getattr(torch, "cpu", None)
    return any(
        bool(getattr(cpu, name, lambda: False)())
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )


def gemm_rate(
    dtype: torch.dtype, device: str | torch.device = "cpu", shapes=SHAPES, repeats: int = 4
) -> dict[str, Any]:
    """Best GFLOP/s of ``a @ b`` over ``shapes`` (m, k, n: 2mkn FLOPs each), best of ``repeats``.

    Returns ``{"gflops": best rate, "by_shape": {"m x k x n": rate}}``.
    """
    import torch

    dev = torch.device(device)
    sync = sync_for(dev)
    by_shape = {}
    for m, k, n in shapes:
        a = torch.randn(m, k, device=dev).to(dtype)
        b = torch.randn(k, n, device=dev).to(dtype)
        out = a @ b  # warm-up: kernels, packing, allocator
        best = float("inf")
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            torch.matmul(a, b, out=out)
            sync()
            best = min(best, time.perf_counter() - t0)
        by_shape[f"{m}x{k}x{n}"] = 2 * m * k * n / best / 1e9
    return {"gflops": max(by_shape.values()), "by_shape": by_shape}


@functools.lru_cache(maxsize=8)
def _floor_cached(device: str, threads: int) -> dict[str, Any]:
    import torch

    dev = torch.device(device)
    floor: dict[str, Any] = {"device": device, "threads": threads, "fp32": gemm_rate(torch.float32, dev)}
    if dev.type == "cuda" or (dev.type == "cpu" and _has_cpu_bf16()):
        floor["bf16"] = gemm_rate(torch.bfloat16, dev)
    return floor


def gemm_floor(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The GEMM rates of this machine: ``{"fp32": {...}, "bf16": {...} (where it has bf16), ...}``.

    Measured once per process, device and thread count (~1-3 s on a 2-core CPU).
    """
    import torch

    return _floor_cached(str(torch.device(device)), torch.get_num_threads())


@functools.lru_cache(maxsize=16)
def encoder_gflop(name: str) -> float:
    """GFLOP of one image-encoder pass of model ``name`` at its input size (FlopCounterMode; one
    multiply-add = 2 FLOPs), counted on the meta device: no memory, no time. vit_b: 972."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..architectures import build_sam, config_for

    enc = build_sam(config_for(name), device="meta").image_encoder
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        enc(torch.empty(1, 3, enc.img_size, enc.img_size, device="meta"))
    return counter.get_total_flops() / 1e9


def floor_report(
    name: str, device: torch.device, set_image_ms: dict[str, float], precision: str
) -> dict[str, Any]:
    """Achieved rate and fraction of the floor per predictor.

    ``set_image_ms``: {"stock": ms, "ours": ms}; ``precision``: the encoder's ("fp32", "bf16", "fp16").
    Returns {"encoder_gflop", "floor_gflops": {dtype: rate}, "stock"/"ours": {"gflops", "fraction",
    "floor_ms", "precision"}}.
    """
    gflop = encoder_gflop(name)
    floor = gemm_floor(device)
    out: dict[str, Any] = {
        "encoder_gflop": gflop,
        "floor_gflops": {k: v["gflops"] for k, v in floor.items() if isinstance(v, dict)},
        "threads": floor["threads"],
    }
    for label, ms in set_image_ms.items():
        prec = precision if precision in floor else "fp32"
        rate = floor[prec]["gflops"]
        achieved = gflop / (ms / 1000)
        out[label] = {
            "precision": prec,
            "gflops": achieved,
            "fraction": achieved / rate,
            "floor_ms": gflop / rate * 1000,
        }
    return out


def format_floor(results: list[Any]) -> str:
    """One line per model and predictor: encoder GFLOP, achieved GFLOP/s, fraction of the floor."""
    lines = []
    for r in results:
        f = getattr(r, "floor", None)
        if not f:
            continue
        rates = ", ".join(f"{k} {v:.0f}" for k, v in f["floor_gflops"].items())
        lines.append(
            f"{r.model}: encoder {f['encoder_gflop']:.1f} GFLOP; "
            f"GEMM floor ({f['threads']} threads) GFLOP/s: {rates}"
        )
        for label in ("stock", "ours"):
            m = f[label]
            lines.append(
                f"  {label:<5} {m['precision']:<5} {m['gflops']:7.1f} GFLOP/s = "
                f"{100 * m['fraction']:5.1f}% of the {m['precision']} floor "
                f"(floor time {m['floor_ms']:.0f} ms)"
            )
    lines += format_targets(results)
    return "\n".join(lines)


def format_targets(results: list[Any]) -> list[str]:
    """Issue 17's speed targets, judged on ``results`` of one run (lines; none without vit_b).

    vit_b: click at the view's size >= 4x faster than stock's click, set_image >= 85% of the
    floor of its precision; mobile_sam (when timed too): set_image <= 1/10 of vit_b's, click no
    slower than vit_b's. Medians; ``ours`` is CachedPredictor with the path ``load_sam`` chose.
    """
    by_name = {r.model: r for r in results if getattr(r, "ours", None)}
    vit_b = by_name.get("vit_b")
    if vit_b is None:
        return []

    def med(r, key: str, who: str = "ours") -> float:
        return getattr(r, who)[key]["median"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = ["targets (issue 17, this run):"]
    ratio = med(vit_b, "click_ms", "stock") / max(med(vit_b, "view_ms"), 1e-9)
    out.append(
        f"  vit_b click at the view's size {ratio:.2f}x faster than stock (>= 4x): {verdict(ratio >= 4)}"
    )
    if vit_b.floor:
        frac = vit_b.floor["ours"]["fraction"]
        prec = vit_b.floor["ours"]["precision"]
        met = verdict(frac >= 0.85)
        out.append(f"  vit_b set_image {100 * frac:.0f}% of the {prec} floor (>= 85%): {met}")
    mobile = by_name.get("mobile_sam")
    if mobile is not None:
        share = med(mobile, "set_image_ms") / max(med(vit_b, "set_image_ms"), 1e-9)
        out.append(f"  mobile_sam set_image {share:.3f} of vit_b's (<= 0.10): {verdict(share <= 0.10)}")
        mc, vc = med(mobile, "click_ms"), med(vit_b, "click_ms")
        out.append(f"  mobile_sam click {mc:.1f} ms, vit_b's {vc:.1f} ms (no slower): {verdict(mc <= vc)}")
    return out
