"""The widget's click makes masks at the view's size only: fitted or zoomed, no full-size mask."""

from __future__ import annotations

import numpy as np
import torch

from sam_widgets import CachedPredictor, load_sam
from sam_widgets import predictor as _predictor
from sam_widgets.widget import THUMB, SegmentWidget


def test_a_click_fitted_or_zoomed_makes_no_full_size_mask(monkeypatch):
    import sam_widgets.session as session_module

    made = {"full": 0, "view": []}
    full, view = _predictor.masks_from_low_res, _predictor.view_from_low_res
    count_full = lambda *a: made.__setitem__("full", made["full"] + 1) or full(*a)  # noqa: E731
    monkeypatch.setattr(session_module, "masks_from_low_res", count_full)

    def count_view(logits, geometry, region, size):
        made["view"].append((region, size))
        return view(logits, geometry, region, size)

    monkeypatch.setattr(session_module, "view_from_low_res", count_view)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, size=(900, 1200, 3), dtype=np.uint8)
        image[300:600, 400:800] = (230, 40, 40)
        w = SegmentWidget(image, CachedPredictor(load_sam("micro", precision="fp32")), background=False)
        size = (w.canvas.height, w.canvas.width)
        assert size == (576, 768)  # fitted: 1200 px shown at 768
        w.click(600, 450)
        # the canvas' view (after the hover measurement's two previews, also at the view's size,
        # at the first encoding), and the candidate thumbnails at their own small size
        canvas = [v for v in made["view"] if v[1] == size]
        assert made["full"] == 0 and canvas == [((0.0, 0.0, 1200.0, 900.0), size)] * 3
        assert all(max(at) <= THUMB for _, at in made["view"] if at != size)
        assert w.mask_overlay()[..., 3].any()
        w.zoom_to(500, 400, 700, 550)  # zoomed: the region, at the same canvas size
        w.click(620, 460, new_point=True)
        region, at = [v for v in made["view"] if v[1] == size][-1]
        assert region[0] >= 450 and region[2] <= 750
        assert made["full"] == 0  # the click, the redraw and the label: no full-size mask
        assert w.masks["object 1"].shape == (900, 1200) and made["full"] == 1  # asked for: made
    finally:
        torch.set_num_threads(threads)
