"""The widget's input surface in the page: mouse, wheel, keys and focus of the canvas, and its room.

An anywidget (a few lines of JavaScript, no build step) rendered, invisible, inside the widget. It
finds the element holding the canvas (CSS class ``target``, inside the same widget) and:

- sends presses, drags and releases of the mouse (the drag follows the pointer outside the canvas
  until the button is released, so a box may end past the image's edge), wheel turns over the
  canvas (the page does not scroll then; elsewhere it does), and keys while the canvas has focus;
- gives the canvas keyboard focus on a press (a focus ring shows it). Keys go to the widget only
  while it has focus and only those in ``shortcuts``; Ctrl/Cmd combinations, Shift+Enter and Esc always
  go on to the notebook (Ctrl+S saves, Shift+Enter runs the cell, Esc leaves the widget);
- reports the width available to the widget (``width``, CSS pixels, following resizes) and the
  screen's device pixel ratio (``dpr``), so the kernel draws the canvas to fit, sharp on HiDPI.

Messages to the kernel (``{"type": ...}``): ``down``/``move``/``up`` (``x``, ``y`` CSS pixels from
the canvas' top left, ``w``, ``h`` its shown size, ``button``, ``shift``, ``alt``, ``space``),
``wheel`` (``x``, ``y``, ``w``, ``h``, ``dy`` in pixels, summed over a few ms), ``key`` (``key``,
``shift``, ``alt``); while ``track`` is set, ``hover`` (``x``, ``y``, ``w``, ``h``: the pointer
over the canvas with no button down, at most every HOVER_MS, the last position always) and
``leave`` (it left the canvas).
"""

from __future__ import annotations

import anywidget
import traitlets as T

__all__ = ["Surface", "SURFACE_CLASS"]

SURFACE_CLASS = "sam-widgets-surface"

