"""Turn what users pass as an image into the one format SAM takes: uint8 HxWx3 RGB.

The rules, applied in order (no torch needed here):

- a path (str or Path) is opened with PIL (``sam_widgets._io.read_image``): its EXIF orientation is
  applied, as a photo viewer shows it; the size limits are checked from the header before decoding;
  a truncated, corrupt or unreadable file is a ValueError naming the file;
- a PIL image is converted by its mode (mode "I", 32-bit, must lie in 0..65535 like uint16);
- 2-D (grayscale) and HxWx1 arrays are repeated to 3 channels; HxWx4 (RGBA) drops alpha;
- uint8 is taken as is; bool becomes 0/255; uint16 is scaled by 255/65535;
- float must lie in [0, 1] and is scaled by 255 and rounded (floats in [0, 255] are refused:
  the scale would be a guess); other integer types must lie in [0, 255];
- empty, smaller than MIN_SIDE pixels, larger than MAX_PIXELS, thinner than 1:MAX_ASPECT (SAM would
  shrink the short side below a patch), or holding NaN/inf: ValueError.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._io import MAX_ASPECT, MAX_PIXELS, MIN_SIDE, check_size, read_image

__all__ = ["MIN_SIDE", "MAX_PIXELS", "MAX_ASPECT", "as_rgb_uint8", "check_size"]


def as_rgb_uint8(image: Any) -> np.ndarray:
    """Return ``image`` as a C-contiguous uint8 array of shape HxWx3 (RGB), by the rules above."""
    source = ""
    if isinstance(image, (str, os.PathLike)):
        source = f"{image}: "
        image = read_image(image)
    if _is_pil(image):
        image = _from_pil(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"Expected an image as a numpy array (HxWx3 uint8 RGB), a PIL image or a path; "
            f"got {type(image).__name__}."
        )
    arr = image
    if arr.size == 0:
        raise ValueError(f"The image is empty (shape {arr.shape}).")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise ValueError(
            f"Image shape {arr.shape} is not an image: expected HxW (gray), HxWx3 (RGB) or "
            "HxWx4 (RGBA). A CxHxW tensor layout needs .transpose(1, 2, 0) first."
        )
    h, w = arr.shape[:2]
    check_size(w, h, source)
    try:
        return np.ascontiguousarray(_to_uint8(arr))
    except ValueError as e:
        raise ValueError(f"{source}{e}") from e


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("The image holds NaN or infinite values.")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"A float image must lie in [0, 1]; this one spans [{lo:g}, {hi:g}]. "
                "Pass uint8 (0-255); for 0-255 data in a float array use .astype(np.uint8), or divide "
                "by 255."
            )
        return np.round(arr * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"An integer image of dtype {arr.dtype} must lie in [0, 255]; this one spans "
                f"[{lo}, {hi}]. Use uint16 for 16-bit data, or rescale to uint8."
            )
        return arr.astype(np.uint8)
    raise ValueError(f"Image dtype {arr.dtype} is not supported; use uint8 RGB.")


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def _from_pil(im: Any) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im, dtype=np.uint16)
    if im.mode == "I":  # 32-bit integer: 16-bit data inside (PNG 16-bit reads as "I")
        arr = np.asarray(im)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(
                f"A 32-bit integer (mode 'I') image must lie in 0..65535 like 16-bit data; this one "
                f"spans [{lo}, {hi}]. Rescale it to uint16 or uint8 first."
            )
        return arr.astype(np.uint16)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        return arr / max(float(arr.max()), 1.0) if arr.size else arr
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGBA" if "A" in im.mode or im.mode == "P" else "RGB")
    return np.asarray(im)
