"""Masks made when asked for: a click keeps SAM's low-res logits, views get the region they show.

With a CachedPredictor the session never upscales masks in a click: an object holds its low-res
logits; ``mask``/``candidates``/``masks``/save/export make the full-size masks (once, then kept)
equal bit for bit to those the predictor returns; ``mask_view`` gives a region at a view's size
from the logits. The undo history holds the logits, counted once each in ``history_bytes``.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import weakref

import numpy as np
import pytest

from sam_widgets import CachedPredictor, load_sam
from sam_widgets import fast as _fast
from sam_widgets import predictor as _predictor
from sam_widgets.session import Session, _LowRes


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """conftest's ``one_torch_thread`` for every test here."""


@pytest.fixture(scope="module")
def micro_models():
    stock = load_sam("micro", device="cpu", precision="fp32")
    return {"stock": stock, "fast": _fast.enable_fast(copy.deepcopy(stock))}


@pytest.fixture
def upscales(monkeypatch):
    """Counts full-size masks made (``masks_from_low_res``) and views (``view_from_low_res``)."""
    made = {"full": 0, "view": 0}
    full, view = _predictor.masks_from_low_res, _predictor.view_from_low_res

    def count_full(*a, **k):
        made["full"] += 1
        return full(*a, **k)

    def count_view(*a, **k):
        made["view"] += 1
        return view(*a, **k)

    import sam_widgets.session as session_module

    monkeypatch.setattr(session_module, "masks_from_low_res", count_full)
    monkeypatch.setattr(session_module, "view_from_low_res", count_view)
    return made


def big_image() -> np.ndarray:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, size=(300, 400, 3), dtype=np.uint8)
    img[80:220, 100:260] = (240, 40, 40)
    return img


@pytest.mark.parametrize("kind", ["stock", "fast"])
def test_full_size_masks_made_later_equal_the_predictors(micro_models, kind, upscales):
    predictor = CachedPredictor(micro_models[kind])
    s = Session(big_image(), predictor)
    clicks = [(180, 150, True), (120, 100, True), (30, 30, False)]
    for x, y, positive in clicks:
        s.add_point(x, y, positive)
    box = s.set_box(90, 70, 270, 230)
    assert upscales == {"full": 0, "view": 0}  # four clicks, no mask made
    assert isinstance(box._candidates, _LowRes) and box.logits is not None
    predictor.set_image(s.image)
    masks, scores, logits = predictor.predict(
        point_coords=np.array([c[:2] for c in clicks], float),
        point_labels=np.array([c[2] for c in clicks], int),
        box=np.array([90, 70, 270, 230], float),
        multimask_output=False,
    )
    assert np.array_equal(box.logits, logits) and np.array_equal(box.scores, scores)
    assert box.mask.shape == (300, 400) and not box.mask.flags.writeable
    assert np.array_equal(box.mask, masks[0])  # bit for bit: stock's resize chain
    assert upscales["full"] == 1 and box.mask is box.mask  # made once, then kept
    assert np.array_equal(box.candidates, masks) and box.candidates[0] is not None
    assert s.masks["object 1"] is box.mask

    s.clear()
    one = s.add_point(180, 150)
    predictor.set_image(s.image)
    masks, _, _ = predictor.predict(point_coords=np.array([[180.0, 150.0]]), point_labels=np.array([1]))
    assert one.candidates.shape == (3, 300, 400) and np.array_equal(one.candidates, masks)
    assert np.array_equal(one.mask, masks[one.chosen])


