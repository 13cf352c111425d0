"""SegmentWidget wiring without a browser: the input surface's messages -> session -> draw commands."""

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
from sam_widgets.session import Session
from sam_widgets.viz import PROPOSAL_ALPHA
from sam_widgets.widget import SegmentWidget

from .conftest import FakePredictor

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


def mouse(kind, x, y, w, button=0, shift=False, scale=1.0, alt=False, space=False):
    """A mouse message of the widget's input surface: CSS pixels from the canvas' top left, the
    canvas maybe shown scaled by the page (``scale``)."""
    return {
        "type": {"mousedown": "down", "mousemove": "move", "mouseup": "up"}.get(kind, kind),
        "x": x * scale,
        "y": y * scale,
        "w": w._css[0] * scale,
        "h": w._css[1] * scale,
        "button": button,
        "shift": shift,
        "alt": alt,
        "space": space,
    }


def send(w, *events):
    """Deliver messages as the page's surface does (errors go to the status line, as there)."""
    for e in events:
        w._surface_events._handle_custom_msg(e, [])


def key(name, **mods):
    return {"type": "key", "key": name, **mods}


def wheel(w, x, y, dy):
    return {"type": "wheel", "x": x, "y": y, "w": w._css[0], "h": w._css[1], "dy": dy}


def decode(buffer) -> np.ndarray:
    im = Image.open(io.BytesIO(buffer))
    assert im.format == "PNG", "masks and images must go as PNG, not lossy JPEG"
    return np.asarray(im.convert("RGBA") if im.mode == "P" else im)  # mask layers go as palette PNGs


def test_left_click_message_makes_a_mask_and_draws_it(rgb_image, predictor, rec):
    w = SegmentWidget(rgb_image, predictor, background=False)
    assert (w.canvas.width, w.canvas.height) == (120, 90)  # small image: shown 1:1
    image_puts = rec.on(w.canvas[0], "putImageData")
    assert len(image_puts) == 1 and np.array_equal(decode(image_puts[0][2][0])[..., :3], rgb_image)
    rec.reset()
    send(w, mouse("mousedown", 50, 40, w), mouse("mouseup", 50, 40, w))
    (obj,) = w.session.objects
    assert obj.points == ((50.0, 40.0),) and obj.point_labels == (1,)
    mask = w.masks[obj.label]
    assert mask.shape == (90, 120) and mask.dtype == bool
    assert len(obj.scores) == 3  # one point: three candidates
    # The mask layer received exactly the overlay of that mask, as a PNG: its bounding box, in place.
    puts = rec.on(w.canvas[1], "putImageData")
    if mask.any():
        drawn = decode(puts[-1][2][0])
        x, y = puts[-1][3]
        shown = np.zeros(mask.shape, bool)
        shown[y : y + drawn.shape[0], x : x + drawn.shape[1]] = drawn[..., 3] > 0
        assert np.array_equal(shown, mask)
        assert rec.on(w.canvas[1], "fillText")  # its label is drawn
    assert rec.on(w.canvas[2], "fillCircle") and rec.on(w.canvas[2], "strokeCircle")  # marker + ring
    assert rec.on(w.canvas[0]) == []  # the image is not sent again
    assert rec.messages == 1  # one update, one hold_canvas, one message


def test_in_the_kernel_the_mask_goes_out_before_the_controls(rgb_image, predictor, rec):
    """Inside a running event loop (the kernel's), a browser click sends the canvas message at
    once and brings the controls up to date CONTROLS_DELAY_S later."""
    w = SegmentWidget(rgb_image, predictor, background=False)
    rec.reset()

    async def clicks():
        send(w, mouse("mousedown", 50, 40, w), mouse("mouseup", 50, 40, w))
        assert rec.on(w.canvas[1], "putImageData") and w.session.active is not None
        assert w._objects.children == ()  # not yet
        send(w, mouse("mousedown", 52, 42, w, alt=True), mouse("mouseup", 52, 42, w, alt=True))
        assert w._controls_due
        await asyncio.sleep(widget_module.CONTROLS_DELAY_S * 3)

    asyncio.run(clicks())
    assert not w._controls_due
    assert [c.description for c in w._objects.children] == ["object 1"]
    assert html.escape(w.status_text()) in w._status.value


