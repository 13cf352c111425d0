"""Measure the micro SAM on held-out scenes through SamPredictor (the real inference path).

    python -m sam_widgets.micro.evaluate --scenes 200 --out runs/micro_eval.json

Per object (visible area >= --min-area pixels) of each held-out scene:
  1 click   positive point at the mask pixel farthest from its boundary (distance transform);
            multimask output, the mask with the highest predicted IoU is kept;
  3 clicks  two corrective clicks after that, each at the farthest-from-boundary pixel of the
            largest connected error region (positive in a missed region, negative in a false
            positive one), all clicks plus the previous low-res logits as mask prompt, one mask;
  box       the tight bounding box, one mask.
Also Pearson r between predicted and true IoU over every mask returned, and the median time of
set_image (encoder ms) and of one 1-click predict (click ms) on this CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from sam_widgets.micro.data import heldout_set


def center_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of `mask` farthest from its boundary (image edges count as one)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return int(x), int(y)


def corrective_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], int] | None:
    """The next click: (x, y) and label (1 positive, 0 negative), or None when pred == gt."""
    best = None
    for region, label in ((gt & ~pred, 1), (pred & ~gt, 0)):
        lab, n = ndimage.label(region)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (sizes[k], lab == k + 1, label)
    if best is None:
        return None
    return center_point(best[1]), best[2]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def evaluate(sam, scenes: int = 200, min_area: int = 100, threads: int = 2) -> dict:
    """Run the protocol above on `scenes` held-out scenes; returns the metrics as a dict."""
    import torch
    from segment_anything import SamPredictor

    torch.set_num_threads(threads)
    predictor = SamPredictor(sam)
    r1, r2, r3, rbox, pred_iou, true_iou, enc_ms, click_ms = [], [], [], [], [], [], [], []
    with torch.inference_mode():
        for image, masks in heldout_set(scenes):
            t = time.perf_counter()
            predictor.set_image(image)
            enc_ms.append((time.perf_counter() - t) * 1e3)
            for gt in masks:
                if gt.sum() < min_area:
                    continue
                # 1 click, multimask, best predicted score
                pts, lbl = [center_point(gt)], [1]
                t = time.perf_counter()
                m, s, low = predictor.predict(np.array(pts), np.array(lbl), multimask_output=True)
                click_ms.append((time.perf_counter() - t) * 1e3)
                pred_iou += s.tolist()
                true_iou += [iou(mm, gt) for mm in m]
                k = int(np.argmax(s))
                pred, logits = m[k], low[k : k + 1]
                r1.append(iou(pred, gt))
                # 2 corrective clicks
                for out in (r2, r3):
                    nxt = corrective_click(pred, gt)
                    if nxt is not None:
                        pts.append(nxt[0])
                        lbl.append(nxt[1])
                        m, s, logits = predictor.predict(
                            np.array(pts), np.array(lbl), mask_input=logits, multimask_output=False
                        )
                        pred = m[0]
                        pred_iou.append(float(s[0]))
                        true_iou.append(iou(pred, gt))
                    out.append(iou(pred, gt))
                # tight box
                ys, xs = np.nonzero(gt)
                box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
                m, s, _ = predictor.predict(box=box, multimask_output=False)
                pred_iou.append(float(s[0]))
                true_iou.append(iou(m[0], gt))
                rbox.append(true_iou[-1])
    return {
        "scenes": scenes,
        "objects": len(r1),
        "min_area_px": min_area,
        "miou_1_click": float(np.mean(r1)),
        "miou_2_clicks": float(np.mean(r2)),
        "miou_3_clicks": float(np.mean(r3)),
        "miou_box": float(np.mean(rbox)),
        "pearson_r_pred_vs_true_iou": float(np.corrcoef(pred_iou, true_iou)[0, 1]),
        "encoder_ms_median": float(np.median(enc_ms)),
        "click_ms_median": float(np.median(click_ms)),
        "threads": threads,
    }


def format_table(res: dict) -> str:
    rows = [
        ("held-out objects", f"{res['objects']} in {res['scenes']} scenes"),
        ("mIoU, 1 click", f"{res['miou_1_click']:.3f}"),
        ("mIoU, 2 clicks", f"{res['miou_2_clicks']:.3f}"),
        ("mIoU, 3 clicks", f"{res['miou_3_clicks']:.3f}"),
        ("mIoU, box", f"{res['miou_box']:.3f}"),
        ("Pearson r, predicted vs true IoU", f"{res['pearson_r_pred_vs_true_iou']:.3f}"),
        ("encoder (set_image), median ms", f"{res['encoder_ms_median']:.1f}"),
        ("one click (predict), median ms", f"{res['click_ms_median']:.1f}"),
    ]
    w = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="state dict (default: shipped)")
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--min-area", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/micro_eval.json"))
    a = p.parse_args(argv)
    import torch

    from sam_widgets.micro import build_micro

    if a.weights is None:
        sam = build_micro()
    else:
        sam = build_micro(weights=False)
        state = torch.load(a.weights, map_location="cpu", weights_only=True)
        sam.load_state_dict({k: v.float() for k, v in state.items()})
    res = evaluate(sam.eval(), a.scenes, a.min_area, a.threads)
    res["weights"] = str(a.weights or "shipped")
    print(format_table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
