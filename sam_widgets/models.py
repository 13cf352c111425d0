"""Build segment_anything's own ``Sam`` by name, on a device, in a precision.

``load_sam("vit_b")`` downloads (once, verified) and loads an official checkpoint;
``load_sam("micro")`` loads the small SAM shipped in this package; ``weights="random"`` gives
the real architecture at random init, for timing and teaching only (never for quality).

The returned object is always ``segment_anything.modeling.Sam`` in eval mode, with the official
state-dict keys, so any code written for segment_anything works with it.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import checkpoints
from .architectures import MODEL_NAMES, OFFICIAL, build_sam, config_for, identify_architecture
from .errors import ArchitectureMismatchError, CheckpointError, DownloadError
from .micro import build_micro
from .record import ModelRecord, attach, record_of, update

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from segment_anything.modeling import Sam

__all__ = [
    "ModelFallbackWarning",
    "load_sam",
    "pick_device",
    "pick_model",
    "memory_needed",
    "MEASURED_PEAK_GIB",
    "MEMORY_MARGIN",
    "free_memory_bytes",
    "available_ram_bytes",
    "model_info",
    "precision_label",
    "cpu_bf16_is_faster",
]

log = logging.getLogger("sam_widgets")

GB = 1024**3
#: Peak memory, GiB, of a fresh process that loads the model, encodes one 768x1024 image and runs one
#: click, on the CPU with random weights (the official sizes): ``VmHWM``, Python, torch and the
#: libraries included (~0.66 GiB of it before any model). Measured by ``scripts/measure_memory.py``
#: (each in its own process) on 2026-12-01, Intel Xeon with AVX-512 + AMX, 2 torch threads
#: (BENCHMARKS.md, "Peak memory per model"; docs/choosing_a_model.md explains the rule).
#: ``fp32-stock``: ``precision="fp32"`` (segment_anything's own code: every attention map
#: materialised); ``fp32-fast``/``bf16-fast``: the fast paths, as ``precision="auto"`` runs them.
MEASURED_PEAK_GIB: dict[str, dict[str, float]] = {
    "mobile_sam": {"fp32-stock": 0.95, "fp32-fast": 0.95, "bf16-fast": 0.86},
    "vit_b": {"fp32-stock": 3.49, "fp32-fast": 1.27, "bf16-fast": 1.13},
    "vit_l": {"fp32-stock": 5.14, "fp32-fast": 2.11, "bf16-fast": 1.83},
    "vit_h": {"fp32-stock": 6.38, "fp32-fast": 3.39, "bf16-fast": 3.06},
}
#: What ``load_sam("auto")`` asks of the free memory beyond the measured peak: larger images
#: (their pixels and full-size masks), other code in the process, allocator slack.
MEMORY_MARGIN = 1.25
Precision = Literal["auto", "fp32", "bf16", "fp16"]


class ModelFallbackWarning(UserWarning):
    """``load_sam("auto")`` could not use the model its rule picked and loaded another one."""


def _load_into(name: str, state_dict: dict, source: str) -> Sam:
    """Build ``name`` on the meta device and move ``state_dict`` in: no random init, no copy."""
    import torch

    config = config_for(name)
    sam = build_sam(config, device="meta")
    expected = sam.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        keys = checkpoints.describe_key_mismatch(missing, unexpected, wrong)
        if "'module.'" in keys:
            raise ArchitectureMismatchError(f"{source} does not load into {name}: {keys}")
        found = identify_architecture(state_dict)
        match = found.split()[0]
        fix = (
            f"Pass the matching name, e.g. load_sam('{match}', checkpoint=...), or"
            if match in MODEL_NAMES
            else "Pass"
        )
        wanted = (
            "mobile_sam (TinyViT encoder)"
            if config.encoder == "tiny_vit"
            else f"{name} ({config.encoder_embed_dim} wide, {config.encoder_depth} blocks)"
        )
        raise ArchitectureMismatchError(
            f"{source} holds {found}, but {wanted} was requested; keys {keys} "
            f"{fix} the checkpoint of the model you asked for."
        )
    floats = {
        k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()
    }  # BN's counters stay ints
    sam.load_state_dict(floats, strict=True, assign=True)
    # Non-persistent buffers are not in any state dict: make them real.
    sam.pixel_mean = torch.tensor(config.pixel_mean).view(-1, 1, 1)
    sam.pixel_std = torch.tensor(config.pixel_std).view(-1, 1, 1)
    still_meta = [n for n, t in list(sam.named_parameters()) + list(sam.named_buffers()) if t.is_meta]
    if still_meta:  # pragma: no cover - would be a segment_anything change
        raise CheckpointError(f"{source}: tensors left uninitialised after loading: {still_meta[:5]}")
    return sam.eval()


# ----------------------------------------------------------------------------- devices


def check_model_name(name: str) -> None:
    """A ValueError naming the choices unless ``name`` is one ``load_sam`` takes."""
    if name not in MODEL_NAMES + ("auto",):
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)} or 'auto'.")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: cuda, then mps, then cpu. Anything else is passed to ``torch.device``."""
    import torch

    if str(device) != "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu'.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


