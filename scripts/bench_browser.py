#!/usr/bin/env python
"""Click-to-overlay latency of SegmentWidget in a real browser: chromium, JupyterLab (or Notebook 7).

    python scripts/bench_browser.py                       # 30 clicks at 256 and 768 px, 1:1 and zoomed x4
    python scripts/bench_browser.py --large 3000x4000     # also a 4000x3000 scene, fitted and zoomed 1:1
    python scripts/bench_browser.py --front-end notebook --clicks 50 --json bench-results/browser.json
    python scripts/bench_browser.py --clicks 0 --hover 30     # hover preview latency only (issue 16)

What is timed, per click: from the mousedown event (its timeStamp, when chromium took the input) to the
first animation frame in which the canvas shows the new mask, read back from the canvas' pixels
(at least MIN_CHANGED pixels differ from before the click outside the clicked point's marker). No
polling loop steals the page's main thread: every animation frame checks one counter (draws onto the
widget's <canvas>, counted by a wrapper around drawImage) and reads the pixels only after a draw.

Where the time goes, on one clock (the kernel's time.time(), the page's performance.now() shifted by
Date.now() - performance.now() at each click; stage boundaries are when a wrapper ran, so on a busy
machine, where a thread can wait for a core between an event and its timestamp, one can be late by
some ms and the next stage even comes out negative; the total is exact):
  to kernel   mouseup in the page -> the widget's handler starts in the kernel (its input surface, the server)
  predict     CachedPredictor.predict: SAM's prompt encoder + mask decoder (no mask: the session keeps
              the low-res logits)
  overlay     SegmentWidget.mask_layer: the masks of the visible region at the canvas' size (made from
              the logits: Session.mask_view), outlines, as one canvas-sized indexed layer and its palette
  png         the widget's PNG encoding (sam_widgets.widget.indexed_png, PIL) of the layer's non-empty
              box: a palette PNG
  kernel rest the rest of the handler up to the canvas message leaving (session, prompts, hold_canvas)
  to page     canvas message leaves the kernel -> its websocket frame arrives in the page
  draw        that frame -> ipycanvas has decoded the PNG and drawn the layers onto the <canvas>
  to frame    drawn -> the next animation frame (when the pixels are read and reach the screen)
and, after each view's clicks, "predict alone": the same decoder pass timed in the kernel with no page
event going on (median of 15), which tells the model's own cost from its contention with the server
and the browser on the same cores during a click.

The kernel side is measured by wrapping, in the benchmark's own kernel only, the widget's handler,
``predictor.predict``, ``mask_layer``, ``indexed_png`` and ipycanvas' canvas manager's flush; the
page side by wrapping ``WebSocket`` (arrival times and sizes) and ``drawImage`` before the page loads.

Between clicks the widget is cleared from the kernel and the script waits until the canvas shows the
bare image again; clicks go to the deepest pixel of each object of a synthetic scene in turn (the
small scenes shown 1:1, then zoomed in x4 around their largest object; with ``--large HxW`` a scene of
that size is also clicked in the fitted view (the whole image in the 768 px canvas) and zoomed in to one
image pixel per screen pixel). A zoomed view should cost no more than the fitted one: the widget makes
the masks of the visible region at the canvas' size.
With ``--hover N``, N hover previews per size are timed too: from the mousemove event that brings the
pointer to rest over an object (its timeStamp) to the first animation frame in which the canvas shows the
preview (MIN_CHANGED pixels differ from the bare view), the widget's hover preview on and no object made
(``w.masks`` stays empty: checked). Between hovers the pointer leaves the canvas and the script waits for
the bare view.
Needs the test extras (`pip install -e '.[test]'`) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the browser tools live beside the tests: tests/browser_helpers.py

from tests.browser_helpers import (  # noqa: E402
    CANVAS_GEOMETRY,
    CHROMIUM,
    CHROMIUM_ARGS,
    INSTALL_HINT,
    KERNEL_IDLE,
    NOTEBOOK_DONE,
    NOTEBOOK_ERRORS,
    JupyterServer,
    canvas_rgba,
    kernel_exec,
    page_point,
    run_all_cells,
)

NOTEBOOK = "bench_browser.ipynb"
MIN_CHANGED = 20  # pixels that must change outside the point's marker: the mask is there
MARKER_RADIUS = 12  # the point marker: radius 6 + a 2 px ring + its 2 px line, and 2 px to spare
TIMEOUT_MS = 20_000  # a click whose mask is not on screen by then counts as missed
STAGES = ["to kernel", "predict", "overlay", "png", "kernel rest", "to page", "draw", "to frame"]

# The benchmark's notebook: the widget on one synthetic scene per size, each shown 1:1.
SETUP = """\
import torch

