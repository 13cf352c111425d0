"""A real browser: JupyterLab 4 and Notebook 7, Debian's chromium driven by Playwright, the quickstart
notebook, real clicks.

For each front end the test starts the server a user would (`jupyter lab`, `jupyter notebook`) on
127.0.0.1, settings isolated in a temporary folder, opens a copy of notebooks/01_quickstart.ipynb in
headless chromium and runs all its cells from the Run menu. Then, on the widget the notebook shows:
Clear (a button), a left click deep inside the largest object of the first scene, a right click on
the background, the z key (undo). After each gesture it checks both sides: the pixels of the <canvas>
in the page, and the widget's state in the kernel (read by running code in the notebook's own kernel
from the page).
Nothing may log an error in the browser console (but for UPSTREAM_ERRORS, thrown by Notebook 7 itself
before any cell runs).

Needs /usr/bin/chromium (`apt-get install chromium`): missing, it fails in CI (env CI set) and is
skipped elsewhere. Set SAM_WIDGETS_SCREENSHOT=path.png to keep a picture of the widget after the click
(in JupyterLab).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sam_widgets.micro.data import make_scene
from sam_widgets.widget import NEGATIVE, POSITIVE

from .browser_helpers import (
    CANVAS_GEOMETRY,
    CHROMIUM,
    CHROMIUM_ARGS,
    FEDERATED_EXTENSIONS,
    FRONT_ENDS,
    INSTALL_HINT,
    KERNEL_IDLE,
    NOTEBOOK_DONE,
    NOTEBOOK_ERRORS,
    PANEL,
    Deadline,
    JupyterServer,
    canvas_rgba,
    kernel_exec,
    page_point,
    run_all_cells,
)

# The pictures of the notebook's markdown cells: [src, naturalWidth] (0: broken), once all loaded.
PICTURES = """() => Array.from(document.querySelectorAll('.jp-MarkdownOutput img'))
  .map(img => [img.src, img.complete ? img.naturalWidth : -1])"""
PICTURES_DECODED = f"""() => {{ const p = ({PICTURES})();
  return p.length > 0 && p.every(x => x[1] >= 0); }}"""
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01_quickstart.ipynb"  # as scripts/quickstart serves it: the repository's root
BUDGET_S = 150  # every wait of one test together; with teardown (<= 25 s) under 3 minutes
WIDGET_EXTENSIONS = {"@jupyter-widgets/jupyterlab-manager", "ipycanvas", "anywidget"}  # labextensions
# (message, where in the stack) of errors a front end throws by itself on every page load, with no
# widget on the page: excused; any other error fails the test. Notebook 7.6.5 (here, on a plain
# `jupyter notebook`, /tree too; 7.6.0 in gilad-rubin/hypster#108): its shortcuts extension reads the
# settings of a plugin not loaded yet ("t.plugins[W.id] is undefined").
UPSTREAM_ERRORS = {
    "lab": [],
    "notebook": [
        ("Cannot read properties of undefined (reading 'schema')", "/static/notebook/notebook_core."),
    ],
}
SCENE = 3  # the notebook's first image: make_scene(3), shown 1:1 (256 px < DISPLAY_SIZE 512)

# Runs in the notebook's kernel: the widget `w` as JSON (the active object's mask packed in bits).
PROBE = """
def _browser_test_state():
    import base64, json
    import numpy as np
    obj = w.session.active
    mask = w.masks.get(obj.label) if obj is not None else None
    return json.dumps({
        "labels": list(w.masks),
        "active": None if obj is None else obj.label,
        "points": [] if obj is None else [[float(v) for v in p] for p in obj.points],
        "point_labels": [] if obj is None else [int(v) for v in obj.point_labels],
        "mask": None if mask is None else base64.b64encode(np.packbits(mask)).decode(),
        "image": [w.session.height, w.session.width],
        "canvas": [w.canvas.height, w.canvas.width],
        "encoding": w.encoding,
        "status": w.status_text(),
    })
"""


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def deepest(region: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of ``region`` farthest from its edge (and from the image's edge)."""
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    return int(x), int(y)


def near(got: tuple[float, float], pixel: tuple[int, int]) -> bool:
    """Did a click on the centre of ``pixel`` land there, give or take 2 px? Events carry whole CSS
    pixels, and the canvas' 1 px border (inside its CSS size: border-box) shifts the widget's
    mapping by up to 1 px."""
    return all(abs(g - (p + 0.5)) <= 2.0 for g, p in zip(got, pixel, strict=True))


