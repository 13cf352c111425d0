"""Procedural scenes with exact instance masks: the micro model's training and held-out data.

A scene is a textured background with several overlapping objects (ellipses, polygons, stars,
blobs, thin bars, rings and shapes with holes) painted back to front, each filled with a solid
colour, a gradient, a texture or a crop of one of scikit-image's bundled photos; then lighting,
blur and noise. The ground truth of an object is its *visible* part (later objects occlude it).

Everything is deterministic from one integer seed. Training seeds start at TRAIN_SEED_START;
held-out seeds are below it and never used in training; validation seeds (for choosing between
training runs, so that the held-out set stays untouched by choices) lie below those.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

__all__ = [
    "TRAIN_SEED_START",
    "HELDOUT_SEED_START",
    "make_scene",
    "heldout_set",
    "VALIDATION_SEED_START",
    "validation_set",
]

#: Training draws scenes from seeds >= this.
TRAIN_SEED_START = 10**6
#: Held-out scenes are seeds HELDOUT_SEED_START + i, i < 10**5 (disjoint from training).
HELDOUT_SEED_START = 5 * 10**5
#: Validation scenes are seeds VALIDATION_SEED_START + i, i < 10**5: for picking between runs.
VALIDATION_SEED_START = 4 * 10**5

_SHAPES = ("ellipse", "polygon", "star", "blob", "bar", "ring", "holed", "rect")
_SHAPE_P = np.array([0.18, 0.16, 0.12, 0.18, 0.10, 0.08, 0.10, 0.08])


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """Colour photos bundled with scikit-image (empty when it is not installed)."""
    try:
        import skimage.data as d
    except ImportError:  # optional dependency
        return ()
    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina"):
        try:
            img = np.asarray(getattr(d, name)())
        except Exception:  # a build of scikit-image without this file
            continue
        if img.ndim == 3 and img.shape[2] >= 3:
            out.append(np.ascontiguousarray(img[..., :3]))
    for name in ("brick", "grass", "gravel", "camera", "moon"):
        try:
            g = np.asarray(getattr(d, name)())
        except Exception:
            continue
        out.append(np.repeat(g[..., None], 3, axis=2))
    return tuple(out)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Low-frequency noise in [-1, 1], HxW float32, features about `scale` pixels wide."""
    sh, sw = max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)
    small = rng.standard_normal((sh, sw)).astype(np.float32)
    big = ndimage.zoom(small, (h / (sh - 1) * 1.0001, w / (sw - 1) * 1.0001), order=1)[:h, :w]
    big = big / (np.abs(big).max() + 1e-6)
    return big


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _fill(
    rng: np.random.Generator, h: int, w: int, base: np.ndarray, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """An HxWx3 float32 fill whose mean colour is about `base`."""
    kind = rng.choice(["solid", "gradient", "texture", "noise", "photo"], p=[0.3, 0.25, 0.2, 0.15, 0.1])
    if kind == "solid":
        return np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    if kind == "gradient":
        other = np.clip(base + rng.uniform(-80, 80, 3), 0, 255)
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy) / max(h, w)
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        return (base + t[..., None] * (other - base)).astype(np.float32)
    if kind == "texture":
        period = rng.uniform(4, 20)
        a = rng.uniform(0, np.pi)
        u = np.cos(a) * xx + np.sin(a) * yy
        if rng.random() < 0.5:  # stripes
            pat = np.sin(2 * np.pi * u / period)
        else:  # checker
            v = -np.sin(a) * xx + np.cos(a) * yy
            pat = np.sign(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period))
        amp = rng.uniform(10, 45)
        tint = rng.uniform(0.5, 1.0, 3)
        return (base + amp * pat[..., None] * tint).astype(np.float32)
    if kind == "noise":
        amp = rng.uniform(10, 50)
        n = _smooth_noise(rng, h, w, rng.uniform(2, 12))
        return (base + amp * n[..., None] * rng.uniform(0.5, 1.0, 3)).astype(np.float32)
    photos = _photos()
    if not photos:
        return np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    crop = _photo_crop(rng, photos, h, w)
    # keep the texture, move the mean to `base` so the object stays distinct
    return (crop - crop.mean((0, 1)) * rng.uniform(0.5, 1.0) + base * 0.6).astype(np.float32)


