"""Train the micro SAM on procedural scenes, with SAM's interactive prompt simulation.

    python -m sam_widgets.micro.train --steps 2000 --out runs/micro_sam.pt --seed 11

One step: B scenes are generated (data.make_scene, seeds from TRAIN_SEED_START), encoded once,
and K objects per scene are prompted for R rounds, as in the SAM paper (section A, "training
algorithm"):
  round 0   a positive point drawn uniformly from the object (3 masks out, loss on the best),
            or its box with noise (std 10% of the side, at most 20 px; one mask out);
  round r   one corrective point drawn uniformly from the error region of the previous
            prediction (positive on a miss, negative on a false positive), added to the prompts;
            the previous low-res logits are fed as the mask prompt with probability 1/2.
Loss per mask: 20 * focal + 1 * dice, plus MSE between predicted and true IoU.
AdamW, linear warmup then cosine decay. Writes the fp16 state dict to --out every --save-every
steps and at the end, and a CSV log next to it (<out>.csv).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sam_widgets.architectures import CONFIGS, build_sam
from sam_widgets.micro.data import TRAIN_SEED_START, make_nested_scene, make_scene

MICRO_CONFIG = CONFIGS["micro"]

# ----------------------------------------------------------------------------- losses


def focal_loss(logits: torch.Tensor, gt: torch.Tensor, alpha: float = -1.0, gamma: float = 2.0):
    """Sigmoid focal loss, mean over pixels. logits, gt: (..., H, W) -> (...).

    alpha < 0 means no class weighting: with alpha = 0.25 (detection's default) a model trained
    from scratch on objects covering ~3% of the image collapses to empty masks for a long time.
    """
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    p_t = p * gt + (1 - p) * (1 - gt)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * gt + (1 - alpha) * (1 - gt)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Soft dice loss. logits, gt: (..., H, W) -> (...)."""
    p = logits.sigmoid().flatten(-2)
    g = gt.flatten(-2)
    return 1 - (2 * (p * g).sum(-1) + 1) / (p.sum(-1) + g.sum(-1) + 1)


def mask_iou(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with gt. (..., H, W) -> (...)."""
    pred = logits > 0
    g = gt > 0.5
    inter = (pred & g).flatten(-2).sum(-1).float()
    union = (pred | g).flatten(-2).sum(-1).float()
    return inter / union.clamp(min=1)


#: Every assignment of 3 targets to the 3 multimask outputs: PERMS[k, t] is target t's output.
PERMS = torch.tensor(list(itertools.permutations(range(3))))  # (6, 3)
#: At most this many valid targets (levels) per click: part < object < group.
MAX_LEVELS = 3


def assign_outputs(cost: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The min-loss assignment of valid targets to distinct multimask outputs (SAM's ambiguity loss).

    cost: (M, 3, T) loss of output o against target t, T <= 3; valid: (M, T) bool, at least one
    True per row. Returns (M, T) long: the output (0..2) given to each target, distinct within a
    row, minimising the summed cost over the valid targets (invalid targets get leftover outputs).
    With one valid target this is the argmin over the outputs, as in SAM's training.
    """
    m, _, t = cost.shape
    if t > 3:
        raise ValueError(f"at most 3 targets for 3 outputs, got {t}")
    perms = PERMS[:, :t]  # (6, T)
    picked = cost[:, perms, torch.arange(t)]  # (M, 6, T): cost[m, perms[k, j], j]
    total = (picked * valid[:, None, :]).sum(-1)  # (M, 6)
    return perms[total.argmin(1)]


# ----------------------------------------------------------------------------- data


def sample_uniform(region: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One uniform pixel of each region. region: (M, H, W) bool -> (M, 2) float (x, y).

    Rows with an empty region get the image centre.
    """
    m, h, w = region.shape
    r = torch.rand(m, h * w, generator=gen) * region.flatten(1)
    idx = r.argmax(1)
    xy = torch.stack([idx % w, idx // w], 1).float()
    empty = ~region.flatten(1).any(1)
    xy[empty] = torch.tensor([w / 2, h / 2])
    return xy


def noisy_boxes(gt: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Tight boxes of gt (M, H, W) with noise, as XYXY (M, 4) float."""
    ys = gt.any(2)
    xs = gt.any(1)
    h, w = gt.shape[1:]
    ar_y = torch.arange(h).expand_as(ys)
    ar_x = torch.arange(w).expand_as(xs)
    y0 = torch.where(ys, ar_y, h).min(1).values
    y1 = torch.where(ys, ar_y, -1).max(1).values
    x0 = torch.where(xs, ar_x, w).min(1).values
    x1 = torch.where(xs, ar_x, -1).max(1).values
    box = torch.stack([x0, y0, x1, y1], 1).float()
    side = torch.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0], 1).float()
    noise = torch.randn(box.shape, generator=gen) * 0.1 * side
    box = box + noise.clamp(-20, 20)
    return box.clamp(min=0).minimum(torch.tensor([w - 1, h - 1, w - 1, h - 1]).float())


def make_batch(
    step: int, seed: int, batch: int, img_size: int, rng: np.random.Generator, nested: float = 0.0
):
    """B scenes for one step: list of (image float 3xHxW unpadded, masks bool NxSxS padded).

    A fraction `nested` of the scenes (drawn per scene) are make_nested_scene's, whose masks are
    every level (parts, objects, groups: they overlap); the others make_scene's (disjoint)."""
    out = []
    for i in range(batch):
        scene_seed = TRAIN_SEED_START + seed * 10**8 + step * batch + i
        size: int | tuple[int, int] = img_size
        if rng.random() < 0.25:  # non-square: exercises the padding SamPredictor adds
            short = int(rng.integers(img_size // 2, img_size))
            size = (img_size, short) if rng.random() < 0.5 else (short, img_size)
        if nested > 0 and rng.random() < nested:
            image, masks = make_nested_scene(scene_seed, size)[:2]
        else:
            image, masks = make_scene(scene_seed, size)
        h, w = image.shape[:2]
        padded = np.zeros((masks.shape[0], img_size, img_size), bool)
        padded[:, :h, :w] = masks
        out.append((torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(padded)))
    return out


def _batch_worker(
    queue, first: int, steps: int, seed: int, batch: int, img_size: int, nested: float = 0.0
) -> None:
    """Worker process: make the batches of steps first..steps-1 in order, as numpy arrays."""
    rng = np.random.default_rng(seed)
    for s in range(first, steps):
        data = make_batch(s, seed, batch, img_size, rng, nested)
        queue.put([(img.numpy(), masks.numpy()) for img, masks in data])


class BatchStream:
    """The batches of make_batch, step by step; with `prefetch`, made ahead in a worker process.

    The worker draws from the same seeded generator in the same order, so a run is the same with
    or without it; it only moves scene generation (~20% of a step) off the training thread.
    """

    def __init__(
        self, seed: int, batch: int, img_size: int, steps: int, prefetch: bool, nested: float = 0.0
    ) -> None:
        self.seed, self.batch, self.img_size, self.nested = seed, batch, img_size, nested
        self.rng = np.random.default_rng(seed)
        self.proc = self.queue = None
        if prefetch:
            import multiprocessing as mp

            ctx = mp.get_context("fork")
            self.queue = ctx.Queue(maxsize=8)
            self.proc = ctx.Process(
                target=_batch_worker,
                args=(self.queue, 0, steps, seed, batch, img_size, nested),
                daemon=True,
            )
            self.proc.start()

    def get(self, step: int):
        if self.queue is None:
            return make_batch(step, self.seed, self.batch, self.img_size, self.rng, self.nested)
        return [(torch.from_numpy(i), torch.from_numpy(m)) for i, m in self.queue.get(timeout=300)]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.join()
            self.proc = None


# ----------------------------------------------------------------------------- one step


def click_levels(all_masks: torch.Tensor, pick: torch.Tensor, xy: torch.Tensor):
    """The valid targets of a click on each picked mask: the masks that contain the click.

    all_masks: (N, S, S) bool, every level of a scene; pick: (M,) the picked masks; xy: (M, 2)
    the clicks (x, y), each inside its picked mask. Returns (levels (M, T) long, valid (M, T)
    bool), T = min(N, MAX_LEVELS): column 0 the picked mask, then the other masks containing the
    click, smallest first; unused columns repeat the picked mask with valid False.
    """
    n = all_masks.shape[0]
    t = min(n, MAX_LEVELS)
    xi, yi = xy[:, 0].long(), xy[:, 1].long()
    contain = all_masks[:, yi, xi].T.clone()  # (M, N)
    contain[torch.arange(len(pick)), pick] = False
    levels, valid = pick[:, None].repeat(1, t), torch.zeros(len(pick), t, dtype=torch.bool)
    valid[:, 0] = True
    if t > 1:
        area = all_masks.flatten(1).sum(1).float()  # (N,)
        key = torch.where(contain, area, torch.full_like(area, float("inf")))
        order = key.argsort(1)[:, : t - 1]  # (M, T-1)
        ok = contain.gather(1, order)
        levels[:, 1:] = torch.where(ok, order, pick[:, None])
        valid[:, 1:] = ok
    return levels, valid


def ambiguity_loss(
    up: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, focal_weight: float
) -> dict:
    """SAM's ambiguity-aware loss for single-click prompts, over the three multimask outputs.

    up: (M, 3, L, L) logits of outputs 1..3; iou_pred: (M, 3) their predicted IoUs; targets:
    (M, T, L, L) soft masks of the valid levels (column 0 the picked one); valid: (M, T) bool.
    The valid targets are matched to distinct outputs by least total loss (``assign_outputs``);
    the mask loss is the mean over valid targets of the matched output's loss (unmatched outputs
    are free); the IoU head is trained on every output against its IoU with its matched target
    (an unmatched output: its best IoU with any valid target). Returns {"mask": (M,), "iou": (M,),
    "output": (M,) the output (0..2) matched to target 0, "iou_first": (M,) its true IoU}.
    """
    m, _, t = up.shape[0], 3, targets.shape[1]
    shape = (m, 3, t) + up.shape[-2:]
    u, g = up[:, :, None].expand(shape), targets[:, None].expand(shape)
    cost = focal_weight * focal_loss(u, g) + dice_loss(u, g)  # (M, 3, T)
    iou = mask_iou(u, g).detach()  # (M, 3, T)
    assign = assign_outputs(cost.detach(), valid)  # (M, T)
    rows, cols = torch.arange(m)[:, None], torch.arange(t)[None]
    matched = cost[rows, assign, cols]  # (M, T)
    mask = (matched * valid).sum(1) / valid.sum(1)
    best = iou.masked_fill(~valid[:, None, :], -1.0).amax(2)  # (M, 3)
    target_iou = best.scatter(1, assign, torch.where(valid, iou[rows, assign, cols], best.gather(1, assign)))
    return {
        "mask": mask,
        "iou": ((iou_pred - target_iou) ** 2).mean(1),
        "output": assign[:, 0],
        "iou_first": iou[torch.arange(m), assign[:, 0], 0],
    }


def step_loss(
    sam,
    batch,
    gen: torch.Generator,
    objects: int,
    rounds: int,
    loss_size: int | None = None,
    train_encoder: bool = True,
    emb: torch.Tensor | None = None,
    focal_weight: float = 20.0,
    min_loss: bool = True,
):
    """Loss of one step over all scenes, objects and rounds; also stats for the log.

    `emb`: the scenes' image embeddings when they are already known (a fixed encoder).
    `min_loss`: a single click trains only the best of masks 1-3 (SAM's min-loss assignment; on
    nested scenes each valid level gets its own output, ``ambiguity_loss``); False trains all
    three on the one picked target (the ablation notebook 05 asks about).
    """
    if emb is None:
        x = torch.stack([sam.preprocess(img) for img, _ in batch])  # (B, 3, S, S)
        with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()):
            emb = sam.image_encoder(x)  # (B, C, S/p, S/p)
    pe = sam.prompt_encoder.get_dense_pe()
    size = sam.image_encoder.img_size
    loss_size = loss_size or size
    losses, stats = [], {"iou_r0": [], "iou_last": [], "iou_mse": []}
    for b, (_, all_masks) in enumerate(batch):
        n = all_masks.shape[0]
        pick = torch.randperm(n, generator=gen)[:objects]
        gt_bool = all_masks[pick]  # (M, S, S)
        all_loss = all_masks.float()
        # The loss is taken at loss_size (half the input by default: 4x fewer pixels than full size,
        # still 2x the decoder's low-res output) against the area-averaged (soft) ground truth.
        all_loss = F.adaptive_avg_pool2d(all_loss, loss_size) if loss_size != size else all_loss
        m = gt_bool.shape[0]
        is_box = torch.rand(m, generator=gen) < 0.5
        coords = sample_uniform(gt_bool, gen)[:, None]  # (M, 1, 2)
        labels = torch.ones(m, 1)
        boxes = noisy_boxes(gt_bool, gen)
        # The valid targets of the first click: every mask containing it (the picked one first,
        # then the other levels, finest first; nested scenes only, make_scene's are disjoint).
        levels, valid = click_levels(all_masks, pick, coords[:, 0])  # (M, T), (M, T)
        targets = all_loss[levels]  # (M, T, L, L)
        ar = torch.arange(m)
        prev_logits = None
        for r in range(rounds):
            if r > 0:
                pred = F.interpolate(prev_logits, (size, size), mode="bilinear") > 0
                miss, extra = gt_bool & ~pred[:, 0], pred[:, 0] & ~gt_bool
                new = sample_uniform(miss | extra, gen)  # (M, 2)
                xi, yi = new[:, 0].long(), new[:, 1].long()
                positive = miss[torch.arange(m), yi, xi] | ~(miss | extra).flatten(1).any(1)
                coords = torch.cat([coords, new[:, None]], 1)
                labels = torch.cat([labels, positive.float()[:, None]], 1)
            use_mask = r > 0 and torch.rand((), generator=gen) < 0.5
            mask_in = prev_logits.detach() if use_mask else None
            sparse, dense, order = [], [], []
            for grp in (~is_box, is_box):
                if not grp.any():
                    continue
                idx = grp.nonzero()[:, 0]
                if grp is is_box:
                    pts = (coords[idx, 1:], labels[idx, 1:]) if r > 0 else None
                    bx = boxes[idx]
                else:
                    pts, bx = (coords[idx], labels[idx]), None
                mi = mask_in[idx] if mask_in is not None else None
                s, d = sam.prompt_encoder(points=pts, boxes=bx, masks=mi)
                sparse.append(s)
                dense.append(d)
                order.append(idx)
            order_t = torch.cat(order)
            low, iou_pred = sam.mask_decoder.predict_masks(
                image_embeddings=emb[b : b + 1],
                image_pe=pe,
                sparse_prompt_embeddings=torch.cat(sparse),
                dense_prompt_embeddings=torch.cat(dense),
            )  # (M, 4, S/2, S/2), (M, 4) in `order_t` order
            inv = torch.empty_like(order_t)
            inv[order_t] = torch.arange(m)
            low, iou_pred = low[inv], iou_pred[inv]
            # single point in round 0: the 3 multimask outputs against the valid levels (min-loss
            # assignment); a box or several points: the single output (token 0) against the target
            multi = (~is_box) & (r == 0)
            loss_m, loss_i = torch.zeros(m), torch.zeros(m)
            sel, r_iou = torch.zeros(m, dtype=torch.long), torch.zeros(m)
            si, mi_ = (~multi).nonzero()[:, 0], multi.nonzero()[:, 0]
            if len(si):
                up = F.interpolate(low[si, :1], (loss_size, loss_size), mode="bilinear")[:, 0]
                g = targets[si, 0]
                per = focal_weight * focal_loss(up, g) + dice_loss(up, g)  # (Ms,)
                true_iou = mask_iou(up, g).detach()
                loss_m = loss_m.index_put((si,), per)
                loss_i = loss_i.index_put((si,), (iou_pred[si, 0] - true_iou) ** 2)
                r_iou[si] = true_iou
            if len(mi_) and min_loss:
                up = F.interpolate(low[mi_, 1:], (loss_size, loss_size), mode="bilinear")
                amb = ambiguity_loss(up, iou_pred[mi_, 1:], targets[mi_], valid[mi_], focal_weight)
                loss_m = loss_m.index_put((mi_,), amb["mask"])
                loss_i = loss_i.index_put((mi_,), amb["iou"])
                sel[mi_] = amb["output"] + 1
                r_iou[mi_] = amb["iou_first"]
            elif len(mi_):  # no assignment: all three candidates trained on the picked target
                up = F.interpolate(low[mi_, 1:], (loss_size, loss_size), mode="bilinear")
                g = targets[mi_, :1].expand_as(up)
                per = focal_weight * focal_loss(up, g) + dice_loss(up, g)  # (Mm, 3)
                true_iou = mask_iou(up, g).detach()
                loss_m = loss_m.index_put((mi_,), per.mean(1))
                loss_i = loss_i.index_put((mi_,), ((iou_pred[mi_, 1:] - true_iou) ** 2).mean(1))
                best = per.detach().argmin(1)
                sel[mi_] = best + 1
                r_iou[mi_] = true_iou[torch.arange(len(mi_)), best]
            losses.append((loss_m + loss_i).mean())
            prev_logits = low[ar, sel][:, None]  # (M, 1, S/2, S/2)
            stats["iou_mse"].append(loss_i.mean().item())
            if r == 0:
                stats["iou_r0"].append(r_iou.mean().item())
            if r == rounds - 1:
                stats["iou_last"].append(r_iou.mean().item())
    loss = torch.stack(losses).mean()
    return loss, {k: float(np.mean(v)) for k, v in stats.items()}


def save_fp16(sam, path: Path) -> None:
    """Write the state dict as fp16 (atomic rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half() if v.is_floating_point() else v for k, v in sam.state_dict().items()}
    from .._io import atomic_write

    atomic_write(path, lambda f: torch.save(state, f))


# ----------------------------------------------------------------------------- main


def train(
    steps: int,
    out: Path,
    seed: int = 0,
    batch: int = 4,
    objects: int = 4,
    rounds: int = 2,
    lr: float = 5e-4,
    weight_decay: float = 0.01,
    warmup: int = 20,
    threads: int = 2,
    save_every: int = 200,
    init: Path | None = None,
    progress: bool = True,
    minutes: float | None = None,
    loss_size: int | None = 128,
    prefetch: bool = False,
    sam=None,
    train_encoder: bool = True,
    nested: float = 0.0,
    snapshots: bool = False,
) -> list[dict]:
    """Train from scratch (or from `init`) and return the log rows.

    `sam` trains that model in place instead of a new one (left in eval mode at the end);
    `train_encoder=False` keeps its image encoder fixed and trains only the prompt encoder and
    mask decoder (the encoder then runs without gradients: a step costs about half as much).
    `loss_size` is the side at which mask losses are taken (None: the input size); `prefetch` makes
    the scenes in a worker process (same batches, same result). `nested`: the fraction of scenes
    drawn from make_nested_scene (parts, objects, groups; ambiguity-aware loss on their clicks).
    `snapshots`: every save also keeps a copy, <out stem>_s<steps done>.pt, for choosing later.

    With `minutes`, the schedule runs on wall-clock time instead of steps: warmup is still
    `warmup` steps, the cosine follows elapsed/minutes, and training stops when time is up
    (at most `steps` steps). Use `steps` alone for a run that is reproducible to the step.
    """
    from tqdm import tqdm

    if not 0.0 <= nested <= 1.0:
        raise ValueError(f"nested is a fraction of scenes, 0..1; got {nested}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if sam is None:
        sam = build_sam(MICRO_CONFIG)
    if init is not None:
        state = torch.load(init, map_location="cpu", weights_only=True)
        sam.load_state_dict({k: v.float() for k, v in state.items()})
    sam.train()
    params = list(sam.named_parameters())
    if not train_encoder:  # the encoder stays as it is (eval mode, no gradients, not in the optimizer)
        sam.image_encoder.eval().requires_grad_(False)
        params = [(n, p) for n, p in params if not n.startswith("image_encoder.")]
    decay = [p for n, p in params if p.ndim >= 2 and "pos" not in n]
    no_decay = [p for n, p in params if not (p.ndim >= 2 and "pos" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=lr,
        betas=(0.9, 0.999),
    )

    def progress_at(s: int) -> float:
        if minutes is not None:
            return min(1.0, (time.perf_counter() - t0) / (60 * minutes))
        return (s - warmup) / max(1, steps - warmup)

    def lr_at(s: int) -> float:
        if s < warmup:
            return lr * (s + 1) / warmup
        t = progress_at(s)
        return lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    out = Path(out)
    log_path = out.with_suffix(".csv")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(range(steps), disable=not progress, mininterval=5)
    stream = BatchStream(seed, batch, sam.image_encoder.img_size, steps, prefetch, nested)
    with open(log_path, "w", newline="") as f:
        writer = None
        for s in bar:
            if minutes is not None and time.perf_counter() - t0 >= 60 * minutes:
                break
            cur_lr = lr_at(s)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            data = stream.get(s)
            loss, st = step_loss(sam, data, gen, objects, rounds, loss_size, train_encoder)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
            opt.step()
            row = {"step": s, "loss": loss.item(), "lr": cur_lr, **st, "elapsed_s": time.perf_counter() - t0}
            rows.append(row)
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            bar.set_postfix(
                loss=f"{row['loss']:.3f}", iou0=f"{st['iou_r0']:.3f}", iou_last=f"{st['iou_last']:.3f}"
            )
            if (s + 1) % save_every == 0:
                save_fp16(sam, out)
                if snapshots:
                    save_fp16(sam, out.with_name(f"{out.stem}_s{s + 1}{out.suffix}"))
    stream.close()
    save_fp16(sam, out)
    sam.eval()
    return rows


def reset_decoder(sam, seed: int = 0) -> None:
    """Give `sam` a freshly initialised prompt encoder and mask decoder (its image encoder stays).

    The starting point of training a decoder on top of a trained encoder, as the training notebook
    does: what the prompt side learns, seen from nothing.
    """
    torch.manual_seed(seed)
    fresh = build_sam(MICRO_CONFIG)
    sam.prompt_encoder.load_state_dict(fresh.prompt_encoder.state_dict())
    sam.mask_decoder.load_state_dict(fresh.mask_decoder.state_dict())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--out", type=Path, default=Path("runs/micro_sam.pt"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4, help="scenes per step")
    p.add_argument("--objects", type=int, default=4, help="objects prompted per scene")
    p.add_argument("--rounds", type=int, default=2, help="prompt rounds (1 + corrective points)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--minutes", type=float, default=None, help="time-boxed run (see train())")
    p.add_argument("--init", type=Path, default=None, help="fine-tune from this state dict")
    p.add_argument("--loss-size", type=int, default=128, help="side at which mask losses are taken")
    p.add_argument("--prefetch", action="store_true", help="make scenes ahead in a worker process")
    p.add_argument(
        "--freeze-encoder", action="store_true", help="train only the prompt encoder and mask decoder"
    )
    p.add_argument(
        "--nested",
        type=float,
        default=0.0,
        help="fraction of scenes with parts and groups (make_nested_scene), 0..1",
    )
    p.add_argument("--snapshots", action="store_true", help="keep a copy of the weights at every save")
    a = p.parse_args(argv)
    rows = train(
        a.steps,
        a.out,
        a.seed,
        a.batch,
        a.objects,
        a.rounds,
        a.lr,
        a.weight_decay,
        a.warmup,
        a.threads,
        a.save_every,
        a.init,
        minutes=a.minutes,
        loss_size=a.loss_size,
        prefetch=a.prefetch,
        train_encoder=not a.freeze_encoder,
        nested=a.nested,
        snapshots=a.snapshots,
    )
    print(f"done: {len(rows)} steps, last loss {rows[-1]['loss']:.4f}, weights at {a.out}")


def train_decoder(
    sam,
    scenes: int = 128,
    minutes: float = 2.0,
    steps: int = 10**6,
    seed: int = 0,
    batch: int = 4,
    objects: int = 4,
    rounds: int = 3,
    lr: float = 1e-3,
    warmup: int = 10,
    threads: int | None = None,
    loss_size: int | None = 128,
    progress: bool = True,
    focal_weight: float = 20.0,
    min_loss: bool = True,
) -> list[dict]:
    """Train `sam`'s prompt encoder and mask decoder in place, its image encoder fixed.

    The encoder runs once per scene, up front (as CachedPredictor does for an image); every step
    then costs only prompts, decoder and loss, so a few minutes on a CPU show the decoder learning.
    `scenes` training scenes are made from seeds >= TRAIN_SEED_START (never the held-out ones);
    training stops after `minutes` or `steps`, whichever comes first, on a constant learning rate
    after `warmup` steps; `min_loss` as in `step_loss`. Returns the log rows (step, loss, iou_r0,
    iou_last, iou_mse, elapsed_s).
    """
    from tqdm.auto import tqdm

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    size = sam.image_encoder.img_size
    data = make_batch(0, seed + 1, scenes, size, rng)
    sam.eval()
    with torch.no_grad():
        embs = torch.cat(
            [
                sam.image_encoder(torch.stack([sam.preprocess(img) for img, _ in data[i : i + 8]]))
                for i in tqdm(range(0, scenes, 8), desc="encoding scenes", disable=not progress)
            ]
        )
    sam.prompt_encoder.train()
    sam.mask_decoder.train()
    params = list(sam.prompt_encoder.parameters()) + list(sam.mask_decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rows: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=int(minutes * 60), unit="s", desc="training decoder", disable=not progress)
    for s in range(steps):
        elapsed = time.perf_counter() - t0
        if elapsed >= 60 * minutes:
            break
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (s + 1) / warmup)
        idx = torch.randint(scenes, (batch,), generator=gen)
        loss, st = step_loss(
            sam,
            [data[i] for i in idx],
            gen,
            objects,
            rounds,
            loss_size,
            train_encoder=False,
            emb=embs[idx],
            focal_weight=focal_weight,
            min_loss=min_loss,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        rows.append({"step": s, "loss": loss.item(), **st, "elapsed_s": time.perf_counter() - t0})
        bar.n = min(int(rows[-1]["elapsed_s"]), bar.total)
        bar.set_postfix(step=s, loss=f"{loss.item():.3f}", iou=f"{st['iou_r0']:.2f}", refresh=True)
    bar.close()
    sam.eval()
    return rows


if __name__ == "__main__":
    main()
