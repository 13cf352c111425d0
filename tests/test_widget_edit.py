"""The widget's editing tools without a browser: brush and eraser, candidate thumbnails, the class
field, the hover preview (and that it never delays a click), segment in this view."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from sam_widgets import CachedPredictor
from sam_widgets import widget as widget_module
from sam_widgets.background import Background
from sam_widgets.session import CandidateError
from sam_widgets.widget import SegmentWidget

from .test_widget import Recorder, decode, key, mouse, send


@pytest.fixture
def rec(monkeypatch):
    return Recorder(monkeypatch)


@pytest.fixture
def predictor(tiny_sam):
    return CachedPredictor(tiny_sam)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hover(w, x, y):
    return {"type": "hover", "x": x, "y": y, "w": w._css[0], "h": w._css[1]}


# ---------------------------------------------------------------------- brush and eraser


def test_brush_and_eraser_drags_paint_and_undo(rgb_image, predictor, rec):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    predicted = w.masks["object 1"].copy()
    send(w, key("b"))
    assert w.tool == "brush" and w._tool.value == "brush" and w._brush.layout.display is None
    assert w._surface_events.track  # the page sends the resting pointer: the brush's disc follows it
    assert "Brush" in w.status_text()
    w.brush_size = 6
    rec.reset()
    send(w, mouse("mousedown", 5, 80, w), mouse("mousemove", 12, 80, w))
    assert rec.on(w.canvas[2], "strokeLines") or rec.on(w.canvas[2], "fillCircle")  # drawn while dragged
    assert w.session.active.strokes == ()  # not yet: the stroke is made on release
    send(w, mouse("mousemove", 20, 80, w), mouse("mouseup", 25, 80, w))
    obj = w.session.active
    assert len(obj.strokes) == 1 and obj.strokes[0].radius == 3.0 and obj.strokes[0].mode == "add"
    assert w.masks["object 1"][80, 5:25].all()
    # Right drag with the brush erases; so does the eraser tool (r).
    send(w, mouse("mousedown", 10, 80, w, button=2), mouse("mouseup", 10, 80, w, button=2))
    assert not w.masks["object 1"][80, 10]
    send(w, key("r"))
    assert w.tool == "eraser"
    send(w, mouse("mousedown", 20, 80, w), mouse("mouseup", 20, 80, w))
    assert [k.mode for k in w.session.active.strokes] == ["add", "erase", "erase"]
    assert not w.masks["object 1"][80, 20] and w.masks["object 1"][80, 15]
    # [ and ] size the brush; r again: back to prompts.
    send(w, key("]"))
    assert w.brush_size == 8 and w._brush.value == 8
    send(w, key("["), key("["))
    assert w.brush_size == 4
    send(w, key("r"))
    assert w.tool == "prompt" and w._brush.layout.display == "none"
    # A later click keeps the strokes; undo takes them back one by one.
    w.click(55, 42, new_point=True)
    assert len(w.session.active.points) == 2 and w.masks["object 1"][80, 15]
    for _ in range(4):
        w.undo()
    assert w.session.active.strokes == () and np.array_equal(w.masks["object 1"], predicted)


def test_the_eraser_on_nothing_explains_in_the_status_line(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    send(w, key("r"), mouse("mousedown", 20, 20, w), mouse("mouseup", 20, 20, w))
    assert "Nothing to erase" in w.status_text() and w.session.objects == ()
    send(w, key("b"), mouse("mousedown", 20, 20, w), mouse("mouseup", 40, 20, w))
    assert w.session.labels == ["object 1"] and "painted" in w.status_text()


# ---------------------------------------------------------------------- candidates and class


def test_candidates_are_thumbnails_labelled_in_words(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    obj = w.session.active
    thumbs = w._thumbs.children
    assert len(thumbs) == 3 and w._candidate_box.layout.display is None
    pictures = [np.asarray(Image.open(io.BytesIO(t.value))) for t in thumbs]
    assert all(p.shape[1] == widget_module.THUMB for p in pictures)
    assert [p.shape for p in pictures] == [pictures[0].shape] * 3
    # Each shows its own candidate: the object's colour where the mask is.
    colored = [(np.abs(p[..., :3].astype(int) - obj.color).sum(-1) < 60).sum() for p in pictures]
    sizes = [int(c.sum()) for c in obj.candidates]
    assert (np.argsort(colored) == np.argsort(sizes)).all() or len(set(sizes)) < 3
    labels = [label for label, _ in w._candidates.options]
    for label, score in zip(labels, obj.scores, strict=True):
        assert f"{score:.2f}" in label and label.split(": ")[1].split()[0] in ("good", "fair", "poor")
    assert all("predicted IoU" in t for t in w._candidates.tooltips)


def test_a_missing_candidate_is_explained_not_an_index_error(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    w.click(52, 44, new_point=True)  # two points: SAM gives one mask
    # hidden, keeping its place (the notebook below does not jump at every second point or undo)
    assert w._candidate_box.layout.visibility == "hidden" and w._candidate_box.layout.display is None
    w.undo()  # one point again: three candidates, the row shown again
    assert w._candidate_box.layout.visibility == "visible" and len(w._thumbs.children) == 3
    w.redo()
    send(w, key("2"))
    status = w.status_text()
    assert "There is no mask 2" in status and "three candidates only for a single click" in status
    assert "IndexError" not in status and "0 to 0" not in status
    assert not status.startswith("Error") and w.error is None  # a key's harmless miss is a note
    send(w, key("1"))  # the one mask there is: said, and the note above replaced
    status = w.status_text()
    assert "object 1 has one mask" in status and "There is no mask" not in status
    with pytest.raises(CandidateError):  # the API call still raises
        w.choose(2)


def test_a_missing_candidate_key_waiting_behind_a_job_is_a_note_too(rgb_image, tiny_sam):
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    assert w.wait(30)
    w.click(50, 40)
    w.click(52, 44, new_point=True)
    assert w.wait(30)
    gate = threading.Event()
    w._jobs.submit(lambda: gate.wait(10), "Holding")
    send(w, key("3"))  # queued behind the job
    gate.set()
    assert w.wait(30)
    assert "There is no mask 3" in w.status_text() and w.error is None


def test_one_mask_is_explained_by_where_it_came_from(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    send(w, key("1"))  # no object yet: a note, not an error
    assert "No candidate masks yet" in w.status_text() and w.error is None
    mask = np.zeros(rgb_image.shape[:2], bool)
    mask[10:30, 10:30] = True
    w.session.add_mask(mask, label="painted")
    send(w, key("1"))
    assert "painted has one mask (it was adopted or painted)" in w.status_text()


def test_choosing_says_which_mask_and_that_redo_is_gone(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    w.click(52, 44, new_point=True)
    w.undo()
    assert "Undone" in w.status_text()
    send(w, key("2"))
    assert "Mask 2 of 3 (the undone steps can no longer be redone)" in w.status_text()
    assert not w.session.can_redo
    send(w, key("2"))
    assert "Mask 2 of 3 is already shown" in w.status_text()
    send(w, key("3"))
    status = w.status_text()
    assert "Mask 3 of 3" in status and "redone" not in status and "Undone" not in status


def test_the_class_field_sets_the_objects_class(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    w.rename("object 1", "cat 2")
    assert w._class_edit.placeholder == "cat" and w._class_edit.value == ""
    w._class_edit.value = "tabby"
    assert w.session.active.category == "tabby" and "is a tabby" in w.status_text()
    w.undo()
    assert w.session.active.category is None and w._class_edit.value == ""
    w.set_category("cat 2", "lion")
    assert w._class_edit.value == "lion"
    w._class_edit.value = ""
    assert w.session.active.category is None and w.session.active.category_name == "cat"


# ---------------------------------------------------------------------- hover preview


def test_hover_draws_the_preview_and_changes_no_mask(rgb_image, predictor, rec):
    w = SegmentWidget(rgb_image, predictor, background=False)
    assert w.decoder_ms is not None and w.hover  # the tiny model: fast enough, on by default
    assert "hover preview on" in w.status_text()
    rec.reset()
    send(w, hover(w, 50, 40))
    puts = rec.on(w.canvas[3], "putImageData")
    assert puts, "no preview drawn"
    drawn = decode(puts[-1][2][0])
    expected = w.session.preview(50, 40, *w._hover_view())
    x, y = puts[-1][3]
    shown = np.zeros(expected.shape, bool)
    shown[y : y + drawn.shape[0], x : x + drawn.shape[1]] = drawn[..., 3] > 0
    assert np.array_equal(shown, expected)
    assert w.masks == {} and w.session.objects == () and not w.session.can_undo
    assert w.hover_ms is not None
    # A press drops the preview at once; the click's mask is the one the preview showed.
    send(w, mouse("mousedown", 50, 40, w))
    assert w._hover_mask is None and not w.hover_overlay().any()
    send(w, mouse("mouseup", 50, 40, w))
    got = w.masks["object 1"]  # 1:1 view: the preview is the mask (upscaled in one step: edges may differ)
    assert (got & expected).sum() / (got | expected).sum() > 0.95
    # h turns it off; off, hover messages predict nothing.
    send(w, key("h"))
    assert not w.hover and "Hover preview off" in w.status_text()
    rec.reset()
    send(w, hover(w, 100, 10))
    assert not rec.on(w.canvas[3], "putImageData")


def test_a_click_where_the_hover_preview_ran_reuses_its_pass(rgb_image, predictor, tiny_sam, monkeypatch):
    """The SAM demo's feel: resting on a point and clicking it runs no second decoder pass; the
    object is what a fresh pass gives. Another point or another image runs the decoder."""
    passes = [0]
    tiny_sam.mask_decoder.register_forward_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    w = SegmentWidget([rgb_image, rgb_image[::-1].copy()], predictor, background=False)
    n = passes[0]  # the widget's own timing pass, if any
    send(w, hover(w, 50, 40))
    assert passes[0] == n + 1 and w._hover_mask is not None
    send(w, mouse("mousedown", 50, 40, w), mouse("mouseup", 50, 40, w))
    assert passes[0] == n + 1, "the click ran the decoder again"
    assert w.session.click_reused and "hover preview's" in w.status_text()
    obj = w.session.active
    s = w.session
    with s._lock:  # the same prompts, decoded afresh: the same candidates
        _, scores, logits, _ = s._decode_now(obj.points, obj.point_labels, obj.box, None, True)
    assert np.array_equal(np.asarray(obj.scores), np.asarray(scores).reshape(-1))
    assert np.array_equal(np.asarray(obj._candidates.logits), np.asarray(logits))
    # a second point on the same object, where the pointer rests: the same prompts, reused too
    send(w, hover(w, 60, 45))
    n = passes[0]
    send(w, mouse("mousedown", 60, 45, w), mouse("mouseup", 60, 45, w))
    assert passes[0] == n and len(w.session.active.points) == 2 and w.session.click_reused
    # a click far from the object, where the preview rests: a new object, its mask the preview's
    # (random weights draw masks anywhere: the point is made "far" and outside object 1 here)
    import sam_widgets.session as session_module

    with monkeypatch.context() as m:
        m.setattr(session_module, "_far", lambda obj, x, y: True)
        m.setattr(w.session, "object_at", lambda x, y: None)
        send(w, hover(w, 110, 85))
        n = passes[0]
        send(w, mouse("mousedown", 110, 85, w), mouse("mouseup", 110, 85, w))
        assert passes[0] == n and len(w.session.objects) == 2 and w.session.click_reused
        assert "New object" in w.status_text() and "hover preview's" in w.status_text(), w.status_text()
    n = passes[0]
    # a click where no preview ran: a pass of its own; the status line says nothing of a preview
    w.new_object()
    send(w, mouse("mousedown", 20, 70, w), mouse("mouseup", 20, 70, w))
    assert passes[0] == n + 1 and not w.session.click_reused
    assert "hover preview's" not in w.status_text()
    # the same point on another image: another embedding, a pass of its own
    send(w, hover(w, 30, 30))
    w.next_image()
    w.wait()
    assert w.session._decoded is None  # nothing remembered outlives its embedding
    n = passes[0]
    send(w, mouse("mousedown", 30, 30, w), mouse("mouseup", 30, 30, w))
    assert passes[0] == n + 1 and not w.session.click_reused


def test_the_hover_speed_check_times_real_decoder_passes(rgb_image, predictor, tiny_sam):
    """The check runs two previews at one point: a remembered pass (a click reusing the preview's)
    must not make the second one free, or a slow decoder would look fast."""
    slow = tiny_sam.mask_decoder.register_forward_hook(lambda *_: time.sleep(0.15))
    try:
        w = SegmentWidget(rgb_image, predictor, background=False)
    finally:
        slow.remove()
    assert w.decoder_ms is not None and w.decoder_ms >= 150, w.decoder_ms
    assert not w.hover and "hover preview off" in w.status_text()


def test_hover_is_off_by_default_when_the_decoder_is_slow(rgb_image, predictor, monkeypatch):
    monkeypatch.setattr(widget_module, "HOVER_FAST_MS", -1.0)
    w = SegmentWidget(rgb_image, predictor, background=False)
    assert not w.hover and "hover preview off: a decoder pass takes" in w.status_text()
    w.hover = True  # the user's choice stands
    assert w.hover and w._hover_button.value


def test_hover_set_before_the_measurement_stands_even_when_unchanged(rgb_image, predictor, monkeypatch):
    """``w.hover = False`` while the first image still encodes changes nothing (it is False until
    the measurement), yet it is the user's choice: the measurement must not turn the preview on."""
    w = SegmentWidget(rgb_image, predictor, background=False)
    assert w.hover  # the tiny model: the measurement turned it on
    w.hover = True  # the same value, set by the user
    monkeypatch.setattr(widget_module, "HOVER_FAST_MS", -1.0)
    w.decoder_ms = None
    w._measure_decoder()  # would turn it off, were it not the user's choice
    assert w.decoder_ms is not None and w.hover
    w.hover = False
    w.hover = False  # again: no change, still the user's
    w.decoder_ms = None
    monkeypatch.setattr(widget_module, "HOVER_FAST_MS", 1e9)
    w._measure_decoder()
    assert not w.hover


def test_hover_off_while_the_first_image_encodes_in_the_background_stays_off(rgb_image, tiny_sam):
    """The threaded path: the measurement runs in the worker at the end of the first encoding, and
    the user's ``w.hover = False`` (no change: it is False until then) came while it was encoding."""
    gate = threading.Event()
    tiny_sam.image_encoder.register_forward_pre_hook(lambda *_: None if gate.wait(30) else None)
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    assert w.encoding and not w.hover
    w.hover = False
    gate.set()
    assert w.wait(30)
    assert w.decoder_ms is not None  # measured: the tiny model would have turned it on
    assert not w.hover and not w._surface_events.track


def test_the_session_preview_follows_the_click_rules(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    s = w.session
    first = s.preview(50, 40)
    assert s.click(50, 40) == "point" and np.array_equal(s.active.mask, first)
    near = s.preview(55, 45)  # a point added to the active object
    s.add_object()
    assert s.preview(55, 45) is not None  # an empty new object: its first point, anywhere
    s.drop_empty()
    s.select(None)
    ys, xs = np.nonzero(s.object("object 1").mask)
    assert s.preview(xs[0] + 0.5, ys[0] + 0.5) is None  # a click there would select object 1
    s.select("object 1")
    assert s.click(55, 45, new_point=True) == "point" and np.array_equal(s.active.mask, near)


def test_hover_jobs_are_dropped_and_never_delay_a_click():
    jobs = Background(True)
    gate = threading.Event()
    ran: list[str] = []
    jobs.submit(lambda: (gate.wait(5), ran.append("hover 1")), "h1", kind="hover")
    time.sleep(0.05)  # hover 1 runs
    stale = jobs.submit(lambda: ran.append("hover 2"), "h2", kind="hover")
    newest = jobs.submit(lambda: ran.append("hover 3"), "h3", kind="hover")
    assert stale.future.cancelled() and not newest.future.cancelled()  # only the newest waits
    assert not jobs.busy and jobs.wait(0)  # previews count for neither busy nor wait
    click = jobs.submit(lambda: ran.append("click"), "click", kind="click")
    assert newest.future.cancelled()  # a real job drops the waiting preview
    gate.set()
    click.future.result(5)
    assert ran == ["hover 1", "click"]
    jobs.shutdown()


# ---------------------------------------------------------------------- segment in this view


def test_segment_in_this_view_uses_the_region_and_lands_in_the_whole_image(predictor):
    img = np.random.default_rng(3).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    img[150:170, 200:230] = (250, 20, 20)
    w = SegmentWidget(img, predictor, display_size=200, background=False)
    send(w, key("v"))
    assert w.session.region is None and "zoom in first" in w.status_text()
    w.zoom_to(180, 130, 260, 190)
    send(w, key("v"))
    x0, y0, x1, y1 = w.session.region
    assert (x0, y0) <= (180, 130) and (x1, y1) >= (260, 190) and x1 - x0 < 200
    assert w._view_button.value and "Segmenting in this view" in w.status_text()
    w.click(215, 160)
    mask = w.masks["object 1"]
    assert mask.shape == (300, 400) and not mask[:y0].any() and not mask[:, x1:].any()
    send(w, key("v"))
    assert w.session.region is None and not w._view_button.value


def test_one_click_is_one_undo_step_whatever_candidate_is_chosen():
    """Syncing the candidate buttons (new options put them on candidate 1, then the chosen one)
    must not record choices of its own: one z undoes one click (a new-user trial needed three)."""
    from sam_widgets.micro.data import make_scene

    w = SegmentWidget([make_scene(3)[0]], model="micro", display_size=640, background=False)
    w.click(100, 100)
    w.click(212, 57)  # far: a new object, whose best candidate is not the first
    assert w.session.labels == ["object 1", "object 2"]
    assert w.session.active.chosen != 0, "pick another point: this test needs a chosen candidate > 1"
    w.undo()
    assert w.session.labels == ["object 1"] and "Undone" in w.status_text()
    w.redo()
    assert w.session.labels == ["object 1", "object 2"] and not w.session.can_redo