def test_right_click_and_shift_click_are_negative_middle_button_makes_nothing(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    send(w, mouse("mousedown", 50, 40, w), mouse("mouseup", 50, 40, w))
    send(w, mouse("mousedown", 10, 10, w, button=2), mouse("mouseup", 10, 10, w, button=2))
    send(w, mouse("mousedown", 20, 12, w, shift=True), mouse("mouseup", 20, 12, w, shift=True))
    assert w.session.active.point_labels == (1, 0, 0)
    assert len(w.session.active.scores) == 1  # several points: one mask
    before = w.session.objects
    # A middle drag pans (here: the image is fitted, nothing to pan) and never makes a box or point.
    send(w, mouse("mousedown", 10, 10, w, button=1), mouse("mousemove", 60, 50, w, button=1))
    send(w, mouse("mouseup", 60, 50, w, button=1))
    send(w, mouse("mousedown", 30, 30, w, button=1), mouse("mouseup", 30, 30, w, button=1))
    send(w, mouse("mousedown", 30, 30, w, button=3), mouse("mouseup", 30, 30, w, button=3))  # "back"
    assert w.session.objects is before
    # A right drag is no box either: only the left button makes boxes.
    send(w, mouse("mousedown", 10, 10, w, button=2), mouse("mouseup", 60, 50, w, button=2))
    assert w.session.objects is before


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


def test_a_box_dragged_past_the_edge_is_kept_clipped(predictor, rgb_image, rec):
    w = SegmentWidget(rgb_image, predictor, background=False)
    send(w, mouse("mousedown", 100, 70, w), mouse("mousemove", 200, 150, w))
    assert w._drag["box"] is not None and rec.on(w.canvas[2], "strokeRect")  # drawn while dragging
    send(w, mouse("mouseup", 300, -40, w))  # released far outside, above and right
    assert w.session.active.box == pytest.approx((100.0, 0.0, 120.0, 70.0))
    # A press outside the image and a release outside make no point.
    n = len(w.session.active.points)
    send(w, mouse("mousedown", -5, 200, w), mouse("mouseup", -5, 200, w))
    assert len(w.session.active.points) == n


def test_wheel_zooms_around_the_pointer_and_a_click_lands_on_the_right_pixel(predictor):
    img = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    w = SegmentWidget(img, predictor, display_size=200, background=False)
    assert w._css == (200, 150) and w.visible == pytest.approx((0, 0, 400, 300))
    before = w.to_image(50, 30)  # image pixel under the pointer
    send(w, wheel(w, 50, 30, -400))  # wheel up: zoom in
    assert w.zoom > 2
    assert w.to_image(50, 30) == pytest.approx(before)  # still under the pointer
    x0, y0, x1, y1 = w.visible
    assert x1 - x0 == pytest.approx(400 / w.zoom) and x0 > 0 and y0 > 0
    send(w, mouse("mousedown", 50, 30, w), mouse("mouseup", 50, 30, w))
    assert w.session.active.points == (pytest.approx(before),)
    # The view shows the image's real pixels once zoomed past 1:1.
    w.zoom_to(100, 100, 125, 118.75)
    assert w.scale == pytest.approx(8.0) and w.visible == pytest.approx((100, 100, 125, 118.75))
    shown = w.view_image()
    assert np.array_equal(shown[::8, ::8, :3], img[100:119, 100:125])
    send(w, wheel(w, 10, 10, 10_000))  # far out: back to the fitted view, never smaller
    assert w.zoom == 1.0 and w.visible == pytest.approx((0, 0, 400, 300))


def test_keys_and_fit_button_zoom_and_pan_moves_the_view(predictor):
    img = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    w = SegmentWidget(img, predictor, display_size=200, background=False)
    send(w, key("+"), key("+"))
    assert w.zoom == pytest.approx(widget_module.KEY_ZOOM**2)
    assert w.center == pytest.approx((200, 150))
    send(w, key("-"))
    assert w.zoom == pytest.approx(widget_module.KEY_ZOOM)
    # Middle-button drag pans: the image follows the pointer, no prompt is made.
    cx, cy = w.center
    send(w, mouse("mousedown", 100, 80, w, button=1), mouse("mousemove", 80, 70, w, button=1))
    send(w, mouse("mouseup", 70, 60, w, button=1))
    k = w.pixel_size
    assert w.center == pytest.approx((cx + 30 / k, cy + 20 / k)) and w.session.objects == ()
    # Space + left drag pans too, and so does the pan tool (p).
    send(w, mouse("mousedown", 70, 60, w, space=True), mouse("mouseup", 100, 80, w, space=True))
    assert w.center == pytest.approx((cx, cy)) and w.session.objects == ()
    send(w, key("p"))
    assert w.tool == "pan" and w._tool.value == "pan"
    send(w, mouse("mousedown", 100, 80, w), mouse("mouseup", 90, 80, w))
    assert w.center[0] == pytest.approx(cx + 10 / k) and w.session.objects == ()
    w._tool.value = "prompt"
    assert w.tool == "prompt"
    # The view never leaves the image.
    w.pan_by(10_000, -10_000)
    x0, y0, x1, y1 = w.visible
    assert x1 == pytest.approx(400) and y0 == pytest.approx(0)
    w._fit.click()
    assert w.zoom == 1.0 and w.visible == pytest.approx((0, 0, 400, 300))
    send(w, key("+"), key("0"))
    assert w.zoom == 1.0
    with pytest.raises(ValueError, match="region of some size"):
        w.zoom_to(5, 5, 5, 10)


def test_canvas_fits_the_room_and_draws_at_the_device_pixel_ratio(predictor, rec):
    img = np.zeros((300, 400, 3), np.uint8)
    w = SegmentWidget(img, predictor, background=False)
    assert w._css == (400, 300) and (w.canvas.width, w.canvas.height) == (400, 300)
    w._surface_events.width = 254  # the page reports the notebook's width (a narrow window)
    assert w._css == (250, 188) and w.canvas.layout.width == "250px"
    rec.reset()
    w._surface_events.dpr = 2.0  # a HiDPI screen: twice the pixels, the same CSS size
    assert w._css == (250, 188) and (w.canvas.width, w.canvas.height) == (500, 376)
    assert w.scale == pytest.approx(2 * 250 / 400)
    (put,) = rec.on(w.canvas[0], "putImageData")
    assert decode(put[2][0]).shape == (376, 500, 4)
    # Outlines: 2 CSS pixels, so 4 device pixels here.
    w.session.add_mask(np.pad(np.ones((100, 100), bool), ((100, 100), (150, 150))))
    w.select(None)
    ring = w.mask_overlay()[..., 3] == 255
    row = ring[188]
    assert row.sum() == 8  # left and right edges, 4 device pixels each
    w._surface_events.width = 5000
    assert w._css == (400, 300)  # never enlarged past display_size or the image


def test_keys_undo_redo_and_choose(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    first = w.masks["object 1"].copy()
    w.click(52, 42, positive=False)
    send(w, key("z"))
    assert np.array_equal(w.masks["object 1"], first) and w.session.active.points == ((50.0, 40.0),)
    assert "Undone (y redoes it)" in w.status_text()  # the status line says what the key did
    send(w, key("y"))
    assert len(w.session.active.points) == 2 and "Redone (z undoes it)" in w.status_text()
    send(w, key("y"))
    assert "Nothing to redo on this image" in w.status_text()
    w.undo()
    send(w, key("3"))
    assert w.session.active.chosen == 2
    send(w, key("n"))
    assert w.session.active.label == "object 2"
    assert "New object, object 2: click on it" in w.status_text()
    send(w, key("n"), key("n"))  # pressing n again leaves no empty objects behind
    assert w.session.labels == ["object 1", "object 2"]
    send(w, key("x"))
    assert w.session.labels == ["object 1"]
    assert "Deleted object 2 (z brings it back)" in w.status_text()
    send(w, key("?"))
    assert w._help.layout.display is None and "wheel" in w._help.value
    send(w, key("?"))
    assert w._help.layout.display == "none"


def test_click_selects_alt_click_adds_far_click_starts_a_new_object(predictor):
    img = np.zeros((200, 200, 3), np.uint8)
    w = SegmentWidget(img, predictor, background=False)
    a = np.zeros((200, 200), bool)
    a[20:60, 20:60] = True
    b = np.zeros((200, 200), bool)
    b[120:180, 120:180] = True
    w.session.add_mask(a, label="a")
    w.session.add_mask(b, label="b")
    assert w.session.active.label == "b"
    assert w.click(30, 30) == "select" and w.session.active.label == "a"  # inside a: selects it
    assert [c.description for c in w._objects.children] == ["a", "b"]
    chip = w._objects.children[0]
    assert "sam-widgets-active" in chip._dom_classes and chip.style.button_color == "#ff3b30"
    assert w.click(150, 150, new_point=True) == "point"  # alt+click: a point on a, even inside b
    assert w.session.active.label == "a" and w.session.active.points == ((150.0, 150.0),)
    w.undo()
    assert w.click(190, 10) == "new"  # far from a's mask: a new object, not a blotch with a
    assert w.session.labels == ["a", "b", "object 3"] and w.session.active.points == ((190.0, 10.0),)
    assert "New object" in w.status_text()
    w.new_object()
    assert w.click(30, 30) == "point"  # an empty new object takes its first point anywhere
    # The chip buttons select, too.
    w._objects.children[1].click()
    assert w.session.active.label == "b"


def test_controls_follow_the_session(rgb_image, predictor):
    w = SegmentWidget([rgb_image, rgb_image[::-1].copy()], predictor, background=False)
    assert w._prev.disabled and not w._next.disabled and w._undo.disabled
    w.click(50, 40)
    assert [c.description for c in w._objects.children] == ["object 1"]
    assert [v for _, v in w._candidates.options] == [0, 1, 2]
    w._candidates.value = 1  # picking a candidate in the UI chooses it in the session
    assert w.session.active.chosen == 1
    w._label_edit.value = "cat"  # editing the label renames the object
    assert w.session.labels == ["cat"] and "cat" in w.masks
    assert [c.description for c in w._objects.children] == ["cat"]
    w._opacity.value = 1.0  # the slider is linked to the trait, both ways
    assert w.opacity == 1.0 and w.mask_overlay()[..., 3].max() in (0, 255)
    w.opacity = 0.25
    assert w._opacity.value == 0.25
    status = w.status_text()
    assert "Mask 2 of 3" in status and "cat:" in status and "custom · cpu fp32" in status


def test_images_keep_their_objects_and_revisits_do_not_encode(rgb_image, predictor, tiny_sam):
    runs = [0]
    tiny_sam.image_encoder.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    w = SegmentWidget([rgb_image, rgb_image[::-1].copy()], predictor, background=False)
    w.click(50, 40)
    send(w, key("ArrowRight"))
    assert w.session.current == 1 and w.masks == {}
    w.click(60, 30)
    assert runs[0] == 2
    w.previous_image()
    assert list(w.masks) == ["object 1"] and runs[0] == 2
    assert "Cached: instant" in w.status_text()
    assert len(w.annotations) == 2


def test_clicks_during_encoding_are_queued_drawn_and_applied_in_order(rgb_image, tiny_sam, rec):
    gate = threading.Event()
    tiny_sam.image_encoder.register_forward_pre_hook(lambda *_: None if gate.wait(30) else None)
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    assert w.encoding and "Encoding image 1 of 1…" in w.status_text()
    rec.reset()
    w.click(50, 40)
    w.click(52, 42, positive=False)
    assert w.session.objects == () and "2 clicks waiting" in w.status_text()
    assert len(rec.on(w.canvas[2], "strokeCircle")) >= 2  # drawn at once, hollow
    w.everything(points_per_side=4)  # a long job queued too: named, not counted as a click
    status = w.status_text()
    assert "2 clicks waiting" in status and "then segmenting everything" in status, status
    gate.set()
    assert w.wait(30)
    assert not w.encoding and w.session.active.point_labels == (1, 0)
    assert "object 1" in w.masks


def test_a_failing_queued_click_does_not_wedge_the_widget(rgb_image, tiny_sam, monkeypatch):
    gate = threading.Event()
    tiny_sam.image_encoder.register_forward_pre_hook(lambda *_: None if gate.wait(30) else None)
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    w.click(50, 40)
    monkeypatch.setattr(w.session, "click", lambda *a, **k: 1 / 0)
    gate.set()
    assert w.wait(30) and not w.encoding
    assert "ZeroDivisionError" in w.error
    monkeypatch.undo()
    w.click(50, 40)  # the widget goes on
    assert w.error is None and "object 1" in w.masks


def test_bad_input_raises_from_code_shows_from_the_browser_and_loses_nothing(rgb_image, predictor):
    w = SegmentWidget(rgb_image, predictor, background=False)
    w.click(50, 40)
    before = w.masks["object 1"].copy()
    with pytest.raises(ValueError, match="outside"):
        w.click(500, 40)  # a script gets the error...
    assert "outside" in w.error and "Error" in w.status_text()  # ...and the status line shows it
    with pytest.raises(ValueError, match="no such object"):
        w.select("no such object")
    # From the browser nothing raises into the comm handler: the status line says what happened.
    send(w, key("n"), key("3"))  # a key with nothing to act on is a note, not an error
    assert "No candidate masks yet" in w.status_text() and w.error is None
    w._from_ui(w.select, "no such object")  # a control's callback, as the browser runs it
    assert "no such object" in w.error and "Error" in w.status_text()
    w.undo()
    assert np.array_equal(w.masks["object 1"], before)
    w.click(52, 42)  # the next good action clears the error
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


def test_the_next_image_is_encoded_ahead_when_encoding_is_slow(rgb_image, tiny_sam, monkeypatch):
    monkeypatch.setattr(widget_module, "ENCODE_AHEAD_S", -1.0)  # "slow": always, here
    predictor = CachedPredictor(tiny_sam)
    second = rgb_image[::-1].copy()
    w = SegmentWidget([rgb_image, second], predictor, background=True)
    assert w.wait(30)
    w._ahead.join(30)
    assert predictor.is_cached(second)  # encoded ahead, into the cache
    assert w.session.current == 0 and w.session.is_encoded  # the current image is still the one held
    w.click(50, 40)
    w.next_image()
    assert w.wait(30) and predictor.stats.misses == 1 and "Cached" in w.status_text()


def test_everything_that_finds_nothing_says_what_to_try(rgb_image, tiny_sam):
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=False)
    w.everything(points_per_side=2, pred_iou_thresh=1.1)
    assert w.proposals == () and "lower ones" in w.error and not w._everything.value
    assert w.status_text().count("found no region") == 1  # said once, as the error
    assert w._everything_bar.layout.display is None  # the sliders stay, to lower them
    assert (w.pred_iou_thresh, w.stability_score_thresh) == (0.88, 0.95)  # segment_anything's own
    w._iou_slider.value = 0.0  # a slider re-runs it
    w._stability_slider.value = 0.0
    assert w.proposals and w._everything.value and "outlined" in w.status_text()
    w._everything.value = False
    assert w.proposals == () and w._everything_bar.layout.display == "none"


def test_everything_whose_regions_are_all_objects_says_so_not_no_region(rgb_image, tiny_sam):
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=False)
    settings = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    found = w.everything(**settings).future.result()
    assert found
    for p in found:  # every region becomes an object
        w.session.add_mask(p.mask)
    w.everything(**settings)
    assert w.proposals == () and w.error is None
    status = w.status_text()
    assert "already objects of this image" in status and "found no region" not in status