def poll(check: Callable[[], Any], ready: Callable[[Any], Any], deadline: Deadline, cap: float) -> Any:
    """Call ``check`` until ``ready`` says yes to its value or ``cap`` seconds pass; the last value."""
    end = time.monotonic() + deadline.left(cap)
    while True:
        value = check()
        if ready(value) or time.monotonic() > end:
            return value
        time.sleep(0.2)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def deadline() -> Deadline:
    return Deadline(BUDGET_S)


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, headless, driven by Playwright; one for both front ends."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing. {INSTALL_HINT}")
        pytest.skip(f"{CHROMIUM} is missing (skipped outside CI: env CI is unset). {INSTALL_HINT}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server(front_end, tmp_path, deadline, monkeypatch):
    """The server a user starts for ``front_end`` (``jupyter lab`` or ``jupyter notebook``) serving a
    copy of the quickstart notebook (its outputs land in tmp_path). One per front end, not one for
    both: jupyter_server caches static file lookups by file name across extensions, and JupyterLab and
    Notebook 7 ship the same hashed font names, so in one server the second front end gets 403s."""
    if front_end == "notebook" and importlib.util.find_spec("notebook") is None:
        message = "the notebook package (Notebook 7) is missing: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"{message} (skipped outside CI: env CI is unset)")
    monkeypatch.delenv("SAM_WIDGETS_DISPLAY_SIZE", raising=False)  # the test counts on 1:1
    # Served as scripts/quickstart serves the repository: its root, the notebook in notebooks/, the
    # pictures it shows in docs/ (../docs/ from the notebook), copied as they are.
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "docs").mkdir()
    text = (REPO / NOTEBOOK).read_text()
    (root / NOTEBOOK).write_text(text)
    for png in re.findall(r"\.\./docs/([\w.-]+\.png)", text):
        shutil.copy(REPO / "docs" / png, root / "docs" / png)
    (root / NAV_NOTEBOOK).write_text(json.dumps(nav_notebook()))
    (root / EDIT_NOTEBOOK).write_text(json.dumps(edit_notebook()))
    server = JupyterServer(root, tmp_path / "jupyter", app=front_end)
    try:
        server.start(timeout=deadline.left(60))
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(front_end, chromium, server, tmp_path):
    """A page with its console errors and uncaught exceptions collected in ``page.problems`` (the
    front end's own known ones, see UPSTREAM_ERRORS, in ``page.excused``). Its last look is kept in
    tmp_path/page.png (pytest keeps the last runs' tmp_path)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    problems: list[str] = []
    excused: list[str] = []

    def uncaught(e: Any) -> None:
        known = any(e.message == m and where in (e.stack or "") for m, where in UPSTREAM_ERRORS[front_end])
        (excused if known else problems).append(f"uncaught: {e.message}")

    page.on("console", lambda m: m.type == "error" and problems.append(f"console.error: {m.text}"))
    page.on("pageerror", uncaught)
    page.problems, page.excused = problems, excused
    try:
        yield page
    finally:
        try:
            page.screenshot(path=tmp_path / "page.png", timeout=5_000)
        finally:
            context.close()


# ---------------------------------------------------------------------------- the test


@pytest.mark.parametrize("front_end", list(FRONT_ENDS))
def test_quickstart_clicks_in_chromium(front_end, page, server, deadline, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    image, truth = make_scene(SCENE)
    target = int(np.argmax(truth.reshape(len(truth), -1).sum(1)))  # the notebook's object
    x, y = deepest(truth[target])
    bx, by = deepest(~truth.any(0))  # deep in the background, away from the image's edge

    def state() -> dict:
        out = kernel_exec(page, NOTEBOOK, "print(_browser_test_state())", timeout=deadline.left(20))
        s = json.loads(out)
        if s["mask"] is not None:
            h, w = s["image"]
            bits = np.unpackbits(np.frombuffer(base64.b64decode(s["mask"]), np.uint8))
            s["mask"] = bits[: h * w].reshape(h, w).astype(bool)
        return s

    def context() -> str:
        return f"\nbrowser problems: {page.problems}\njupyter log:\n{server.log_tail(15)}"

    def pixels() -> np.ndarray:
        return canvas_rgba(canvas).astype(int)

    def wait_for(wait: Callable[[float], Any], what: str, cap: float) -> None:
        """A Playwright wait, failing with what was awaited and the page's errors."""
        try:
            wait(deadline.ms(cap))
        except PlaywrightTimeout:
            pytest.fail(f"timed out after {cap:.0f} s or less waiting for {what}" + context())

    # -- open the notebook, run every cell
    page.goto(server.url_for(front_end, NOTEBOOK), timeout=deadline.ms(60))
    missing = WIDGET_EXTENSIONS - set(page.evaluate(FEDERATED_EXTENSIONS))
    assert not missing, f"{front_end} does not load {missing}: see sys.prefix/share/jupyter/labextensions"
    wait_for(lambda ms: page.wait_for_function(KERNEL_IDLE, arg=NOTEBOOK, timeout=ms), "the kernel", 60)
    run_all_cells(page, deadline.ms(10))
    wait_for(lambda ms: page.wait_for_function(NOTEBOOK_DONE, arg=NOTEBOOK, timeout=ms), "Run All", 120)
    failed = page.evaluate(NOTEBOOK_ERRORS, NOTEBOOK)
    assert not failed, "cells failed in the browser:\n" + "\n\n".join(failed) + context()

    # -- the picture in the notebook's markdown (../docs/widget_objects.png) loaded
    wait_for(lambda ms: page.wait_for_function(PICTURES_DECODED, timeout=ms), "the pictures to load", 20)
    pictures = page.evaluate(PICTURES)
    assert any("widget_objects.png" in src for src, _ in pictures), f"no picture shown: {pictures}"
    assert all(width > 0 for _, width in pictures), f"a broken picture in the notebook: {pictures}"

    # -- the widget is shown (the ipywidgets and ipycanvas front ends loaded), the image encoded
    root = page.locator(".jp-OutputArea-output > .widget-vbox:has(canvas)")  # the widget's VBox
    wait_for(lambda ms: root.first.wait_for(timeout=ms), "the widget's canvas to render", 30)
    assert root.count() == 1, f"expected one SegmentWidget on the page, found {root.count()}" + context()
    canvas = root.locator("canvas")  # ipycanvas 0.14: one <canvas>, the layers composed into it
    canvas.scroll_into_view_if_needed(timeout=deadline.ms(10))
    status = root.locator(".widget-html", has_text=re.compile(r"micro · "))
    text = poll(status.inner_text, lambda t: "Encoding" not in t, deadline, 30)
    assert "Encoding" not in text, f"still encoding after 30 s: {text}"
    kernel_exec(page, NOTEBOOK, PROBE, timeout=deadline.left(20))
    api = state()  # what the notebook's own w.click(x, y) made
    assert api["canvas"] == api["image"] == list(image.shape[:2]), f"not shown 1:1: {api}"
    assert api["mask"] is not None, f"the notebook's w.click made no mask: {api['status']}"

    # -- Clear (an ipywidgets button): no objects; the canvas shows the image, pixel for pixel
    root.get_by_role("button", name="Clear").click(timeout=deadline.ms(10))
    s = poll(state, lambda s: s["labels"] == [], deadline, 15)
    assert s["labels"] == [], f"the Clear button did not reach the kernel: {s['labels']}"
    before = poll(pixels, lambda px: np.abs(px[..., :3] - image).max() <= 2, deadline, 15)
    assert np.abs(before[..., :3] - image).max() <= 2 and (before[..., 3] == 255).all(), (
        "the canvas does not show the bare image (sent as lossless PNG) after Clear"
    )

    # -- left click deep inside the object -> a new object with a mask, in the kernel and on screen
    page.mouse.click(*page_point(canvas.evaluate(CANVAS_GEOMETRY), x, y))
    s = poll(state, lambda s: s["mask"] is not None, deadline, 20)
    assert s["mask"] is not None, f"no mask in the kernel after the left click: {s['status']}"
    assert s["point_labels"] == [1], s["point_labels"]
    ((kx, ky),) = s["points"]
    assert near((kx, ky), (x, y)), f"clicked image pixel {(x, y)}, the kernel got {(kx, ky)}"
    assert s["labels"] == [s["active"]], s["labels"]
    mask = s["mask"]  # w.masks[label]
    assert mask.any(), f"w.masks[{s['active']!r}] is empty: {s['status']}"
    # The canvas pixels the click changed are the mask's (1:1), plus the point, drawn inside it.
    # (The object's label is drawn in a chip just above its mask: not part of the mask.)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    chip = np.zeros_like(mask)
    chip[max(0, rows[0] - 18) : max(0, rows[0] - 18) + 18, cols[0] : cols[0] + 100] = True

    def changed(px: np.ndarray) -> np.ndarray:
        return (np.abs(px - before).max(2) > 2) & ~(chip & ~mask)

    after = poll(pixels, lambda px: iou(changed(px), mask) > 0.9, deadline, 15)
    shown = iou(changed(after), mask)
    assert shown > 0.9, f"the canvas pixels that changed match w.masks with IoU {shown:.2f} only"
    assert np.abs(after[y, x, :3] - rgb(POSITIVE)).max() <= 8, f"no positive point at {(x, y)}: {after[y, x]}"
    same = iou(mask, api["mask"])  # the same point clicked in the browser and through the API
    assert same > 0.8, f"the browser's click and w.click({x}, {y}) give masks of IoU {same:.2f}"
    area = f"{s['active']}: score "
    wait_for(lambda ms: status.filter(has_text=area).wait_for(timeout=ms), f"'{area}' in the status", 10)
    root.screenshot(path=tmp_path / "widget.png", timeout=deadline.ms(10))
    if os.environ.get("SAM_WIDGETS_SCREENSHOT") and front_end == "lab":
        shutil.copy(tmp_path / "widget.png", os.environ["SAM_WIDGETS_SCREENSHOT"])
    clicked = s

    # -- right click on the background -> a negative point on the same object, no context menu
    page.mouse.click(*page_point(canvas.evaluate(CANVAS_GEOMETRY), bx, by), button="right")
    s = poll(state, lambda s: len(s["points"]) == 2, deadline, 20)
    assert s["point_labels"] == [1, 0], f"the right click was not a negative point: {s['point_labels']}"
    kx, ky = s["points"][1]
    assert near((kx, ky), (bx, by)), f"right-clicked image pixel {(bx, by)}, the kernel got {(kx, ky)}"
    px = poll(pixels, lambda px: np.abs(px[by, bx, :3] - rgb(NEGATIVE)).max() <= 8, deadline, 10)
    assert np.abs(px[by, bx, :3] - rgb(NEGATIVE)).max() <= 8, f"no negative point at {(bx, by)}: {px[by, bx]}"
    assert page.locator(".lm-Menu:visible").count() == 0, "a right click on the canvas opened a menu"

    # -- a keyboard shortcut with the mouse over the canvas: z undoes the negative point
    page.keyboard.press("z")
    s = poll(state, lambda s: len(s["points"]) == 1, deadline, 20)
    assert s["point_labels"] == [1], f"the z key did not undo the right click: {s['point_labels']}"

    # -- nothing went wrong in the page
    assert not page.problems, "errors in the browser console:\n" + "\n".join(page.problems)

    # -- last, the model's quality (the wiring is checked above): the browser's click is the
    # notebook's own API click, whose mask the notebook asserts has IoU > 0.8 with micro
    assert mask[y, x] and iou(mask, truth[target]) > 0.5, (
        f"the left click's mask misses the object: IoU {iou(mask, truth[target]):.2f}; {clicked['status']}"
    )


