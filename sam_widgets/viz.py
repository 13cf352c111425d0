"""Pictures of masks: colour overlays on an image, as plain uint8 arrays (no matplotlib needed)."""

from __future__ import annotations

import numpy as np

from ._images import as_rgb_uint8

__all__ = ["PALETTE", "overlay_masks", "mask_border", "mask_iou"]

# Colour-blind-safe (Okabe-Ito), then a few more; cycled for many objects.
PALETTE = np.array(
    [
        (230, 159, 0),
        (86, 180, 233),
        (0, 158, 115),
        (240, 228, 66),
        (0, 114, 178),
        (213, 94, 0),
        (204, 121, 167),
        (120, 120, 255),
        (255, 90, 90),
        (90, 200, 90),
    ],
    dtype=np.uint8,
)


def overlay_masks(image, masks, alpha: float = 0.5, colors=None, outline: bool = True) -> np.ndarray:
    """Blend boolean masks (NxHxW or HxW) over ``image`` (HxWx3), each in its own colour.

    Later masks are drawn over earlier ones; ``outline`` draws each mask's border opaque.
    Returns a new uint8 HxWx3 array; the input is not changed.
    """
    img = as_rgb_uint8(image).astype(np.float32)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != img.shape[:2]:
        raise ValueError(f"masks of shape {masks.shape} do not fit an image of shape {img.shape[:2]}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    colors = PALETTE if colors is None else np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    for i, m in enumerate(masks):
        c = colors[i % len(colors)].astype(np.float32)
        img[m] = (1 - alpha) * img[m] + alpha * c
        if outline:
            img[mask_border(m)] = c
    return np.round(img).astype(np.uint8)


def mask_border(mask: np.ndarray) -> np.ndarray:
    """The pixels of a bool mask that touch the outside (4-neighbourhood): its 1-pixel outline."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def mask_iou(a, b) -> float:
    """Intersection over union of two boolean masks of the same shape (1.0 if both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}.")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
