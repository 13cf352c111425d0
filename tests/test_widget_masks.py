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


def test_outline_is_the_mask_within_width_of_its_edge_not_the_views():
    from scipy import ndimage

    from sam_widgets.widget import _outline

    rng = np.random.default_rng(3)
    # sparse blobs, and dense masks that reach the view's edges (an object filling a zoomed view)
    masks = [ndimage.binary_opening(rng.random((60, 80)) < 0.6, iterations=2) for _ in range(20)]
    masks += [ndimage.binary_dilation(rng.random((60, 80)) < 0.06, iterations=3) for _ in range(20)]
    assert sum(m.mean() > 0.5 and m[0].any() and m[:, -1].any() for m in masks) >= 10
    for width in (1, 2, 4, 9):
        for mask in masks:
            # by definition: a mask pixel whose (2 width + 1) square reaches outside the mask, where
            # the view's edge repeats the mask (the view's edge is no edge of the object)
            padded = np.pad(mask, width, mode="edge")
            inner = ndimage.binary_erosion(padded, np.ones((2 * width + 1,) * 2, bool), border_value=1)
            expected = mask & ~inner[width:-width, width:-width]
            assert np.array_equal(_outline(mask, width), expected)
    full = np.ones((40, 50), bool)
    assert not _outline(full, 3).any()  # fills the view: no outline along the view's edge
    block = np.zeros((40, 50), bool)
    block[10:30, 0:20] = True  # touches the view's left edge: outlined on its three other sides
    ring = _outline(block, 2)
    assert ring[10:12, 0:20].all() and ring[28:30, 0:20].all() and ring[10:30, 18:20].all()
    assert not ring[12:28, 0:18].any()
    assert not _outline(np.zeros((5, 5), bool), 2).any()
    line = np.array([[0, 1, 1, 1, 1, 1, 1, 0, 0, 1]], bool)  # one row: the view's edge on two sides
    assert np.array_equal(_outline(line, 2)[0], [0, 1, 1, 0, 0, 1, 1, 0, 0, 1])
    assert np.array_equal(_outline(line.T, 2)[:, 0], [0, 1, 1, 0, 0, 1, 1, 0, 0, 1])


def test_the_mask_layer_is_drawn_as_a_palette_png_of_the_overlay(rgb_image, tiny_sam, monkeypatch):
    import io

    from PIL import Image

    from sam_widgets import widget as widget_module

    sent = []
    w = SegmentWidget(rgb_image, CachedPredictor(tiny_sam), background=False)
    monkeypatch.setattr(
        w.canvas[1]._canvas_manager,
        "send_draw_command",
        lambda layer, cmd, args=None, buffers=None: sent.append((layer, args, buffers)),
    )
    w.click(50, 40)
    w.new_object()
    w.click(100, 70)
    index, palette = w.mask_layer()
    assert index.dtype == np.uint16 and palette.shape == (5, 4)  # transparent + fill and outline each
    assert palette[0, 3] == 0 and np.array_equal(palette[index], w.mask_overlay())
    (layer, (x, y), (png,)) = [s for s in sent if s[0] is w.canvas[1] and s[2]][-1]
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.mode == "P"  # a palette PNG, not RGBA
    drawn = np.asarray(im.convert("RGBA"))
    canvas = np.zeros_like(w.mask_overlay())
    canvas[y : y + drawn.shape[0], x : x + drawn.shape[1]] = drawn
    assert np.array_equal(canvas, w.mask_overlay())  # all of it, in place
    # "everything" with many proposals: one palette entry per colour, still a palette PNG
    from sam_widgets.session import Proposal

    h, wd = rgb_image.shape[:2]
    props = []
    for i in range(200):
        m = np.zeros((h, wd), bool)
        m[(i * 7) % (h - 4) : (i * 7) % (h - 4) + 4, (i * 13) % (wd - 4) : (i * 13) % (wd - 4) + 4] = True
        props.append(m)
    monkeypatch.setattr(
        type(w.session), "proposals", property(lambda self: tuple(Proposal.of(m, 0.9, 0.9) for m in props))
    )
    index, palette = w.mask_layer()
    assert len(palette) < 40 and np.array_equal(palette[index], w.mask_overlay())
    assert Image.open(io.BytesIO(widget_module.indexed_png(index, palette))).mode == "P"
    # more colours than a palette PNG holds: RGBA, the same pixels
    many = np.random.default_rng(0).integers(0, 255, (300, 4), dtype=np.uint8)
    idx = np.arange(300, dtype=np.uint16).reshape(15, 20)
    big = Image.open(io.BytesIO(widget_module.indexed_png(idx, many)))
    assert big.mode == "RGBA" and np.array_equal(np.asarray(big), many[idx])