from sam_widgets import SegmentWidget
from sam_widgets.micro.data import make_scene

if {threads!r}:
    torch.set_num_threads({threads!r})

SIZES, SEED, MODEL, LARGE, WEIGHTS = {sizes!r}, {seed!r}, {model!r}, {large!r}, {weights!r}
scenes = [make_scene(SEED, size) for size in SIZES] + ([make_scene(SEED, LARGE)] if LARGE else [])
if WEIGHTS:  # e.g. random weights for timing a model whose checkpoint is not here
    from sam_widgets.models import load_sam

    MODEL = load_sam(MODEL, weights=WEIGHTS)
w = SegmentWidget([image for image, _ in scenes], model=MODEL, display_size=max(SIZES))
w"""

# Sent to the kernel once the widget is shown: wrappers that log when each stage of a click starts and ends.
INSTRUMENT = """\
import json
import time as _time
import ipycanvas.canvas as _ipc
import sam_widgets.widget as _sw_widget

_bench_clicks, _bench_now = [], {}

def _bench_wrap(owner, name, stage, size_of=None):
    inner = getattr(owner, name)
    def timed(*args, **kwargs):
        t0 = _time.time()
        out = inner(*args, **kwargs)
        _bench_now.setdefault(stage, []).append([t0, _time.time()] + ([size_of(out)] if size_of else []))
        return out
    setattr(owner, name, timed)

_bench_wrap(w.predictor, "predict", "predict")
_bench_wrap(w, "mask_layer", "overlay")
_bench_wrap(_sw_widget, "indexed_png", "png", len)  # the widget looks it up in its module
_bench_wrap(_ipc._CANVAS_MANAGER, "flush", "flush")  # hold_canvas sends its batch here
_bench_input = w._on_input

def _bench_on_input(event):
    if event.get("type") != "up":
        return _bench_input(event)
    _bench_now.clear()
    t0 = _time.time()
    _bench_input(event)
    _bench_clicks.append({"start": t0, "end": _time.time(), **_bench_now})

w._on_input = _bench_on_input  # the input surface's callback looks it up on each event

def _bench_view():
    return json.dumps({"visible": list(w.visible), "k": w.pixel_size, "css": list(w._css),
                       "canvas": [w.canvas.width, w.canvas.height]})