CGROUP_ROOT = "/sys/fs/cgroup"


def available_ram_bytes(cgroup_root: str | os.PathLike[str] | None = None) -> int:
    """RAM this process can still use, in bytes: the lesser of the machine's and its container's.

    Inside a container (mybinder.org, Docker) the machine's free memory is not the limit: the
    cgroup's is (v2 ``memory.max`` - ``memory.current``, or v1 ``memory.limit_in_bytes`` -
    ``memory.usage_in_bytes``). ``cgroup_root``: default ``CGROUP_ROOT``.
    """
    import psutil

    free = int(psutil.virtual_memory().available)
    root = Path(CGROUP_ROOT if cgroup_root is None else cgroup_root)
    for limit_file, usage_file in (
        (root / "memory.max", root / "memory.current"),
        (root / "memory" / "memory.limit_in_bytes", root / "memory" / "memory.usage_in_bytes"),
    ):
        try:
            limit = limit_file.read_text().strip()
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number: no limit
            free = min(free, max(int(limit) - usage, 0))
        break
    return free


def free_memory_bytes(device: str | torch.device = "auto") -> int:
    """Memory free for a model on ``device`` now, in bytes (GPU memory for cuda, RAM otherwise)."""
    import torch

    dev = pick_device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    return available_ram_bytes()  # a container's limit counts (mybinder: 2 GB on a large machine)


def memory_needed(name: str, fast: bool = True) -> int:
    """Bytes of free memory ``load_sam("auto")`` asks before it picks ``name``: the measured peak
    (``MEASURED_PEAK_GIB``; with ``fast``, the larger of fp32-fast and bf16-fast, either of which
    ``precision="auto"`` may run; without, fp32-stock) times ``MEMORY_MARGIN``, rounded up to
    1/4 GiB."""
    peaks = MEASURED_PEAK_GIB[name]
    peak = max(peaks["fp32-fast"], peaks["bf16-fast"]) if fast else peaks["fp32-stock"]
    return math.ceil(peak * MEMORY_MARGIN * 4) * GB // 4


def pick_model(free_bytes: int, fast: bool = True) -> str:
    """``load_sam("auto")``'s rule by memory: the largest of vit_h, vit_l that fits
    (``free_bytes >= memory_needed(name, fast)``), else vit_b (the smallest official model).

    ``fast``: the fast paths will run (``precision="auto"``); False for segment_anything's own
    code (``precision="fp32"``), which needs much more (it materialises every attention map).
    The thresholds, measured: README, "Choosing a model"."""
    for name in ("vit_h", "vit_l"):
        if free_bytes >= memory_needed(name, fast):
            return name
    return "vit_b"


def _resolve_path(precision: str, fast: bool | None, dev: torch.device) -> tuple[str, bool, str]:
    """(precision, fast, why): what ``load_sam`` runs, and the reason in words.

    ``fast=None`` means: the fast paths with ``precision="auto"``, segment_anything's own code
    with an explicit precision (so ``precision="fp32"`` stays bit-for-bit stock).
    """
    import torch

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision={precision!r}: use 'auto', 'fp32', 'bf16' or 'fp16'.")
    if fast not in (None, True, False):
        raise ValueError(f"fast={fast!r}: use True, False or None (None: on with precision='auto').")
    use_fast = (precision == "auto") if fast is None else bool(fast)
    if precision != "auto":
        if precision == "fp16" and dev.type == "cpu":
            raise ValueError("precision='fp16' is not supported on the CPU; use 'bf16' or 'fp32'.")
        return precision, use_fast, f"precision={precision!r} was asked for"
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", use_fast, f"{torch.cuda.get_device_name(dev)} supports bf16"
        return "fp32", use_fast, f"{torch.cuda.get_device_name(dev)} has no bf16"
    if dev.type == "cpu":
        use_bf16, why = cpu_bf16_is_faster()
        return ("bf16" if use_bf16 else "fp32"), use_fast, why
    return "fp32", use_fast, f"{dev.type}: fp32 (bf16 is not measured there)"


_CPU_BF16: tuple[bool, str] | None = None


