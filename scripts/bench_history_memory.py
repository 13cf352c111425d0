#!/usr/bin/env python
"""Undo history memory: 20 clicks on a 12 MP image with a fake predictor (round masks).

Prints the bytes the session keeps (tracemalloc counts numpy's buffers) after the clicks and after
``clear()``, the median time of a click, and of one undo. No model: the predictor's own time is shown
apart. Usage: ``python scripts/bench_history_memory.py``.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

import numpy as np

from sam_widgets.session import Session

H, W = 3000, 4000


class RoundMasks:
    """A predictor returning 3 (one point) or 1 round masks around the last point."""

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        self.shape = image.shape[:2]
        self.features = object()

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        h, w = self.shape
        x, y = point_coords[-1]
        n = 3 if multimask_output else 1
        yy, xx = np.ogrid[:h, :w]
        d = (yy - y) ** 2 + (xx - x) ** 2
        masks = np.stack([d < (300 + 150 * k) ** 2 for k in range(n)])
        return masks, np.linspace(0.9, 0.7, n), np.zeros((n, 256, 256), np.float32)


def main() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    session = Session(image, RoundMasks())
    session.ensure_encoded()
    alone = RoundMasks()
    alone.set_image(image)
    predict_ms = []
    for _ in range(5):
        t = time.perf_counter()
        alone.predict(point_coords=np.array([[2000.0, 1500.0]]))
        predict_ms.append((time.perf_counter() - t) * 1e3)

    tracemalloc.start()
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    click_ms = []
    for i in range(20):
        t = time.perf_counter()
        session.add_point(1000 + 100 * i, 800 + 60 * i, positive=i % 3 != 2)
        click_ms.append((time.perf_counter() - t) * 1e3)
    gc.collect()
    grew = tracemalloc.get_traced_memory()[0] - base
    session.clear()
    gc.collect()
    after_clear = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    t = time.perf_counter()
    session.undo()
    undo_ms = (time.perf_counter() - t) * 1e3
    print(
        f"retained after 20 clicks: {grew / 2**20:.1f} MiB; after clear(): {after_clear / 2**20:.1f} MiB; "
        f"click median {np.median(click_ms):.0f} ms (fake predictor alone {np.median(predict_ms):.0f} ms); "
        f"undo {undo_ms:.0f} ms"
    )


if __name__ == "__main__":
    main()
