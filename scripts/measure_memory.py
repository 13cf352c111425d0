"""Peak memory of each model for one image and one click: the table behind ``load_sam("auto")``.

    python scripts/measure_memory.py                      # vit_b, vit_l, vit_h, mobile_sam; fp32, bf16
    python scripts/measure_memory.py --models vit_b --configs fp32-stock --json out.json

Each (model, configuration) runs in its own fresh Python process, one after another, so that one
measurement's memory never counts in another's: the child loads the model with random weights
(``load_sam(name, weights="random")``: the official architecture and sizes; the same bytes as a
checkpoint), runs ``CachedPredictor.set_image`` on a 768x1024 image and one click, and reports

- CPU: its peak resident memory, ``VmHWM`` of /proc/self/status (the process's own high-water mark:
  Python, torch and the libraries included, i.e. what the machine must have free; ``ru_maxrss``
  would report the parent's peak, see DESIGN.md), and its RSS before loading the model;
- CUDA (when ``--device cuda``): ``torch.cuda.max_memory_reserved`` (what the caching allocator
  took from the GPU) plus the CUDA context (GPU memory in use before the model, measured by
  ``mem_get_info``).

Configurations: ``fp32-stock`` (``precision="fp32"``: segment_anything's own code), ``fp32-fast`` and
``bf16-fast`` (the fast paths, as ``precision="auto"`` runs them). The largest of the three per model,
times ``sam_widgets.models.MEMORY_MARGIN``, is what ``load_sam("auto")`` asks of the free memory
(``models.MEASURED_PEAK_GIB``, ``models.memory_needed``). Prints a Markdown table (and ``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

CONFIGS = {"fp32-stock": ("fp32", False), "fp32-fast": ("fp32", True), "bf16-fast": ("bf16", True)}
MODELS = ("mobile_sam", "vit_b", "vit_l", "vit_h")
GIB = 1024**3


def _vm(field: str) -> int:
    """A field of /proc/self/status in bytes (VmHWM: peak RSS, VmRSS: RSS now)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def child(name: str, config: str, device: str, threads: int | None) -> dict:
    """One measurement, in this (fresh) process."""
    import numpy as np
    import torch

    from sam_widgets.models import load_sam
    from sam_widgets.predictor import CachedPredictor

    if threads:
        torch.set_num_threads(threads)
    precision, fast = CONFIGS[config]
    base_rss = _vm("VmRSS")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.init()
        free0, total = torch.cuda.mem_get_info()
        context = total - free0
    t0 = time.perf_counter()
    sam = load_sam(name, weights="random", device=device, precision=precision, fast=fast, progress=False)
    weights_bytes = sum(p.numel() * p.element_size() for p in sam.parameters())
    predictor = CachedPredictor(sam, cache_bytes=0)
    image = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    predictor.set_image(image)
    predictor.predict(
        point_coords=np.array([[512.0, 384.0]]), point_labels=np.array([1]), multimask_output=True
    )
    out = {
        "model": name,
        "config": config,
        "device": device,
        "weights_mib": round(weights_bytes / 2**20, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(),
        "rss_before_model_mib": round(base_rss / 2**20),
        "peak_rss_mib": round(_vm("VmHWM") / 2**20),
    }
    if cuda:
        out["peak_gpu_mib"] = round((torch.cuda.max_memory_reserved() + context) / 2**20)
    return out


def measure(name: str, config: str, device: str, threads: int | None) -> dict:
    """``child`` in a fresh process (nice 5: a shared machine); its JSON line back."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, config, "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    done = subprocess.run(["nice", "-n", "5", *cmd], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} {config} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_flags() -> str:
    """The CPU's name and the flags that decide bf16 speed."""
    name, flags = "?", []
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and name == "?":
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have]
                break
    except OSError:
        pass
    return f"{name} ({', '.join(flags)})"


def table(rows: list[dict]) -> str:
    """Markdown: one row per model, peak GiB per configuration, and what ``load_sam("auto")`` asks
    of the free memory for it (``models.memory_needed``'s formula on these rows)."""
    from sam_widgets.models import MEMORY_MARGIN

    configs = [c for c in CONFIGS if any(r["config"] == c for r in rows)]
    key = "peak_gpu_mib" if any("peak_gpu_mib" in r for r in rows) else "peak_rss_mib"

    def need(peak_gib: float | None) -> str:
        return "-" if peak_gib is None else f"{math.ceil(peak_gib * MEMORY_MARGIN * 4) / 4:.2f} GiB"

    lines = [
        "| model | weights fp32 | "
        + " | ".join(f"peak {c}" for c in configs)
        + f" | needs, fast paths (x {MEMORY_MARGIN}) | needs, stock (x {MEMORY_MARGIN}) |",
        "|---|---:|" + "---:|" * (len(configs) + 2),
    ]
    for m in MODELS:
        mine = {r["config"]: r[key] / 1024 for r in rows if r["model"] == m}
        if not mine:
            continue
        fp32 = [r["weights_mib"] for r in rows if r["model"] == m and r["config"].startswith("fp32")]
        w = f"{fp32[0]:,.0f} MiB" if fp32 else "-"
        cells = " | ".join(f"{mine[c]:.2f} GiB" if c in mine else "-" for c in configs)
        fast = [mine[c] for c in ("fp32-fast", "bf16-fast") if c in mine]
        lines.append(
            f"| {m} | {w} | {cells} | {need(max(fast) if fast else None)} | {need(mine.get('fp32-stock'))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--table", default=None, help="print the table of rows saved by --json (no measuring)")
    p.add_argument("--child", nargs=2, metavar=("MODEL", "CONFIG"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.device, a.threads)))
        return 0
    if a.table:
        with open(a.table) as f:
            print(table(json.load(f)["rows"]))
        return 0
    rows = []
    for m in a.models.split(","):
        for c in a.configs.split(","):
            r = measure(m, c, a.device, a.threads)
            print(json.dumps(r), file=sys.stderr, flush=True)
            rows.append(r)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {cpu_flags()} | device {a.device}")
    print("# one image 768x1024 + one click, random weights, each in a fresh process; peak = VmHWM")
    print(table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": cpu_flags(), "device": a.device, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
