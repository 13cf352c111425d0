#!/usr/bin/env python
"""The README's pictures of the widget, taken in JupyterLab in headless chromium (device pixel ratio 2).

    python scripts/widget_screenshots.py   # docs/widget_fitted.png, widget_objects.png, widget_zoomed.png

A 1200x900 synthetic scene with micro: the whole image fitted, then four objects clicked through the
widget's own methods (what a user's clicks give), then zoomed in on one of them.
Needs the test extras and /usr/bin/chromium, as tests/test_browser.py.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_helpers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    KERNEL_IDLE,
    NOTEBOOK_DONE,
    JupyterServer,
    kernel_exec,
    run_all_cells,
)

NOTEBOOK = "screenshots.ipynb"
SETUP = """\
import numpy as np
from scipy import ndimage
from sam_widgets import SegmentWidget
from sam_widgets.micro.data import make_scene

image, truth = make_scene(21, size=(900, 1200))
w = SegmentWidget(image, model="micro")
w"""
CLICKS = """\
w.wait()
for m in sorted(truth, key=lambda m: -int(m.sum()))[:4]:
    depth = ndimage.distance_transform_edt(m)
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    w.select(None)
    w.click(x, y)
    w.wait()
"""


def main() -> int:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="sam-screenshots-"))
    (work / "nb").mkdir()
    cells = [
        {
            "cell_type": "code",
            "id": "c0",
            "metadata": {},
            "source": SETUP,
            "outputs": [],
            "execution_count": None,
        }
    ]
    notebook = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (work / "nb" / NOTEBOOK).write_text(json.dumps(notebook))
    server = JupyterServer(work / "nb", work / "jupyter")
    server.start(timeout=60)
    docs = ROOT / "docs"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            page = browser.new_context(
                viewport={"width": 1280, "height": 1100}, device_scale_factor=2
            ).new_page()
            page.goto(server.url_for("lab", NOTEBOOK), timeout=60_000)
            page.wait_for_function(KERNEL_IDLE, arg=NOTEBOOK, timeout=60_000)
            run_all_cells(page, 10_000)
            page.wait_for_function(NOTEBOOK_DONE, arg=NOTEBOOK, timeout=180_000)
            root = page.locator(".jp-OutputArea-output .sam-widgets-root").first
            root.wait_for(timeout=30_000)
            kernel_exec(page, NOTEBOOK, "w.wait()", timeout=120)
            time.sleep(2)
            root.screenshot(path=docs / "widget_fitted.png")  # the whole image, before any click
            kernel_exec(page, NOTEBOOK, CLICKS, timeout=120)
            time.sleep(2)
            root.screenshot(path=docs / "widget_objects.png")
            code = "b = w.session.objects[1].mask; ys, xs = np.nonzero(b); w.select(w.session.labels[1]); "
            code += "w.zoom_to(xs.min() - 20, ys.min() - 20, xs.min() + 140, ys.min() + 100)"
            kernel_exec(page, NOTEBOOK, code, timeout=30)
            time.sleep(2)
            root.screenshot(path=docs / "widget_zoomed.png")
            browser.close()
    finally:
        server.stop()
    print("wrote", *(docs / n for n in ("widget_objects.png", "widget_fitted.png", "widget_zoomed.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