def test_readme_quickstart_command_serves_the_notebook(tmp_path):
    """The README's first command, ``scripts/quickstart``, as a new user runs it (here as root, as on
    this project's machines and in containers, where Jupyter refuses to start unless told to): the
    server comes up and serves the quickstart notebook at the address the README gives. The clicks
    in it are the test above."""
    script = REPO / "scripts" / "quickstart"
    server = JupyterServer(REPO, tmp_path / "jupyter", launcher=[str(script)])
    try:
        server.start(timeout=180)  # first it re-checks .venv (pip: seconds when nothing is missing)
        with urllib.request.urlopen(f"{server.url}/api/contents/{NOTEBOOK}?content=0", timeout=10) as r:
            assert json.load(r)["type"] == "notebook"
        with urllib.request.urlopen(server.url_for("lab", NOTEBOOK), timeout=10) as r:
            assert r.status == 200 and b"jupyter-config-data" in r.read()
        # the address Jupyter prints, and its front page, open the notebook (not the Launcher)
        assert f":{server.port}/lab/tree/{NOTEBOOK}" in server.log_path.read_text()
        with urllib.request.urlopen(f"{server.url}/", timeout=10) as r:
            assert r.url == server.url_for("lab", NOTEBOOK)
        # the pictures the notebook shows (../docs/ beside notebooks/) are inside what is served
        # (the browser test below checks they load)
        for png in re.findall(r"\.\./docs/([\w.-]+\.png)", (REPO / NOTEBOOK).read_text()):
            with urllib.request.urlopen(f"{server.url}/api/contents/docs/{png}?content=0", timeout=10) as r:
                assert json.load(r)["type"] == "file", png
    finally:
        server.stop()