def _photo_crop(rng: np.random.Generator, photos: tuple[np.ndarray, ...], h: int, w: int) -> np.ndarray:
    p = photos[rng.integers(len(photos))]
    s = rng.uniform(0.5, 1.5)
    ch, cw = min(p.shape[0], max(8, int(h * s))), min(p.shape[1], max(8, int(w * s)))
    y0, x0 = rng.integers(0, p.shape[0] - ch + 1), rng.integers(0, p.shape[1] - cw + 1)
    crop = p[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
    if crop.shape[:2] != (h, w):
        crop = ndimage.zoom(crop, (h / ch, w / cw, 1), order=1)
        crop = np.pad(
            crop, ((0, max(0, h - crop.shape[0])), (0, max(0, w - crop.shape[1])), (0, 0)), mode="edge"
        )[:h, :w]
    return crop


def _background(rng: np.random.Generator, h: int, w: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    kind = rng.choice(["fill", "photo"], p=[0.8, 0.2])
    if kind == "photo" and _photos():
        img = _photo_crop(rng, _photos(), h, w)
        if rng.random() < 0.5:  # soften so objects on top remain the salient thing
            img = ndimage.gaussian_filter(img, (2, 2, 0))
        return img * rng.uniform(0.5, 1.0) + rng.uniform(0, 60)
    return _fill(rng, h, w, _color(rng), yy, xx)


def _shape(rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray, h: int, w: int) -> np.ndarray:
    """A boolean HxW mask of one shape of random size, position and rotation."""
    m = min(h, w)
    r = m * np.exp(rng.uniform(np.log(0.05), np.log(0.3)))  # radius in pixels
    cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
    dy, dx = yy - cy, xx - cx
    rot = rng.uniform(0, 2 * np.pi)
    u = np.cos(rot) * dx + np.sin(rot) * dy
    v = -np.sin(rot) * dx + np.cos(rot) * dy
    rho = np.hypot(u, v)
    th = np.arctan2(v, u)
    if kind == "ellipse" or kind in ("ring", "holed"):
        a, b = r, r * rng.uniform(0.4, 1.0)
        mask = (u / a) ** 2 + (v / b) ** 2 <= 1
        if kind == "ring":
            t = rng.uniform(0.4, 0.75)
            mask &= (u / (a * t)) ** 2 + (v / (b * t)) ** 2 > 1
        elif kind == "holed":  # one or two off-centre holes
            for _ in range(rng.integers(1, 3)):
                hr = r * rng.uniform(0.15, 0.3)
                hy, hx = rng.uniform(-0.4, 0.4, 2) * np.array([b, a])
                mask &= (u - hx) ** 2 + ((v - hy) * a / b) ** 2 > hr**2
        return mask
    if kind == "polygon":
        n = rng.integers(3, 9)
        sector = 2 * np.pi / n
        rad = r * np.cos(np.pi / n) / np.cos(np.mod(th, sector) - np.pi / n)
        return rho <= rad
    if kind == "star":
        n = rng.integers(4, 8)
        depth = rng.uniform(0.35, 0.65)
        tri = np.abs(np.mod(th * n / (2 * np.pi), 1.0) - 0.5) * 2  # 1 at tips, 0 between
        return rho <= r * (depth + (1 - depth) * tri)
    if kind == "blob":
        rad = np.ones_like(th)
        for k in range(2, 6):
            rad += rng.uniform(0, 0.35 / k * 2) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
        return rho <= r * rad / 1.3
    if kind == "bar":  # thin bar, possibly bent
        length, width = r * rng.uniform(1.2, 2.5), rng.uniform(2.5, 6.0)
        bend = rng.uniform(-1, 1) / (length + 1e-6)
        vv = v - bend * u**2
        return (np.abs(u) <= length) & (np.abs(vv) <= width / 2)
    # rect
    a, b = r, r * rng.uniform(0.3, 1.0)
    return (np.abs(u) <= a) & (np.abs(v) <= b)


def make_scene(seed: int, size: int | tuple[int, int] = 256) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic scene, deterministic from `seed`.

    Args:
        seed: any non-negative int. Training uses seeds >= TRAIN_SEED_START.
        size: side in pixels, or (H, W).

    Returns:
        image: HxWx3 uint8 RGB.
        masks: NxHxW bool, the visible part of each object, N >= 1, back to front,
            each with at least 48 pixels.
    """
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = _background(rng, h, w, yy, xx)
    bg_mean = img.mean((0, 1))
    n_obj = int(rng.integers(2, 8))
    shapes: list[np.ndarray] = []
    colors = [bg_mean]
    min_dist = rng.uniform(35, 90)  # contrast between neighbouring fills, RGB L2
    for _ in range(n_obj):
        kind = str(rng.choice(_SHAPES, p=_SHAPE_P))
        mask = _shape(rng, kind, yy, xx, h, w)
        if mask.sum() < 48:
            continue
        for _try in range(20):
            base = _color(rng)
            if min(np.linalg.norm(base - c) for c in colors) >= min_dist:
                break
        colors.append(base)
        fill = _fill(rng, h, w, base, yy, xx)
        if rng.random() < 0.3:  # soft shading inside the object
            fill = fill * (1 + 0.25 * _smooth_noise(rng, h, w, 40))[..., None]
        img[mask] = fill[mask]
        shapes.append(mask)
    # visible parts: remove everything painted later
    visible = []
    covered = np.zeros((h, w), bool)
    for mask in reversed(shapes):
        vis = mask & ~covered
        covered |= mask
        if vis.sum() >= 48:
            visible.append(vis)
    visible.reverse()
    if not visible:  # pathological draw: fall back to a plain disc
        vis = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (min(h, w) / 5) ** 2
        img[vis] = np.clip(bg_mean + 120, 0, 255) if bg_mean.mean() < 128 else bg_mean - 120
        visible = [vis]
    # global effects: lighting, blur, noise
    if rng.random() < 0.4:
        img *= (1 + rng.uniform(0.1, 0.35) * _smooth_noise(rng, h, w, 120))[..., None]
    sigma = rng.choice([0.0, rng.uniform(0.4, 1.5)], p=[0.4, 0.6])
    if sigma > 0:
        img = ndimage.gaussian_filter(img, (sigma, sigma, 0))
    noise = rng.choice([0.0, rng.uniform(2, 15)], p=[0.4, 0.6])
    if noise > 0:
        img = img + rng.standard_normal(img.shape).astype(np.float32) * noise
    image = np.clip(img, 0, 255).astype(np.uint8)
    return image, np.stack(visible)


def heldout_set(n: int = 100, size: int | tuple[int, int] = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `n` held-out scenes (seeds HELDOUT_SEED_START + i), never seen in training."""
    if not 0 < n <= 10**5:
        raise ValueError(f"n must be in 1..100000, got {n}")
    return [make_scene(HELDOUT_SEED_START + i, size) for i in range(n)]


def validation_set(n: int = 100, size: int | tuple[int, int] = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `n` validation scenes (seeds VALIDATION_SEED_START + i): neither trained on nor
    held out. Choices between runs are made here, so the held-out figures stay unbiased."""
    if not 0 < n <= 10**5:
        raise ValueError(f"n must be in 1..100000, got {n}")
    return [make_scene(VALIDATION_SEED_START + i, size) for i in range(n)]
