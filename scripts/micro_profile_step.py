"""Time one micro training step (forward, backward, AdamW) under variants, on one thread.

    python scripts/micro_profile_step.py fp32|bf16|compile|channels-last|batch8 [--nested 0.5]

Reports the process CPU time per step (median of 8 steps after 2 warm-up steps; 4 scenes x 4
objects x 3 rounds as in training, or 8 scenes for batch8). CPU time rather than wall time
because these machines are shared: other jobs stretch wall time, much less a process's own CPU
time (still about +-15% between runs on a busy machine: compare within one sitting).
Variants: fp32 (as trained), bf16 (torch.autocast on the CPU), compile (torch.compile of the
image encoder), channels-last (the model in channels_last memory format), batch8 (8 scenes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sam_widgets.micro import build_micro
from sam_widgets.micro.train import make_batch, step_loss

VARIANTS = ("fp32", "bf16", "compile", "channels-last", "batch8")


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("--nested", type=float, default=0.0, help="fraction of nested scenes")
    p.add_argument("--steps", type=int, default=8)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    sam = build_micro().train()
    if a.variant == "channels-last":
        sam = sam.to(memory_format=torch.channels_last)
    if a.variant == "compile":
        sam.image_encoder = torch.compile(sam.image_encoder)
    opt = torch.optim.AdamW(sam.parameters(), lr=1e-5)
    batch = 8 if a.variant == "batch8" else 4
    rng = np.random.default_rng(0)
    data = [make_batch(i, 3, batch, 256, rng, a.nested) for i in range(2 + a.steps)]
    gen = torch.Generator().manual_seed(0)

    def step(scenes) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.variant == "bf16"):
            loss, _ = step_loss(sam, scenes, gen, objects=4, rounds=3, loss_size=128)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for scenes in data[:2]:  # warm-up (and compilation)
        step(scenes)
    cpu = []
    for scenes in data[2:]:
        t = time.process_time()
        step(scenes)
        cpu.append(time.process_time() - t)
    med = float(np.median(cpu))
    print(
        f"{a.variant}: {med:.3f} s CPU a step of {batch} scenes ({med / batch:.3f} a scene), "
        f"min {min(cpu):.3f}"
    )
    return med


if __name__ == "__main__":
    main()
