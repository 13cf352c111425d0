"""SegmentWidget: click on an image in a notebook, get SAM masks. A thin view over a Session.

Layers of the canvas (ipycanvas MultiCanvas; the mouse goes to a wrapper of its size, see __init__):

    0 image    sent once per image, as RGBA so ipycanvas sends PNG (RGB would go as lossy JPEG)
    1 masks    all objects' masks as one RGBA overlay, redrawn when a mask or colour changes
    2 prompts  points, box and the box being dragged

Mouse and keys come from ipyevents (ipycanvas' own callbacks carry no button or modifier keys).
Every gesture ends in a public method (``click``, ``drag_box``, ``undo``, ``next_image``, ...), so
tests and scripts drive the widget without a browser. Images are encoded in a worker thread; the
widget says so, and clicks made meanwhile are queued and applied when the embedding is ready.
"""

from __future__ import annotations

import asyncio
import atexit
import html
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
from ipycanvas import MultiCanvas, hold_canvas
from ipyevents import Event

from .session import Session
from .viz import PALETTE, mask_border

__all__ = ["SegmentWidget", "HELP"]

HELP = (
    "<b>Left click</b> add to object · <b>right click</b> or <b>shift+click</b> remove · "
    "<b>drag</b> box · keys: <b>z</b> undo, <b>y</b> redo, <b>n</b> new object, <b>x</b> delete "
    "object, <b>1 2 3</b> candidate mask, <b>← →</b> image, <b>e</b> everything"
)
DRAG_MIN = 4  # canvas pixels a press must move to be a box rather than a click
CANVAS_CLASS = "sam-widgets-canvas"
CANVAS_CSS = f"<style>.{CANVAS_CLASS} {{ pointer-events: none; }}</style>"
#: After a redraw caused by the browser, the controls (object list, candidate buttons, status line)
#: follow this much later, so that the page paints the mask first: sent together, their updates
#: kept the page and the kernel busy while the overlay waited (click to mask on screen ~10 ms
#: slower at p50, BENCHMARKS.md).
CONTROLS_DELAY_S = 0.04
POSITIVE, NEGATIVE = "#19c35a", "#e8384f"


def _as_predictor(model: Any, device: str, precision: str):
    """A CachedPredictor from a model name, a Sam, or a predictor passed through."""
    from segment_anything.modeling import Sam

    from .models import load_sam
    from .predictor import CachedPredictor

    if isinstance(model, str):
        return CachedPredictor(load_sam(model, device=device, precision=precision))
    if isinstance(model, Sam):
        return CachedPredictor(model)
    if hasattr(model, "set_image") and hasattr(model, "predict"):
        return model
    raise TypeError(
        f"model must be a name for load_sam ('micro', 'vit_b', ...), a segment_anything Sam or a "
        f"CachedPredictor; got {type(model).__name__}."
    )


_WORKERS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _join_workers() -> None:
    # A worker killed inside torch at interpreter exit aborts the process: let it finish.
    for thread in list(_WORKERS):
        thread.join(timeout=120)


class _Job:
    """A long job queued behind another (e.g. "everything" asked for while encoding)."""

    def __init__(self, fn: Callable[[], Any], label: str) -> None:
        self.fn, self.label = fn, label


