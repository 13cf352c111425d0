import numpy as np
import pytest

from sam_widgets.viz import PALETTE, mask_iou, overlay_masks


def test_overlay_blends_inside_and_outlines_the_border():
    img = np.zeros((10, 10, 3), np.uint8)
    m = np.zeros((10, 10), bool)
    m[2:8, 2:8] = True
    out = overlay_masks(img, m, alpha=0.5)
    assert (out[0, 0] == 0).all()  # outside untouched
    assert (out[2, 2] == PALETTE[0]).all()  # border: opaque colour
    assert np.array_equal(out[4, 4], np.round(PALETTE[0] * 0.5).astype(np.uint8))  # inside: blended
    assert (img == 0).all()  # input not changed


def test_overlay_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="do not fit"):
        overlay_masks(np.zeros((10, 10, 3), np.uint8), np.zeros((9, 10), bool))
    with pytest.raises(ValueError, match="alpha"):
        overlay_masks(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), bool), alpha=2)


def test_mask_iou_against_hand_made_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(a, a) == 1.0 and mask_iou(a, ~a) == 0.0
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(ValueError, match="differ"):
        mask_iou(a, np.zeros((3, 4), bool))


def test_proposal_colors_skip_the_objects_colors_while_any_is_left():
    from sam_widgets.viz import PALETTE, proposal_color

    first = tuple(int(v) for v in PALETTE[0])
    assert proposal_color(0) == first
    assert proposal_color(0, [first]) == tuple(int(v) for v in PALETTE[1])
    assert first not in {proposal_color(i, [first]) for i in range(len(PALETTE) - 1)}
    assert proposal_color(len(PALETTE) - 1, [first]) == first  # taken colours come last
    everyone = [tuple(int(v) for v in c) for c in PALETTE]
    assert proposal_color(3, everyone) == everyone[3]  # all taken: the palette, cycled
    # one colour free: the regions still differ from each other, not all drawn in that one
    nine = everyone[:-1]
    assert len({proposal_color(i, nine) for i in range(3)}) == 3 and proposal_color(0, nine) == everyone[-1]
