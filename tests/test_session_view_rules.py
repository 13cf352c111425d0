"""Session features a view relies on, in plain pytest: "everything" proposals (propose, proposals,
proposal_at, adopt: saved and undoable), what a click means (select, adopt, new object, point) and
that empty objects are not kept."""

from __future__ import annotations

import numpy as np
import pytest

from sam_widgets import CachedPredictor
from sam_widgets.session import EVENTS, Proposal, Session


@pytest.fixture
def session(tiny_sam, rgb_image):
    return Session([rgb_image, rgb_image[::-1].copy()], CachedPredictor(tiny_sam))


def everything(session):
    # Random weights: accept every mask, so there is something to adopt.
    return session.propose(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


def test_propose_makes_proposals_largest_first_as_one_undo_step(session, tiny_sam):
    runs = [0]
    tiny_sam.image_encoder.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    session.add_point(50, 40)
    events = []
    session.on_change(events.append)
    found = everything(session)
    assert found and session.proposals == found and runs[0] == 1  # the cached embedding is reused
    assert events == ["proposals", "history"] and "proposals" in EVENTS
    areas = [p.area for p in found]
    assert areas == sorted(areas, reverse=True)
    p = found[-1]
    assert p.mask.dtype == bool and p.mask.shape == (90, 120) and not p.mask.flags.writeable
    assert p.area == p.mask.sum() and 0 <= p.bbox[0] < p.bbox[2] <= 120
    session.add_point(20, 20, positive=False)  # other changes keep the proposals
    assert session.proposals == found
    session.undo()
    session.undo()
    assert session.proposals == ()
    session.redo()
    assert session.proposals == found
    session.next()
    assert session.proposals == ()  # per image
    session.previous()
    assert session.proposals == found


def test_proposal_at_and_adopt(session):
    found = everything(session)
    smallest = found[-1]
    ys, xs = np.nonzero(smallest.mask)
    i = session.proposal_at(xs[0] + 0.5, ys[0] + 0.5)
    assert found[i].area <= smallest.area and found[i].mask[ys[0], xs[0]]
    obj = session.adopt(i, label="thing")
    assert obj.label == "thing" and obj.points == () and np.array_equal(obj.mask, found[i].mask)
    session.undo()
    assert session.objects == () and session.proposals == found
    with pytest.raises(IndexError, match=f"no proposal {len(found)}"):
        session.adopt(len(found))
    session.next()
    with pytest.raises(IndexError, match="run propose"):
        session.adopt(0)
    with pytest.raises(ValueError, match="outside"):
        session.proposal_at(500, 5)


def test_clear_proposals_is_undoable(session):
    found = everything(session)
    assert session.clear_proposals() and session.proposals == ()
    assert not session.clear_proposals()
    session.undo()
    assert session.proposals == found


def test_propose_needs_a_sam_predictor_and_known_settings(rgb_image, session):
    class Bare:
        def set_image(self, image, image_format="RGB"):
            pass

        def predict(self, **kwargs):
            raise AssertionError

    with pytest.raises(TypeError, match="propose needs a predictor"):
        Session(rgb_image, Bare()).propose()
    with pytest.raises(TypeError, match="no_such_setting"):
        session.propose(no_such_setting=1)
    assert session.proposals == () and not session.can_undo


def test_proposals_are_saved_and_loaded(session, tiny_sam, rgb_image, tmp_path):
    everything(session)
    session.adopt(0)
    found = session.proposals  # the adopted one is no longer offered
    session.save(tmp_path)
    other = Session([rgb_image, rgb_image[::-1].copy()], CachedPredictor(tiny_sam))
    other.load(tmp_path)
    assert len(other.proposals) == len(found)
    for a, b in zip(other.proposals, found, strict=True):
        assert np.array_equal(a.mask, b.mask) and a.score == pytest.approx(b.score)
        assert a.stability == pytest.approx(b.stability) and isinstance(a, Proposal)
    assert other.labels == ["object 1"]
    other.undo()  # loading was one undo step
    assert other.proposals == () and other.objects == ()


def test_a_click_selects_adopts_starts_a_new_object_or_adds_a_point(tiny_sam):
    image = np.zeros((200, 200, 3), np.uint8)
    s = Session(image, CachedPredictor(tiny_sam))
    a = np.zeros((200, 200), bool)
    a[20:60, 20:60] = True
    s.add_mask(a, label="a")
    s.add_object("b")
    assert s.click(30, 30) == "point"  # b is new and empty: the click is its first point
    assert s.active.label == "b" and s.active.points == ((30.0, 30.0),)
    s.undo()
    assert s.drop_empty(keep="a") == ["b"] and s.labels == ["a"]  # what a view does on moving on
    assert s.drop_empty() == []
    b = np.zeros((200, 200), bool)
    b[120:180, 120:180] = True
    s.add_mask(b, label="b")
    assert s.object_at(30, 30).label == "a" and s.object_at(150, 150).label == "b"
    assert s.object_at(100, 100) is None
    assert s.click(30, 30) == "select" and s.active.label == "a"
    assert s.click(30, 30, new_point=True) == "point" and s.active.points == ((30.0, 30.0),)
    s.undo()
    assert s.click(45, 45) == "point"  # inside the active object: refines it
    s.undo()
    # Near the active object's mask (within 25% of its size): a point on it; far: a new object.
    assert s.click(65, 40) == "point"
    s.undo()
    assert s.click(190, 5) == "new" and s.active.label == "object 3" and s.labels[-1] == "object 3"
    s.undo()  # one undo step takes the new object away
    assert s.labels == ["a", "b"] and s.active.label == "a"
    assert s.click(190, 5, positive=False) == "point"  # negative clicks always refine


def test_drop_empty_keeps_objects_with_prompts_or_masks(session):
    session.add_object("empty")
    session.add_point(50, 40)  # goes to "empty": now it has a prompt
    session.add_object()
    session.add_object("named")
    events = []
    session.on_change(events.append)
    assert session.drop_empty(keep="named") == ["object 2"]
    assert session.labels == ["empty", "named"] and session.active.label == "named"
    assert events == ["objects"]
    assert session.drop_empty() == ["named"] and session.active is None


def test_an_adopted_proposal_is_hidden_and_never_adopted_twice(session):
    found = everything(session)
    target = found[-1]
    ys, xs = np.nonzero(target.mask)
    assert session.click(xs[0] + 0.5, ys[0] + 0.5) == "adopt"
    assert len(session.proposals) == len(found) - 1
    assert not any(p.mask is target.mask for p in session.proposals)
    session.undo()
    assert session.proposals == found  # undo offers it again
    session.adopt(len(found) - 1)
    # Everything again: a region that is already an object is not offered again.
    again = everything(session)
    assert not any(np.array_equal(p.mask, target.mask) for p in again)


def test_a_click_on_a_proposal_over_the_active_object_refines_it(session):
    obj = session.add_point(50, 40)
    found = everything(session)
    over = [i for i, p in enumerate(found) if (p.mask & obj.mask).any() and (p.mask & ~obj.mask).any()]
    assert over, "no proposal overlaps the object (random weights)"
    p = found[over[-1]]
    ys, xs = np.nonzero(p.mask & ~obj.mask)
    # Near the object (not far) and on no other object: a point on the active object, not an adoption.
    near = [(x, y) for x, y in zip(xs, ys, strict=True) if not session_far(obj, x, y)]
    x, y = near[0]
    what = session.click(x + 0.5, y + 0.5)
    assert what == "point" and len(session.active.points) == 2 and session.labels == ["object 1"]


def session_far(obj, x, y):
    from sam_widgets.session import _far

    return _far(obj, x + 0.5, y + 0.5)


def test_propose_defaults_per_model(tiny_sam):
    from sam_widgets.record import ModelRecord, attach, record_of
    from sam_widgets.session import MICRO_PROPOSE_DEFAULTS, PROPOSE_DEFAULTS, propose_defaults

    assert PROPOSE_DEFAULTS["pred_iou_thresh"] == 0.88 and PROPOSE_DEFAULTS["stability_score_thresh"] == 0.95
    predictor = CachedPredictor(tiny_sam)
    assert propose_defaults(predictor) == PROPOSE_DEFAULTS
    import dataclasses

    attach(tiny_sam, dataclasses.replace(record_of(tiny_sam), name="micro"))
    assert propose_defaults(predictor) == MICRO_PROPOSE_DEFAULTS
    assert isinstance(record_of(tiny_sam), ModelRecord)


def test_everything_finds_the_quickstart_objects_with_micro_at_its_defaults():
    """Done-when of issue 16: the bundled model, its default thresholds, the quickstart's scenes."""
    import torch

    from sam_widgets import load_sam
    from sam_widgets.micro.data import make_scene

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scenes = [make_scene(3), make_scene(7)]
        s = Session([image for image, _ in scenes], CachedPredictor(load_sam("micro")))
        for index, (_, truth) in enumerate(scenes):
            s.go(index)
            found = s.propose()
            assert found, f"no proposal on make_scene({(3, 7)[index]}) with micro's defaults"
            largest = truth[int(np.argmax(truth.reshape(len(truth), -1).sum(1)))]
            best = max(
                np.logical_and(p.mask, largest).sum() / np.logical_or(p.mask, largest).sum() for p in found
            )
            assert best >= 0.9, f"the largest object is found at IoU {best:.2f} only"
    finally:
        torch.set_num_threads(threads)