class SegmentWidget(W.VBox):
    """Interactive SAM segmentation of one image or a list of images.

    Arguments:
      images: an image or a list (HxWx3 uint8 arrays, PIL images or paths; see ``Session``).
      model: a model name for ``load_sam`` (default ``"micro"``, the bundled model: offline), a
        segment_anything ``Sam``, or a ``CachedPredictor``.
      display_size: the longest side shown, in screen pixels; larger images are scaled to fit
        (prompts and masks stay in original image pixels), smaller ones are shown 1:1, unblurred.
      background: encode images in a worker thread (the notebook stays responsive). Off, encoding
        happens in the call that needs it.
      device, precision: passed to ``load_sam`` when ``model`` is a name.

    Results: ``masks`` (label -> bool HxW, current image), ``annotations`` (all images),
    ``to_coco()``, ``save(folder)``, ``load(folder)``. ``session`` holds the state.
    """

    def __init__(
        self,
        images: Any,
        model: Any = "micro",
        *,
        display_size: int = 768,
        background: bool = True,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        if int(display_size) < 64:
            raise ValueError(f"display_size must be at least 64 pixels, got {display_size}.")
        self.display_size = int(display_size)
        self.background = bool(background)
        self.predictor = _as_predictor(model, device, precision)
        self.session = Session(images, self.predictor)
        self.opacity = 0.5
        self._lock = threading.RLock()
        self._pending: list[Callable[[], Any]] = []  # actions queued while encoding
        self._encoding: threading.Thread | None = None
        self._encode_started = 0.0
        self._busy_label = ""
        self.proposals: list[dict[str, Any]] = []  # "everything" masks of the current image
        self.show_proposals = False
        self._drag: tuple[float, float, bool] | None = None  # canvas x, y, negative
        self._drag_rect: tuple[float, float, float, float] | None = None
        self._dirty: set[str] = set()
        self._depth = 0
        self.error: str | None = None  # the last error shown in the status line
        self._ui = 0  # > 0 while handling a browser event or a control: errors are shown, not raised
        self._controls_due = False  # a deferred _sync_controls_now is scheduled

        self.canvas = MultiCanvas(3, width=64, height=64, layout=W.Layout(margin="0"))
        # The mouse goes to a wrapper exactly the canvas' size, not to the canvas: ipycanvas' view
        # sends every mouse move, press and release of its canvas to the kernel (for callbacks this
        # widget does not use), which queued ahead of ipyevents' messages; CANVAS_CSS makes the
        # canvas transparent to the mouse. The border goes on an outer wrapper: on the canvas
        # itself (border-box sizing) it would shrink the drawing by 2 CSS pixels, blurring it and
        # shifting clicks; on the event wrapper it would shift the event coordinates.
        self.canvas.add_class(CANVAS_CLASS)
        self._surface = W.Box([self.canvas], layout=W.Layout(width="fit-content", margin="0", padding="0"))
        self._frame = W.Box([self._surface], layout=W.Layout(border="1px solid #ccc", width="fit-content"))
        self._build_controls()
        self._clicks = Event(
            source=self._surface,
            watched_events=["mousedown", "mouseup", "contextmenu", "mouseleave", "keydown"],
            prevent_default_action=True,
        )
        self._clicks.on_dom_event(lambda e: self._from_ui(self._on_dom_event, e))
        self._moves = Event(
            source=self._surface, watched_events=["mousemove"], throttle_or_debounce="throttle", wait=40
        )
        self._moves.on_dom_event(lambda e: self._from_ui(self._on_dom_event, e))
        self.canvas.on_client_ready(lambda: self._redraw({"image"}))
        super().__init__([self._toolbar, self._frame, self._object_bar, self._status, self._help])
        self.session.on_change(self._on_session)
        self._show_image()

    # ------------------------------------------------------------------ controls

    def _build_controls(self) -> None:
        def button(desc: str, tip: str, action: Callable[[], Any], icon: str = "") -> W.Button:
            b = W.Button(description=desc, tooltip=tip, icon=icon, layout=W.Layout(width="auto"))
            b.on_click(lambda _: self._from_ui(action))
            return b

        self._prev = button("", "previous image (←)", self.previous_image, "arrow-left")
        self._next = button("", "next image (→)", self.next_image, "arrow-right")
        self._image_label = W.HTML()
        self._undo = button("Undo", "undo (z)", self.undo, "undo")
        self._redo = button("Redo", "redo (y)", self.redo, "repeat")
        self._new = button("New object", "new object (n)", self.new_object, "plus")
        self._delete = button("Delete", "delete the active object (x)", self.delete_object, "trash")
        self._clear = button("Clear", "delete every object of this image", self.clear, "eraser")
        self._opacity = W.FloatSlider(
            value=self.opacity,
            min=0.0,
            max=1.0,
            step=0.05,
            description="opacity",
            readout_format=".2f",
            layout=W.Layout(width="220px"),
        )
        self._opacity.observe(lambda ch: self._from_ui(self.set_opacity, ch["new"]), "value")
        self._everything = W.ToggleButton(
            description="Everything", icon="th", tooltip="segment everything; click a region to adopt it (e)"
        )
        self._everything.observe(lambda ch: self._from_ui(self._on_everything, ch), "value")
        self._toolbar = W.HBox(
            [
                self._prev,
                self._image_label,
                self._next,
                self._undo,
                self._redo,
                self._new,
                self._delete,
                self._clear,
                self._everything,
                self._opacity,
            ],
            layout=W.Layout(flex_flow="row wrap", align_items="center"),
        )
        self._objects = W.Dropdown(description="object", layout=W.Layout(width="220px"))
        self._objects.observe(lambda ch: self._from_ui(self._on_pick_object, ch), "value")
        self._label_edit = W.Text(
            placeholder="label", continuous_update=False, layout=W.Layout(width="160px")
        )
        self._label_edit.observe(lambda ch: self._from_ui(self._on_rename, ch), "value")
        self._candidates = W.ToggleButtons(options=[], description="masks", style={"button_width": "90px"})
        self._candidates.observe(lambda ch: self._from_ui(self._on_pick_candidate, ch), "value")
        self._object_bar = W.HBox([self._objects, self._label_edit, self._candidates])
        self._status = W.HTML()
        self._help = W.HTML(f"{CANVAS_CSS}<small>{HELP}</small>")
        self._syncing = False  # True while the widget itself sets control values

    # ------------------------------------------------------------------ public gestures

    def click(self, x: float, y: float, positive: bool = True) -> None:
        """A click at (x, y) in original image pixels: a positive or negative point.

        While "everything" masks are shown, a positive click on one adopts it as a new object.
        """
        hit = self._proposal_at(x, y) if positive else None
        if hit is not None:
            self.adopt(hit)
            return
        self._act(lambda: self.session.add_point(x, y, positive))

    def drag_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """A dragged box between two corners, in original image pixels, any direction."""
        self._act(lambda: self.session.set_box(x0, y0, x1, y1))

    def undo(self) -> bool:
        """Undo the last action on this image."""
        return self._act(self.session.undo)

    def redo(self) -> bool:
        """Redo the last undone action on this image."""
        return self._act(self.session.redo)

    def new_object(self, label: str | None = None) -> None:
        """Start a new object; the next prompts go to it."""
        self._act(lambda: self.session.add_object(label))

    def select(self, label: str) -> None:
        """Make ``label`` the active object."""
        self._act(lambda: self.session.select(label))

    def delete_object(self, label: str | None = None) -> None:
        """Delete ``label`` (default: the active object)."""
        label = label if label is not None else (self.session.active.label if self.session.active else None)
        if label is not None:
            self._act(lambda: self.session.delete(label))

    def rename(self, old: str, new: str) -> None:
        """Give an object another label."""
        self._act(lambda: self.session.rename(old, new))

    def clear(self) -> None:
        """Delete every object of the current image (undoable)."""
        self._act(self.session.clear)

    def choose(self, index: int) -> None:
        """Show candidate mask ``index`` (0-based) for the active object."""
        self._act(lambda: self.session.choose(index))

    def next_image(self) -> bool:
        """Go to the next image (its objects are kept); False at the last one."""
        return self._navigate(self.session.next)

    def previous_image(self) -> bool:
        """Go to the previous image; False at the first one."""
        return self._navigate(self.session.previous)

    def go(self, index: int) -> None:
        """Go to image ``index``."""
        self._navigate(lambda: self.session.go(index))

    def everything(self, **settings: Any) -> None:
        """Segment everything in the current image and show it; click a region to adopt it.

        Runs segment_anything's SamAutomaticMaskGenerator on the widget's predictor (the cached
        embedding is reused) with the seed's settings: points_per_side=32, pred_iou_thresh=0.86,
        stability_score_thresh=0.92; ``settings`` overrides them (any of its arguments). The
        masks land in ``proposals`` (largest first); ``adopt(i)`` makes one an object.
        """
        params = {"points_per_side": 32, "pred_iou_thresh": 0.86, "stability_score_thresh": 0.92}
        params.update(settings)
        index = self.session.current

        def job() -> None:
            from segment_anything import SamAutomaticMaskGenerator

            with self.session._lock:  # the generator drives the predictor itself
                generator = SamAutomaticMaskGenerator(self.predictor.model, **params)
                generator.predictor = self.predictor  # reuse the cached embedding
                found = generator.generate(self.session.image)
            found.sort(key=lambda m: -int(m["area"]))
            with self._lock:
                if self.session.current == index:
                    self.proposals = found
                    self.show_proposals = True
                    self._guard(lambda: self._dirty.add("mask"))
                    if not found:
                        self._show_error(
                            "everything: no mask passed the filters; try lower thresholds, e.g. "
                            "w.everything(pred_iou_thresh=0.5, stability_score_thresh=0.5) (micro needs them)"
                        )

        self._set_toggle(True)
        self._run_busy(job, "segmenting everything")

    def hide_everything(self) -> None:
        """Stop showing the "everything" masks (they are kept in ``proposals``)."""
        self.show_proposals = False
        self._set_toggle(False)
        self._redraw({"mask"})

    def adopt(self, index: int, label: str | None = None) -> None:
        """Make proposal ``index`` (see ``everything``) an object of the current image."""
        if not 0 <= index < len(self.proposals):
            self._show_error(f"no proposal {index}: there are {len(self.proposals)}.")
            return
        p = self.proposals[index]
        self._act(lambda: self.session.add_mask(p["segmentation"], p["predicted_iou"], label))

    def _proposal_at(self, x: float, y: float) -> int | None:
        """The smallest shown proposal containing image pixel (x, y), or None."""
        if not self.show_proposals:
            return None
        xi = min(int(x), self.session.width - 1)
        yi = min(int(y), self.session.height - 1)
        hits = [i for i, p in enumerate(self.proposals) if p["segmentation"][yi, xi]]
        return min(hits, key=lambda i: self.proposals[i]["area"]) if hits else None

    def _set_toggle(self, value: bool) -> None:
        self._syncing = True
        try:
            self._everything.value = value
        finally:
            self._syncing = False

    def set_opacity(self, value: float) -> None:
        """Opacity of the mask overlay, 0 to 1."""
        self.opacity = float(np.clip(value, 0.0, 1.0))
        self._redraw({"mask"})

    def set_model(self, model: Any, *, device: str = "auto", precision: str = "auto") -> None:
        """Switch model (a name, a Sam or a predictor). Objects and masks are kept; the next
        prompt on an object runs the new model."""
        self.wait()
        self.predictor = _as_predictor(model, device, precision)
        self.session.predictor = self.predictor
        self._show_image()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the current image is encoded and queued clicks are applied; True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (thread := self._encoding) is not None and thread is not threading.current_thread():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            thread.join(left)
        return True

    # ------------------------------------------------------------------ results

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """label -> bool HxW mask (original image pixels) of each object of the current image.

        Waits for a running encoding and the clicks queued behind it, so a script sees them."""
        self.wait()
        return self.session.masks

    @property
    def annotations(self) -> list[dict[str, Any]]:
        """Every image's objects with prompts, masks and scores (after queued clicks)."""
        self.wait()
        return self.session.annotations

    def to_coco(self, **kwargs: Any) -> dict[str, Any]:
        """COCO JSON (RLE masks) of all images: ``json.dump(w.to_coco(), f)``. Each object label is
        its own category unless ``category=`` maps labels to class names."""
        self.wait()
        return self.session.to_coco(**kwargs)

    def save(self, folder: str | Path, **kwargs: Any) -> Path:
        """Write one PNG per mask and annotations.json (COCO + prompts) into ``folder``.

        Returns the path of ``annotations.json``. Waits for queued clicks first."""
        self.wait()
        return self.session.save(folder, **kwargs)

    def load(self, folder: str | Path) -> None:
        """Continue work saved with ``save`` (no model run); undoable."""
        self.wait()
        self._act(lambda: self.session.load(folder))

    # ------------------------------------------------------------------ encoding

    def _show_image(self) -> None:
        s = self.session
        h, w = s.height, s.width
        self.scale = min(1.0, self.display_size / max(h, w))
        cw, ch = max(1, round(w * self.scale)), max(1, round(h * self.scale))
        # Index maps from canvas pixels to image pixels (nearest): masks scale with one gather.
        self._rows = np.minimum((np.arange(ch) + 0.5) / self.scale, h - 1).astype(np.intp)
        self._cols = np.minimum((np.arange(cw) + 0.5) / self.scale, w - 1).astype(np.intp)
        self.canvas.width, self.canvas.height = cw, ch
        self.canvas.layout.width, self.canvas.layout.height = f"{cw}px", f"{ch}px"
        self._redraw({"image"})
        self._start_encoding()

    def _start_encoding(self) -> None:
        if not self.session.is_encoded:
            self._run_busy(self.session.ensure_encoded, "encoding")

    def _run_busy(self, job: Callable[[], Any], label: str) -> None:
        """Run a long job (encoding, "everything") off the UI path; clicks meanwhile are queued."""
        with self._lock:
            if self._encoding is not None and self.background:  # one job at a time, in order
                self._pending.append(_Job(job, label))
                return
            self._encode_started = time.perf_counter()
            self._busy_label = label
            self._encoding = threading.Thread(
                target=self._busy, args=(job, label), daemon=True, name=f"sam-{label}"
            )
            self._update_status()
        if self.background:
            _WORKERS.add(self._encoding)
            self._encoding.start()
            threading.Thread(target=self._tick, daemon=True, name="sam-busy-clock").start()
        else:
            self._encoding.run()

    def _busy(self, job: Callable[[], Any], label: str) -> None:
        try:
            job()  # outside the widget lock: clicks get queued meanwhile
        except Exception as e:  # shown to the user; the next click tries again
            self._show_error(f"{label} failed: {e}")
        next_job = None
        with self._lock:
            try:
                while self._pending and next_job is None:
                    action = self._pending.pop(0)
                    if isinstance(action, _Job):
                        next_job = action  # its worker applies what is queued after it
                        continue
                    try:
                        self._guard(action)
                    except Exception as e:  # a worker thread has nobody to raise to: show it
                        self._show_error(f"{type(e).__name__}: {e}")
            finally:
                if self._encoding is threading.current_thread() or not self.background:
                    self._encoding = None
        if next_job is not None:
            self._run_busy(next_job.fn, next_job.label)
        self._update_status()

    def _tick(self) -> None:
        while self._encoding is not None:
            self._update_status()
            time.sleep(0.5)

    @property
    def encoding(self) -> bool:
        """True while the current image is being encoded."""
        return self._encoding is not None

    # ------------------------------------------------------------------ plumbing

    def _act(self, action: Callable[[], Any]) -> Any:
        """Run a session action now, or queue it while the image is being encoded."""
        with self._lock:
            if self._encoding is not None and self.background:
                self._pending.append(action)
                self._update_status()
                return None
            return self._guard(action)

    def _guard(self, action: Callable[[], Any]) -> Any:
        """Run ``action``, batch the redraws it causes, and show (not raise) errors of the UI."""
        with self._lock:
            self._depth += 1
            try:
                result = action()
                self.error = None
                return result
            except (ValueError, KeyError, RuntimeError) as e:
                self._show_error(str(e))
                if self._ui == 0 and not threading.current_thread().name.startswith("sam-"):
                    raise  # called from code: the caller hears of it (the status line shows it too)
                return None
            finally:
                self._depth -= 1
                if self._depth == 0 and self._dirty:
                    dirty, self._dirty = self._dirty, set()
                    self._redraw(dirty)

    def _from_ui(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a browser event or control callback: errors go to the status line, never raise
        into the comm handler (nobody would see them there)."""
        self._ui += 1
        try:
            return fn(*args)
        except Exception as e:
            self._show_error(f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e))
            return None
        finally:
            self._ui -= 1

    def _navigate(self, move: Callable[[], Any]) -> Any:
        if self._pending:
            self.wait()  # clicks queued on this image are applied to it before leaving
        self._drag = self._drag_rect = None
        return self._guard(move)

    def _on_session(self, event: str) -> None:
        if event == "image":
            self._dirty.discard("image")
            self.proposals, self.show_proposals = [], False
            self._set_toggle(False)
            self._show_image()
            return
        self._dirty.add(event)
        if self._depth == 0:  # a change made on the session directly, not through the widget
            dirty, self._dirty = self._dirty, set()
            self._redraw(dirty)

    def _show_error(self, message: str) -> None:
        self.error = message
        self._update_status()

    # ------------------------------------------------------------------ browser events

    def _to_canvas(self, event: dict) -> tuple[float, float]:
        """Event position (CSS pixels, maybe scaled by the page) -> canvas pixels."""
        sx = self.canvas.width / max(float(event.get("boundingRectWidth") or self.canvas.width), 1e-6)
        sy = self.canvas.height / max(float(event.get("boundingRectHeight") or self.canvas.height), 1e-6)
        return float(event["relativeX"]) * sx, float(event["relativeY"]) * sy

    def _to_image(self, cx: float, cy: float) -> tuple[float, float]:
        """Canvas pixels -> original image pixels, clamped inside the image."""
        x = float(np.clip(cx / self.scale, 0, self.session.width))
        y = float(np.clip(cy / self.scale, 0, self.session.height))
        return x, y

    def _on_dom_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "keydown":
            self._on_key(event)
        elif kind == "mousedown":
            negative = event.get("button") == 2 or bool(event.get("shiftKey"))
            self._drag = (*self._to_canvas(event), negative)
        elif kind == "mousemove" and self._drag is not None:
            x0, y0, _ = self._drag
            x1, y1 = self._to_canvas(event)
            if max(abs(x1 - x0), abs(y1 - y0)) >= DRAG_MIN:
                self._drag_rect = (x0, y0, x1, y1)
                self._redraw({"prompts"})
        elif kind == "mouseup" and self._drag is not None:
            x0, y0, negative = self._drag
            x1, y1 = self._to_canvas(event)
            self._drag = self._drag_rect = None
            if max(abs(x1 - x0), abs(y1 - y0)) < DRAG_MIN:
                self.click(*self._to_image(x0, y0), positive=not negative)
            else:
                self.drag_box(*self._to_image(x0, y0), *self._to_image(x1, y1))
        elif kind == "mouseleave" and self._drag is not None:
            self._drag = self._drag_rect = None
            self._redraw({"prompts"})

    def _on_key(self, event: dict) -> None:
        key = event.get("key", "")
        actions: dict[str, Callable[[], Any]] = {
            "z": self.undo,
            "y": self.redo,
            "Z": self.redo,
            "n": self.new_object,
            "x": self.delete_object,
            "ArrowRight": self.next_image,
            "ArrowLeft": self.previous_image,
            "e": lambda: self.hide_everything() if self.show_proposals else self.everything(),
        }
        if key in actions:
            actions[key]()
        elif key in ("1", "2", "3"):
            self.choose(int(key) - 1)

    def _on_everything(self, change: dict) -> None:
        if self._syncing:
            return
        if change["new"]:
            self.everything()
        else:
            self.hide_everything()

    def _on_pick_object(self, change: dict) -> None:
        if not self._syncing and change["new"] is not None:
            self.select(change["new"])

    def _on_rename(self, change: dict) -> None:
        active = self.session.active
        if not self._syncing and active is not None and change["new"] and change["new"] != active.label:
            self.rename(active.label, change["new"])

    def _on_pick_candidate(self, change: dict) -> None:
        if not self._syncing and change["new"] is not None:
            self.choose(change["new"])

    # ------------------------------------------------------------------ drawing

    def _redraw(self, what: set[str]) -> None:
        full = "image" in what
        with hold_canvas():
            if full:
                img = self.session.image[self._rows][:, self._cols]
                rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
                self.canvas[0].put_image_data(rgba, 0, 0)
            if full or what & {"mask", "objects", "active", "history"}:
                self._draw_masks()
            if full or what & {"prompts", "objects", "active", "history", "mask"}:
                self._draw_prompts()
        self._sync_controls_soon()

    def _sync_controls_soon(self) -> None:
        """Bring the controls up to date: now, or CONTROLS_DELAY_S later when a browser event
        caused the redraw and the kernel's event loop runs in this thread (code and tests that
        call the widget's methods see the controls updated on return)."""
        loop = None
        if self._ui:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        if loop is None:
            self._sync_controls_now()
        elif not self._controls_due:
            self._controls_due = True
            loop.call_later(CONTROLS_DELAY_S, self._sync_controls_now)

    def _sync_controls_now(self) -> None:
        with self._lock:
            self._controls_due = False
            self._sync_controls()
            self._update_status()

    def mask_overlay(self) -> np.ndarray:
        """The mask layer as shown: canvas-sized RGBA uint8 (the active object more opaque)."""
        ch, cw = len(self._rows), len(self._cols)
        out = np.zeros((ch, cw, 4), np.uint8)
        if self.show_proposals:
            for i, p in enumerate(self.proposals):  # largest first, so small ones stay visible
                m = p["segmentation"][self._rows][:, self._cols]
                out[m] = (*PALETTE[i % len(PALETTE)], round(255 * self.opacity * 0.8))
        active = self.session.active
        for obj in self.session.objects:
            if obj.mask is None:
                continue
            m = obj.mask[self._rows][:, self._cols]
            alpha = self.opacity if active is not None and obj.label == active.label else self.opacity * 0.6
            out[m] = (*obj.color, round(255 * alpha))
            out[mask_border(m)] = (*obj.color, 255)
        return out

    def _draw_masks(self) -> None:
        layer = self.canvas[1]
        layer.clear()
        overlay = self.mask_overlay()
        alpha = overlay[..., 3]
        rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
        if len(rows):
            # Only the masks' bounding box: PNG encoding grows with the pixels sent (a 768x768
            # overlay takes ~90 ms to encode, the box of one object a few ms).
            y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            layer.put_image_data(overlay[y0:y1, x0:x1], int(x0), int(y0))

    def _draw_prompts(self) -> None:
        layer = self.canvas[2]
        layer.clear()
        obj = self.session.active
        s = self.scale
        if obj is not None:
            if obj.box is not None:
                x0, y0, x1, y1 = (v * s for v in obj.box)
                layer.line_width = 2
                layer.stroke_style = "#ffffff"
                layer.stroke_rect(x0, y0, x1 - x0, y1 - y0)
                layer.set_line_dash([6, 4])
                layer.stroke_style = "#000000"
                layer.stroke_rect(x0, y0, x1 - x0, y1 - y0)
                layer.set_line_dash([])
            for (x, y), label in zip(obj.points, obj.point_labels, strict=True):
                layer.fill_style = POSITIVE if label == 1 else NEGATIVE
                layer.stroke_style = "#ffffff"
                layer.line_width = 2
                layer.fill_circle(x * s, y * s, 5)
                layer.stroke_circle(x * s, y * s, 5)
        if self._drag_rect is not None:
            x0, y0, x1, y1 = self._drag_rect
            layer.stroke_style = "#ffd400"
            layer.line_width = 2
            layer.set_line_dash([4, 3])
            layer.stroke_rect(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
            layer.set_line_dash([])

    def _sync_controls(self) -> None:
        s = self.session
        self._syncing = True
        try:
            self._image_label.value = f"image {s.current + 1}/{len(s)}: <b>{html.escape(s.image_name)}</b>"
            self._prev.disabled = s.current == 0
            self._next.disabled = s.current == len(s) - 1
            self._undo.disabled = not s.can_undo
            self._redo.disabled = not s.can_redo
            self._delete.disabled = s.active is None
            self._objects.options = s.labels
            self._objects.value = s.active.label if s.active is not None else None
            self._label_edit.value = s.active.label if s.active is not None else ""
            obj = s.active
            if obj is not None and obj.scores is not None and len(obj.scores) > 1:
                self._candidates.options = [
                    (f"{i + 1}: {score:.2f}", i) for i, score in enumerate(obj.scores)
                ]
                self._candidates.value = obj.chosen
                self._candidates.layout.display = None
            else:
                self._candidates.options = []
                self._candidates.layout.display = "none"
        finally:
            self._syncing = False

    def status_text(self) -> str:
        """The status line as plain text: model, device, precision, timings, cache, areas."""
        p = self.predictor
        stats = getattr(p, "stats", None)
        model = getattr(getattr(p, "model", None), "sam_widgets_name", "custom")
        parts = [f"model {model}"]
        if stats is not None:
            parts.append(f"{stats.device} {stats.precision}")
            if self._encoding is not None:
                parts.append(f"{self._busy_label}… {time.perf_counter() - self._encode_started:.1f} s")
                clicks = sum(not isinstance(a, _Job) for a in self._pending)
                if clicks:
                    parts.append(f"{clicks} click(s) queued")
                parts += [f"then {a.label}" for a in self._pending if isinstance(a, _Job)]
            else:
                if stats.encoder_ms is not None:
                    parts.append(f"encode {stats.encoder_ms:.0f} ms")
                if stats.last_was_hit is not None:
                    parts.append("cache hit" if stats.last_was_hit else "cache miss")
        if self.session.last_click_ms is not None:
            parts.append(f"click {self.session.last_click_ms:.0f} ms")
        active = self.session.active
        if active is not None and active.mask is not None:
            parts.append(f"{active.label}: {int(active.mask.sum())} px, score {active.score:.2f}")
        text = " · ".join(parts)
        return f"{text} · error: {self.error}" if self.error else text

    def _update_status(self) -> None:
        text = html.escape(self.status_text())
        color = "#b00020" if self.error else "#555"
        self._status.value = f"<span style='color:{color};font-size:90%'>{text}</span>"

    def export(self, folder: str | Path, format: str = "coco", **kwargs: Any) -> Path:
        """``Session.export`` after queued clicks: coco, coco-polygons, yolo, labelme or cutouts."""
        self.wait()
        return self.session.export(folder, format=format, **kwargs)