def cpu_bf16_is_faster() -> tuple[bool, str]:
    """Whether bf16 beats fp32 for the encoder's matrix products on this CPU, and why.

    Without bf16 instructions (AVX512_BF16 or AMX) torch emulates bf16, many times slower than
    fp32 (measured 10-50x on an AVX2 EPYC): fp32, no measurement. With them, a 1024 x 768 x 3072
    product (one MLP layer of vit_b on a quarter of its tokens) is timed in both and bf16 is taken
    if it is at least 1.3x faster. Measured once per process (~0.1 s).
    """
    global _CPU_BF16
    if _CPU_BF16 is not None:
        return _CPU_BF16
    import time

    import torch

    cpu = getattr(torch, "cpu", None)
    has_bf16 = any(
        bool(getattr(cpu, name, lambda: False)())
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    capability = torch.backends.cpu.get_cpu_capability()
    if not has_bf16:
        why = f"this CPU has no bf16 instructions (torch: {capability}); bf16 would be emulated: fp32"
        _CPU_BF16 = (False, why)
        return _CPU_BF16

    def best_ms(dtype) -> float:
        a = torch.randn(1024, 768, dtype=dtype)
        b = torch.randn(768, 3072, dtype=dtype)
        a @ b
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        return min(times) * 1000

    fp32, bf16 = best_ms(torch.float32), best_ms(torch.bfloat16)
    faster = bf16 * 1.3 <= fp32
    _CPU_BF16 = (
        faster,
        f"bf16 instructions present (torch: {capability}); measured matmul fp32 {fp32:.1f} ms, "
        f"bf16 {bf16:.1f} ms: {'bf16' if faster else 'fp32'}",
    )
    return _CPU_BF16


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _apply_precision(sam: Sam, precision: str) -> None:
    """Run the image encoder in ``precision``; everything else stays fp32.

    The encoder holds nearly all FLOPs and weights; the prompt encoder and decoder take fp32
    coordinates from SamPredictor, so they stay fp32. Hooks cast the encoder's input and output,
    so the module tree and state-dict keys stay the official ones and stock SamPredictor works.
    """
    import torch

    update(sam, precision=precision)  # read by CachedPredictor.stats and the cache key
    if precision == "fp32":
        return
    dtype = getattr(torch, _DTYPES[precision])
    enc = sam.image_encoder
    enc.to(dtype)
    enc.register_forward_pre_hook(lambda _m, args: (args[0].to(dtype),) + tuple(args[1:]))
    enc.register_forward_hook(lambda _m, _args, out: out.float())


# ----------------------------------------------------------------------------- loading


def load_sam(
    name: str = "auto",
    *,
    checkpoint: str | Path | None = None,
    weights: Literal["pretrained", "random"] = "pretrained",
    device: str | torch.device = "auto",
    precision: Precision = "auto",
    fast: bool | None = None,
    progress: bool = True,
) -> Sam:
    """Load a SAM v1 model: segment_anything's own ``Sam``, in eval mode.

    Arguments:
      name: ``vit_b`` | ``vit_l`` | ``vit_h`` | ``micro`` | ``mobile_sam`` | ``auto``. ``auto``:
        the architecture of ``checkpoint`` when one is given; else, on a CPU-only device with
        ``mobile_sam`` in the cache, ``mobile_sam`` (MobileSAM: a TinyViT encoder, ~1/10 of
        vit_b's time per image); else by the free memory of the device (``pick_model``: the
        largest of vit_h, vit_l whose measured peak memory times 1.25 fits, ``memory_needed``,
        else vit_b; the largest cached one that fits, else that one downloaded); offline
        with nothing cached it falls back to ``micro`` and says so (a ``ModelFallbackWarning``).
      checkpoint: a local file to load instead of the cache. A file carrying an official name is
        verified against the pinned sha256; a file of another architecture fails naming both.
      weights: ``"pretrained"``, or ``"random"`` for the real architecture at random init
        (timing and teaching only: its masks are noise).
      device: ``auto`` (cuda, then mps, then cpu), or any torch device.
      precision: ``auto`` (bf16 on a CUDA GPU that supports it and on a CPU where bf16 is
        measured faster, else fp32; ``model_info(sam)["path_reason"]`` says why), ``fp32``,
        ``bf16``, ``fp16``. Applies to the image encoder; the prompt encoder and decoder stay fp32.
      fast: run the fast paths of ``sam_widgets.fast`` (same weights and keys, the arithmetic
        reordered: less time and memory, results equal to stock up to rounding). ``None`` (the
        default): on with ``precision="auto"``, off with an explicit precision, so
        ``precision="fp32"`` is segment_anything's own code, bit for bit.
      progress: show a progress bar while downloading.
    """

    if weights not in ("pretrained", "random"):
        raise ValueError(f"weights={weights!r}: use 'pretrained' or 'random'.")
    check_model_name(name)
    dev = pick_device(device)
    prec, use_fast, reason = _resolve_path(precision, fast, dev)
    fingerprint = None

    if checkpoint is not None:
        if weights == "random":
            raise ValueError("checkpoint= and weights='random' contradict each other; pass one.")
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint={str(checkpoint)!r}: no such file.")
        for info in checkpoints.REGISTRY.values():
            if path.name == info.filename:
                checkpoints.verify(path, info.name)
        state_dict = checkpoints.load_state_dict(path)
        if name == "auto":
            name = identify_architecture(state_dict).split()[0]
            if name not in MODEL_NAMES:
                raise ArchitectureMismatchError(
                    f"{path} holds {identify_architecture(state_dict)}; "
                    f"sam-widgets knows {', '.join(MODEL_NAMES)}."
                )
        sam, source = _load_into(name, state_dict, str(path)), str(path)
    elif name == "auto":
        sam, name, source = _load_auto(weights, dev, progress, fast=use_fast)
    elif weights == "random":
        sam, source = build_sam(config_for(name)), "random init"
    elif name == "micro":
        sam, source = build_micro(weights=True), "bundled"
    else:
        path = checkpoints.download(name, progress=progress)
        sam, source = _load_into(name, checkpoints.load_state_dict(path), str(path)), str(path)
        fingerprint = checkpoints.REGISTRY[name].sha256

    sam.to(dev)
    _apply_precision(sam, prec)
    if use_fast:
        from .fast import enable_fast

        enable_fast(sam)
    # The one record of what was loaded; CachedPredictor keys embeddings by the fingerprint instead
    # of hashing the weights, and the version lets it notice weights later changed in place.
    version = sum(p._version for p in sam.image_encoder.parameters()) if fingerprint else 0
    record = ModelRecord(name, weights, source, fingerprint, version, prec, use_fast, reason)
    attach(sam, record)
    log.info("sam-widgets: %s on %s, %s (%s)", name, dev, record.label, reason)
    return sam.eval()


def _load_auto(weights: str, dev: torch.device, progress: bool, fast: bool = True) -> tuple[Sam, str, str]:
    """(model, name, source) for ``load_sam("auto")``; ``fast``: the fast paths will run."""
    wanted = pick_model(free_memory_bytes(dev), fast=fast)
    if weights == "random":
        return build_sam(config_for(wanted)), wanted, "random init"
    cached = checkpoints.cached_models()
    if dev.type == "cpu" and "mobile_sam" in cached:
        # On a CPU a ViT takes seconds per image and MobileSAM a fraction of one (BENCHMARKS.md):
        # a cached MobileSAM is the interactive choice there.
        path = cached["mobile_sam"]
        return _load_into("mobile_sam", checkpoints.load_state_dict(path), str(path)), "mobile_sam", str(path)
    # The largest cached model that fits, else download the one the rule picked.
    for candidate in reversed(OFFICIAL[: OFFICIAL.index(wanted) + 1]):
        if candidate in cached:
            path = cached[candidate]
            return _load_into(candidate, checkpoints.load_state_dict(path), str(path)), candidate, str(path)
    try:
        path = checkpoints.download(wanted, progress=progress)
    except DownloadError as e:  # includes OfflineError
        warnings.warn(
            f"load_sam('auto') picked {wanted} for the free memory here, but it is not cached and "
            f"could not be fetched ({type(e).__name__}); loading the bundled 'micro' model instead. "
            f"Run `sam-widgets download {wanted}` where there is network to use {wanted}.",
            ModelFallbackWarning,
            stacklevel=3,
        )
        return build_micro(weights=True), "micro", "bundled"
    return _load_into(wanted, checkpoints.load_state_dict(path), str(path)), wanted, str(path)


def precision_label(sam: Sam) -> str:
    """What the model runs, in a word: its precision, ``-fast`` when the fast paths are on
    (``"fp32"``, ``"fp32-fast"``, ``"bf16-fast"``). Embeddings of different labels differ."""
    return record_of(sam).label


def model_info(sam: Sam) -> dict:
    """Name, weights, device, precision and parameter counts of a loaded model."""
    params = {
        part: sum(p.numel() for p in getattr(sam, part).parameters())
        for part in ("image_encoder", "prompt_encoder", "mask_decoder")
    }
    r = record_of(sam)
    return {
        "name": r.name,
        "weights": r.weights,
        "device": str(sam.device),
        "precision": r.precision,
        "fast": r.fast,
        "path": r.label,
        "path_reason": r.reason,
        "img_size": sam.image_encoder.img_size,
        "params": params,
    }
