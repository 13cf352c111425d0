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