print(torch.get_num_threads())"""

# Before the page's own scripts: arrival time and size of every websocket frame, and every draw onto the
# widget's <canvas> (window.__bench.target), in epoch milliseconds.
PAGE_HOOKS = """(() => {
  const now = () => performance.timeOrigin + performance.now();
  const bench = window.__bench = {ws: [], draws: [], input: [], target: null, result: null};
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        const t = now(), d = e.data;
        if (typeof d === 'string') { bench.ws.push([t, d.length, false]); return; }
        const b = new Uint8Array(d);  // binary frames: does one carry a PNG (its signature)?
        let png = false;
        for (let i = 0; i + 3 < b.length && !png; i++) {
          png = b[i] === 0x89 && b[i + 1] === 0x50 && b[i + 2] === 0x4e && b[i + 3] === 0x47;
        }
        bench.ws.push([t, b.length, png]);
      });
    }
  };
  for (const type of ['mousedown', 'mouseup', 'mousemove']) {
    const log = (e) => bench.input.push([type, performance.timeOrigin + e.timeStamp]);
    window.addEventListener(type, log, true);
  }
  const drawImage = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (...args) {
    if (bench.target !== null && this.canvas === bench.target) bench.draws.push(now());
    return drawImage.apply(this, args);
  };
})();"""

# Arm one measurement: snapshot the canvas, then on each animation frame after a draw compare its pixels
# with the snapshot; the first frame with the mask shown resolves window.__bench.result.
ARM = """([canvas, cx, cy, radius, minChanged, timeoutMs]) => {
  const bench = window.__bench;
  bench.target = canvas;
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height;
  const before = ctx.getImageData(0, 0, W, H).data;
  bench.ws.length = 0; bench.draws.length = 0; bench.input.length = 0; bench.result = null;
  const start = performance.now();
  // Wall clock minus this page's monotonic clock: to put the page's times on the kernel's time.time().
  const clock = Date.now() - (performance.timeOrigin + performance.now());
  let checked = 0;
  const changed = () => {
    const d = ctx.getImageData(0, 0, W, H).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] !== before[i] || d[i + 1] !== before[i + 1] || d[i + 2] !== before[i + 2]) {
        const p = i >> 2, x = p % W, y = (p - x) / W;
        if ((x - cx) * (x - cx) + (y - cy) * (y - cy) > radius * radius) n++;
      }
    }
    return n;
  };
  const frame = (ts) => {
    if (bench.draws.length > checked) {
      checked = bench.draws.length;
      const n = changed();
      if (n >= minChanged) {
        bench.result = {visible: performance.timeOrigin + performance.now(), changed: n, clock,
                        draws: bench.draws.slice(), ws: bench.ws.slice(), input: bench.input.slice()};
        return;
      }
    }
    if (performance.now() - start > timeoutMs) {
      bench.result = {timeout: true, draws: bench.draws.slice(), input: bench.input.slice()};
      return;
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}"""

# True once the canvas shows exactly the given pixels again (after a clear).
SHOWS = """([canvas, b64]) => {
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const want = atob(b64);
  if (want.length !== d.length) return false;
  for (let i = 0; i < d.length; i++) if (d[i] !== want.charCodeAt(i)) return false;
  return true;
}"""


def targets(truth: np.ndarray, min_depth: float = 6.0) -> list[tuple[int, int]]:
    """(x, y) of the deepest pixel of each object at least ``min_depth`` pixels thick, largest first."""
    out = []
    for m in sorted(truth, key=lambda m: -int(m.sum())):
        depth = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        if depth.max() >= min_depth:
            y, x = np.unravel_index(np.argmax(depth), depth.shape)
            out.append((int(x), int(y)))
    return out


def stages(page_side: dict, kernel: dict) -> dict[str, float]:
    """One click's stages in ms (see the module's docstring), from both sides' epoch-ms timestamps."""
    ms = 1000.0
    down = next(t for kind, t in page_side["input"] if kind == "mousedown")
    up = next(t for kind, t in page_side["input"] if kind == "mouseup")
    clock = page_side["clock"]  # page times + clock = wall clock, the kernel's
    predict = sum(b - a for a, b in kernel.get("predict", [])) * ms
    overlay = sum(b - a for a, b in kernel.get("overlay", [])) * ms
    png = sum(b - a for a, b, _ in kernel.get("png", [])) * ms
    png_bytes = max((n for *_, n in kernel.get("png", [])), default=0)
    flushed = kernel["flush"][0][1] * ms - clock  # the one hold_canvas batch of the redraw
    start = kernel["start"] * ms - clock
    # The canvas message: the first websocket frame after the mouseup that carries a PNG.
    arrived = min((t for t, n, png in page_side["ws"] if t >= up and png and n >= png_bytes), default=None)
    if arrived is None:
        frames = [(round(t - up), n, png) for t, n, png in page_side["ws"]]
        raise RuntimeError(
            f"no websocket frame with a PNG of {png_bytes} bytes after the mouseup; kernel PNGs "
            f"{kernel.get('png')}, frames (ms after the mouseup, bytes, PNG?) {frames}"
        )
    drawn = min(t for t in page_side["draws"] if t >= arrived)
    visible = page_side["visible"]
    return {
        "at": (down + clock) / ms,  # the mousedown, seconds since the epoch (to match with a load log)
        "total": visible - down,
        "to kernel": start - up,
        "predict": predict,
        "overlay": overlay,
        "png": png,
        "kernel rest": flushed - start - predict - overlay - png,
        "to page": arrived - flushed,
        "draw": drawn - arrived,
        "to frame": visible - drawn,
        "down to up": up - down,
        "png bytes": png_bytes,
        "kernel after flush": kernel["end"] * ms - clock - flushed,
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, float), q))