def test_a_view_reads_the_logits_under_its_region_at_its_size(micro_models, upscales):
    s = Session(big_image(), CachedPredictor(micro_models["fast"]))
    obj = s.add_point(180, 150)
    whole = s.mask_view("object 1", (0, 0, 400, 300), (150, 200))  # fitted, half size
    assert whole.shape == (150, 200) and upscales == {"full": 0, "view": 1}
    assert s.mask_view(obj, (0, 0, 400, 300), (150, 200)) is whole  # kept: a redraw costs nothing
    # A zoomed view samples the same points a larger fitted view would: the same pixels.
    large = s.mask_view("object 1", (0, 0, 400, 300), (200, 260))
    zoomed = s.mask_view("object 1", (200, 150, 400, 300), (100, 130))
    assert np.array_equal(zoomed, large[100:, 130:])
    assert upscales["full"] == 0
    # ...and it agrees with the full-size mask but for pixels at the mask's edge.
    full = obj.mask
    at_size = s.mask_view("object 1", (0, 0, 400, 300), (300, 400))
    assert np.mean(at_size != full) < 0.01
    # once the full-size mask exists, views sample it
    assert np.array_equal(s.mask_view("object 1", (0, 0, 400, 300), (300, 400)), full)
    assert s.mask_view("object 1", (10, 20, 30, 40), (20, 20)).shape == (20, 20)
    with pytest.raises(ValueError, match="both region and size"):
        Session._materialize(obj, (0, 0, 10, 10))


def test_an_image_no_larger_than_the_view_is_drawn_exactly(micro_models):
    s = Session(big_image()[:100, :120].copy(), CachedPredictor(micro_models["fast"]))
    obj = s.add_point(60, 50)
    assert np.array_equal(s.mask_view(obj, (0, 0, 120, 100), (100, 120)), obj.mask)


def test_clicks_on_objects_select_them_from_their_logits(micro_models, upscales):
    s = Session(big_image(), CachedPredictor(micro_models["fast"]))
    first = s.add_point(180, 150)
    box = first.mask_bbox
    assert box is not None and upscales["full"] == 0
    ys, xs = np.nonzero(first.mask)
    assert box[0] <= xs.min() and box[1] <= ys.min() and box[2] > xs.max() and box[3] > ys.max()
    deep = [(x, y) for x, y in zip(xs, ys, strict=True) if first.mask[y - 3 : y + 4, x - 3 : x + 4].all()]
    inside = deep[0]
    s2 = Session(big_image(), CachedPredictor(micro_models["fast"]))
    s2.add_point(180, 150)
    s2.add_object()
    s2.add_point(10, 290)
    made = upscales["full"]
    shown = s2.mask_view("object 1", (0, 0, 400, 300), (150, 200))
    assert s2.object_at(*inside).label == "object 1" and upscales["full"] == made
    assert s2.mask_view("object 1", (0, 0, 400, 300), (150, 200)) is shown  # still kept
    assert s2.click(*inside) == "select" and s2.active.label == "object 1"


def test_undo_restores_low_res_objects_without_upscaling_and_counts_logits_once(micro_models, upscales):
    s = Session(big_image(), CachedPredictor(micro_models["fast"]))
    first = s.add_point(180, 150)
    mask = first.mask  # made
    for x in (190, 200, 210, 220):
        s.add_point(x, 150)
    second = s.add_object()
    s.add_point(20, 20)
    made = upscales["full"]
    held = [p for st in s._slots[0].undo for _, p in st.objects if p is not None]
    assert len(held) == 6 and len({id(p) for p in held}) == 5  # two steps share object 1's last
    own = sum(st.nbytes for st in s._slots[0].undo)
    assert s.history_bytes == own + sum({id(p): p.nbytes for p in held}.values())  # each once
    while s.undo():
        pass
    assert upscales["full"] == made and s.objects == ()
    s.redo()
    assert s.active == first and s.active.mask is mask  # the very array: `first` keeps it alive
    while s.redo():
        pass
    assert [o.label for o in s.objects] == ["object 1", "object 2"] and s.active.points == ((20.0, 20.0),)
    assert upscales["full"] == made and second.label == "object 2"