# ---------------------------------------------------------------------------- navigation

NAV_NOTEBOOK = "notebooks/navigation.ipynb"
NAV_SIZE = (900, 1200)  # H, W: larger than the 768 px view, so that it is fitted, zoomed and panned
NAV_SCENE = 3
NAV_PROBE = """
def _nav_state():
    import json
    s = w.session
    return json.dumps({
        "labels": s.labels,
        "active": None if s.active is None else s.active.label,
        "objects": {o.label: {"points": [list(p) for p in o.points], "box": o.box,
                              "mask": o.mask is not None} for o in s.objects},
        "zoom": w.zoom, "visible": list(w.visible), "k": w.pixel_size, "css": list(w._css),
        "encoding": w.encoding, "status": w.status_text(),
    })
"""


def nav_notebook() -> dict:
    """A notebook showing one widget on a 1200x900 synthetic scene at the default display size."""
    cells = [
        "from sam_widgets import SegmentWidget\nfrom sam_widgets.micro.data import make_scene\n\n"
        f"image, truth = make_scene({NAV_SCENE}, size={NAV_SIZE})\nw = SegmentWidget(image, model='micro')",
        "w",
    ]
    return {
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell-{i}",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": c,
            }
            for i, c in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# Whether the notebook has changes not saved yet.
NOTEBOOK_DIRTY = "(path) => { " + PANEL + " return panel.context.model.dirty; }"


