"""Re-pick the held-out objects that tests/test_micro.py asserts on, after micro's weights change.

    python scripts/micro_test_cases.py [weights.pt]      (default: the shipped micro_sam.pt)

The rule (stated in tests/test_micro.py): candidates by geometry are the objects of heldout_set(8)
with a visible area of at least 900 px and at least half of their bounding box; of those, the
click cases are the ones the weights segment with IoU >= 0.87 from one click at the object's
center (multimask, highest score kept), the box cases those with IoU >= 0.87 from the tight box.
The margin over the tests' 0.85 keeps the tests from sitting on a knife edge. It also prints, for
the negative-click case, how much of the object behind the kept one a box takes and how much a
negative click removes. Prints the lists to paste into the test.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from segment_anything import SamPredictor

from sam_widgets.checkpoints import load_state_dict
from sam_widgets.micro import WEIGHTS_PATH, build_micro
from sam_widgets.micro.data import heldout_set
from sam_widgets.micro.evaluate import center_point, iou

PICK = 0.87


def main(weights: str) -> None:
    torch.set_num_threads(1)
    sam = build_micro(weights=False)
    sam.load_state_dict({k: v.float() for k, v in load_state_dict(weights).items()})
    p = SamPredictor(sam.eval())
    scenes = heldout_set(8)
    clicks, boxes = [], []
    for i, (image, masks) in enumerate(scenes):
        p.set_image(image)
        for j, gt in enumerate(masks):
            ys, xs = np.nonzero(gt)
            area = int(gt.sum())
            fill = area / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
            if area < 900 or fill < 0.5:
                continue
            m, s, _ = p.predict(np.array([center_point(gt)]), np.array([1]))
            tight = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
            b, _, _ = p.predict(box=tight, multimask_output=False)
            ci, bi = iou(m[int(np.argmax(s))], gt), iou(b[0], gt)
            print(f"scene {i} object {j}: {area} px, fill {fill:.2f}, click IoU {ci:.2f}, box IoU {bi:.2f}")
            if ci >= PICK:
                clicks.append((i, j))
            if bi >= PICK:
                boxes.append((i, j))
    print(f"CLICK_CASES = {clicks}")
    print(f"BOX_CASES = {boxes}")
    for scene, keep, drop in ((5, 1, 2), (5, 2, 1), (3, 1, 0), (3, 0, 1)):
        image, masks = scenes[scene]
        if max(keep, drop) >= len(masks):
            continue
        p.set_image(image)
        both = masks[keep] | masks[drop]
        ys, xs = np.nonzero(both)
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        before, _, _ = p.predict(box=box, multimask_output=False)
        d, k = masks[drop], masks[keep]
        after, _, _ = p.predict(np.array([center_point(d)]), np.array([0]), box=box, multimask_output=False)
        removed_before = 1 - (before[0] & d).sum() / d.sum()
        removed_after = 1 - (after[0] & d).sum() / d.sum()
        print(
            f"NEG_CASE ({scene}, {keep}, {drop}): removed by the box alone {removed_before:.2f}, after "
            f"the negative click {removed_after:.2f}; kept object kept {(after[0] & k).sum() / k.sum():.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(WEIGHTS_PATH))