def test_history_drops_full_size_masks_and_keeps_to_its_byte_cap(micro_models):
    s = Session(big_image(), CachedPredictor(micro_models["fast"]), max_history_bytes=200_000)
    obj = s.add_point(180, 150)
    obj.mask  # noqa: B018 - made: 3 x 120 KB held by its _LowRes
    gone = weakref.ref(obj._candidates)
    del obj
    s.add_point(200, 160)  # replaces the object: the history keeps its logits only
    gc.collect()
    assert gone() is None
    for i in range(30):
        s.add_point(150 + i, 140)
    assert s.history_bytes <= 200_000 and 0 < len(s._slots[0].undo) < 31  # micro: 16 KB a step
    # the count matches what the steps hold, each pack once
    packs = {id(p): p for slot in s._slots for st in slot.undo + slot.redo for _, p in st.objects if p}
    own = sum(st.nbytes for slot in s._slots for st in slot.undo + slot.redo)
    assert s.history_bytes == own + sum(p.nbytes for p in packs.values())
    s.clear()
    s._clear_history()
    assert s.history_bytes == 0 and s._held == {}


def test_save_load_and_export_of_low_res_objects(micro_models, tmp_path, upscales):
    images = [big_image(), big_image()[::-1].copy()]
    s = Session(images, CachedPredictor(micro_models["fast"]))
    s.add_point(180, 150)
    s.go(1)
    s.set_box(90, 70, 270, 230)
    s.save(tmp_path / "work")
    s.export(tmp_path / "coco", "coco")
    restored = Session.from_folder(tmp_path / "work", images, CachedPredictor(micro_models["fast"]))
    for i in range(2):
        assert restored.objects_on(i) == s.objects_on(i)
        for a, b in zip(restored.objects_on(i), s.objects_on(i), strict=True):
            assert np.array_equal(a.candidates, b.candidates) and np.array_equal(a.mask, b.mask)
    copied = dataclasses.replace(s.objects_on(1)[0], label="copy")  # copying makes no mask
    assert copied._candidates is s.objects_on(1)[0]._candidates


def test_predict_without_masks_gives_the_scores_and_logits_alone(micro_models):
    predictor = CachedPredictor(micro_models["fast"])
    predictor.set_image(big_image())
    point = dict(point_coords=np.array([[180.0, 150.0]]), point_labels=np.array([1]))
    masks, scores, logits = predictor.predict(**point)
    none, scores2, logits2 = predictor.predict(**point, masks=False)
    assert none.shape == (3, 0, 0) and np.array_equal(scores, scores2) and np.array_equal(logits, logits2)
    geometry = predictor.low_res_geometry()
    assert geometry.original_size == (300, 400) and geometry.threshold == 0.0
    assert np.array_equal(_predictor.masks_from_low_res(logits, geometry), masks)
    predictor.set_image(big_image()[:200].copy())  # made from the logits, whatever image is set now
    assert np.array_equal(_predictor.masks_from_low_res(logits, geometry), masks)
    box = _predictor.box_from_low_res(logits[0], geometry)
    ys, xs = np.nonzero(masks[0])
    assert box[0] <= xs.min() and box[1] <= ys.min() and box[2] > xs.max() and box[3] > ys.max()


def test_whether_a_proposal_touches_the_active_object_makes_no_full_size_mask(micro_models, upscales):
    from sam_widgets.session import Proposal, _touches

    s = Session(big_image(), CachedPredictor(micro_models["fast"]))
    obj = s.add_point(180, 150)
    x0, y0, x1, y1 = obj.mask_bbox
    over = np.zeros((300, 400), bool)
    over[y0 : y0 + 20, x0 : x1 + 30] = True  # along the top of the red square, and past it
    apart = np.zeros((300, 400), bool)
    apart[5:40, 5:40] = True  # a corner the object is nowhere near
    beside = np.zeros((300, 400), bool)
    beside[y0:y1, min(x1 + 2, 399) :] = True  # next to its box, not inside it
    masks = {"over": over, "apart": apart, "beside": beside}
    found = {name: _touches(Proposal.of(m, 0.9, 0.9), obj) for name, m in masks.items()}
    assert upscales["full"] == 0  # decided from the logits under the overlap, not a full-size mask
    full = obj.mask  # the truth, now made
    assert found == {"over": bool((over & full).any()), "apart": False, "beside": bool((beside & full).any())}
    assert found["over"] and not found["beside"]
    assert not _touches(Proposal.of(over, 0.9, 0.9), None)