@pytest.mark.parametrize("front_end", list(FRONT_ENDS))
def test_navigation_focus_and_objects_in_chromium(front_end, page, server, deadline, tmp_path):
    """The view a user navigates, in a real browser: the canvas fits a 900 px window; Ctrl+S over
    the canvas saves the notebook; a far click starts a new object and a click on an object selects
    it; a middle drag makes no box; wheel zoom keeps the pixel under the pointer and a click then
    lands on the right image pixel; a middle drag pans; a box dragged past the edge is kept, clipped."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    image, truth = make_scene(NAV_SCENE, size=NAV_SIZE)
    height, width = NAV_SIZE
    areas = truth.reshape(len(truth), -1).sum(1)
    first, second = (int(i) for i in np.argsort(areas)[::-1][:2])  # the two largest objects
    background = ~truth.any(0)

    def state() -> dict:
        return json.loads(kernel_exec(page, NAV_NOTEBOOK, "print(_nav_state())", timeout=deadline.left(20)))

    def context() -> str:
        return f"\nbrowser problems: {page.problems}\njupyter log:\n{server.log_tail(15)}"

    def wait_for(wait: Callable[[float], Any], what: str, cap: float) -> None:
        try:
            wait(deadline.ms(cap))
        except PlaywrightTimeout:
            pytest.fail(f"timed out after {cap:.0f} s or less waiting for {what}" + context())

    def at(s: dict, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of image pixel (x, y)'s centre in the view of state ``s``."""
        g = canvas.evaluate(CANVAS_GEOMETRY)
        x0, y0 = s["visible"][:2]
        shown = g["cssWidth"] / s["css"][0]  # the page may show the canvas smaller than its CSS size
        return (
            g["left"] + g["clientLeft"] + (x + 0.5 - x0) * s["k"] * shown,
            g["top"] + g["clientTop"] + (y + 0.5 - y0) * s["k"] * shown,
        )

    page.set_viewport_size({"width": 900, "height": 1000})
    page.goto(server.url_for(front_end, NAV_NOTEBOOK), timeout=deadline.ms(60))
    wait_for(lambda ms: page.wait_for_function(KERNEL_IDLE, arg=NAV_NOTEBOOK, timeout=ms), "the kernel", 60)
    run_all_cells(page, deadline.ms(10))
    wait_for(lambda ms: page.wait_for_function(NOTEBOOK_DONE, arg=NAV_NOTEBOOK, timeout=ms), "Run All", 120)
    failed = page.evaluate(NOTEBOOK_ERRORS, NAV_NOTEBOOK)
    assert not failed, "cells failed in the browser:\n" + "\n\n".join(failed) + context()
    root = page.locator(".jp-OutputArea-output .sam-widgets-root")
    wait_for(lambda ms: root.first.wait_for(timeout=ms), "the widget's canvas to render", 30)
    canvas = root.locator("canvas")
    kernel_exec(page, NAV_NOTEBOOK, NAV_PROBE, timeout=deadline.left(20))
    room = root.evaluate("(r) => r.clientWidth")
    s = poll(state, lambda s: not s["encoding"] and s["css"][0] <= room, deadline, 60)
    assert not s["encoding"], f"still encoding: {s['status']}"

    # -- a 900 px wide window: the canvas fits the notebook's width, nothing scrolls sideways
    assert s["css"][0] <= room, f"the canvas is {s['css'][0]} px wide in {room} px (a 900 px window)"
    overflow = canvas.evaluate("""(c) => { const out = [];
        for (let e = c; e; e = e.parentElement) if (e.scrollWidth > e.clientWidth + 1 &&
            getComputedStyle(e).overflowX !== 'visible')
          out.push(e.className + ' ' + e.scrollWidth + '>' + e.clientWidth);
        const d = document.scrollingElement; if (d.scrollWidth > d.clientWidth + 1) out.push('page');
        return out; }""")
    assert not overflow, f"horizontal scrolling at 900 px: {overflow}"
    right = canvas.evaluate("(c) => c.getBoundingClientRect().right")
    area = root.evaluate("(r) => r.parentElement.getBoundingClientRect().right")
    assert right <= area + 1, f"the canvas ends at {right}, the output area at {area}"

    # -- a click on the first object: a new object with a mask; the widget now has the keys
    ax, ay = deepest(truth[first])
    page.mouse.click(*at(s, ax, ay))
    s = poll(state, lambda s: s["labels"] and all(o["mask"] for o in s["objects"].values()), deadline, 20)
    (label_a,) = s["labels"]
    ((kx, ky),) = s["objects"][label_a]["points"]
    assert abs(kx - ax - 0.5) <= 3 and abs(ky - ay - 0.5) <= 3, f"clicked {(ax, ay)}, kernel got {(kx, ky)}"
    assert canvas.evaluate("(c) => document.activeElement.contains(c)"), "the click did not focus the widget"
    # the focus ring is drawn where it shows: inside the surface, not clipped by a scrolling box
    time.sleep(0.2)
    shot = np.asarray(Image.open(BytesIO(root.locator(".sam-widgets-surface").screenshot())).convert("RGB"))
    blue = (np.abs(shot.astype(int) - (0x1A, 0x73, 0xE8)).max(2) <= 40).mean(1)  # per row
    ring = min(blue[:4].max(), blue[-4:].max())  # a row of ring at the top and at the bottom
    assert ring > 0.9, f"the focus ring is not on screen: {ring:.0%} of a row at the surface's top or bottom"

    # -- Ctrl+S with the pointer over the canvas (and the keys in the widget) saves the notebook
    assert page.evaluate(NOTEBOOK_DIRTY, NAV_NOTEBOOK) is True, "Run All left nothing to save"
    page.mouse.move(*at(s, ax, ay))
    page.keyboard.press("Control+s")
    saved = poll(lambda: page.evaluate(NOTEBOOK_DIRTY, NAV_NOTEBOOK), lambda d: d is False, deadline, 15)
    assert saved is False, "Ctrl+S over the canvas did not save the notebook"
    on_disk = json.loads((tmp_path / "repo" / NAV_NOTEBOOK).read_text())
    assert any(c.get("outputs") for c in on_disk["cells"]), "the saved notebook has no outputs"
    assert state()["labels"] == [label_a], "Ctrl+S reached the widget"

    # -- a positive click far from the active object: a second object, not one blotch
    bx, by = deepest(truth[second])
    page.mouse.click(*at(s, bx, by))
    s = poll(state, lambda s: len(s["labels"]) == 2, deadline, 20)
    assert len(s["labels"]) == 2 and s["active"] != label_a, f"a far click did not start an object: {s}"
    # -- click-to-select: a click inside the first object's mask selects it, adds no point
    page.mouse.click(*at(s, ax, ay))
    s = poll(state, lambda s: s["active"] == label_a, deadline, 20)
    assert s["active"] == label_a, f"clicking object {label_a!r} did not select it: {s['status']}"
    assert len(s["objects"][label_a]["points"]) == 1 and len(s["labels"]) == 2

    # -- a middle-button drag makes no box and no point
    before = s["objects"]
    page.mouse.move(*at(s, bx, by))
    page.mouse.down(button="middle")
    page.mouse.move(*at(s, bx + 150, by + 100), steps=5)
    page.mouse.up(button="middle")
    time.sleep(0.5)
    s = state()
    assert s["objects"] == before, f"a middle drag changed the objects: {s['objects']}"

    # -- the wheel zooms around the pointer; then a click lands on the image pixel under it
    px, py = deepest(background)
    pointer = at(s, px, py)
    page.mouse.move(*pointer)
    page.mouse.wheel(0, -600)
    s = poll(state, lambda s: s["zoom"] > 2, deadline, 15)
    assert s["zoom"] > 2, f"the wheel did not zoom: {s['zoom']}"
    gx, gy = at(s, px, py)  # where image pixel (px, py) is drawn now: still under the pointer
    near_px = 1.5 * s["k"] + 1  # CSS pixels: an image pixel and a half, events carry whole pixels
    assert abs(gx - pointer[0]) <= near_px and abs(gy - pointer[1]) <= near_px, (
        f"zooming moved the pixel under the pointer from {pointer} to {(gx, gy)}"
    )
    page.keyboard.down("Alt")  # alt+click: a point on the active object, whatever is there
    page.mouse.click(gx, gy)
    page.keyboard.up("Alt")
    s = poll(state, lambda s: len(s["objects"][label_a]["points"]) == 2, deadline, 20)
    kx, ky = s["objects"][label_a]["points"][-1]
    tolerance = 1.5 / s["k"] + 0.5
    assert abs(kx - px - 0.5) <= tolerance and abs(ky - py - 0.5) <= tolerance, (
        f"zoomed x{s['zoom']:.1f}, clicked image pixel {(px, py)}, the kernel got {(kx, ky)}"
    )

    # -- a middle drag pans: the image pixel under the pointer follows it
    start = at(s, px, py)
    page.mouse.move(*start)
    page.mouse.down(button="middle")
    page.mouse.move(start[0] - 120, start[1] - 80, steps=6)
    page.mouse.up(button="middle")
    goal = (start[0] - 120, start[1] - 80)

    def followed(t: dict) -> bool:
        nx, ny = at(t, px, py)
        return abs(nx - goal[0]) <= 2 and abs(ny - goal[1]) <= 2

    moved = poll(state, followed, deadline, 10)
    nx, ny = at(moved, px, py)
    assert abs(nx - (start[0] - 120)) <= 2 and abs(ny - (start[1] - 80)) <= 2, (
        f"after a pan of (-120, -80) pixel {(px, py)} is at {(nx, ny)}, not {start[0] - 120, start[1] - 80}"
    )

    # -- 0 fits the view again; a box dragged past the image's edge is kept, clipped to it
    page.keyboard.press("0")
    s = poll(state, lambda s: s["zoom"] == 1.0, deadline, 10)
    assert s["zoom"] == 1.0
    page.keyboard.press("n")
    sx, sy = width - 200, height - 150
    page.mouse.move(*at(s, sx, sy))
    page.mouse.down()
    g = canvas.evaluate(CANVAS_GEOMETRY)
    page.mouse.move(g["left"] + g["cssWidth"] + 60, g["top"] + g["cssHeight"] + 40, steps=8)  # outside
    page.mouse.up()
    s = poll(state, lambda s: s["active"] and s["objects"][s["active"]]["box"], deadline, 20)
    box = s["objects"][s["active"]]["box"] if s["active"] else None
    assert box is not None, f"the box dragged past the edge was dropped: {s['status']}"
    assert abs(box[0] - sx - 0.5) <= 3 and abs(box[1] - sy - 0.5) <= 3, box
    assert box[2] == width and box[3] == height, f"the box was not clipped to the image: {box}"

    assert not page.problems, "errors in the browser console:\n" + "\n".join(page.problems)


