"""Pictures of masks: colour overlays on an image, as plain uint8 arrays (no matplotlib needed)."""

from __future__ import annotations

import numpy as np

from ._images import as_rgb_uint8

__all__ = [
    "PALETTE",
    "POSITIVE",
    "NEGATIVE",
    "RING",
    "overlay_masks",
    "mask_border",
    "mask_iou",
    "hex_color",
    "text_color",
    "proposal_color",
]

# Ten saturated colours, far apart from each other (every pair differs by > 80 in RGB) and from
# the greys and browns of photos, in an order where neighbours differ in hue; cycled for more
# objects. Only one green: the positive point marker is green too (and has a ring).
PALETTE = np.array(
    [
        (255, 59, 48),  # red
        (0, 174, 255),  # sky blue
        (255, 230, 0),  # yellow
        (175, 82, 222),  # violet
        (0, 219, 138),  # green
        (255, 130, 0),  # orange
        (255, 45, 170),  # magenta
        (30, 60, 255),  # blue
        (160, 255, 60),  # lime
        (0, 255, 255),  # cyan
    ],
    dtype=np.uint8,
)
POSITIVE, NEGATIVE = "#19c35a", "#e8384f"  # point markers (fill), drawn with RING and a white ring
RING = "#111111"
PROPOSAL_ALPHA = 0.5  # proposals ("everything") are drawn this much fainter than objects


def hex_color(rgb) -> str:
    """(R, G, B) 0-255 -> "#rrggbb"."""
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def text_color(rgb) -> str:
    """Black or white, whichever reads better on ``rgb`` (WCAG relative luminance)."""
    lin = [(v / 255) / 12.92 if v <= 10 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in rgb]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "#000000" if luminance > 0.179 else "#ffffff"


def proposal_color(i: int, avoid=()) -> tuple[int, int, int]:
    """The colour of proposal ``i`` ("everything" mode): the palette, cycled, the colours in
    ``avoid`` (the objects') last, so the first regions are never drawn in the colour of an object
    they may overlap and neighbouring regions still differ when few colours are free."""
    taken = {tuple(int(v) for v in a) for a in avoid}
    colors = [tuple(int(v) for v in c) for c in PALETTE]
    ordered = [c for c in colors if c not in taken] + [c for c in colors if c in taken]
    return ordered[i % len(ordered)]  # type: ignore[return-value]


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
