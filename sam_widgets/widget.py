"""SegmentWidget: click on an image in a notebook, get SAM masks. A thin view over a Session.

What is here: layout, browser events -> public methods, drawing, and keeping the controls in step.
The state and every rule about objects, prompts and "everything" proposals live in ``Session``
(plain pytest tests them); long jobs run in order on ``background.Background``; the model comes
from ``predictor.as_predictor``; the page side of the mouse, keys, focus and size is ``_surface``.

Layers of the canvas (ipycanvas MultiCanvas), drawn at the device pixel ratio:

    0 image    the visible region of the full-resolution image, as RGBA so ipycanvas sends PNG
    1 masks    the objects' masks and outlines (and proposals) of the visible region, and labels
    2 prompts  points, box, the box being dragged, clicks waiting for the encoder, the brush's stroke
               being dragged and its disc under the pointer, the region of "segment in this view"
    3 hover    the hover preview: the mask a click under the resting pointer would give, faint

Editing tools (each in a section of its own below): brush and eraser (strokes kept by the session:
``Session.paint``), candidate thumbnails and the class box, the hover preview (``Session.preview``
in a disposable background job that a click never waits behind), "everything"'s threshold
sliders, and segment in this view (``Session.set_region``).

The view: the canvas is the image fitted into ``display_size`` and the width the page gives it;
``zoom`` (1 = fitted) and ``center`` (image pixels) choose the region shown. Prompts and masks stay
in image pixels; only drawing and the mapping of events use the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import io
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipycanvas.canvas as _ipycanvas
import ipywidgets as W
import numpy as np
import traitlets as T
from ipycanvas import MultiCanvas, hold_canvas
from PIL import Image
from scipy import ndimage

from ._surface import SURFACE_CLASS, Surface
from .background import Background, Job
from .errors import SamWidgetsError
from .predictor import as_predictor
from .record import record_of
from .session import CandidateError, Session, SessionObject, propose_defaults
from .viz import NEGATIVE, POSITIVE, PROPOSAL_ALPHA, RING, hex_color, proposal_color, text_color

__all__ = ["SegmentWidget", "HELP", "KEYS"]

#: Every gesture and key, as the "?" button shows them (README "The widget" says the same).
HELP = """
<b>Mouse</b> (on the image): <b>click</b> add a point to the active object ·
<b>right click</b> or <b>shift+click</b> a negative point · <b>drag</b> a box (it may end past the
image's edge: it is clipped) · a <b>click inside another object</b> selects it ·
<b>alt+click</b> always adds a point to the active object · a <b>click far from the active
object</b> starts a new object · <b>wheel</b> zoom around the pointer ·
<b>middle drag</b> or <b>space+drag</b> pan (or the pan tool).<br>
<b>Keys</b> (after a click on the image: a blue ring shows the widget has the keys):
<b>z</b> undo · <b>y</b> redo · <b>n</b> new object · <b>x</b> delete object ·
<b>1 2 3</b> candidate mask · <b>← →</b> previous/next image · <b>e</b> everything on/off ·
<b>+ −</b> zoom · <b>0</b> fit · <b>arrows ↑ ↓</b> pan · <b>p</b> pan tool · <b>?</b> this help.<br>
<b>Brush and eraser</b>: <b>b</b> brush (drag paints into the active object's mask; again: back to
prompts) · <b>r</b> eraser (drag rubs pixels out; with the brush, a right or shift drag erases) ·
<b>[ ]</b> smaller/larger brush. Strokes stay over later clicks on the object; <b>z</b> undoes one.<br>
<b>h</b> hover preview on/off (the mask a click would give, drawn faintly under the pointer) ·
<b>v</b> segment in this view (encode the zoomed region on its own: small objects in large images;
<b>v</b> again: back to the whole image).
Ctrl/Cmd keys, Shift+Enter and Esc go to the notebook as usual.
"""
KEYS = ["z", "y", "Z", "n", "x", "e", "p", "1", "2", "3", "+", "=", "-", "_", "0", "?"]
KEYS += ["b", "r", "[", "]", "h", "v"]
KEYS += ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"]
DRAG_MIN = 4  # CSS pixels a press must move to be a box rather than a click
MAX_PIXEL = 32  # the most CSS pixels one image pixel is zoomed to
WHEEL_STEP = 0.002  # zoom factor per wheel pixel: exp(-dy * WHEEL_STEP), 100 px = x1.22
KEY_ZOOM = 1.5
ENCODE_AHEAD_S = 1.0  # encode the next image ahead when the current one took longer than this
#: After a redraw caused by the browser, the controls (object list, candidate buttons, status line)
#: follow this much later, so that the page paints the mask first (BENCHMARKS.md).
CONTROLS_DELAY_S = 0.04
THUMB = 104  # CSS pixels: the width of a candidate's thumbnail (and of its button)
BRUSH_STEP = 1.25  # [ and ] change the brush's diameter by this factor
HOVER_FAST_MS = 120.0  # the hover preview is on by default when a decoder pass takes at most this
HOVER_COLOR = (255, 255, 255)  # the hover preview: a faint white veil with an outline
HOVER_ALPHA = 0.35


class SegmentWidget(W.VBox):
    """Interactive SAM segmentation of one image or a list of images, in a notebook.

    Arguments:
      images: an image or a list (HxWx3 uint8 arrays, PIL images or paths; see ``Session``).
      model: a model name for ``load_sam`` (default ``"micro"``, the bundled model: offline), a
        segment_anything ``Sam``, or a ``CachedPredictor`` (see ``predictor.as_predictor``).
      session: a ``Session`` to show instead of ``images`` and ``model`` (its predictor is used).
      display_size: the longest side of the fitted view, in CSS pixels; the canvas is also never
        wider than the notebook gives it. Images are never enlarged to fit.
      background: encode images (and run "everything") in a worker thread, the notebook staying
        responsive; clicks made meanwhile wait in order and are drawn hollow. Off, all runs in
        the call that needs it.
      device, precision: passed to ``load_sam`` when ``model`` is a name.

    View settings (traitlets, linked to their controls): ``opacity``, ``zoom`` (1 = fitted),
    ``center`` (image pixels), ``tool`` ("prompt", "pan", "brush" or "eraser"), ``brush_size``
    (diameter in image pixels), ``display_size``.
    Results: ``masks`` (label -> bool HxW, current image), ``annotations``, ``to_coco()``,
    ``save(folder)``, ``load(folder)``; ``session`` holds the state.
    """

    opacity = T.Float(0.5, min=0.0, max=1.0, help="opacity of the masks, 0 to 1")
    zoom = T.Float(1.0, min=1.0, help="magnification over the fitted view (1: whole image)")
    center = T.Tuple(T.Float(), T.Float(), default_value=(0.0, 0.0), help="view centre, image px")
    tool = T.Enum(["prompt", "pan", "brush", "eraser"], "prompt", help="what a left drag does")
    brush_size = T.Int(8, min=1, help="brush and eraser diameter, image pixels")
    hover = T.Bool(False, help="draw the mask a click would give under the resting pointer")
    pred_iou_thresh = T.Float(0.88, min=0.0, max=1.0, help='"everything": least predicted IoU kept')
    stability_score_thresh = T.Float(0.95, min=0.0, max=1.0, help='"everything": least stability kept')
    display_size = T.Int(768, help="longest side of the fitted view, CSS pixels")

    def __init__(
        self,
        images: Any = None,
        model: Any = None,
        *,
        session: Session | None = None,
        display_size: int = 768,
        background: bool = True,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        if int(display_size) < 64:
            raise ValueError(f"display_size must be at least 64 pixels, got {display_size}.")
        if session is not None:
            if images is not None or model is not None:
                raise ValueError(
                    "Give either session=... or images (and model), not both: a session brings "
                    "its images and predictor."
                )
            self.session = session
            self.predictor = session.predictor
        else:
            if images is None:
                raise ValueError("SegmentWidget needs images (or session=...).")
            self.predictor = as_predictor(
                "micro" if model is None else model, device=device, precision=precision
            )
            self.session = Session(images, self.predictor)
        self._jobs = Background(background, on_error=self._job_failed, on_change=self._jobs_changed)
        self.error: str | None = None  # the last error shown in the status line
        self.message = ""  # what the last action did, in plain words
        self._drag: dict[str, Any] | None = None  # the gesture under way (press to release)
        self._dirty: set[str] = set()
        self._batch = 0  # > 0 while an action runs: its redraws are made once, at the end
        self._in_event = False  # handling a browser event: controls follow CONTROLS_DELAY_S later
        self._controls_due = False
        self._lock = threading.RLock()  # drawing and the view's own state (kernel vs worker thread)
        self._ticking = False
        self._css = (64, 64)  # canvas size in CSS pixels
        self._dpr = 1.0
        self._fitted: tuple[tuple, np.ndarray] | None = None  # (key, RGBA) of the fitted image
        self._ahead: threading.Thread | None = None
        self._pointer: tuple[float, float] | None = None  # image pixels under the resting pointer
        self._hover_token = 0  # bumped by every pointer move and gesture: older previews are stale
        # (mask hxw, the view's region, size (h, w)) of the last preview, at the view's size
        self._hover_mask: tuple[np.ndarray, tuple, tuple[int, int]] | None = None
        self._hover_chosen = False  # the user set ``hover``: the measurement leaves it alone
        self._hover_user_value = False  # ... to this
        self._hover_auto_thread: int | None = None  # the thread the measurement sets ``hover`` from
        self._hover_words = ""  # what the measurement found, for the status line
        # label -> (its view's mask, where its label goes): unchanged objects are not searched again
        self._anchors: dict[str, tuple[np.ndarray | None, tuple[int, int] | None]] = {}
        self.decoder_ms: float | None = None  # one preview's decoder pass, measured at start (ms)
        self.hover_ms: float | None = None  # the last preview: pointer message -> drawn (ms, kernel)

        self._surface_events = Surface(shortcuts=KEYS)
        self._surface_events.on_msg(lambda _, msg, __: self._from_ui(self._on_input, msg))
        self._surface_events.observe(lambda _: self._from_ui(self._on_room), ["width", "dpr"])
        self.canvas = MultiCanvas(4, width=64, height=64, layout=W.Layout(margin="0"))
        self._surface = W.Box([self.canvas], layout=W.Layout(width="fit-content", margin="0", padding="0"))
        self._surface.add_class(SURFACE_CLASS)
        self._frame = W.Box([self._surface], layout=W.Layout(border="1px solid #ccc", width="fit-content"))
        self._frame.layout.max_width = "100%"
        self._build_controls()
        super().__init__(
            [
                self._toolbar,
                self._everything_bar,
                self._frame,
                self._object_bar,
                self._status,
                self._help,
                self._surface_events,
            ],
            layout=W.Layout(max_width="100%"),
        )
        self.add_class("sam-widgets-root")
        self.display_size = int(display_size)
        self.observe(self._on_view_trait, ["zoom", "center", "display_size"])
        self.observe(lambda _: self._redraw({"mask"}), ["opacity"])
        self.observe(self._on_tool, ["tool"])
        self.canvas.on_client_ready(lambda: self._redraw({"image"}))
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
        self._fit = button(
            "Fit", "show the whole image (0); zoom with the wheel, + and -", self.fit, "expand"
        )
        self._zoom_label = W.HTML()
        self._tool = W.ToggleButtons(
            options=[("Prompt", "prompt"), ("Pan", "pan"), ("Brush", "brush"), ("Eraser", "eraser")],
            tooltips=[
                "left drag: box, click: point",
                "left drag pans (p); also middle drag, space+drag",
                "left drag paints into the active object's mask (b); right or shift drag erases",
                "left drag erases from the active object's mask (r)",
            ],
            style={"button_width": "auto"},
        )
        W.link((self, "tool"), (self._tool, "value"))
        self._build_edit_controls()
        self._build_hover_controls()
        self._thresholds_changing = False
        self._syncing = False
        self._everything_last: dict[str, Any] = {}
        self._bar_image = 0  # the image whose "everything" sliders the row shows (_sync_controls)
        self._build_everything_controls()
        self._opacity = W.FloatSlider(
            min=0.0,
            max=1.0,
            step=0.05,
            description="opacity",
            readout_format=".2f",
            layout=W.Layout(width="200px"),
        )
        W.link((self, "opacity"), (self._opacity, "value"))
        self._everything = W.ToggleButton(
            description="Everything", icon="th", tooltip="segment everything; click a region to adopt it (e)"
        )
        self._everything.observe(lambda ch: self._from_ui(self._on_everything, ch["new"]), "value")
        self._help_button = W.ToggleButton(
            description="?", tooltip="gestures and keys (?)", layout=W.Layout(width="32px")
        )
        self._help_button.observe(lambda ch: self._show_help(ch["new"]), "value")
        wrap = W.Layout(flex_flow="row wrap", align_items="center", max_width="100%")
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
                self._hover_button,
                self._view_button,
                self._fit,
                self._zoom_label,
                self._tool,
                self._brush,
                self._opacity,
                self._help_button,
            ],
            layout=wrap,
        )
        self._objects = W.HBox(layout=W.Layout(flex_flow="row wrap", align_items="center"))
        self._objects.add_class("sam-widgets-objects")
        self._label_edit = W.Text(
            placeholder="label", continuous_update=False, layout=W.Layout(width="140px")
        )
        self._label_edit.observe(lambda ch: self._from_ui(self._on_rename, ch["new"]), "value")
        self._candidates = W.ToggleButtons(options=[], style={"button_width": f"{THUMB}px"})
        self._candidates.observe(lambda ch: self._from_ui(self._on_pick_candidate, ch["new"]), "value")
        self._candidate_box = W.VBox([self._thumbs, self._candidates], layout=W.Layout(display="none"))
        self._object_bar = W.HBox(
            [self._objects, self._label_edit, self._class_edit, self._candidate_box], layout=wrap
        )
        self._status = W.HTML()
        self._help = W.HTML(f"<small>{HELP}</small>", layout=W.Layout(display="none"))
        self._chips: dict[str, W.Button] = {}

    def _show_help(self, shown: bool) -> None:
        self._help.layout.display = None if shown else "none"

    # ------------------------------------------------------------------ public gestures

    def click(self, x: float, y: float, positive: bool = True, *, new_point: bool = False) -> str | None:
        """A click at (x, y) in original image pixels, with the rules of ``Session.click``: inside
        another object it selects it, on a proposal it adopts it, far from the active object's
        mask it starts a new object, else it adds a point. ``new_point=True`` (alt+click) always
        adds the point. Returns what it did (None when queued behind the encoder)."""
        what = self._act(
            lambda: self.session.click(x, y, positive, new_point=new_point), "click", (x, y, positive)
        )
        if what is not None:
            self._say_click(what)
        return what

    def drag_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """A dragged box between two corners, in original image pixels, any direction."""

        def box() -> bool:
            self.session.set_box(x0, y0, x1, y1)
            return True

        if self._act(box, "box"):  # None: queued behind a job
            self._say_click("box")  # "Mask in N ms", as for a click

    def undo(self) -> bool:
        """Undo the last action on this image."""
        return self._act(lambda: self._history(self.session.undo, "Undone (y redoes it)", "undo"), "undo")

    def redo(self) -> bool:
        """Redo the last undone action on this image."""
        return self._act(lambda: self._history(self.session.redo, "Redone (z undoes it)", "redo"), "redo")

    def _history(self, step: Callable[[], bool], done: str, verb: str) -> bool:
        """Run ``step`` (session undo or redo) and say in the status line what it did."""
        moved = step()
        self._say(done if moved else f"Nothing to {verb} on this image")
        return moved

    def new_object(self, label: str | None = None) -> None:
        """Start a new object; the next prompts go to it (an empty active object is replaced)."""

        def new() -> None:
            self.session.drop_empty()
            self.session.add_object(label)
            active = self.session.active
            self._say(f"New object, {active.label}: click on it" if active is not None else "New object")

        self._act(new, "new object")

    def select(self, label: str) -> None:
        """Make ``label`` the active object (an empty active object is not kept)."""
        self._act(lambda: (self.session.drop_empty(keep=label), self.session.select(label)), "select")

    def delete_object(self, label: str | None = None) -> None:
        """Delete ``label`` (default: the active object)."""
        label = label if label is not None else (self.session.active.label if self.session.active else None)
        if label is not None:

            def delete() -> None:
                self.session.delete(label)
                self._say(f"Deleted {label} (z brings it back)")

            self._act(delete, "delete")

    def rename(self, old: str, new: str) -> None:
        """Give an object another label."""
        self._act(lambda: self.session.rename(old, new), "rename")

    def clear(self) -> None:
        """Delete every object of the current image (undoable)."""
        self._act(self.session.clear, "clear")

    def choose(self, index: int) -> None:
        """Show candidate mask ``index`` (0-based) for the active object; the status line says
        which (and that undone steps can no longer be redone, when that was so)."""
        self._act(lambda: self._pick(index), "choose")

    def _choose_key(self, index: int) -> None:
        """Keys 1-3: a candidate that does not exist is explained in the status line, not shown as
        an error (also when the key waits behind a running job)."""
        self._act(lambda: self._pick(index, note_missing=True), "choose")

    def _pick(self, index: int, note_missing: bool = False) -> None:
        active = self.session.active
        before = active.chosen if active is not None else None
        could_redo = self.session.can_redo
        if note_missing and (active is None or active.n_candidates == 0):
            self._say("No candidate masks yet: click on an object or drag a box first")
            return
        try:
            obj = self.session.choose(index)
        except CandidateError as e:
            if not note_missing:
                raise
            self._say(str(e))
            return
        n = obj.n_candidates
        if n == 1:
            why = (
                "SAM offers three only for a single click" if obj.has_prompts else "it was adopted or painted"
            )
            self._say(f"{obj.label} has one mask ({why})")
        elif before == index:
            self._say(f"Mask {index + 1} of {n} is already shown")
        elif could_redo and not self.session.can_redo:
            self._say(f"Mask {index + 1} of {n} (the undone steps can no longer be redone)")
        else:
            self._say(f"Mask {index + 1} of {n}")

    def next_image(self) -> bool:
        """Go to the next image (its objects are kept); False at the last one."""
        return self._navigate(self.session.next)

    def previous_image(self) -> bool:
        """Go to the previous image; False at the first one."""
        return self._navigate(self.session.previous)

    def go(self, index: int) -> None:
        """Go to image ``index``."""
        self._navigate(lambda: self.session.go(index))

    def everything(self, **settings: Any) -> Job:
        """Segment everything in the current image (``Session.propose``; ``settings`` go to it).

        The thresholds are the sliders' (``pred_iou_thresh``, ``stability_score_thresh``: by
        default the model's, ``session.propose_defaults``) unless ``settings`` give them. Runs in
        the background, after a running encoding; the proposals are outlined and a click on one
        adopts it (a click on one that overlaps the active object refines that object instead).
        Returns the job (``job.future.result()`` is the proposals).
        """
        index = self.session.current
        self._everything_last = dict(settings)
        settings = self._everything_settings(settings)
        self._show_everything_bar(True)
        self._bar_image = index  # a controls sync still due from an image change keeps them shown

        def job() -> Any:
            if self.session.current != index:
                return ()
            found = self._guard(lambda: self.session.propose(**settings))
            repeats = self.session.found_last - len(found)
            if found:
                self._say(
                    f"Everything: {len(found)} region{'s' if len(found) != 1 else ''} outlined; click "
                    "one to make it an object (a click on the active object refines it)"
                )
            elif repeats > 0:
                self._say(
                    f"Everything: the {repeats} region{'s' if repeats != 1 else ''} found "
                    f"{'are' if repeats != 1 else 'is'} already objects of this image; lower fit and "
                    "stability (the sliders) may find more"
                )
            else:
                self.error = (
                    f"Everything found no region with fit ≥ {settings['pred_iou_thresh']:.2f} and "
                    f"stability ≥ {settings['stability_score_thresh']:.2f}: try lower ones with the "
                    "sliders (or w.everything(pred_iou_thresh=..., stability_score_thresh=...))"
                )
                self._say("")
            self._sync_controls_now()
            return found

        return self._jobs.submit(job, "Segmenting everything")

    def hide_everything(self) -> None:
        """Stop offering the proposals of this image (undoable: ``Session.clear_proposals``)."""
        self._show_everything_bar(False)

        def hide() -> None:
            if self.session.clear_proposals():
                self._say("Everything: the regions are hidden (e shows them again)")

        self._act(hide, "hide everything")

    def adopt(self, index: int, label: str | None = None) -> None:
        """Make proposal ``index`` (see ``everything``) an object of the current image."""
        self._act(lambda: self.session.adopt(index, label), "adopt")

    @property
    def proposals(self) -> tuple:
        """The current image's "everything" proposals (``Session.proposals``), largest first."""
        return self.session.proposals

    def set_model(self, model: Any, *, device: str = "auto", precision: str = "auto") -> None:
        """Switch model (a name, a Sam or a predictor). Objects and masks are kept; the next
        prompt on an object runs the new model."""
        self.wait()
        self.predictor = as_predictor(model, device=device, precision=precision)
        self.session.predictor = self.predictor
        self.decoder_ms = None  # measured again for this model
        self._set_everything_defaults()
        self._show_image()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until background jobs (encoding, "everything", clicks queued behind them) are done;
        False if ``timeout`` seconds passed first."""
        return self._jobs.wait(timeout)

    @property
    def encoding(self) -> bool:
        """True while a background job runs or waits (encoding, "everything", queued clicks)."""
        return self._jobs.busy

    # ------------------------------------------------------------------ the view

    def fit(self) -> None:
        """Show the whole image (zoom 1)."""
        with self._batched(), self.hold_trait_notifications():
            self.zoom = 1.0
            self.center = (self.session.width / 2, self.session.height / 2)

    def zoom_to(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Show the region between two corners (original image pixels) as large as it fits."""
        x0, x1 = sorted((float(x0), float(x1)))
        y0, y1 = sorted((float(y0), float(y1)))
        if not (x1 - x0 > 0 and y1 - y0 > 0):
            raise ValueError(f"zoom_to needs a region of some size, got ({x0:g}, {y0:g}, {x1:g}, {y1:g}).")
        fit = self._fit_scale()
        zoom = min(self._css[0] / ((x1 - x0) * fit), self._css[1] / ((y1 - y0) * fit))
        with self._batched(), self.hold_trait_notifications():
            self.zoom = float(np.clip(zoom, 1.0, self.max_zoom))
            self.center = ((x0 + x1) / 2, (y0 + y1) / 2)

    def zoom_by(self, factor: float, around: tuple[float, float] | None = None) -> None:
        """Zoom by ``factor`` keeping image pixel ``around`` (default: the view's centre) in place."""
        zoom = float(np.clip(self.zoom * factor, 1.0, self.max_zoom))
        cx, cy = self.center
        if around is not None and zoom != self.zoom:
            ax, ay = around
            keep = self.zoom / zoom  # the point's offset from the centre shrinks by this much
            cx, cy = ax - (ax - cx) * keep, ay - (ay - cy) * keep
        with self._batched(), self.hold_trait_notifications():
            self.zoom = zoom
            self.center = (cx, cy)

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the view by (dx, dy) CSS pixels (the image moves the other way)."""
        k = self.pixel_size
        self.center = (self.center[0] + dx / k, self.center[1] + dy / k)

    @property
    def max_zoom(self) -> float:
        return max(1.0, MAX_PIXEL / self._fit_scale())

    @property
    def pixel_size(self) -> float:
        """CSS pixels per image pixel at the current zoom."""
        return self._fit_scale() * self.zoom

    @property
    def visible(self) -> tuple[float, float, float, float]:
        """The image region shown: (x0, y0, x1, y1) in original image pixels."""
        k = self.pixel_size
        w, h = self._css[0] / k, self._css[1] / k
        cx, cy = self.center
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    @property
    def scale(self) -> float:
        """Canvas (device) pixels per image pixel."""
        return self.pixel_size * self._dpr

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """CSS pixels from the canvas' top left -> original image pixels (not clamped)."""
        x0, y0, _, _ = self.visible
        k = self.pixel_size
        return x0 + x / k, y0 + y / k

    def _fit_scale(self) -> float:
        s = self.session
        room = self._surface_events.width - 4 if self._surface_events.width else None  # the frame's border
        scale = min(1.0, self.display_size / max(s.height, s.width))
        if room:
            scale = min(scale, max(room, 32) / s.width)
        return scale

    @T.validate("center")
    def _clamp_center(self, proposal: dict) -> tuple[float, float]:
        s = self.session
        cx, cy = proposal["value"]
        k = self._fit_scale() * self.zoom
        half_w, half_h = self._css[0] / k / 2, self._css[1] / k / 2
        cx = float(np.clip(cx, min(half_w, s.width / 2), max(s.width - half_w, s.width / 2)))
        cy = float(np.clip(cy, min(half_h, s.height / 2), max(s.height - half_h, s.height / 2)))
        return (cx, cy)

    @T.validate("zoom")
    def _clamp_zoom(self, proposal: dict) -> float:
        return float(np.clip(proposal["value"], 1.0, self.max_zoom))

    def _on_view_trait(self, change: dict) -> None:
        if change["name"] == "display_size":
            if change["new"] < 64:
                raise T.TraitError(f"display_size must be at least 64 pixels, got {change['new']}.")
            self._layout_canvas()
        with self._batched():
            if change["name"] == "zoom":
                self.center = self.center  # clamp again for the new zoom
            self._redraw({"image"})

    def _on_room(self) -> None:
        with self._batched():
            if self._layout_canvas():
                self._redraw({"image"})

    def _on_tool(self, change: dict) -> None:
        if change["new"] == "pan":
            self._surface.add_class("sam-widgets-pan")
        else:
            self._surface.remove_class("sam-widgets-pan")
        painting = change["new"] in ("brush", "eraser")
        self._brush.layout.display = None if painting else "none"
        if painting:
            self._say(self._brush_words())
        self._redraw({"prompts"})

    def _layout_canvas(self) -> bool:
        """Size the canvas for the image, the room and the pixel ratio; True if it changed."""
        s = self.session
        fit = self._fit_scale()
        css = (max(1, round(s.width * fit)), max(1, round(s.height * fit)))
        dpr = float(np.clip(self._surface_events.dpr or 1.0, 1.0, 3.0))
        if (css, dpr) == (self._css, self._dpr) and self.canvas.width == round(css[0] * dpr):
            return False
        self._css, self._dpr = css, dpr
        self.canvas.width, self.canvas.height = round(css[0] * dpr), round(css[1] * dpr)
        self.canvas.layout.width, self.canvas.layout.height = f"{css[0]}px", f"{css[1]}px"
        self.center = self.center
        return True

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Image row and column of each canvas pixel (nearest): the view as two index arrays."""
        x0, y0, _, _ = self.visible
        k = self.scale
        s = self.session
        cols = np.clip(np.floor(x0 + (np.arange(self.canvas.width) + 0.5) / k), 0, s.width - 1).astype(
            np.intp
        )
        rows = np.clip(np.floor(y0 + (np.arange(self.canvas.height) + 0.5) / k), 0, s.height - 1).astype(
            np.intp
        )
        return rows, cols

    # ------------------------------------------------------------------ plumbing

    def _act(self, action: Callable[[], Any], label: str, point: tuple | None = None) -> Any:
        """Run a session action now, or queue it behind the background jobs (in order)."""
        if self._jobs.busy and not self._jobs.in_worker():
            self._jobs.submit(lambda: self._guard(action), label, kind="click", data=point)
            self._redraw({"prompts"})  # the click waiting shows at once, hollow
            return None
        return self._guard(action)

    @contextlib.contextmanager
    def _batched(self) -> Iterator[None]:
        """Redraws asked for inside are made once, at the end."""
        with self._lock:
            self._batch += 1
            try:
                yield
            finally:
                self._batch -= 1
                if self._batch == 0 and self._dirty:
                    dirty, self._dirty = self._dirty, set()
                    self._redraw(dirty)

    def _guard(self, action: Callable[[], Any]) -> Any:
        """Run ``action``, batch the redraws it causes, show an error in the status line (and
        raise it to the caller: a browser event or a background job catches it there)."""
        with self._batched():
            try:
                result = action()
                self.error = None
                return result
            except Exception as e:
                self._show_error(e)
                raise

    def _from_ui(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a browser event or control callback: errors go to the status line, never raise
        into the comm handler (nobody would see them there)."""
        self._in_event = True
        try:
            return fn(*args)
        except Exception as e:
            if self.error is None:
                self._show_error(e)
            return None
        finally:
            self._in_event = False

    def _job_failed(self, job: Job, error: BaseException) -> None:
        if self.error is None or job.kind == "long":
            self._show_error(error, f"{job.label} failed: ")

    def _jobs_changed(self) -> None:
        if self._jobs.busy and not self._ticking:
            self._ticking = True
            threading.Thread(target=self._tick, daemon=True).start()
        self._redraw({"prompts"}) if not self._jobs.busy else None
        self._update_status()

    def _tick(self) -> None:
        try:
            while self._jobs.busy:
                self._update_status()
                time.sleep(0.5)
        finally:
            self._ticking = False
        self._update_status()

    def _navigate(self, move: Callable[[], Any]) -> Any:
        self.wait()  # clicks queued on this image are applied to it before leaving
        self._drag = None
        return self._guard(lambda: (self.session.drop_empty(), move())[1])

    def _on_session(self, event: str) -> None:
        if self._hover_mask is not None:  # a preview of the state before: stale
            self._hover_mask = None
            self._dirty.add("hover")
        self._hover_token += 1
        if event == "image":
            self._dirty.discard("image")
            self._show_image()
            return
        self._dirty.add(event)
        if self._batch == 0:  # a change made on the session directly, not through the widget
            dirty, self._dirty = self._dirty, set()
            self._redraw(dirty)

    def _show_error(self, error: BaseException | str, prefix: str = "") -> None:
        if isinstance(error, BaseException):
            plain = isinstance(error, SamWidgetsError) or (
                isinstance(error, (ValueError, LookupError)) and not isinstance(error, IndexError)
            )
            error = str(error) if plain else f"{type(error).__name__}: {error}"
        self.error = prefix + error
        self._update_status()

    def _say(self, message: str) -> None:
        self.message = message
        self._update_status()

    def _say_click(self, what: str) -> None:
        active = self.session.active
        name = active.label if active is not None else ""
        if what == "select":
            self._say(f"Selected {name} (alt+click adds a point to it instead)")
        elif what == "adopt":
            self._say(f"Adopted the region as {name}")
        elif what == "new":
            self._say(
                f"New object, {name}: the click was far from the last one (alt+click adds to it); "
                + self._mask_words().lower()
            )
        else:
            self._say(self._mask_words())

    def _mask_words(self) -> str:
        """ "Mask in 12 ms", and whether the hover preview's pass was reused."""
        ms = _click_ms(self.session)
        said = f"Mask in {ms:.0f} ms" if ms is not None else "Mask ready"
        if getattr(self.session, "click_reused", False):
            said += " (the hover preview's: no decoder pass)"
        return said

    # ------------------------------------------------------------------ browser events

    def _on_input(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "key":
            self._on_key(msg)
            return
        if kind in ("hover", "leave"):
            self._on_hover(msg if kind == "hover" else None)
            return
        if kind == "wheel":
            around = self.to_image(*self._css_point(msg))
            self.zoom_by(math.exp(-float(msg.get("dy", 0)) * WHEEL_STEP), around)
            return
        if kind not in ("down", "move", "up"):
            return
        x, y = self._css_point(msg)
        if kind == "down":
            self._drop_hover()  # a gesture: a preview waiting or shown is stale
            button = msg.get("button", 0)
            pan = button == 1 or (button == 0 and (msg.get("space") or self.tool == "pan"))
            if pan:
                self._drag = {"pan": True, "last": (x, y)}
            elif button in (0, 2) and self.tool in ("brush", "eraser"):
                erase = self.tool == "eraser" or button == 2 or bool(msg.get("shift"))
                self._drag = {"pan": False, "paint": True, "erase": erase, "points": [self.to_image(x, y)]}
                self._redraw({"prompts"})
            elif button in (0, 2):
                self._drag = {
                    "pan": False,
                    "start": (x, y),
                    "negative": button == 2 or bool(msg.get("shift")),
                }
                self._drag["alt"], self._drag["button"] = bool(msg.get("alt")), button
            return  # other buttons make nothing
        drag, self._drag = self._drag, (self._drag if kind == "move" else None)
        if drag is None:
            return
        if drag["pan"]:
            lx, ly = drag["last"]
            drag["last"] = (x, y)
            self.pan_by(lx - x, ly - y)
            return
        if drag.get("paint"):
            self._on_paint_drag(kind, drag, x, y)
            return
        sx, sy = drag["start"]
        moved = max(abs(x - sx), abs(y - sy)) >= DRAG_MIN
        box = moved and drag["button"] == 0  # only the left button makes boxes
        if kind == "move":
            drag["box"] = (sx, sy, x, y) if box else None
            self._redraw({"prompts"})
            return
        if box:
            self.drag_box(*self._clamped(sx, sy), *self._clamped(x, y))
        elif not moved and 0 <= sx <= self._css[0] and 0 <= sy <= self._css[1]:
            self.click(*self._clamped(sx, sy), positive=not drag["negative"], new_point=drag["alt"])
        else:
            self._redraw({"prompts"})

    def _css_point(self, msg: dict) -> tuple[float, float]:
        """Event position (CSS pixels in the canvas as shown, maybe scaled by the page) -> CSS
        pixels of the canvas' own size."""
        sx = self._css[0] / max(float(msg.get("w") or self._css[0]), 1e-6)
        sy = self._css[1] / max(float(msg.get("h") or self._css[1]), 1e-6)
        return float(msg.get("x", 0)) * sx, float(msg.get("y", 0)) * sy

    def _clamped(self, x: float, y: float) -> tuple[float, float]:
        """Canvas CSS pixels -> image pixels, clamped inside the image."""
        ix, iy = self.to_image(x, y)
        return float(np.clip(ix, 0, self.session.width)), float(np.clip(iy, 0, self.session.height))

    def _on_key(self, msg: dict) -> None:
        key = msg.get("key", "")
        step = 0.25 * min(self._css)
        actions: dict[str, Callable[[], Any]] = {
            "z": self.undo,
            "y": self.redo,
            "Z": self.redo,
            "n": self.new_object,
            "x": self.delete_object,
            "ArrowRight": self.next_image,
            "ArrowLeft": self.previous_image,
            "ArrowUp": lambda: self.pan_by(0, -step),
            "ArrowDown": lambda: self.pan_by(0, step),
            "e": lambda: self._on_everything(not self.session.proposals),
            "+": lambda: self.zoom_by(KEY_ZOOM),
            "=": lambda: self.zoom_by(KEY_ZOOM),
            "-": lambda: self.zoom_by(1 / KEY_ZOOM),
            "_": lambda: self.zoom_by(1 / KEY_ZOOM),
            "0": self.fit,
            "p": lambda: setattr(self, "tool", "pan" if self.tool == "prompt" else "prompt"),
            "?": lambda: setattr(self._help_button, "value", not self._help_button.value),
        }
        actions.update(self._edit_keys())
        if key in actions:
            actions[key]()
        elif key in ("1", "2", "3"):
            self._choose_key(int(key) - 1)

    def _on_everything(self, on: bool) -> None:
        if on and not self.session.proposals:
            self.everything()
        elif not on and self.session.proposals:
            self.hide_everything()
        elif not on and not self._syncing:
            self._show_everything_bar(False)

    def _on_rename(self, new: str) -> None:
        active = self.session.active
        if active is not None and new and new != active.label:
            self.rename(active.label, new)

    def _on_pick_candidate(self, index: int | None) -> None:
        active = self.session.active
        if self._syncing:
            return  # the buttons follow the session (new options, the chosen one): not the user's pick
        if index is not None and active is not None and index != active.chosen:
            self.choose(index)

    # ------------------------------------------------------------------ drawing

    def _redraw(self, what: set[str]) -> None:
        with self._lock:
            if self._batch:
                self._dirty |= what
                return
            full = "image" in what
            with hold_canvas():
                if full:
                    self.canvas[0].put_image_data(self.view_image(), 0, 0)
                if full or what & {"mask", "objects", "active", "history", "proposals"}:
                    self._draw_masks()
                if full or what & {"prompts", "objects", "active", "history", "mask"}:
                    self._draw_prompts()
                if full or "hover" in what:
                    self._draw_hover()
        self._sync_controls_soon()

    def view_image(self) -> np.ndarray:
        """The image layer as drawn: the visible region, canvas-sized RGBA uint8. Zoomed in past
        one image pixel per canvas pixel it shows the image's own pixels (nearest); below that it
        is resampled from the full-resolution image (PIL, area average)."""
        s = self.session
        bw, bh = self.canvas.width, self.canvas.height
        if self.scale >= 1:
            rows, cols = self._grid()
            rgb = s.image[np.ix_(rows, cols)]
        else:
            key = (s.current, self.visible, bw, bh)
            if self._fitted is not None and self._fitted[0] == key:
                return self._fitted[1]
            x0, y0, x1, y1 = self.visible
            im = Image.fromarray(s.image).resize((bw, bh), Image.Resampling.BOX, box=(x0, y0, x1, y1))
            rgb = np.asarray(im)
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
        if self.scale < 1:
            self._fitted = (key, rgba)
        return rgba

    def mask_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """The mask layer as drawn (labels aside), indexed: a canvas-sized uint16 index of the visible
        region and its palette (N x 4 RGBA uint8; entry 0 is transparent).

        Each object in its colour at ``opacity`` (the active one more opaque), with a 2 CSS pixel
        outline (at the device pixel ratio; the active object's twice as wide); proposals fainter.
        One palette entry per colour and alpha drawn (masks not in view add none): the layer is
        sent as a palette PNG (``indexed_png``), which encodes in a fraction of an RGBA PNG's time
        and is what a zoomed-in view mostly costs; proposals share their palette's few colours, so
        "everything" with hundreds of masks stays within a palette PNG's 256 entries."""
        rows, cols = self._grid()
        index = np.zeros((len(rows), len(cols)), np.uint16)
        entries: dict[tuple[int, ...], int] = {(0, 0, 0, 0): 0}

        def entry(rgba: tuple[int, ...]) -> int:
            return entries.setdefault(rgba, len(entries))

        def paint(m: np.ndarray, color: tuple, alpha: float, width: int) -> None:
            if not m.any():
                return
            index[m] = entry((*color, round(alpha)))
            index[_outline(m, width)] = entry((*color, 255))

        taken = [tuple(obj.color) for obj in self.session.objects]
        for i, p in enumerate(self.session.proposals):  # largest first, so small ones stay visible
            color = proposal_color(i, taken)
            paint(p.mask[np.ix_(rows, cols)], color, 255 * self.opacity * PROPOSAL_ALPHA, 1)
        active = self.session.active
        width = max(1, round(2 * self._dpr))
        region, size = self.visible, (len(rows), len(cols))
        for obj in self.session.objects:
            if not obj.has_mask:
                continue
            # the visible region at the canvas' size, from the object's low-res logits: a click
            # makes no full-size mask, and a zoomed view costs what the fitted one does
            m = self.session.mask_view(obj, region, size)
            is_active = active is not None and obj.label == active.label
            alpha = self.opacity if is_active else self.opacity * 0.6
            paint(m, obj.color, 255 * alpha, 2 * width if is_active else width)
        return index, np.array(list(entries), np.uint8)

    def mask_overlay(self) -> np.ndarray:
        """The mask layer as drawn (labels aside): canvas-sized RGBA uint8 of the visible region
        (``mask_layer``'s palette looked up)."""
        index, palette = self.mask_layer()
        return palette[index]

    def _draw_masks(self) -> None:
        layer = self.canvas[1]
        layer.clear()
        _put_indexed(layer, *self.mask_layer())
        self._draw_labels(layer)

    def _draw_labels(self, layer: Any) -> None:
        """Each object's label in a chip of its colour at the top left of its mask's largest part
        in view (a stray speck elsewhere does not carry the label away from the object)."""
        d = self._dpr
        active = self.session.active
        layer.font = f"{round(12 * d)}px sans-serif"
        layer.text_baseline = "top"
        vx0, vy0, vx1, vy1 = self.visible
        rows, cols = self._grid()
        anchors, self._anchors = self._anchors, {}
        for obj in self.session.objects:
            box = obj.mask_bbox  # kept with the object; from its low-res logits: no full-size mask
            if box is None or box[2] < vx0 or box[0] > vx1 or box[3] < vy0 or box[1] > vy1:
                continue  # nothing of it in view
            view = self.session.mask_view(obj, self.visible, (len(rows), len(cols)))
            held = anchors.get(obj.label)
            if held is None or held[0] is not view:  # the session keeps an unchanged view: same array
                held = (view, _label_anchor(view))
            self._anchors[obj.label] = held
            anchor = held[1]
            if anchor is None:
                continue
            text = ("▶ " if active is not None and obj.label == active.label else "") + obj.label
            chip = (len(text) * 7 + 8) * d  # wide enough for the text: kept whole inside the canvas
            bx = float(np.clip(anchor[0], 0, max(0.0, self.canvas.width - chip)))
            top = anchor[1]
            if obj.box is not None and active is not None and obj.label == active.label:
                # the active object's box is drawn over this layer: the chip sits clear of its top
                # edge, above it (or just inside when the edge is at the top of the canvas)
                edge = (obj.box[1] - vy0) * self.scale
                top = min(top, edge - 2 * d) if edge - 20 * d >= 0 else max(top, edge + 20 * d)
            by = float(np.clip(top - 18 * d, 0, self.canvas.height - 18 * d))
            layer.fill_style = hex_color(obj.color)
            layer.fill_rect(bx, by, chip, 17 * d)
            layer.fill_style = text_color(obj.color)
            layer.fill_text(text, bx + 4 * d, by + 2 * d)

    def _draw_prompts(self) -> None:
        layer = self.canvas[2]
        layer.clear()
        obj = self.session.active
        x0, y0, _, _ = self.visible
        k, d = self.scale, self._dpr

        def at(x: float, y: float) -> tuple[float, float]:
            return (x - x0) * k, (y - y0) * k

        if obj is not None:
            if obj.box is not None:
                (bx0, by0), (bx1, by1) = at(*obj.box[:2]), at(*obj.box[2:])
                layer.line_width = 2 * d
                layer.stroke_style = "#ffffff"
                layer.stroke_rect(bx0, by0, bx1 - bx0, by1 - by0)
                layer.set_line_dash([6 * d, 4 * d])
                layer.stroke_style = "#000000"
                layer.stroke_rect(bx0, by0, bx1 - bx0, by1 - by0)
                layer.set_line_dash([])
            for (x, y), label in zip(obj.points, obj.point_labels, strict=True):
                _marker(layer, *at(x, y), POSITIVE if label == 1 else NEGATIVE, d)
        for job in self._jobs.jobs:  # clicks waiting for the encoder: hollow markers
            if job.kind == "click" and job.data is not None:
                x, y, positive = job.data
                _marker(layer, *at(x, y), POSITIVE if positive else NEGATIVE, d, hollow=True)
        drag = self._drag
        self._draw_region(layer)
        self._draw_brush(layer, drag)
        if drag is not None and drag.get("box") is not None:
            sx, sy, ex, ey = drag["box"]
            (ax, ay), (bx, by) = at(*self._clamped(sx, sy)), at(*self._clamped(ex, ey))
            layer.stroke_style = "#ffd400"
            layer.line_width = 2 * d
            layer.set_line_dash([4 * d, 3 * d])
            layer.stroke_rect(min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay))
            layer.set_line_dash([])

    # ------------------------------------------------------------------ controls

    def _sync_controls_soon(self) -> None:
        """Bring the controls up to date: now, or CONTROLS_DELAY_S later when a browser event
        caused the redraw and the kernel's event loop runs in this thread."""
        loop = None
        if self._in_event:
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

    def _sync_controls(self) -> None:
        s = self.session
        self._image_label.value = f"image {s.current + 1}/{len(s)}: <b>{html.escape(s.image_name)}</b>"
        self._prev.disabled = s.current == 0
        self._next.disabled = s.current == len(s) - 1
        self._undo.disabled = not s.can_undo
        self._redo.disabled = not s.can_redo
        self._delete.disabled = s.active is None
        self._zoom_label.value = f"<small>{self.zoom * self._fit_scale() * 100:.0f}%</small>"
        self._syncing = True  # the toggle follows the session: no action
        try:
            self._everything.value = bool(s.proposals)
        finally:
            self._syncing = False
        # the sliders follow the image: shown with its regions; another image hides those of the last
        # (they stay after a run that found nothing on this image, to lower the thresholds)
        if s.proposals:
            self._show_everything_bar(True)
        elif self._bar_image != s.current:
            self._show_everything_bar(False)
        self._bar_image = s.current
        active = s.active
        chips = []
        for obj in s.objects:
            chip = self._chips.get(obj.label)
            if chip is None:
                chip = W.Button(
                    description=obj.label, tooltip=f"select {obj.label}", layout=W.Layout(width="auto")
                )
                chip.on_click(lambda b: self._from_ui(self.select, b.description))
                self._chips[obj.label] = chip
            chip.style.button_color = hex_color(obj.color)
            chip.style.text_color = text_color(obj.color)
            if active is not None and obj.label == active.label:
                chip.add_class("sam-widgets-active")
            else:
                chip.remove_class("sam-widgets-active")
            chips.append(chip)
        if tuple(chips) != self._objects.children:
            self._objects.children = tuple(chips)
        for label in set(self._chips) - set(s.labels):
            self._chips.pop(label).close()
        self._label_edit.value = active.label if active is not None else ""
        self._syncing = True  # the candidate buttons follow the session: no choice is made
        try:
            self._sync_edit_controls(active)
        finally:
            self._syncing = False

    def status_text(self) -> str:
        """The status line as plain text: what is going on, or what the last action did; the
        active object; the model."""
        parts = []
        running = self._jobs.running
        waiting = sum(job.kind == "click" for job in self._jobs.jobs)
        if running is not None and running.kind == "long":
            parts.append(f"{running.label}… {time.monotonic() - running.started:.0f} s")
            if waiting:
                parts.append(f"{waiting} click{'s' if waiting > 1 else ''} waiting (drawn hollow)")
            later = [job.label for job in self._jobs.jobs[1:] if job.kind == "long"]
            parts += [f"then {label.lower()}" for label in later]
        elif self.message:
            parts.append(self.message)
        active = self.session.active
        if active is not None and active.has_mask:  # (its area would make the full-size mask)
            score = "painted" if active.score is None else f"score {active.score:.2f}"
            parts.append(f"{active.label}: {score}")
        text = " · ".join(parts + [_model_words(self.predictor)])
        return f"Error: {self.error} · {text}" if self.error else text

    def _update_status(self) -> None:
        text = html.escape(self.status_text())
        color = "#b00020" if self.error else "#444"
        self._status.value = f"<span style='color:{color};font-size:90%'>{text}</span>"

    # ------------------------------------------------------------------ results

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """label -> bool HxW mask (original image pixels) of each object of the current image.

        Waits for background jobs and the clicks queued behind them, so a script sees them."""
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
        """Write one PNG per mask and annotations.json (COCO + prompts + proposals) into ``folder``.

        Returns the path of ``annotations.json``. Waits for queued clicks first."""
        self.wait()
        return self.session.save(folder, **kwargs)

    def load(self, folder: str | Path) -> None:
        """Continue work saved with ``save`` (no model run); undoable."""
        self.wait()
        self._act(lambda: self.session.load(folder), "load")

    def export(self, folder: str | Path, format: str = "coco", **kwargs: Any) -> Path:
        """``Session.export`` after queued clicks: coco, coco-polygons, yolo, labelme or cutouts."""
        self.wait()
        return self.session.export(folder, format=format, **kwargs)

    # ------------------------------------------------------------------ images and encoding

    def _show_image(self) -> None:
        s = self.session
        with self._batched():
            self._layout_canvas()
            with self.hold_trait_notifications():
                self.zoom = 1.0
                self.center = (s.width / 2, s.height / 2)
            self._redraw({"image"})
        if not s.is_encoded:
            cached = getattr(self.predictor, "is_cached", None)
            index = s.current

            def encode() -> None:
                ahead = self._ahead
                if ahead is not None:  # it may be encoding this very image: no second pass
                    ahead.join()
                hit = cached is not None and cached(self.session.image_at(index))
                started = time.monotonic()
                self.session.ensure_encoded(index)
                took = time.monotonic() - started
                self._measure_decoder()
                self._say(self._with_hover_words("Cached: instant" if hit else f"Encoded in {took:.1f} s"))
                if took > ENCODE_AHEAD_S:
                    self._encode_ahead(index + 1)

            self._jobs.submit(encode, f"Encoding image {s.current + 1} of {len(s)}")
        else:
            self._measure_decoder()
            self._say(self._with_hover_words("Cached: instant"))

    def _with_hover_words(self, message: str) -> str:
        """``message`` and, the first time, what the decoder measurement decided."""
        words, self._hover_words = self._hover_words, ""
        return f"{message} · {words}" if words else message

    def _encode_ahead(self, index: int) -> None:
        """Encode image ``index`` into the predictor's cache in a thread of its own: the clicks on
        the current image never wait for it (they only share the CPU)."""
        s = self.session
        precompute = getattr(self.predictor, "precompute", None)
        if precompute is None or index >= len(s) or (self._ahead is not None and self._ahead.is_alive()):
            return
        if index == s.current:
            return
        self._ahead = threading.Thread(target=precompute, args=(s.image_at(index),), daemon=True)
        self._ahead.start()

    # ------------------------------------------------------------------ editing: brush, candidates, class

    def _build_edit_controls(self) -> None:
        """The controls of the editing tools: brush size, candidate thumbnails, the class field."""
        self._brush = W.IntSlider(
            value=self.brush_size,
            min=1,
            max=200,
            description="brush",
            tooltip="brush and eraser diameter in image pixels ([ and ])",
            layout=W.Layout(width="220px", display="none"),
        )
        longest = max(self.session.width, self.session.height)
        self._brush.max = max(200, longest // 4)
        self.brush_size = max(2, round(longest / 60))  # a 256 px image: 4 px; 4000 px: 67 px
        W.link((self, "brush_size"), (self._brush, "value"))
        self._thumbs = W.HBox(layout=W.Layout(align_items="flex-end"))
        self._thumb_cache: tuple[Any, list[W.Image]] | None = None
        self._class_edit = W.Text(
            placeholder="class",
            continuous_update=False,
            tooltip="the active object's class (COCO category, YOLO class); empty: its label without "
            "the number",
            layout=W.Layout(width="120px"),
        )
        self._class_edit.observe(lambda ch: self._from_ui(self._on_class, ch["new"]), "value")

    def _sync_edit_controls(self, active: Any) -> None:
        """Candidate thumbnails and buttons, and the class field, for the active object."""
        if active is not None and active.scores is not None and len(active.scores) > 1:
            options = [(f"{i + 1}: {_fit_words(score)}", i) for i, score in enumerate(active.scores)]
            if list(self._candidates.options) != options:
                self._candidates.options = options
                self._candidates.tooltips = [
                    f"mask {i + 1} ({i + 1}): SAM predicts it overlaps the object you mean by "
                    f"{score:.0%} (predicted IoU {score:.2f})"
                    for i, score in enumerate(active.scores)
                ]
            self._candidates.value = active.chosen
            key = (id(active._candidates), active.color)
            if self._thumb_cache is None or self._thumb_cache[0] != key:
                images = [
                    W.Image(value=png, format="png", layout=W.Layout(width=f"{THUMB}px", margin="0 2px"))
                    for png in candidate_thumbnails(self.session, active, active.color)
                ]
                for old in self._thumbs.children:
                    old.close()
                self._thumbs.children = tuple(images)
                self._thumb_cache = (key, images)
            self._candidate_box.layout.display = None
            self._candidate_box.layout.visibility = "visible"
        else:
            self._candidates.options = []
            if self._candidate_box.layout.display is None:
                # shown once: hidden but keeping its place, so the notebook below does not jump
                # by the thumbnails' height at every undo, box or second point
                self._candidate_box.layout.visibility = "hidden"
        self._view_button.value = self.session.region is not None
        self._class_edit.disabled = active is None
        self._class_edit.placeholder = active.category_name if active is not None else "class"
        value = active.category if active is not None and active.category is not None else ""
        if self._class_edit.value != value:
            self._class_edit.value = value

    def set_category(self, label: str, category: str | None) -> None:
        """Set the class of object ``label`` (None or "": back to its label without the number)."""
        self._act(lambda: self.session.set_category(label, category or None), "class")

    def _on_class(self, value: str) -> None:
        active = self.session.active
        if active is not None and (value.strip() or None) != active.category:
            self.set_category(active.label, value.strip() or None)
            self._say(f"{active.label} is a {self.session.object(active.label).category_name}")

    def paint(self, points: Any, *, erase: bool = False, size: float | None = None) -> None:
        """Paint a stroke into (eraser: out of) the active object's mask: ``points`` [(x, y), ...]
        in image pixels, ``size`` the diameter in image pixels (default ``brush_size``). See
        ``Session.paint``: strokes stay over later clicks; one undo step."""
        radius = (self.brush_size if size is None else float(size)) / 2
        self._act(lambda: self.session.paint(points, radius, erase=erase), "paint")

    def _on_paint_drag(self, kind: str, drag: dict, x: float, y: float) -> None:
        drag["points"].append(self.to_image(x, y))
        if kind == "move":
            self._redraw({"prompts"})
            return
        points = drag["points"]
        try:
            self.paint(points, erase=drag["erase"])
        finally:
            self._redraw({"prompts"})
        if self.error is None:
            self._say(self._brush_words())

    def _brush_words(self) -> str:
        active = self.session.active
        name = active.label if active is not None else "a new object"
        if self.tool == "eraser":
            return f"Eraser {self.brush_size} px: drag to rub pixels out of {name} ([ ] size, z undoes)"
        return (
            f"Brush {self.brush_size} px: drag to paint into {name} (right or shift drag erases; "
            "[ ] size; strokes stay over later clicks)"
        )

    def _resize_brush(self, factor: float) -> None:
        size = self.brush_size * factor
        size = math.ceil(size) if factor > 1 else math.floor(size)
        self.brush_size = int(np.clip(size, 1, self._brush.max))
        self._say(self._brush_words())
        self._redraw({"prompts"})

    def _edit_keys(self) -> dict[str, Callable[[], Any]]:
        def toggle(tool: str) -> Callable[[], Any]:
            return lambda: setattr(self, "tool", "prompt" if self.tool == tool else tool)

        return {
            "b": toggle("brush"),
            "r": toggle("eraser"),
            "[": lambda: self._resize_brush(1 / BRUSH_STEP),
            "]": lambda: self._resize_brush(BRUSH_STEP),
            "h": lambda: setattr(self, "hover", not self.hover),
            "v": self.toggle_view_segmentation,
        }

    def _draw_brush(self, layer: Any, drag: dict | None) -> None:
        """The stroke being dragged, and the brush's disc under the pointer."""
        x0, y0, _, _ = self.visible
        k, d = self.scale, self._dpr
        r = self.brush_size / 2 * k
        active = self.session.active
        color = hex_color(active.color) if active is not None else "#ffd400"
        if drag is not None and drag.get("paint"):
            pts = [((px - x0) * k, (py - y0) * k) for px, py in drag["points"]]
            layer.global_alpha = 0.6
            layer.fill_style = layer.stroke_style = "#ffffff" if drag["erase"] else color
            for px, py in (pts[0], pts[-1]):
                layer.fill_circle(px, py, r)
            if len(pts) > 1:
                layer.line_width = 2 * r
                layer.line_cap = "round"
                layer.line_join = "round"
                layer.stroke_lines(pts)
            layer.global_alpha = 1.0
        pointer = self._pointer
        if self.tool in ("brush", "eraser") and pointer is not None:
            px, py = (pointer[0] - x0) * k, (pointer[1] - y0) * k
            layer.line_width = 1.5 * d
            layer.stroke_style = "#000000"
            layer.stroke_circle(px, py, max(r, 2 * d) + 1 * d)
            layer.stroke_style = "#ffffff" if self.tool == "eraser" else color
            layer.stroke_circle(px, py, max(r, 2 * d))

    # ------------------------------------------------------------------ hover preview

    def _build_hover_controls(self) -> None:
        self._hover_button = W.ToggleButton(
            description="Hover",
            icon="eye",
            tooltip="hover preview: the mask a click would give, drawn faintly under the pointer (h)",
            layout=W.Layout(width="auto"),
        )
        W.link((self, "hover"), (self._hover_button, "value"))
        self._view_button = W.ToggleButton(
            description="In view",
            icon="crop",
            tooltip="segment in this view: encode the zoomed region on its own, for small objects (v)",
            layout=W.Layout(width="auto"),
        )
        self._view_button.observe(lambda ch: self._from_ui(self._on_view_button, ch["new"]), "value")
        self.observe(self._on_hover_trait, ["hover"])
        self.observe(lambda _: self._track_pointer(), ["hover", "tool"])

    def _track_pointer(self) -> None:
        """Ask the page for the resting pointer only while something follows it."""
        self._surface_events.track = bool(self.hover) or self.tool in ("brush", "eraser")

    @T.validate("hover")
    def _hover_set(self, proposal: dict) -> bool:
        """Every assignment, the same value included (observers see changes only): ``w.hover =
        False`` while the first image still encodes is the user's choice too, and the decoder
        measurement at the end of that encoding must not turn the preview on over it. No lock
        here: the kernel thread must not wait for a long job (e.g. "everything") that holds it; an
        assignment is the measurement's only when made from the measurement's own thread."""
        if self._hover_auto_thread != threading.get_ident():
            self._hover_chosen = True  # the user's choice: never overridden by the measurement
            self._hover_user_value = bool(proposal["value"])
        return proposal["value"]

    def _on_hover_trait(self, change: dict) -> None:
        if not change["new"]:
            self._drop_hover()
        if self._hover_auto_thread != threading.get_ident():
            self._say(f"Hover preview {'on' if change['new'] else 'off'} (h)")

    def _measure_decoder(self) -> None:
        """Time a preview (one decoder pass at the view's size) on the encoded image, once per
        widget; unless the user chose, the hover preview is on only when it is fast enough."""
        if self.decoder_ms is not None or not self.session.is_encoded:
            return
        s = self.session
        times = []
        region, size = self._hover_view()
        for _ in range(2):  # the first pass warms up
            s.forget_last_pass()  # a remembered pass would time nothing
            t0 = time.perf_counter()
            s.preview(s.width / 2, s.height / 2, region, size)
            times.append((time.perf_counter() - t0) * 1000)
        self.decoder_ms = min(times)
        if not self._hover_chosen:
            self._hover_auto_thread = threading.get_ident()
            try:
                self.hover = self.decoder_ms <= HOVER_FAST_MS
            finally:
                self._hover_auto_thread = None
            if self._hover_chosen and self.hover != self._hover_user_value:
                self.hover = self._hover_user_value  # the user set it between the check and the setting
        self._hover_words = (
            f"hover preview {'on' if self.hover else 'off'}: a decoder pass takes "
            f"{self.decoder_ms:.0f} ms here (h turns it {'off' if self.hover else 'on'})"
        )

    def _hover_view(self) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
        """(region, (h, w)) a hover preview is made for: the visible region at the canvas' size."""
        rows, cols = self._grid()
        return self.visible, (len(rows), len(cols))

    def _on_hover(self, msg: dict | None) -> None:
        """The pointer rests at a point over the canvas (``msg``), or left it (None)."""
        if msg is None:
            self._pointer = None
            self._drop_hover()
            self._redraw({"prompts"})
            return
        x, y = self.to_image(*self._css_point(msg))
        self._pointer = (x, y)
        if self.tool in ("brush", "eraser"):
            self._redraw({"prompts"})  # the brush's disc follows the pointer
            return
        if not self.hover or self.tool != "prompt" or self._drag is not None or self._jobs.busy:
            return
        s = self.session
        if not (0 <= x <= s.width and 0 <= y <= s.height):
            self._drop_hover()
            return
        self._hover_token += 1
        token, asked = self._hover_token, time.perf_counter()
        self._jobs.submit(lambda: self._hover_job(x, y, token, asked), "hover preview", kind="hover")

    def _hover_job(self, x: float, y: float, token: int, asked: float) -> None:
        if token != self._hover_token:
            return  # stale: the pointer moved on, or a gesture came
        region, size = self._hover_view()
        mask = self.session.preview(x, y, region, size)  # at the view's size, from low-res logits
        with self._lock:
            if token != self._hover_token:
                return  # stale when done: dropped, never drawn over a newer state
            self._hover_mask = None if mask is None else (mask, region, size)
            self._draw_hover()
            self.hover_ms = (time.perf_counter() - asked) * 1000

    def _drop_hover(self) -> None:
        """Forget the preview and any preview still waiting (a gesture or a change came)."""
        self._hover_token += 1
        if self._hover_mask is not None:
            self._hover_mask = None
            with self._lock:
                if not self._batch:
                    self._draw_hover()
                else:
                    self._dirty.add("hover")

    def _hover_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """The hover layer, indexed (as ``mask_layer``): the preview faint with an outline."""
        rows, cols = self._grid()
        index = np.zeros((len(rows), len(cols)), np.uint16)
        faint, edge = (*HOVER_COLOR, round(255 * HOVER_ALPHA)), (*HOVER_COLOR, 200)
        palette = np.array([(0, 0, 0, 0), faint, edge], np.uint8)
        if self._hover_mask is None or not self.hover:
            return index, palette
        m, region, size = self._hover_mask
        if (region, size) != (self.visible, (len(rows), len(cols))):
            return index, palette  # made for a view since moved or resized: not drawn out of place
        index[m] = 1
        index[_outline(m, max(1, round(self._dpr)))] = 2
        return index, palette

    def hover_overlay(self) -> np.ndarray:
        """The hover layer as drawn: canvas-sized RGBA uint8, the preview faint with an outline."""
        index, palette = self._hover_layer()
        return palette[index]

    def _draw_hover(self) -> None:
        layer = self.canvas[3]
        with hold_canvas():
            layer.clear()
            _put_indexed(layer, *self._hover_layer())

    # ------------------------------------------------------------------ segment in this view

    def segment_view(self, on: bool = True) -> None:
        """Segment in the visible region: it is encoded as an image of its own (``Session.set_region``,
        cached like any image), so small objects of a large image get SAM's full detail; clicks in
        it use it and masks land in the whole image's pixels. ``on=False``: the whole image again.
        Helps when the view is zoomed in on a large image (one SAM input pixel covers several image
        pixels there); in a fitted view it changes nothing."""
        s = self.session
        region = None
        if on:
            x0, y0, x1, y1 = self.visible
            region = (max(0.0, x0), max(0.0, y0), min(float(s.width), x1), min(float(s.height), y1))
        self.wait()
        box = self._guard(lambda: s.set_region(region))
        if on and box is None:
            self._say("Segment in this view: the view shows the whole image; zoom in first")
            return
        self._view_button.value = box is not None

        def encode() -> None:
            started = time.monotonic()
            s.ensure_encoded()
            took = time.monotonic() - started
            where = (
                f"Segmenting in this view ({box[2] - box[0]}x{box[3] - box[1]} px, encoded in "
                f"{took:.1f} s): clicks use it (v: whole image)"
                if box is not None
                else f"Segmenting the whole image again ({took:.1f} s)"
            )
            self._say(where)

        self._jobs.submit(encode, "Encoding this view" if box is not None else "Encoding the image")

    def _on_view_button(self, on: bool) -> None:
        if on != (self.session.region is not None):
            self.segment_view(on)

    def toggle_view_segmentation(self) -> None:
        """``segment_view`` on, or off when it is on (the v key, the "In view" button)."""
        self.segment_view(self.session.region is None)

    def _draw_region(self, layer: Any) -> None:
        """The region being segmented on its own: a dashed frame."""
        region = self.session.region
        if region is None:
            return
        x0, y0, _, _ = self.visible
        k, d = self.scale, self._dpr
        ax, ay = (region[0] - x0) * k, (region[1] - y0) * k
        w, h = (region[2] - region[0]) * k, (region[3] - region[1]) * k
        layer.line_width = 2 * d
        layer.stroke_style = "#00e5ff"
        layer.set_line_dash([8 * d, 4 * d])
        layer.stroke_rect(ax, ay, w, h)
        layer.set_line_dash([])

    # ------------------------------------------------------------------ everything: thresholds

    def _build_everything_controls(self) -> None:
        """The thresholds of "everything" (sliders, linked to the traits), shown while it is on
        or after it found nothing; a change re-runs it on the image."""

        def slider(name: str, words: str, tip: str) -> W.FloatSlider:
            out = W.FloatSlider(
                min=0.0,
                max=1.0,
                step=0.01,
                description=words,
                tooltip=tip,
                continuous_update=False,
                readout_format=".2f",
                style={"description_width": "auto"},
                layout=W.Layout(width="260px"),
            )
            W.link((self, name), (out, "value"))
            return out

        self._iou_slider = slider(
            "pred_iou_thresh",
            "fit ≥",
            "keep regions whose predicted IoU (SAM's own fit estimate) is at least this",
        )
        self._stability_slider = slider(
            "stability_score_thresh",
            "stability ≥",
            "keep regions that barely change when SAM's cut-off moves",
        )
        self._everything_bar = W.HBox(
            [W.HTML("<small>everything:</small>"), self._iou_slider, self._stability_slider],
            layout=W.Layout(display="none", align_items="center", flex_flow="row wrap"),
        )
        self._set_everything_defaults()
        self.observe(self._on_threshold, ["pred_iou_thresh", "stability_score_thresh"])

    def _set_everything_defaults(self) -> None:
        """The thresholds of the model in use (``session.propose_defaults``)."""
        defaults = propose_defaults(self.predictor)
        self._thresholds_changing = True
        try:
            with self.hold_trait_notifications():
                self.pred_iou_thresh = defaults["pred_iou_thresh"]
                self.stability_score_thresh = defaults["stability_score_thresh"]
        finally:
            self._thresholds_changing = False

    def _everything_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
            **settings,
        }

    def _rerun_everything(self) -> None:
        """ "Everything" again with the sliders' thresholds and the other settings of the last run."""
        last = {k: v for k, v in self._everything_last.items() if not k.endswith("_thresh")}
        self.everything(**last)

    def _on_threshold(self, change: dict) -> None:
        if self._thresholds_changing:
            return
        if self.session.proposals or self._everything_bar.layout.display is None:
            self._from_ui(self._rerun_everything)  # again, with the new thresholds

    def _show_everything_bar(self, shown: bool) -> None:
        self._everything_bar.layout.display = None if shown else "none"


# ---------------------------------------------------------------------- helpers


def _click_ms(session: Session) -> float | None:
    """The last prediction's time in ms, as the session reports it."""
    return getattr(session, "click_ms", None)


def _model_words(predictor: Any) -> str:
    """ "micro · cpu bf16-fast": the model and where it runs."""
    name = record_of(getattr(predictor, "model", None)).name
    stats = getattr(predictor, "stats", None)
    return f"{name} · {stats.device} {stats.precision}" if stats is not None else name


def _fit_words(score: float) -> str:
    """SAM's predicted IoU of a candidate in plain words, with the number."""
    word = "good" if score >= 0.9 else "fair" if score >= 0.75 else "poor"
    return f"{word} {score:.2f}"


def candidate_thumbnails(
    session: Session, obj: SessionObject, color: tuple[int, int, int], side: int = THUMB
) -> list[bytes]:
    """One small PNG per candidate of ``obj`` (an object of ``session``'s current image, with
    candidates): the same crop of the image for all, the candidates' common bounding box with a
    margin, at most ``side`` pixels wide, the candidate (as SAM predicted it, without strokes) in
    ``color`` over a dimmed picture, its outline opaque. The masks are made at the thumbnail's
    size from the low-res logits (``Session.mask_view``): no full-size mask."""
    image = session.image
    options = [dataclasses.replace(obj, chosen=i, strokes=()) for i in range(len(obj._candidates))]
    boxes = [b for b in (o.mask_bbox for o in options) if b is not None]
    if boxes:
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    else:
        x0, y0, x1, y1 = 0, 0, image.shape[1], image.shape[0]
    margin = max(4, round(0.15 * max(x1 - x0, y1 - y0)))
    x0, y0 = max(0, x0 - margin), max(0, y0 - margin)
    x1, y1 = min(image.shape[1], x1 + margin), min(image.shape[0], y1 + margin)
    scale = side / max(x1 - x0, y1 - y0)
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    picture = np.asarray(Image.fromarray(image[y0:y1, x0:x1]).resize(size, Image.Resampling.BILINEAR))
    out = []
    for option in options:
        small = session.mask_view(option, (x0, y0, x1, y1), (size[1], size[0]))
        rgb = (picture * 0.6).astype(np.uint8)
        rgb[small] = (0.45 * picture[small] + 0.55 * np.array(color)).astype(np.uint8)
        rgb[_outline(small, 1)] = color
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` pixels (chessboard distance) of its edge, not of the
    view's edge: the mask erodes by a (2 width + 1) square over its box and a margin, the view's
    edge repeating the mask (an object that fills a zoomed-in view has no outline along the view's
    edge)."""
    if not mask.any():
        return mask
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    h, w = mask.shape
    y0, y1 = max(0, rows[0] - width), min(h, rows[-1] + 1 + width)
    x0, x1 = max(0, cols[0] - width), min(w, cols[-1] + 1 + width)
    crop = mask[y0:y1, x0:x1]
    inner = _erode_1d(_erode_1d(crop, width, 0), width, 1)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = crop & ~inner
    return out


def _erode_1d(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    """``a`` (bool) eroded along ``axis`` by a window of 2 width + 1, its ends repeated: 2 width
    in-place ANDs of shifted slices (on a canvas-filling 768x576 mask 2-12x faster than
    ``ndimage.minimum_filter1d`` for widths 8 down to 1, the widths drawn; on a mask of a few
    hundred pixels up to 3x slower, a fraction of a millisecond either way)."""
    out = a.copy()
    src, dst = np.moveaxis(a, axis, 0), np.moveaxis(out, axis, 0)
    for s in range(1, min(width, len(src) - 1) + 1):
        dst[s:] &= src[:-s]
        dst[:s] &= src[:1]
        dst[:-s] &= src[s:]
        dst[-s:] &= src[-1:]
    return out


def _label_anchor(view: np.ndarray | None, step: int = 4) -> tuple[int, int] | None:
    """(x, y) in canvas pixels of the top left of the largest connected part of a view's mask, None
    if nothing of it is in view. Found on a grid of ``step`` x ``step`` blocks (a block counts if any
    of its pixels is in the mask, so parts thinner than a block are kept) with 8-connectivity (a thin
    diagonal stays one part): ~1 ms on a 1600 x 1200 canvas."""
    if view is None or not view.any():
        return None
    h, w = view.shape
    padded = np.zeros((-(-h // step) * step, -(-w // step) * step), bool)
    padded[:h, :w] = view
    # OR of strided slices: numpy's any() over the middle axes of a 4-d reshape takes ~40x as long
    rows_or = padded[0::step].copy()
    for k in range(1, step):
        rows_or |= padded[k::step]
    blocks = rows_or[:, 0::step].copy()
    for k in range(1, step):
        blocks |= rows_or[:, k::step]
    parts, n = ndimage.label(blocks, structure=np.ones((3, 3), bool))
    if n > 1:
        blocks = parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
    row = int(np.flatnonzero(blocks.any(1))[0])
    col = int(np.flatnonzero(blocks.any(0))[0])
    # the mask's own top left within the first row and column of blocks of that part, counting only
    # that part's pixels (another part in the same row of blocks does not lift the label)
    in_row = np.repeat(blocks[row], step)[:w]  # the part's columns in its first row of blocks
    in_col = np.repeat(blocks[:, col], step)[:h]  # and its rows in its first column of blocks
    rows = np.flatnonzero(view[row * step : (row + 1) * step, in_row].any(1))
    cols = np.flatnonzero(view[in_col, col * step : (col + 1) * step].any(0))
    return col * step + int(cols[0]), row * step + int(rows[0])


def indexed_png(index: np.ndarray, palette: np.ndarray) -> bytes:
    """An indexed layer (``SegmentWidget.mask_layer``) as PNG bytes: a palette PNG with per-entry
    alpha (tRNS) when the palette fits in 256 entries, else RGBA. zlib level 1: a mask layer is
    long runs of one index, which the fastest level packs nearly as well as the default."""
    buf = io.BytesIO()
    if len(palette) <= 256:
        im = Image.fromarray(index.astype(np.uint8))
        im.putpalette(palette[:, :3].tobytes())
        im.save(buf, format="PNG", compress_level=1, transparency=palette[:, 3].tobytes())
    else:
        Image.fromarray(palette[index]).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _put_indexed(layer: Any, index: np.ndarray, palette: np.ndarray) -> None:
    """Draw an indexed layer's non-empty box on ``layer`` (a cleared canvas) as one palette PNG:
    ipycanvas' ``put_image_data`` with the PNG made here (it would encode RGBA at the default level)."""
    rows, cols = np.flatnonzero(index.any(1)), np.flatnonzero(index.any(0))
    if not len(rows):
        return
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    png = indexed_png(index[y0:y1, x0:x1], palette)
    layer._canvas_manager.send_draw_command(layer, _ipycanvas.COMMANDS["putImageData"], [x0, y0], [png])


def _marker(layer: Any, x: float, y: float, color: str, d: float, hollow: bool = False) -> None:
    """A point marker: a dark ring, a white ring, the fill (hollow: rings only)."""
    r = 6 * d
    layer.line_width = 2 * d
    layer.stroke_style = RING
    layer.stroke_circle(x, y, r + 2 * d)
    layer.stroke_style = "#ffffff"
    layer.stroke_circle(x, y, r)
    if hollow:
        layer.stroke_style = color
        layer.line_width = 2 * d
        layer.stroke_circle(x, y, r - 2 * d)
    else:
        layer.fill_style = color
        layer.fill_circle(x, y, r - d)