# ---------------------------------------------------------------------------- editing tools (issue 16)

EDIT_NOTEBOOK = "editing.ipynb"
EDIT_PROBE = """
def _edit_state():
    import base64, json
    import numpy as np
    obj = w.session.active
    mask = None if obj is None or obj.mask is None else obj.mask
    return json.dumps({
        "labels": list(w.masks),
        "mask": None if mask is None else base64.b64encode(np.packbits(mask)).decode(),
        "strokes": [] if obj is None else [k.mode for k in obj.strokes],
        "hover_shown": w._hover_mask is not None, "hover": w.hover, "tool": w.tool,
        "thumbs": len(w._thumbs.children), "encoding": w.encoding, "status": w.status_text(),
        "image": [w.session.height, w.session.width],
    })
"""


def edit_notebook() -> dict:
    """A notebook showing one widget on the quickstart's first scene (256 px: shown 1:1), hover on."""
    nb = nav_notebook()
    nb["cells"][0]["source"] = (
        "from sam_widgets import SegmentWidget\nfrom sam_widgets.micro.data import make_scene\n\n"
        f"image, truth = make_scene({SCENE})\nw = SegmentWidget(image, model='micro')\n"
        "w.hover = True  # on by default only where a decoder pass is fast: a loaded test machine may not be"
    )
    return nb


