"""SegmentWidget wiring without a browser: simulated ipyevents messages -> session -> draw commands."""

from __future__ import annotations

import asyncio
import html
import io
import threading

import numpy as np
import pytest
from ipycanvas import canvas as ipycanvas_canvas
from PIL import Image

from sam_widgets import CachedPredictor
from sam_widgets import widget as widget_module
from sam_widgets.widget import SegmentWidget

NAMES = {i: name for name, i in ipycanvas_canvas.COMMANDS.items()}


class Recorder:
    """Records every draw command and every message the canvas manager sends to the browser."""

    def __init__(self, monkeypatch):
        self.commands: list[tuple[object, str, list, list]] = []  # canvas, command, buffers, arguments
        self.messages = 0
        manager = ipycanvas_canvas._CANVAS_MANAGER
        send_command, send_custom = manager.send_command, manager._send_custom

        def record(canvas, command, buffers=[]):  # noqa: B006 - ipycanvas' own signature
            self.commands.append((canvas, NAMES.get(command[0], command[0]), list(buffers), command[1]))
            return send_command(canvas, command, buffers)

        def count(command, buffers=[]):  # noqa: B006
            self.messages += 1
            return send_custom(command, buffers)

        monkeypatch.setattr(manager, "send_command", record)
        monkeypatch.setattr(manager, "_send_custom", count)

    def on(self, layer, name=None):
        return [c for c in self.commands if c[0] is layer and (name is None or c[1] == name)]

    def reset(self):
        self.commands.clear()
        self.messages = 0


@pytest.fixture
def rec(monkeypatch):
    return Recorder(monkeypatch)


@pytest.fixture
def predictor(tiny_sam):
    return CachedPredictor(tiny_sam)


def mouse(kind, x, y, w, button=0, shift=False, scale=1.0):
    """An ipyevents mouse message: CSS pixels relative to the canvas, maybe scaled by the page."""
    return {
        "type": kind,
        "relativeX": x * scale,
        "relativeY": y * scale,
        "button": button,
        "shiftKey": shift,
        "boundingRectWidth": w.canvas.width * scale,
        "boundingRectHeight": w.canvas.height * scale,
    }


def send(w, *events):
    for e in events:
        target = w._moves if e["type"] == "mousemove" else w._clicks
        target._handle_mouse_msg(None, e, [])


def decode(buffer) -> np.ndarray:
    im = Image.open(io.BytesIO(buffer))
    assert im.format == "PNG", "masks and images must go as PNG, not lossy JPEG"
    return np.asarray(im)


def test_left_click_message_makes_a_mask_and_draws_it(rgb_image, predictor, rec):
    w = SegmentWidget(rgb_image, predictor, background=False)
    assert (w.canvas.width, w.canvas.height) == (120, 90)  # small image: shown 1:1
    image_puts = rec.on(w.canvas[0], "putImageData")
    assert len(image_puts) == 1 and decode(image_puts[0][2][0]).shape == (90, 120, 4)
    rec.reset()
    send(w, mouse("mousedown", 50, 40, w), mouse("mouseup", 50, 40, w))
    (obj,) = w.session.objects
    assert obj.points == ((50.0, 40.0),) and obj.point_labels == (1,)
    mask = w.masks[obj.label]
    assert mask.shape == (90, 120) and mask.dtype == bool
    assert len(obj.scores) == 3  # one point: three candidates
    # The mask layer received exactly the overlay of that mask, as RGBA PNG: its bounding box, in place.
    puts = rec.on(w.canvas[1], "putImageData")
    if mask.any():
        drawn = decode(puts[-1][2][0])
        x, y = puts[-1][3]
        shown = np.zeros(mask.shape, bool)
        shown[y : y + drawn.shape[0], x : x + drawn.shape[1]] = drawn[..., 3] > 0
        assert np.array_equal(shown, mask)
    assert rec.on(w.canvas[2], "fillCircle")  # the point is drawn
    assert rec.on(w.canvas[0]) == []  # the image is not sent again
    assert rec.messages == 1  # one update, one hold_canvas, one message


def test_in_the_kernel_the_mask_goes_out_before_the_controls(rgb_image, predictor, rec):
    """Inside a running event loop (the kernel's), a browser click sends the canvas message at
    once and brings the controls up to date CONTROLS_DELAY_S later, so the page paints the mask
    first; a second click within the delay does not schedule a second update."""
    w = SegmentWidget(rgb_image, predictor, background=False)
    rec.reset()

    async def clicks():
        send(w, mouse("mousedown", 50, 40, w), mouse("mouseup", 50, 40, w))
        assert rec.on(w.canvas[1], "putImageData") and w.session.active is not None
        assert w._objects.options == ()  # not yet
        send(w, mouse("mousedown", 60, 45, w), mouse("mouseup", 60, 45, w))
        assert w._controls_due
        await asyncio.sleep(widget_module.CONTROLS_DELAY_S * 3)

    asyncio.run(clicks())
    assert not w._controls_due
    assert w._objects.options == ("object 1",) and w._objects.value == "object 1"
    assert html.escape(w.status_text()) in w._status.value


