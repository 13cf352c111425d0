"""The one prompt type: points and a box in pixels of the original image, checked in one place.

``Prompt`` is what the predictor (``CachedPredictor.predict``), the session (a click, a drag) and
the annotation files (a saved object) check their points and boxes with, and what ``compare``
runs on every model. Points are (X, Y); labels 1 (on the object) or 0 (not on it); a box is
X0, Y0, X1, Y1 with X0 <= X1 and Y0 <= Y1. ``check(width, height)`` says whether it fits an image.

numpy only: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Prompt"]


@dataclass(frozen=True)
class Prompt:
    """One prompt in pixels of the original image: (X, Y) points with a label each, and/or a box.

    name: a caption (``compare``'s figures), may be empty. points: (X, Y) pairs; labels: one per
    point, 1 on the object, 0 not on it; box: X0, Y0, X1, Y1. At least one point or a box.
    """

    name: str = ""
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise ValueError(
                f"prompt {self.name!r}: {len(self.points)} points but {len(self.labels)} labels."
            )
        if not self.points and self.box is None:
            raise ValueError(f"prompt {self.name!r} has neither points nor a box.")
        if not set(self.labels) <= {0, 1}:
            raise ValueError(
                f"point_labels must be 1 (positive) or 0 (negative), got {sorted(set(self.labels))}."
            )
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if x1 < x0 or y1 < y0:
                raise ValueError(f"box {list(self.box)} is not XYXY: need X0 <= X1 and Y0 <= Y1.")

    @classmethod
    def from_arrays(
        cls, point_coords: Any = None, point_labels: Any = None, box: Any = None
    ) -> Prompt | None:
        """The prompt of ``SamPredictor.predict``'s arguments (Nx2 coords, N labels, a 4-box), or
        None when there is neither a point nor a box. Shapes are checked here, values by the type."""
        if point_coords is None and point_labels is not None:
            raise ValueError("point_labels given without point_coords.")
        if point_coords is not None and point_labels is None:
            raise ValueError("point_labels must be supplied if point_coords is supplied.")
        points: tuple = ()
        labels: tuple = ()
        if point_coords is not None:
            coords = np.asarray(point_coords, dtype=np.float64)
            label_array = np.asarray(point_labels)
            if coords.ndim != 2 or coords.shape[1] != 2:
                raise ValueError(
                    f"point_coords must be an Nx2 array of (X, Y) pixels, got shape {coords.shape}."
                )
            if label_array.shape != (coords.shape[0],):
                raise ValueError(
                    f"point_labels must have one label per point: {coords.shape[0]} points, "
                    f"labels of shape {label_array.shape}."
                )
            points = tuple((float(x), float(y)) for x, y in coords)
            labels = tuple(v.item() for v in label_array)
        box_tuple = None
        if box is not None:
            b = np.asarray(box, dtype=np.float64)
            if b.shape not in ((4,), (1, 4)):
                raise ValueError(f"box must be 4 numbers X0, Y0, X1, Y1 in pixels, got shape {b.shape}.")
            box_tuple = tuple(float(v) for v in b.reshape(4))
        if not points and box_tuple is None:
            return None
        return cls(points=points, labels=labels, box=box_tuple)

    def check(self, width: int, height: int, image: str = "") -> Prompt:
        """``self`` if every point and the box lie inside a ``width`` x ``height`` image (edges
        included), else a ``ValueError`` naming the first one that does not (``image``: its name)."""
        where = f"the {width}x{height} image" + (f" {image!r}" if image else "")
        for x, y in self.points:
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(
                    f"Point ({x:g}, {y:g}) holds NaN or an infinite value: it lies outside {where}."
                )
            if not (0 <= x <= width and 0 <= y <= height):
                raise ValueError(
                    f"Point ({x:g}, {y:g}) lies outside {where}; points are (X, Y) in pixels of the "
                    "original image, 0 <= X <= width, 0 <= Y <= height."
                )
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not all(math.isfinite(v) for v in self.box):
                raise ValueError(f"Box {list(self.box)} holds NaN or infinite values.")
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise ValueError(
                    f"Box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside {where}; corners are in "
                    "pixels of the original image (clamp a drag that leaves the image)."
                )
        return self

    def predict_kwargs(self) -> dict[str, Any]:
        """Arguments for ``SamPredictor.predict``: point_coords Nx2, point_labels N, box 4 (or None)."""
        return {
            "point_coords": np.array(self.points, dtype=np.float64) if self.points else None,
            "point_labels": np.array(self.labels, dtype=np.int64) if self.points else None,
            "box": np.array(self.box, dtype=np.float64) if self.box is not None else None,
        }
