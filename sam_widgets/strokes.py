"""Brush and eraser strokes: vector edits of a mask, kept with the object and drawn over SAM's mask.

A stroke is a polyline swept by a disc: ``mode`` ``"add"`` (brush: the pixels join the mask) or
``"erase"`` (eraser: they leave it), ``radius`` and ``points`` in pixels of the original image.
An object keeps its strokes in order (``SessionObject.strokes``); whenever its mask is made, the
strokes are applied, in order, on top of the candidate SAM predicted (``apply_strokes``). So a
later click on the same object re-predicts the candidate but never throws a stroke away: painted
pixels stay in, erased pixels stay out. Undo removes the last stroke like any other step.

Strokes are small (a few points each) so the history, the saved ``annotations.json`` and the
undo steps hold them as they are; masks are only rasterised when needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Stroke", "StrokeError", "apply_strokes", "stroke_of", "MODES"]

MODES = ("add", "erase")
MAX_POINTS = 100_000  # points in one stroke: far beyond any drag


class StrokeError(ValueError):
    """A stroke that cannot be drawn: bad mode, radius or points. The message says which."""


@dataclass(frozen=True)
class Stroke:
    """One brush or eraser stroke. Immutable and hashable.

    Attributes:
      mode: ``"add"`` (brush) or ``"erase"`` (eraser).
      radius: the disc's radius in pixels of the original image, > 0.
      points: the polyline's (X, Y) in pixels of the original image, at least one (a dab).
    """

    mode: str
    radius: float
    points: tuple[tuple[float, float], ...]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "radius": self.radius, "points": [list(p) for p in self.points]}

    @classmethod
    def from_json(cls, data: Any) -> Stroke:
        return stroke_of(data["points"], data["radius"], data["mode"])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(X0, Y0, X1, Y1) of the pixels the stroke may touch, in image pixels."""
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        r = self.radius
        return min(xs) - r, min(ys) - r, max(xs) + r, max(ys) + r


def stroke_of(points: Iterable[Sequence[float]], radius: float, mode: str = "add") -> Stroke:
    """A checked ``Stroke``: ``points`` [(x, y), ...] image pixels, ``radius`` > 0 pixels, ``mode``
    "add" or "erase". Raises ``StrokeError`` saying what is wrong."""
    if mode not in MODES:
        raise StrokeError(f"A stroke's mode is 'add' (brush) or 'erase' (eraser), got {mode!r}.")
    try:
        radius = float(radius)
    except (TypeError, ValueError) as e:
        raise StrokeError(f"A stroke's radius is a number of pixels, got {radius!r}.") from e
    if not (math.isfinite(radius) and radius > 0):
        raise StrokeError(f"A stroke's radius must be a positive number of pixels, got {radius!r}.")
    try:
        listed = [tuple(p) for p in points]
        if any(len(p) != 2 for p in listed):
            raise ValueError
        pts = tuple((float(x), float(y)) for x, y in listed)
    except (TypeError, ValueError, IndexError) as e:
        raise StrokeError(f"A stroke's points are [(x, y), ...] in image pixels, got {points!r}.") from e
    if not pts:
        raise StrokeError("A stroke needs at least one point (one point paints a disc).")
    if len(pts) > MAX_POINTS:
        raise StrokeError(f"A stroke has at most {MAX_POINTS} points, got {len(pts)}: split it.")
    if not all(math.isfinite(v) for p in pts for v in p):
        raise StrokeError(f"A stroke's points must be finite numbers, got {pts[:5]}...")
    return Stroke(mode, radius, pts)


def apply_strokes(
    mask: np.ndarray,
    strokes: Sequence[Stroke],
    region: tuple[float, float] | None = None,
    scale: float | tuple[float, float] = 1.0,
) -> np.ndarray:
    """``mask`` with ``strokes`` applied in order: a new HxW bool array (``mask`` is not changed).

    ``mask`` may be a part of the image at another resolution: pixel (i, j) of ``mask`` covers
    image pixel ``(region[0] + j / scale, region[1] + i / scale)`` (``region``: its top-left
    corner in image pixels, default (0, 0); ``scale``: mask pixels per image pixel, one number or
    (across, down) for a view whose two scales differ). A pixel is
    inside a stroke when its centre is within ``radius`` of the polyline (exact, per segment).
    """
    out = np.array(mask, dtype=bool)
    h, w = out.shape
    ox, oy = region if region is not None else (0.0, 0.0)
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    for stroke in strokes:
        painted = np.zeros_like(out)
        pts = stroke.points
        for a, b in zip(pts, pts[1:] or pts, strict=False):
            _sweep(painted, a, b, stroke.radius, ox, oy, sx, sy)
        if stroke.mode == "add":
            out |= painted
        else:
            out &= ~painted
    return out


def _sweep(
    out: np.ndarray,
    a: tuple[float, float],
    b: tuple[float, float],
    radius: float,
    ox: float,
    oy: float,
    sx: float,
    sy: float,
) -> None:
    """Set the pixels of ``out`` whose centre lies within ``radius`` of segment a-b (image px)."""
    h, w = out.shape
    x0, x1 = min(a[0], b[0]) - radius, max(a[0], b[0]) + radius
    y0, y1 = min(a[1], b[1]) - radius, max(a[1], b[1]) + radius
    c0, c1 = max(0, math.floor((x0 - ox) * sx)), min(w, math.ceil((x1 - ox) * sx) + 1)
    r0, r1 = max(0, math.floor((y0 - oy) * sy)), min(h, math.ceil((y1 - oy) * sy) + 1)
    if c1 <= c0 or r1 <= r0:
        return
    # Pixel centres in image coordinates.
    xs = ox + (np.arange(c0, c1) + 0.5) / sx
    ys = oy + (np.arange(r0, r1) + 0.5) / sy
    px, py = xs[None, :] - a[0], ys[:, None] - a[1]
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = np.clip((px * dx + py * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    inside = (px - t * dx) ** 2 + (py - t * dy) ** 2 <= radius * radius
    out[r0:r1, c0:c1] |= inside
