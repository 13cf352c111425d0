"""Segment in this view (Session.set_region): the region is encoded as an image of its own,
prompts are shifted into it, masks land in the whole image's pixels."""

from __future__ import annotations

import numpy as np
import pytest

from sam_widgets import CachedPredictor
from sam_widgets.session import Session

from .test_session import Spy


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def image():
    img = np.random.default_rng(5).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    img[100:130, 150:190] = (240, 20, 20)
    return img


def test_prompts_are_shifted_into_the_region_and_masks_land_in_place(image, tiny_sam):
    spy = Spy(CachedPredictor(tiny_sam))
    s = Session(image, spy)
    assert s.set_region((120.4, 80.2, 220, 160.7)) == (120, 80, 220, 161)
    assert s.region == (120, 80, 220, 161)
    obj = s.add_point(170, 115)
    encoded = spy.inner.original_size
    assert tuple(encoded) == (81, 100)  # SAM saw the region as its image
    call = spy.predict_calls[-1]
    assert np.allclose(call["point_coords"], [[50, 35]])  # (170, 115) - (120, 80)
    assert obj.candidates.shape == (3, 200, 300)  # masks in the whole image's pixels
    outside = np.ones((200, 300), bool)
    outside[80:161, 120:220] = False
    assert not obj.candidates[:, outside].any()
    # The same prompt on the region alone gives the same mask, put back at the region's place.
    alone = CachedPredictor(tiny_sam)
    alone.set_image(np.ascontiguousarray(image[80:161, 120:220]))
    masks, _, _ = alone.predict(point_coords=np.array([[50.0, 35.0]]), point_labels=np.array([1]))
    assert np.array_equal(obj.candidates[:, 80:161, 120:220], masks)
    s.set_box(130, 90, 200, 150)
    assert np.allclose(spy.predict_calls[-1]["box"], [10, 10, 80, 70])


def test_a_prompt_outside_the_region_is_refused_and_the_whole_image_comes_back(image, tiny_sam):
    spy = Spy(CachedPredictor(tiny_sam))
    s = Session(image, spy)
    s.add_point(20, 20)  # on the whole image
    s.set_region((120, 80, 220, 160))
    before = s.active
    with pytest.raises(ValueError, match="outside the region"):
        s.add_point(150, 100)  # the active object's first point lies outside the region
    assert s.active is before
    s.add_object()
    s.add_point(150, 100)  # a new object inside it is fine
    encodes = spy.set_image_calls
    s.set_region(None)
    s.add_point(40, 40)
    assert s.region is None and tuple(spy.inner.original_size) == (200, 300)
    assert spy.inner.stats.last_was_hit and spy.set_image_calls == encodes + 1  # cached: no encoder


@pytest.mark.parametrize(
    "region, words", [((0, 0, 10, 300), "smaller than 16"), ((1, 2, "x", 4), "x0, y0, x1, y1")]
)
def test_bad_regions_say_what_is_wrong(image, tiny_sam, region, words):
    s = Session(image, CachedPredictor(tiny_sam))
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        s.set_region(region)
    assert s.region is None
    assert s.set_region((0, 0, 300, 200)) is None  # the whole image: no region


def test_a_click_in_a_region_makes_no_full_size_mask_and_views_come_from_its_logits(
    image, tiny_sam, monkeypatch
):
    import sam_widgets.session as session_module
    from sam_widgets.session import _LowRes, _sample

    made = []
    full = session_module.masks_from_low_res
    monkeypatch.setattr(session_module, "masks_from_low_res", lambda *a: made.append(1) or full(*a))
    s = Session(image, CachedPredictor(tiny_sam))
    s.set_region((120, 80, 220, 161))
    obj = s.add_point(170, 115)
    held = obj._candidates
    assert isinstance(held, _LowRes) and made == []  # a click: logits only, in the region's frame
    assert held.geometry.offset == (120, 80) and held.geometry.image_size == (200, 300)
    assert held.geometry.full_size == (200, 300) and held.geometry.original_size == (81, 100)
    # The view of the whole image, and a zoomed one over the region's edge, from the logits...
    fitted = s.mask_view(obj, (0, 0, 300, 200), (100, 150))
    edge = s.mask_view(obj, (100, 60, 160, 100), (40, 60))
    box = obj.mask_bbox
    assert made == []
    # ... agree with the full-size mask (made now: in the whole image's pixels, empty outside).
    mask = obj.mask
    assert mask.shape == (200, 300) and made == [1]
    assert (
        not mask[:80].any() and not mask[:, :120].any() and not mask[161:].any() and not mask[:, 220:].any()
    )
    for view, region, size in [(fitted, (0, 0, 300, 200), (100, 150)), (edge, (100, 60, 160, 100), (40, 60))]:
        truth = _sample(mask, region, size)
        assert (view != truth).mean() < 0.03  # the same but for pixels at the mask's edge
    assert not edge[:20].any() and not edge[:, :20].any()  # above and left of the region: nothing
    ys, xs = np.nonzero(mask)
    if len(ys):
        assert box[0] <= xs.min() and box[1] <= ys.min() and xs.max() < box[2] and ys.max() < box[3]
        assert 120 <= box[0] and 80 <= box[1] and box[2] <= 220 and box[3] <= 161


def test_a_regions_logits_are_never_a_prior_for_the_whole_image(image, tiny_sam):
    spy = Spy(CachedPredictor(tiny_sam))
    s = Session(image, spy, refine_with_logits=True)
    s.add_point(170, 115)
    s.add_point(175, 118, True)
    assert spy.predict_calls[-1]["mask_input"] is not None  # on the whole image: refined with the logits
    s.clear()
    s.set_region((120, 80, 220, 161))
    obj = s.add_point(170, 115)
    assert obj.logits is None  # the region's frame: not kept as a prior
    s.set_region(None)
    s.add_point(175, 118, True)  # the same object, now on the whole image
    assert spy.predict_calls[-1]["mask_input"] is None
    assert s.active.label == obj.label and len(s.active.points) == 2


def test_placed_geometry_puts_masks_views_and_boxes_in_the_whole_images_pixels(tiny_sam):
    from sam_widgets.predictor import box_from_low_res, masks_from_low_res, view_from_low_res

    p = CachedPredictor(tiny_sam)
    part = np.zeros((64, 96, 3), np.uint8)
    part[20:40, 30:60] = 255
    p.set_image(part)
    _, scores, logits = p.predict(
        point_coords=np.array([[45.0, 30.0]]), point_labels=np.array([1]), masks=False
    )
    here = p.low_res_geometry()
    placed = here.placed((50, 30), (200, 300))
    alone = masks_from_low_res(logits, here)
    whole = masks_from_low_res(logits, placed)
    assert whole.shape == (len(alone), 200, 300)
    assert np.array_equal(whole[:, 30:94, 50:146], alone) and whole.sum() == alone.sum()
    for i in range(len(logits)):
        view = view_from_low_res(logits[i], placed, (50, 30, 146, 94), (64, 96))
        assert np.array_equal(view, view_from_low_res(logits[i], here, (0, 0, 96, 64), (64, 96)))
        around = view_from_low_res(logits[i], placed, (0, 0, 300, 200), (200, 300))
        assert not around[:30].any() and not around[:, :50].any() and not around[94:].any()
        b, c = box_from_low_res(logits[i], placed), box_from_low_res(logits[i], here)
        assert (b is None and c is None) or b == (c[0] + 50, c[1] + 30, c[2] + 50, c[3] + 30)
    with pytest.raises(ValueError, match="does not fit"):
        here.placed((250, 30), (200, 300))
