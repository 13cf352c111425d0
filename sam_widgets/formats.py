"""Masks as COCO segmentations: compressed RLE (pycocotools) or polygons.

The one place that turns an HxW bool mask into what a COCO ``"segmentation"`` holds; the batch
annotator (``sam_widgets.annotate``) writes through it, and the widget's export can reuse it.

- ``mask_to_rle``: COCO compressed RLE, ``{"size": [H, W], "counts": str}``, exact: every pixel
  survives, holes and several parts included. Decode with ``pycocotools.mask.decode``.
- ``mask_to_polygons``: COCO polygons, ``[[x0, y0, x1, y1, ...], ...]`` in pixel coordinates of the
  image (a pixel (row r, col c) covers x in [c, c+1), y in [r, r+1)). **Polygons are lossy**: one
  polygon per connected part (8-connected), tracing its *outer* boundary only, so holes are filled
  (COCO's polygon format has no holes: pycocotools unions the polygons of one segmentation);
  parts smaller than ``min_area`` pixels are dropped; ``tolerance`` > 0 simplifies the outline
  (Douglas-Peucker, in pixels). Use RLE when holes or exact pixels matter.
- ``segmentation``: either, by name (``"rle"`` or ``"polygons"``), with ``area`` and ``bbox``
  computed from the exact mask (so both formats report the same area and box).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ._io import rle_encode

__all__ = ["SEGMENTATION_FORMATS", "mask_to_rle", "mask_to_polygons", "rle_area_bbox", "segmentation"]

SEGMENTATION_FORMATS = ("rle", "polygons")
SegmentationFormat = Literal["rle", "polygons"]


def _check_mask(mask: Any) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"A mask must be 2-D (HxW); got shape {m.shape}.")
    return m.astype(bool, copy=False)


def mask_to_rle(mask: Any) -> dict[str, Any]:
    """COCO compressed RLE of an HxW mask (nonzero = inside): ``{"size": [H, W], "counts": str}``.

    JSON-ready (``counts`` is ASCII text, as in COCO files); exact, holes and parts included.
    """
    return rle_encode(_check_mask(mask))


def rle_area_bbox(rle: dict[str, Any]) -> tuple[int, list[float]]:
    """Pixel area and COCO bbox ``[x, y, width, height]`` (pixels) of a ``mask_to_rle`` result."""
    from pycocotools import mask as mask_utils

    coded = {"size": rle["size"], "counts": str(rle["counts"]).encode("ascii")}
    return int(mask_utils.area(coded)), [float(v) for v in mask_utils.toBbox(coded)]


def mask_to_polygons(mask: Any, *, tolerance: float = 0.0, min_area: int = 1) -> list[list[float]]:
    """COCO polygons of an HxW mask: one outer outline per 8-connected part; holes filled.

    Arguments:
      mask: HxW, nonzero = inside.
      tolerance: simplify each outline to within this many pixels (0: keep every vertex of the
        pixel-exact outline, which rasterises back to the filled mask up to pycocotools' edge rule).
      min_area: parts of fewer pixels are dropped.

    Returns:
      ``[[x0, y0, x1, y1, ...], ...]``, each polygon at least 3 vertices, coordinates in pixels of
      the image (x right, y down, a pixel's corner at integers); ``[]`` for an empty mask.
    """
    from scipy import ndimage
    from skimage import measure

    m = _check_mask(mask)
    parts, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    polygons: list[list[float]] = []
    for i, sl in enumerate(ndimage.find_objects(parts), start=1):
        if sl is None:
            continue
        part = parts[sl] == i
        if int(part.sum()) < min_area:
            continue
        filled = np.pad(ndimage.binary_fill_holes(part), 1)
        # Upsampled 2x (nearest) the 0.5 contour runs along the pixels' edges, not their centres.
        big = np.kron(filled, np.ones((2, 2), np.uint8)).astype(np.float32)
        contours = measure.find_contours(big, 0.5)
        if not contours:
            continue
        outline = max(contours, key=len)  # the outer boundary (holes were filled)
        # Douglas-Peucker; at tolerance 0 it drops only the vertices in the middle of straight runs.
        outline = measure.approximate_polygon(outline, tolerance=max(2 * tolerance, 1e-6))
        # (row, col) of the 2x grid, padded by 1 pixel -> (x, y) in image pixels.
        ys = (outline[:, 0] + 0.5) / 2 - 1 + sl[0].start
        xs = (outline[:, 1] + 0.5) / 2 - 1 + sl[1].start
        if len(outline) > 1 and np.allclose(outline[0], outline[-1]):
            xs, ys = xs[:-1], ys[:-1]  # find_contours closes the loop; COCO polygons are implicit
        if len(xs) < 3:
            continue
        flat = np.empty(2 * len(xs))
        flat[0::2], flat[1::2] = np.round(xs, 2), np.round(ys, 2)
        polygons.append([float(v) for v in flat])
    return polygons


def segmentation(
    mask: Any, fmt: SegmentationFormat = "rle", *, tolerance: float = 0.0
) -> tuple[Any, int, list[float]]:
    """``(segmentation, area, bbox)`` of an HxW mask for a COCO annotation.

    ``fmt``: ``"rle"`` (exact) or ``"polygons"`` (outer outlines, holes filled: see the module).
    ``area`` (pixels) and ``bbox`` ([x, y, w, h], pixels) come from the exact mask either way.
    """
    if fmt not in SEGMENTATION_FORMATS:
        raise ValueError(
            f"Unknown segmentation format {fmt!r}; use one of {', '.join(SEGMENTATION_FORMATS)}."
        )
    rle = mask_to_rle(mask)
    area, bbox = rle_area_bbox(rle)
    if fmt == "rle":
        return rle, area, bbox
    return mask_to_polygons(mask, tolerance=tolerance), area, bbox