def summarize(clicks: list[dict[str, float]]) -> dict[str, Any]:
    totals = [c["total"] for c in clicks]
    return {
        "clicks": len(clicks),
        "p50_ms": percentile(totals, 50),
        "p90_ms": percentile(totals, 90),
        "max_ms": max(totals),
        "median_stage_ms": {
            s: statistics.median(c[s] for c in clicks) for s in [*STAGES, "kernel after flush"]
        },
        "median_png_bytes": statistics.median(c["png bytes"] for c in clicks),
    }


def format_table(runs: list[dict[str, Any]]) -> str:
    head = ["view", "clicks", "missed", "p50", "p90", "max", *STAGES, "predict alone"]
    rows = [head]
    for r in runs:
        s = r["summary"]
        stage = s["median_stage_ms"]
        rows.append(
            [
                r["name"],
                str(s["clicks"]),
                str(len(r["failures"])),
                f"{s['p50_ms']:.0f}",
                f"{s['p90_ms']:.0f}",
                f"{s['max_ms']:.0f}",
            ]
            + [f"{stage[k]:.1f}" for k in STAGES]
            + [f"{s['predict_alone_ms']:.1f}" if "predict_alone_ms" in s else "-"]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(wd) for cell, wd in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    note = (
        "(ms; p50/p90/max: mousedown to the mask on screen, over the clicks shown; the stages are medians;\n"
        f" missed: not on screen within {TIMEOUT_MS / 1000:.0f} s; predict alone: the same decoder pass\n"
        " timed in the kernel with no page event going on, median of 15)"
    )
    return "\n".join(lines) + "\n" + note


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from sam_widgets.bench import machine_info
    from sam_widgets.micro.data import make_scene

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing. {INSTALL_HINT}")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sam-bench-browser-"))
    (work / "notebooks").mkdir()
    large = tuple(int(v) for v in args.large.split("x")) if args.large else None
    cell = SETUP.format(
        sizes=sizes,
        seed=args.seed,
        model=args.model,
        threads=args.torch_threads,
        large=large,
        weights=args.weights,
    )
    notebook = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "source": cell, "outputs": [], "execution_count": None}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (work / "notebooks" / NOTEBOOK).write_text(json.dumps(notebook))
    server = JupyterServer(work / "notebooks", work / "jupyter", app=args.front_end)
    load_before = os.getloadavg()
    out: dict[str, Any] = {
        "command": "python scripts/bench_browser.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "front_end": args.front_end,
        "model": args.model,
        "weights": args.weights or "the model's own",
        "seed": args.seed,
        "runs": [],
    }
    server.start(timeout=60)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            out["machine"]["chromium"] = browser.version
            page = browser.new_context(
                viewport={"width": 1280, "height": 1200}, device_scale_factor=1
            ).new_page()
            page.add_init_script(PAGE_HOOKS)
            page.goto(server.url_for(args.front_end, NOTEBOOK), timeout=60_000)
            page.wait_for_function(KERNEL_IDLE, arg=NOTEBOOK, timeout=60_000)
            run_all_cells(page, 10_000)
            page.wait_for_function(NOTEBOOK_DONE, arg=NOTEBOOK, timeout=120_000)
            failed = page.evaluate(NOTEBOOK_ERRORS, NOTEBOOK)
            if failed:
                raise RuntimeError("the benchmark's notebook failed:\n" + "\n".join(failed))
            canvas = page.locator(".jp-OutputArea-output .sam-widgets-root canvas").first
            canvas.wait_for(timeout=30_000)
            out["kernel_torch_threads"] = int(kernel_exec(page, NOTEBOOK, INSTRUMENT, timeout=30))
            views = []
            for i, size in enumerate(sizes):
                scene = make_scene(args.seed, size)
                views.append((f"{size}x{size} 1:1", i, scene, None))
                if args.zoom > 1:
                    views.append((f"{size}x{size} zoomed x{args.zoom:g}", i, scene, args.zoom))
            if large:
                big = make_scene(args.seed, large)
                h, w = large
                views.append((f"{w}x{h} fitted", len(sizes), big, None))
                views.append((f"{w}x{h} zoomed 1:1", len(sizes), big, "1:1"))
            for name, index, scene, zoom in views if args.clicks else []:
                out["runs"].append(bench_view(page, canvas, name, index, scene, zoom, args))
                print(f"{name}: p50 {out['runs'][-1]['summary']['p50_ms']:.0f} ms", file=sys.stderr)
            out["hover"] = []
            for name, index, scene, zoom in views if args.hover else []:
                if zoom is None:
                    out["hover"].append(bench_hover(page, canvas, name, index, scene, args))
                    print(f"{name} hover: p50 {out['hover'][-1]['p50_ms']:.0f} ms", file=sys.stderr)
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    out["loadavg_before_after"] = [load_before, os.getloadavg()]
    return out