def test_right_click_and_shift_click_are_negative(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    send(w, mouse("mousedown", 50, 40, w), mouse("mouseup", 50, 40, w))
    send(w, mouse("mousedown", 10, 10, w, button=2), mouse("mouseup", 10, 10, w, button=2))
    send(w, mouse("mousedown", 20, 12, w, shift=True), mouse("mouseup", 20, 12, w, shift=True))
    assert w.session.active.point_labels == (1, 0, 0)
    assert len(w.session.active.scores) == 1  # several points: one mask


def test_drag_makes_a_box_in_image_pixels_when_the_image_is_scaled(predictor):
    big = np.zeros((400, 800, 3), np.uint8)
    w = SegmentWidget(big, predictor, display_size=200, background=False)
    assert (w.canvas.width, w.canvas.height) == (200, 100) and w.scale == 0.25
    # The page shows the canvas at 1.5x its pixel size: CSS pixels are converted back.
    send(
        w,
        mouse("mousedown", 150, 80, w, scale=1.5),
        mouse("mousemove", 100, 50, w, scale=1.5),
        mouse("mouseup", 20, 10, w, scale=1.5),
    )
    assert w.session.active.box == pytest.approx((80.0, 40.0, 600.0, 320.0))
    assert w.session.active.points == ()


def test_drag_beyond_the_canvas_is_clamped(predictor, rgb_image):
    w = SegmentWidget(rgb_image, predictor, background=False)
    send(w, mouse("mousedown", 100, 70, w), mouse("mouseup", 140, 100, w))
    assert w.session.active.box == pytest.approx((100.0, 70.0, 120.0, 90.0))


def test_keys_undo_redo_and_choose(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    first = w.masks["object 1"].copy()
    w.click(10, 10, positive=False)
    send(w, {"type": "keydown", "key": "z"})
    assert np.array_equal(w.masks["object 1"], first) and w.session.active.points == ((50.0, 40.0),)
    send(w, {"type": "keydown", "key": "y"})
    assert len(w.session.active.points) == 2
    w.undo()
    send(w, {"type": "keydown", "key": "3"})
    assert w.session.active.chosen == 2
    send(w, {"type": "keydown", "key": "n"})
    assert w.session.active.label == "object 2"
    send(w, {"type": "keydown", "key": "x"})
    assert w.session.labels == ["object 1"]


def test_controls_follow_the_session(rgb_image, predictor):
    w = SegmentWidget([rgb_image, rgb_image[::-1].copy()], predictor, background=False)
    assert w._prev.disabled and not w._next.disabled and w._undo.disabled
    w.click(50, 40)
    assert w._objects.options == ("object 1",) and w._objects.value == "object 1"
    assert [v for _, v in w._candidates.options] == [0, 1, 2]
    w._candidates.value = 1  # picking a candidate in the UI chooses it in the session
    assert w.session.active.chosen == 1
    w._label_edit.value = "cat"  # editing the label renames the object
    assert w.session.labels == ["cat"] and "cat" in w.masks
    w._opacity.value = 1.0
    assert w.mask_overlay()[..., 3].max() in (0, 255)
    status = w.status_text()
    assert "model custom" in status and "cpu fp32" in status and "click" in status


def test_images_keep_their_objects_and_revisits_do_not_encode(rgb_image, predictor, tiny_sam):
    runs = [0]
    tiny_sam.image_encoder.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    w = SegmentWidget([rgb_image, rgb_image[::-1].copy()], predictor, background=False)
    w.click(50, 40)
    send(w, {"type": "keydown", "key": "ArrowRight"})
    assert w.session.current == 1 and w.masks == {}
    w.click(60, 30)
    assert runs[0] == 2
    w.previous_image()
    assert list(w.masks) == ["object 1"] and runs[0] == 2
    assert len(w.annotations) == 2


def test_clicks_during_encoding_are_queued_not_lost(rgb_image, tiny_sam):
    gate = threading.Event()
    tiny_sam.image_encoder.register_forward_pre_hook(lambda *_: None if gate.wait(30) else None)
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    assert w.encoding and "encoding" in w.status_text()
    w.click(50, 40)
    w.click(10, 10, positive=False)
    assert w.session.objects == () and "2 click(s) queued" in w.status_text()
    w.everything(points_per_side=4)  # a long job queued too: named, not counted as a click
    status = w.status_text()
    assert "2 click(s) queued" in status and "then segmenting everything" in status, status
    gate.set()
    assert w.wait(30)
    assert not w.encoding and w.session.active.point_labels == (1, 0)
    assert "object 1" in w.masks


def test_a_failing_queued_click_does_not_wedge_the_widget(rgb_image, tiny_sam, monkeypatch):
    gate = threading.Event()
    tiny_sam.image_encoder.register_forward_pre_hook(lambda *_: None if gate.wait(30) else None)
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    w.click(50, 40)
    monkeypatch.setattr(w.session, "add_point", lambda *a: 1 / 0)
    gate.set()
    assert w.wait(30) and not w.encoding
    assert "ZeroDivisionError" in w.error


def test_bad_input_raises_from_code_shows_from_the_browser_and_loses_nothing(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    before = w.masks["object 1"].copy()
    with pytest.raises(ValueError, match="outside"):
        w.click(500, 40)  # a script gets the error...
    assert "outside" in w.error and "error" in w.status_text()  # ...and the status line shows it
    with pytest.raises(ValueError, match="no such object"):
        w.select("no such object")
    # From the browser nothing raises into the comm handler: the status line says what happened.
    w._objects.options = ("object 1", "ghost")
    w._objects.value = "ghost"
    assert "ghost" in w.error
    assert np.array_equal(w.masks["object 1"], before)
    w.click(20, 20)  # the next good action clears the error
    assert w.error is None


def test_results_wait_for_clicks_queued_during_encoding(rgb_image, tiny_sam, tmp_path):
    gate = threading.Event()
    tiny_sam.image_encoder.register_forward_pre_hook(lambda *_: None if gate.wait(30) else None)
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    w.click(50, 40)  # a script clicks right away: queued behind the encoding
    threading.Timer(0.2, gate.set).start()
    assert "object 1" in w.masks  # masks waits for the encoding and the queued click
    saved = w.save(tmp_path)
    assert "object 1" in saved.read_text()


def test_everything_that_finds_nothing_says_what_to_try(rgb_image, tiny_sam):
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=False)
    w.everything(points_per_side=2, pred_iou_thresh=1.1)
    assert w.proposals == [] and "lower thresholds" in w.error


def test_model_argument_is_checked(rgb_image):
    with pytest.raises(TypeError, match="name for load_sam"):
        SegmentWidget(rgb_image, model=42)
    with pytest.raises(ValueError, match="at least 64"):
        SegmentWidget(rgb_image, model=42, display_size=10)


def test_save_and_load_through_the_widget(rgb_image, predictor, tmp_path, tiny_sam):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    w.rename("object 1", "red block")
    w.save(tmp_path)
    coco = w.to_coco()
    assert coco["annotations"] == [] or coco["annotations"][0]["segmentation"]["counts"]
    w2 = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=False)
    w2.load(tmp_path)
    assert np.array_equal(w2.masks["red block"], w.masks["red block"])


def test_set_model_keeps_the_work(rgb_image, predictor, tiny_sam):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    mask = w.masks["object 1"].copy()
    w.set_model(CachedPredictor(tiny_sam))
    assert np.array_equal(w.masks["object 1"], mask)
    w.click(20, 20)
    assert len(w.session.active.points) == 2


def test_everything_reuses_the_embedding_and_a_click_adopts_a_region(rgb_image, tiny_sam):
    runs = [0]
    tiny_sam.image_encoder.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    w = SegmentWidget([rgb_image, rgb_image[::-1].copy()], CachedPredictor(tiny_sam), background=False)
    # Random weights: accept every mask, so there is something to adopt.
    w.everything(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert runs[0] == 1  # the generator used the cached embedding
    assert w.proposals and w.show_proposals and w._everything.value
    areas = [p["area"] for p in w.proposals]
    assert areas == sorted(areas, reverse=True)
    assert w.mask_overlay()[..., 3].any()
    target = w.proposals[-1]["segmentation"]  # the smallest
    ys, xs = np.nonzero(target)
    w.click(xs[0] + 0.5, ys[0] + 0.5)
    (obj,) = w.session.objects
    assert obj.points == () and np.array_equal(obj.mask, target)
    w.undo()
    assert w.session.objects == ()
    w.click(xs[0] + 0.5, ys[0] + 0.5, positive=False)  # a negative click is a normal prompt
    assert w.session.active.point_labels == (0,)
    w.next_image()
    assert w.proposals == [] and not w.show_proposals and not w._everything.value
    w.adopt(0)
    assert "no proposal 0" in w.error


def test_everything_while_encoding_waits_its_turn(rgb_image, tiny_sam):
    gate = threading.Event()
    tiny_sam.image_encoder.register_forward_pre_hook(lambda *_: None if gate.wait(30) else None)
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    w.everything(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert w.proposals == []
    gate.set()
    assert w.wait(30)
    assert w.proposals and not w.encoding