_ESM = r"""
const MOVE_MS = 30;   // at most one move message per this many ms while dragging
const HOVER_MS = 40;  // at most one hover message per this many ms (the last position always goes)
const WHEEL_MS = 30;  // wheel turns summed over this many ms

function render({ model, el }) {
  el.style.display = "none";
  let surface = null, canvas = null, root = null, drag = false, space = false;
  let lastMove = 0, moveTimer = null, wheel = null, lastHover = 0, hoverTimer = null;
  const off = [];
  const on = (target, type, fn, opts) => {
    target.addEventListener(type, fn, opts);
    off.push(() => target.removeEventListener(type, fn, opts));
  };

  function where(e) {
    const r = canvas.getBoundingClientRect();
    return { x: e.clientX - r.left - canvas.clientLeft, y: e.clientY - r.top - canvas.clientTop,
             w: canvas.clientWidth, h: canvas.clientHeight };
  }
  function mouse(type, e) {
    return { type, ...where(e), button: e.button, shift: e.shiftKey, alt: e.altKey, space };
  }
  function move(e) {
    if (!drag) return;
    e.preventDefault();
    const msg = mouse("move", e);
    const due = lastMove + MOVE_MS - performance.now();
    clearTimeout(moveTimer);
    if (due <= 0) { lastMove = performance.now(); model.send(msg); }
    else moveTimer = setTimeout(() => { lastMove = performance.now(); model.send(msg); }, due);
  }
  function hover(e) {
    if (drag || !model.get("track")) return;
    const msg = { type: "hover", ...where(e) };
    const due = lastHover + HOVER_MS - performance.now();
    clearTimeout(hoverTimer);
    if (due <= 0) { lastHover = performance.now(); model.send(msg); }
    else hoverTimer = setTimeout(() => { lastHover = performance.now(); model.send(msg); }, due);
  }
  function up(e) {
    if (!drag) return;
    drag = false;
    clearTimeout(moveTimer);
    document.removeEventListener("mousemove", move, true);
    document.removeEventListener("mouseup", up, true);
    e.preventDefault(); e.stopPropagation();
    model.send(mouse("up", e));
  }
  function attach() {
    surface.setAttribute("tabindex", "0");
    on(surface, "mousedown", (e) => {
      e.preventDefault(); e.stopPropagation();  // no text selection, no middle-button autoscroll
      surface.focus({ preventScroll: true });
      if (drag) return;
      drag = true;
      document.addEventListener("mousemove", move, true);
      document.addEventListener("mouseup", up, true);
      model.send(mouse("down", e));
    });
    on(surface, "mousemove", hover);
    on(surface, "mouseleave", () => {
      clearTimeout(hoverTimer);
      if (!drag && model.get("track")) model.send({ type: "leave" });
    });
    on(surface, "auxclick", (e) => { e.preventDefault(); e.stopPropagation(); });
    on(surface, "contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });
    on(surface, "click", (e) => e.stopPropagation());
    on(surface, "wheel", (e) => {
      e.preventDefault(); e.stopPropagation();
      const scale = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
      if (wheel === null) {
        wheel = { type: "wheel", ...where(e), dy: 0 };
        setTimeout(() => { model.send(wheel); wheel = null; }, WHEEL_MS);
      }
      wheel.dy += e.deltaY * scale;
      Object.assign(wheel, where(e));
    }, { passive: false });
    on(surface, "blur", () => { space = false; });
    // Window, capture phase: before JupyterLab's own shortcut handling sees the key.
    on(window, "keydown", (e) => {
      if (document.activeElement !== surface) return;
      if (e.ctrlKey || e.metaKey || e.key === "Escape" || (e.key === "Enter" && e.shiftKey)) return;
      if (e.key === " ") { space = true; e.preventDefault(); e.stopPropagation(); return; }
      if (!model.get("shortcuts").includes(e.key)) return;
      e.preventDefault(); e.stopPropagation();
      model.send({ type: "key", key: e.key, shift: e.shiftKey, alt: e.altKey });
    }, true);
    on(window, "keyup", (e) => {
      if (e.key !== " ") return;
      space = false;
      if (document.activeElement === surface) { e.preventDefault(); e.stopPropagation(); }
    }, true);
    const report = () => {
      const width = Math.floor(root.clientWidth);
      const dpr = window.devicePixelRatio || 1;
      if (width > 0 && (width !== model.get("width") || dpr !== model.get("dpr"))) {
        model.set("width", width); model.set("dpr", dpr); model.save_changes();
      }
    };
    const observer = new ResizeObserver(report);
    observer.observe(root);
    off.push(() => observer.disconnect());
    on(window, "resize", report);  // a zoom of the page changes devicePixelRatio
    report();
  }
  let tries = 0;
  function find() {
    root = el.isConnected ? el.closest(".sam-widgets-root") : null;
    surface = root && root.querySelector("." + model.get("target"));
    canvas = surface && surface.querySelector("canvas");
    if (canvas) attach();
    else if (++tries < 600) requestAnimationFrame(find);
  }
  find();
  return () => { off.forEach((f) => f()); clearTimeout(moveTimer); };
}
export default { render };
"""

_CSS = f"""
.{SURFACE_CLASS} {{
  outline: none; max-width: 100%; cursor: crosshair; position: relative; isolation: isolate;
}}
.{SURFACE_CLASS}:focus::after {{
  content: ""; position: absolute; inset: 0; border: 2px solid #1a73e8;
  pointer-events: none; z-index: 1;
}}
.{SURFACE_CLASS}.sam-widgets-pan {{ cursor: grab; }}
.{SURFACE_CLASS} canvas {{ pointer-events: none; display: block; max-width: 100%; height: auto !important; }}
.sam-widgets-root {{ max-width: 100%; min-width: 0; }}
.sam-widgets-objects .widget-button {{ border: 2px solid transparent; }}
.sam-widgets-objects .sam-widgets-active {{ border: 2px solid #111; font-weight: bold; }}
"""


class Surface(anywidget.AnyWidget):
    """The invisible input side of a SegmentWidget in the page (see the module's docstring)."""

    _esm = _ESM
    _css = _CSS
    target = T.Unicode(SURFACE_CLASS).tag(sync=True)
    shortcuts = T.List(T.Unicode()).tag(sync=True)  # the keys the widget takes while focused
    width = T.Int(0).tag(sync=True)  # CSS pixels available to the widget (0: not reported yet)
    dpr = T.Float(1.0).tag(sync=True)  # the page's devicePixelRatio
    track = T.Bool(False).tag(sync=True)  # send the resting pointer (hover preview, brush disc)