def bench_view(
    page: Any,
    canvas: Any,
    name: str,
    index: int,
    scene: tuple,
    zoom: str | float | None,
    args: argparse.Namespace,
) -> dict:
    """``args.clicks`` timed clicks (after ``args.warmup`` untimed ones) on image ``index`` of the widget,
    fitted (``zoom`` None), or zoomed around the largest object: ``"1:1"`` to one image pixel per CSS
    pixel, a number to that many times the fitted view's magnification."""
    image, truth = scene
    # Hover preview off: the pointer rests on the target before each click, and a preview there would
    # already show the click's mask (bench_hover times the preview on its own); the click's mousedown
    # then clears it, and that change would pass for the mask. Turned off after w.wait(), and checked:
    # before 2026-12-07 the widget took ``w.hover = False`` during the first encode (no change) for no
    # choice, and its decoder measurement then turned the preview on (a MobileSAM run failed so).
    setup = f"w.go({index}); w.wait(); w.hover = False; w.clear(); w.fit(); print(w.hover)"
    hover = kernel_exec(page, NOTEBOOK, setup, timeout=120)
    if hover.strip() != "False":
        raise RuntimeError(f"{name}: the hover preview is still on")
    if zoom:
        grid = max(1, min(8, min(truth.shape[1:]) // 64))
        x, y = targets(truth[:, ::grid, ::grid], min_depth=2)[0]
        view = json.loads(kernel_exec(page, NOTEBOOK, "print(_bench_view())", timeout=20))
        cw, ch = view["css"]
        x, y = grid * x + grid / 2, grid * y + grid / 2
        # the region shown: the canvas' CSS size in image pixels at the zoom asked for
        per = 1.0 if zoom == "1:1" else 1.0 / (float(zoom) * view["k"])  # image px per CSS px
        hw, hh = cw * per / 2, ch * per / 2
        kernel_exec(page, NOTEBOOK, f"w.zoom_to({x - hw}, {y - hh}, {x + hw}, {y + hh})", timeout=20)
    view = json.loads(kernel_exec(page, NOTEBOOK, "print(_bench_view())", timeout=20))
    bw, bh = view["canvas"]
    page.wait_for_function(
        f"(c) => c.width === {bw} && c.height === {bh}", arg=canvas.element_handle(), timeout=20_000
    )
    canvas.scroll_into_view_if_needed(timeout=10_000)
    # The canvas with no object drawn: the view of the image, once it stops changing.
    bare, last = None, canvas_rgba(canvas)
    for _ in range(100):
        time.sleep(0.2)
        bare, last = last, canvas_rgba(canvas)
        if bare.shape == last.shape and (bare == last).all() and last[..., 3].all():
            break
    bare_b64 = base64.b64encode(last.tobytes()).decode()
    x0, y0, x1, y1 = view["visible"]
    k = view["k"]
    step = max(1, int(round(1 / k)))  # targets on a grid of about one per CSS pixel
    r0, c0 = max(0, int(y0)), max(0, int(x0))
    crop = truth[:, r0 : int(np.ceil(y1)) : step, c0 : int(np.ceil(x1)) : step]
    points = [(c0 + step * x + step / 2, r0 + step * y + step / 2) for x, y in targets(crop, min_depth=4)]
    if not points:
        raise RuntimeError(f"{name}: no object thick enough in view {view['visible']}")
    clicks: list[dict[str, float]] = []
    failures = []
    geometry = canvas.evaluate(CANVAS_GEOMETRY)
    for i in range(args.warmup + args.clicks):
        x, y = points[i % len(points)]
        if i:  # back to the bare view: no object, nothing drawn
            kernel_exec(page, NOTEBOOK, "w.clear()", timeout=20)
            page.wait_for_function(SHOWS, arg=[canvas.element_handle(), bare_b64], timeout=20_000, polling=50)
        cx, cy = (x - x0) * k, (y - y0) * k  # CSS pixels in the canvas (device pixel ratio 1)
        px, py = page_point(geometry, cx - 0.5, cy - 0.5)
        page.mouse.move(px, py)
        time.sleep(args.pause)  # let the page and the kernel settle: a user's click comes out of the blue
        page.evaluate(ARM, [canvas.element_handle(), cx, cy, MARKER_RADIUS, MIN_CHANGED, TIMEOUT_MS])
        page.mouse.click(px, py)
        page.wait_for_function("() => window.__bench.result !== null", timeout=TIMEOUT_MS + 5000)
        seen = page.evaluate("() => window.__bench.result")
        kernel = json.loads(kernel_exec(page, NOTEBOOK, "print(json.dumps(_bench_clicks[-1]))", timeout=20))
        if seen.get("timeout"):
            if i >= args.warmup:
                failures.append({"x": x, "y": y, "kernel": kernel})
            continue
        if i >= args.warmup:
            clicks.append({"x": x, "y": y, **stages(seen, kernel)})
    if not clicks:
        raise RuntimeError(f"no click showed a mask in {name}: {failures[:2]}")
    summary = summarize(clicks)
    # The same decoder pass with nothing else going on (no page event, no message): what the click's
    # predict stage would take alone, to tell the model's cost from contention with server and browser.
    x, y = points[0]
    alone = kernel_exec(page, NOTEBOOK, PREDICT_ALONE.format(x=x, y=y), timeout=60)
    summary["predict_alone_ms"] = float(alone.strip().splitlines()[-1])
    return {"name": name, "view": view, "clicks": clicks, "failures": failures, "summary": summary}


# Run in the kernel between views: median of 15 decoder passes (after 3 untimed), as a click makes them.
PREDICT_ALONE = """\
import statistics as _st
import numpy as np
_p = w.predictor
_t = []
for _i in range(18):
    _t0 = _time.time()
    _p.predict(point_coords=np.array([[{x}, {y}]]), point_labels=np.array([1]), masks=False)
    _t.append((_time.time() - _t0) * 1000)
print(_st.median(_t[3:]))"""


def bench_hover(
    page: Any, canvas: Any, name: str, index: int, scene: tuple, args: argparse.Namespace
) -> dict:
    """``args.hover`` timed hover previews (after ``args.warmup`` untimed) on image ``index``, fitted."""
    image, truth = scene
    kernel_exec(page, NOTEBOOK, f"w.go({index}); w.wait(); w.clear(); w.fit(); w.hover = True", timeout=120)
    view = json.loads(kernel_exec(page, NOTEBOOK, "print(_bench_view())", timeout=20))
    bw, bh = view["canvas"]
    page.wait_for_function(
        f"(c) => c.width === {bw} && c.height === {bh}", arg=canvas.element_handle(), timeout=20_000
    )
    canvas.scroll_into_view_if_needed(timeout=10_000)
    geometry = canvas.evaluate(CANVAS_GEOMETRY)
    away = (geometry["left"] + geometry["cssWidth"] + 60, geometry["top"] - 20)
    page.mouse.move(*away)
    bare, last = None, canvas_rgba(canvas)
    for _ in range(100):
        time.sleep(0.2)
        bare, last = last, canvas_rgba(canvas)
        if bare.shape == last.shape and (bare == last).all() and last[..., 3].all():
            break
    bare_b64 = base64.b64encode(last.tobytes()).decode()
    x0, y0, _, _ = view["visible"]
    k = view["k"]
    step = max(1, int(round(1 / k)))
    points = [(step * x + step / 2, step * y + step / 2) for x, y in targets(truth[:, ::step, ::step], 4)]
    times, missed = [], 0
    for i in range(args.warmup + args.hover):
        x, y = points[i % len(points)]
        page.mouse.move(*away)  # the pointer leaves: the preview goes
        page.wait_for_function(SHOWS, arg=[canvas.element_handle(), bare_b64], timeout=20_000, polling=50)
        time.sleep(args.pause)
        cx, cy = (x - x0) * k, (y - y0) * k
        page.evaluate(ARM, [canvas.element_handle(), cx, cy, 0, MIN_CHANGED, TIMEOUT_MS])
        page.mouse.move(*page_point(geometry, cx - 0.5, cy - 0.5))  # one move: the pointer rests there
        page.wait_for_function("() => window.__bench.result !== null", timeout=TIMEOUT_MS + 5000)
        seen = page.evaluate("() => window.__bench.result")
        moves = [t for kind, t in seen.get("input", []) if kind == "mousemove"]
        if seen.get("timeout") or not moves:
            missed += i >= args.warmup
            continue
        if i >= args.warmup:
            times.append(seen["visible"] - moves[-1])
    masks = kernel_exec(page, NOTEBOOK, "print(len(w.masks))", timeout=20).strip()
    if masks != "0":
        raise RuntimeError(f"hovering made objects: w.masks has {masks}")
    decoder = kernel_exec(page, NOTEBOOK, "print(w.decoder_ms)", timeout=20).strip()
    kernel_exec(page, NOTEBOOK, "w.hover = False", timeout=20)
    return {
        "name": name,
        "hover_ms": times,
        "missed": missed,
        "p50_ms": percentile(times, 50) if times else float("nan"),
        "p90_ms": percentile(times, 90) if times else float("nan"),
        "decoder_ms_at_start": decoder,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=30, help="timed clicks per size (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed clicks first, per size (default 3)")
    parser.add_argument(
        "--sizes", default="256,768", help="scene sides in pixels, shown 1:1 (default 256,768)"
    )
    parser.add_argument(
        "--large", default="", help="also a scene of HxW pixels (e.g. 3000x4000), fitted and zoomed 1:1"
    )
    parser.add_argument(
        "--zoom", type=float, default=4.0, help="the small scenes also zoomed this much (default 4; 1: not)"
    )
    parser.add_argument("--seed", type=int, default=21, help="make_scene seed (default 21: five objects)")
    parser.add_argument("--model", default="micro", help="a load_sam name (default micro)")
    parser.add_argument(
        "--weights",
        default=None,
        help="load_sam weights, e.g. random (timing only: masks mean nothing); default: the model's own",
    )
    parser.add_argument("--front-end", choices=["lab", "notebook"], default="lab")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch threads in the kernel (default 0: torch's own choice)",
    )
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between settling and a click")
    parser.add_argument("--json", type=Path, default=None, help="also write every click's stages here")
    parser.add_argument(
        "--hover", type=int, default=0, help="also time N hover previews per size (default 0: none)"
    )
    args = parser.parse_args(argv)
    out = run(args)
    if out["runs"]:
        print(format_table(out["runs"]))
    for h in out.get("hover", []):
        print(
            f"hover preview {h['name']}: pointer at rest -> preview on screen p50 {h['p50_ms']:.0f} ms, "
            f"p90 {h['p90_ms']:.0f} ms ({len(h['hover_ms'])} timed, {h['missed']} missed; "
            f"decoder pass at widget start {h['decoder_ms_at_start']} ms)"
        )
    m, load = out["machine"], out["loadavg_before_after"]
    print(
        f"{m['processor']}, {m['cpu_count']} CPUs, kernel torch threads {out['kernel_torch_threads']}, "
        f"chromium {m['chromium']}, {args.front_end}, {m['date']}, "
        f"load average {load[0][0]:.1f} before, {load[1][0]:.1f} after"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