def test_model_argument_and_session_are_checked(rgb_image, predictor):
    with pytest.raises(TypeError, match="name for load_sam"):
        SegmentWidget(rgb_image, model=42)
    with pytest.raises(ValueError, match="at least 64"):
        SegmentWidget(rgb_image, model=42, display_size=10)
    session = Session(rgb_image, predictor)
    with pytest.raises(ValueError, match="not both"):
        SegmentWidget(rgb_image, session=session)
    with pytest.raises(ValueError, match="needs images"):
        SegmentWidget()


def test_a_widget_over_a_session_shows_it_and_follows_its_changes(rgb_image, predictor):
    session = Session(rgb_image, predictor)
    session.add_point(50, 40)
    w = SegmentWidget(session=session, background=False)
    assert w.session is session and w.predictor is predictor and list(w.masks) == ["object 1"]
    session.add_object("cat")  # a change made on the session directly is drawn
    assert [c.description for c in w._objects.children] == ["object 1", "cat"]


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
    w.click(52, 42, new_point=True)
    assert len(w.session.active.points) == 2


def test_everything_reuses_the_embedding_and_a_click_adopts_a_region(rgb_image, tiny_sam):
    runs = [0]
    tiny_sam.image_encoder.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    w = SegmentWidget([rgb_image, rgb_image[::-1].copy()], CachedPredictor(tiny_sam), background=False)
    # Random weights: accept every mask, so there is something to adopt.
    send(w, key("e"))  # the key runs it with the defaults (nothing passes with random weights)
    w.everything(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert runs[0] == 1  # the generator used the cached embedding
    assert w.proposals and w._everything.value
    areas = [p.area for p in w.proposals]
    assert areas == sorted(areas, reverse=True)
    assert w.mask_overlay()[..., 3].any()
    target = w.proposals[-1].mask  # the smallest
    ys, xs = np.nonzero(target)
    assert w.click(xs[0] + 0.5, ys[0] + 0.5) == "adopt"
    (obj,) = w.session.objects
    assert obj.points == () and np.array_equal(obj.mask, target)
    w.undo()
    assert w.session.objects == () and w.proposals  # undo the adoption; the proposals stay
    w._everything.value = False  # the toggle hides them (undoable)
    assert w.proposals == () and "the regions are hidden" in w.status_text()
    assert "outlined" not in w.status_text()  # the 'Everything: n regions outlined' line is replaced
    w.undo()
    assert w.proposals
    w.next_image()
    assert w.proposals == () and not w._everything.value
    with pytest.raises(IndexError, match="no proposal 0"):
        w.adopt(0)


def test_everything_sliders_follow_the_image(rgb_image, tiny_sam):
    w = SegmentWidget([rgb_image, rgb_image[::-1].copy()], CachedPredictor(tiny_sam), background=False)
    shown = lambda: w._everything_bar.layout.display is None  # noqa: E731
    w.everything(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert w.proposals and shown()
    w.next_image()  # no regions here: no sliders
    assert not w.proposals and not shown()
    w.everything(points_per_side=2, pred_iou_thresh=1.1)  # finds nothing: the sliders stay, to lower
    assert not w.proposals and shown() and w.error
    w.previous_image()  # this image's regions, and their sliders
    assert w.proposals and shown() and w._everything.value
    w.next_image()
    assert not shown()


def test_everything_regions_are_never_drawn_in_an_objects_colour(rgb_image, tiny_sam):
    w = SegmentWidget([rgb_image], CachedPredictor(tiny_sam), background=False)
    w.click(20.5, 20.5)  # object 1 takes the palette's first colour, which region 0 had
    (obj,) = w.session.objects
    w.everything(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert w.proposals
    _, palette = w.mask_layer()
    faint = round(255 * w.opacity * PROPOSAL_ALPHA)  # the regions' fill; the object's is stronger
    region_colors = {tuple(int(v) for v in e[:3]) for e in palette if e[3] == faint}
    assert region_colors and tuple(obj.color) not in region_colors, (obj.color, palette)


def test_everything_while_encoding_waits_its_turn(rgb_image, tiny_sam):
    gate = threading.Event()
    tiny_sam.image_encoder.register_forward_pre_hook(lambda *_: None if gate.wait(30) else None)
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=True)
    job = w.everything(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert w.proposals == ()
    gate.set()
    assert w.wait(30)
    assert w.proposals and not w.encoding and job.future.result() == w.proposals


def test_a_label_chip_at_the_canvas_edge_is_drawn_whole(rgb_image, predictor, rec):
    w = SegmentWidget(rgb_image, predictor, background=False)
    mask = np.zeros(rgb_image.shape[:2], bool)
    mask[30:60, 112:120] = True  # against the right edge of the 120 px canvas
    w.session.add_mask(mask, label="object 1")  # "▶ object 1": 78 px, wider than the 40 px kept before
    rec.reset()
    w._redraw({"objects"})
    (chip,) = [args for *_, args in rec.on(w.canvas[1], "fillRect")]
    x, _, width, _ = chip
    assert x >= 0 and x + width <= w.canvas.width, (x, width, w.canvas.width)


def test_a_label_sits_on_the_largest_part_of_its_mask_not_a_stray_speck(predictor, rec):
    img = np.zeros((200, 200, 3), np.uint8)
    w = SegmentWidget(img, predictor, background=False)
    mask = np.zeros((200, 200), bool)
    mask[2:6, 2:6] = True  # a speck in the corner (micro's scattered masks on photos)
    mask[120:180, 110:170] = True  # the object
    w.session.add_mask(mask, label="object 1")
    rec.reset()
    w._redraw({"objects"})
    (chip,) = [args for *_, args in rec.on(w.canvas[1], "fillRect")]
    x, y = chip[0], chip[1]
    assert 105 <= x <= 112 and 95 <= y <= 104, (x, y)  # above the object's top left, not at (2, 2)


class _InsideTheBox(FakePredictor):
    """A box's masks fill the box (as SAM's do), a few pixels inside its edges."""

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        masks, scores, logits = super().predict(point_coords, point_labels, box, mask_input, multimask_output)
        if box is not None:
            x0, y0, x1, y1 = np.asarray(box, int)
            masks[:] = False
            masks[:, y0 + 3 : y1 - 3, x0 + 3 : x1 - 3] = True
        return masks, scores, logits


@pytest.mark.parametrize(
    "top, dpr, zoom",
    [(40, 1.0, 1.0), (40, 2.0, 1.0), (3, 1.0, 1.0), (3, 2.0, 1.0), (40, 1.0, 2.0)],
)
def test_the_label_chip_stays_clear_of_the_active_objects_box(rec, top, dpr, zoom):
    """The dashed box is drawn over the mask layer: a chip on its top edge read "objec 1"."""
    w = SegmentWidget(np.zeros((200, 300, 3), np.uint8), _InsideTheBox(), background=False)
    w._surface_events.dpr = dpr
    w.new_object()
    w.drag_box(60, top, 200, 150)
    assert "Mask " in w.status_text() and "New object" not in w.status_text()  # the box's words
    if zoom != 1.0:
        w.zoom_by(zoom, (130, 45))  # the box edge stays in view
    rec.reset()
    w._redraw({"objects"})
    (chip,) = [args for *_, args in rec.on(w.canvas[1], "fillRect")]
    y, height = chip[1], chip[3]
    edge = (top - w.visible[1]) * w.scale  # device pixels; the line is 2 CSS pixels wide
    assert y + height < edge - dpr or y > edge + dpr, (y, height, edge)


def test_label_anchor_keeps_thin_and_diagonal_parts_over_a_speck():
    from sam_widgets.widget import _label_anchor

    line = np.zeros((300, 300), bool)
    line[150:152, 10:290] = True  # a 2 px cable: thinner than the anchor's grid
    line[200:206, 250:256] = True  # a speck
    assert _label_anchor(line) == (10, 150)
    band = np.zeros((300, 300), bool)
    for i in range(150):
        band[20 + i, 20 + i : 24 + i] = True  # a 4 px diagonal
    band[200:210, 250:260] = True
    assert _label_anchor(band) == (20, 20)
    assert _label_anchor(np.zeros((5, 5), bool)) is None
    # a smaller part to the right whose top lies higher within the same row of 4 px blocks
    two = np.zeros((300, 300), bool)
    two[103:200, 40:200] = True  # the largest part: its top is row 103 (block row 100-103)
    two[100:104, 250:254] = True  # a speck in the same block row, 3 rows higher
    assert _label_anchor(two) == (40, 103)