@pytest.mark.parametrize("front_end", list(FRONT_ENDS))
def test_edit_tools_in_chromium(front_end, page, server, deadline, tmp_path):
    """Issue 16's gestures in a real browser: the pointer resting over an object draws the hover
    preview on the canvas while ``w.masks`` stays unchanged; a click shows three candidate
    thumbnails; the brush (b) paints into the mask, the eraser (r) rubs out, z undoes a stroke.
    Set SAM_WIDGETS_EDIT_SCREENSHOT=path.png to keep a picture of the widget (JupyterLab)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    image, truth = make_scene(SCENE)
    target = int(np.argmax(truth.reshape(len(truth), -1).sum(1)))
    x, y = deepest(truth[target])
    background = ~truth.any(0)

    def state() -> dict:
        s = json.loads(kernel_exec(page, EDIT_NOTEBOOK, "print(_edit_state())", timeout=deadline.left(20)))
        if s["mask"] is not None:
            h, w = s["image"]
            bits = np.unpackbits(np.frombuffer(base64.b64decode(s["mask"]), np.uint8))
            s["mask"] = bits[: h * w].reshape(h, w).astype(bool)
        return s

    def context() -> str:
        return f"\nbrowser problems: {page.problems}\njupyter log:\n{server.log_tail(15)}"

    def wait_for(wait: Callable[[float], Any], what: str, cap: float) -> None:
        try:
            wait(deadline.ms(cap))
        except PlaywrightTimeout:
            pytest.fail(f"timed out after {cap:.0f} s or less waiting for {what}" + context())

    page.goto(server.url_for(front_end, EDIT_NOTEBOOK), timeout=deadline.ms(60))
    wait_for(lambda ms: page.wait_for_function(KERNEL_IDLE, arg=EDIT_NOTEBOOK, timeout=ms), "the kernel", 60)
    run_all_cells(page, deadline.ms(10))
    wait_for(lambda ms: page.wait_for_function(NOTEBOOK_DONE, arg=EDIT_NOTEBOOK, timeout=ms), "Run All", 120)
    failed = page.evaluate(NOTEBOOK_ERRORS, EDIT_NOTEBOOK)
    assert not failed, "cells failed in the browser:\n" + "\n\n".join(failed) + context()
    root = page.locator(".jp-OutputArea-output .sam-widgets-root")
    wait_for(lambda ms: root.first.wait_for(timeout=ms), "the widget's canvas to render", 30)
    canvas = root.locator("canvas")
    canvas.scroll_into_view_if_needed(timeout=deadline.ms(10))
    kernel_exec(page, EDIT_NOTEBOOK, EDIT_PROBE, timeout=deadline.left(20))
    s = poll(state, lambda s: not s["encoding"], deadline, 60)
    assert not s["encoding"] and s["hover"], s["status"]

    def pixels() -> np.ndarray:
        return canvas_rgba(canvas).astype(int)

    def at(px: float, py: float) -> tuple[float, float]:
        return page_point(canvas.evaluate(CANVAS_GEOMETRY), px, py)

    bare = poll(pixels, lambda px: np.abs(px[..., :3] - image).max() <= 2, deadline, 15)

    # -- hover: the pointer rests over the object; the canvas shows the preview, w.masks unchanged
    page.mouse.move(*at(x - 10, y - 10))
    page.mouse.move(*at(x, y), steps=4)

    def previewed(px: np.ndarray) -> np.ndarray:
        return np.abs(px - bare).max(2) > 2

    shown = poll(pixels, lambda px: previewed(px).sum() > 200, deadline, 20)
    veil = previewed(shown)
    assert veil.sum() > 200, "no hover preview on the canvas" + context()
    inside = (veil & truth[target]).sum() / veil.sum()
    assert inside > 0.8, f"the preview lies {inside:.0%} on the object under the pointer"
    s = state()
    assert s["labels"] == [] and s["mask"] is None and s["hover_shown"], f"hovering changed w.masks: {s}"
    # -- leaving the canvas takes the preview away
    g = canvas.evaluate(CANVAS_GEOMETRY)
    page.mouse.move(g["left"] + g["cssWidth"] + 80, g["top"] - 30)
    gone = poll(pixels, lambda px: previewed(px).sum() == 0, deadline, 10)
    assert previewed(gone).sum() == 0, "the preview stayed after the pointer left"

    # -- a click where the preview shows: an object (the preview's pass, reused: no second decoder
    # pass), and three candidate thumbnails labelled in words
    page.mouse.move(*at(x, y))
    poll(state, lambda s: s["hover_shown"], deadline, 20)
    page.mouse.down()
    page.mouse.up()
    s = poll(state, lambda s: s["mask"] is not None and s["thumbs"] == 3, deadline, 20)
    assert s["labels"] and s["mask"] is not None and s["mask"][y, x], s["status"]
    assert "hover preview's" in s["status"], s["status"]
    thumbs = root.locator(".widget-image")
    wait_for(lambda ms: thumbs.nth(2).wait_for(timeout=ms), "three candidate thumbnails", 10)
    buttons = root.locator(".widget-toggle-buttons button", has_text=re.compile(r"^\d: (good|fair|poor) "))
    assert buttons.count() == 3, [b.inner_text() for b in buttons.all()]

    # -- the brush (b): a drag over the background paints it into the mask
    ys, xs = np.nonzero(background)
    far = np.argsort(np.hypot(xs - x, ys - y))
    ax, ay = int(xs[far[len(far) // 3]]), int(ys[far[len(far) // 3]])  # background, not too far
    assert not s["mask"][ay, ax]
    page.keyboard.press("b")
    s = poll(state, lambda s: s["tool"] == "brush", deadline, 10)
    page.mouse.move(*at(ax, ay))
    page.mouse.down()
    page.mouse.move(*at(ax + 6, ay), steps=3)
    page.mouse.up()
    s = poll(state, lambda s: s["strokes"] == ["add"], deadline, 20)
    assert s["strokes"] == ["add"] and s["mask"][ay, ax] and s["mask"][ay, ax + 3], s["status"]
    if os.environ.get("SAM_WIDGETS_EDIT_SCREENSHOT") and front_end == "lab":
        page.mouse.move(*at(ax + 20, ay + 12))  # the brush's disc under the pointer
        time.sleep(0.5)
        root.screenshot(path=os.environ["SAM_WIDGETS_EDIT_SCREENSHOT"], timeout=deadline.ms(10))
    # -- the eraser (r) rubs the painted pixels out; z undoes that stroke
    page.keyboard.press("r")
    s = poll(state, lambda s: s["tool"] == "eraser", deadline, 10)
    page.mouse.move(*at(ax, ay))
    page.mouse.down()
    page.mouse.up()
    s = poll(state, lambda s: s["strokes"] == ["add", "erase"], deadline, 20)
    assert not s["mask"][ay, ax], f"the eraser left pixel {(ax, ay)}: {s['status']}"
    page.keyboard.press("z")
    s = poll(state, lambda s: s["strokes"] == ["add"], deadline, 20)
    assert s["mask"][ay, ax], "z did not undo the eraser's stroke"
    assert not page.problems, "errors in the browser console:\n" + "\n".join(page.problems)
