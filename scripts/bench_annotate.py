"""Throughput of `sam-widgets annotate`, local against Ray, on this machine: images/s.

    python scripts/bench_annotate.py                 # micro on 24 images, vit_b (random) on 4; both runners
    python scripts/bench_annotate.py --images 24 --vit-images 4 --ray-num-cpus 2 --json out.json

Generates a fixed folder of images (micro's held-out synthetic scenes, 256x256 PNG, the same every
time), then runs the real command (`python -m sam_widgets annotate ...` in a subprocess, "everything"
with 64 points per image and no score filter, as BENCHMARKS.md's earlier rows: ``--points-per-side 8
--pred-iou-thresh 0 --stability-score-thresh 0``; RLE output) for each (model, runner), each into a
fresh OUT, and
reads images/s from the run's own summary line: overall (model loading included) and after the
first image (``Summary.steady_images_per_s``). Ray: a local runtime of ``--ray-num-cpus`` CPUs,
started and stopped by the command itself (``--ray``), with the default plan (2 actors of 1 CPU on
2 CPUs, each torch set to 1 thread); local: one process, torch's default threads.

vit_b runs with random weights (timing only: ``--weights random``; its masks are noise, and
"everything" on noise finds few masks, so its time is mostly the encoder's). Prints a Markdown table
with the machine (CPU flags), date and commit, for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

LINE = re.compile(r"annotated (\d+) of (\d+) images? in ([\d.]+) s")
FIRST = re.compile(r"the first image, with the model load, took ([\d.]+) s")


EVERYTHING = ["--points-per-side", "8", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


def make_images(folder: Path, n: int, size: int = 256) -> None:
    """``n`` held-out synthetic scenes as PNG (deterministic)."""
    from PIL import Image

    from sam_widgets.micro.data import HELDOUT_SEED_START, make_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _ = make_scene(HELDOUT_SEED_START + i, size)
        Image.fromarray(image).save(folder / f"scene{i:03d}.png")


def run(images: Path, out: Path, model: str, ray: bool, ray_num_cpus: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "sam_widgets", "annotate", str(images), "--out", str(out), "--model", model]
    cmd += ["-q", *extra]  # no progress bar; the summary line is still printed
    if model != "micro":
        cmd += ["--weights", "random"]
    if ray:
        cmd += ["--ray", "--ray-num-cpus", str(ray_num_cpus)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    text = done.stdout + done.stderr
    m = LINE.search(text)
    if done.returncode != 0 or m is None:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{text[-3000:]}")
    n, seconds = int(m.group(1)), float(m.group(3))
    f = FIRST.search(text)  # the first image's time (model load included), printed from 2 images on
    first = float(f.group(1)) if f else None
    return {
        "model": model,
        "runner": f"Ray ({ray_num_cpus} CPUs)" if ray else "local",
        "images": n,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "first_image_s": first,
        "steady_images_per_s": (n - 1) / (seconds - first) if first is not None and seconds > first else None,
        "process_wall_s": round(wall, 1),
        "command": " ".join(cmd[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=24, help="images for micro (default 24)")
    p.add_argument("--vit-images", type=int, default=4, help="images for vit_b, random weights (default 4)")
    p.add_argument("--models", default="micro,vit_b")
    p.add_argument("--runners", default="local,ray")
    p.add_argument("--ray-num-cpus", type=int, default=2)
    p.add_argument("--size", type=int, default=256, help="side of the generated images, pixels (default 256)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from measure_memory import cpu_flags

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="sam-widgets-bench-annotate-") as tmp:
        tmp = Path(tmp)
        make_images(tmp / "images", a.images, a.size)
        few = tmp / "few"
        few.mkdir()
        for i in range(min(a.vit_images, a.images)):
            os.link(tmp / "images" / f"scene{i:03d}.png", few / f"scene{i:03d}.png")
        for model in a.models.split(","):
            folder = tmp / "images" if model == "micro" else few
            for runner in a.runners.split(","):
                out = tmp / f"out-{model}-{runner}"
                r = run(folder, out, model, runner == "ray", a.ray_num_cpus, EVERYTHING)
                print(json.dumps(r), file=sys.stderr, flush=True)
                rows.append(r)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {cpu_flags()} | {os.cpu_count()} CPUs")
    print(
        f"# commit {commit.stdout.strip() or '?'} | "
        f"python scripts/bench_annotate.py {' '.join(argv or sys.argv[1:])}"
    )
    print("| model | runner | images | s | images/s | images/s after the first |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        steady = "-" if r["steady_images_per_s"] is None else f"{r['steady_images_per_s']:.3g}"
        print(
            f"| {r['model']}{' (random)' if r['model'] != 'micro' else ''} | {r['runner']} | {r['images']} | "
            f"{r['seconds']:.1f} | {r['images_per_s']:.3g} | {steady} |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps({"cpu": cpu_flags(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
