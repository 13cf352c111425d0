"""Procedural scenes with exact instance masks: the micro model's training and held-out data.

A scene is a textured background with several overlapping objects (ellipses, polygons, stars,
blobs, thin bars, rings and shapes with holes) painted back to front, each filled with a solid
colour, a gradient, a texture or a crop of one of scikit-image's bundled photos; then lighting,
blur and noise. The ground truth of an object is its *visible* part (later objects occlude it).

Everything is deterministic from one integer seed. Training seeds start at TRAIN_SEED_START;
held-out seeds are below it and never used in training; validation seeds (for choosing between
training runs, so that the held-out set stays untouched by choices) lie below those.

Nested scenes (``make_nested_scene``) add part/object/group structure: objects carrying parts,
rings around disks, striped regions inside blobs, groups of touching objects of one fill. Their
ground truth keeps every level, for SAM's ambiguity-aware training and the ambiguity sets
(``ambiguity_set``: seeds AMBIGUITY_SEED_START + i held out, AMBIGUITY_VALIDATION_SEED_START + i
for validation; both below TRAIN_SEED_START and apart from the other sets).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = [
    "TRAIN_SEED_START",
    "HELDOUT_SEED_START",
    "make_scene",
    "heldout_set",
    "VALIDATION_SEED_START",
    "validation_set",
    "LEVELS",
    "AMBIGUITY_SEED_START",
    "AMBIGUITY_VALIDATION_SEED_START",
    "NestedScene",
    "make_nested_scene",
    "ambiguity_set",
    "nested_example",
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
    rng: np.random.Generator,
    h: int,
    w: int,
    base: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
    kind: str | None = None,
    stripes: bool = False,
) -> np.ndarray:
    """An HxWx3 float32 fill whose mean colour is about `base`; `kind` None draws one.

    `stripes` (with kind "texture"): always stripes, never a checker, and strong ones."""
    if kind is None:
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
        if stripes or rng.random() < 0.5:  # stripes
            pat = np.sin(2 * np.pi * u / period)
        else:  # checker
            v = -np.sin(a) * xx + np.cos(a) * yy
            pat = np.sign(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period))
        amp = rng.uniform(35, 60) if stripes else rng.uniform(10, 45)
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


def _shape(
    rng: np.random.Generator,
    kind: str,
    yy: np.ndarray,
    xx: np.ndarray,
    h: int,
    w: int,
    r: float | None = None,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """A boolean HxW mask of one shape of random rotation; size `r` (pixels) and `center` (y, x)
    random when None."""
    m = min(h, w)
    if r is None:
        r = m * np.exp(rng.uniform(np.log(0.05), np.log(0.3)))  # radius in pixels
    if center is None:
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
    else:
        cy, cx = center
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
    return _finish(rng, img, h, w), np.stack(visible)


def _finish(rng: np.random.Generator, img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Global effects (lighting, blur, noise) on the painted HxWx3 float image -> uint8."""
    if rng.random() < 0.4:
        img *= (1 + rng.uniform(0.1, 0.35) * _smooth_noise(rng, h, w, 120))[..., None]
    sigma = rng.choice([0.0, rng.uniform(0.4, 1.5)], p=[0.4, 0.6])
    if sigma > 0:
        img = ndimage.gaussian_filter(img, (sigma, sigma, 0))
    noise = rng.choice([0.0, rng.uniform(2, 15)], p=[0.4, 0.6])
    if noise > 0:
        img = img + rng.standard_normal(img.shape).astype(np.float32) * noise
    return np.clip(img, 0, 255).astype(np.uint8)


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


# ----------------------------------------------------------------------------- nested scenes

#: The levels of a nested scene, finest first: a part of an object, an object, a group of objects.
LEVELS = ("part", "object", "group")
#: Held-out ambiguity scenes are nested scenes of seeds AMBIGUITY_SEED_START + i, i < 10**5.
AMBIGUITY_SEED_START = 7 * 10**5
#: Validation ambiguity scenes (choosing between runs): seeds AMBIGUITY_VALIDATION_SEED_START + i.
AMBIGUITY_VALIDATION_SEED_START = 8 * 10**5
_COMPOSITES = ("parts", "ring", "striped", "group")


class NestedScene(NamedTuple):
    """A scene whose objects have parts and form groups; the ground truth keeps every level.

    image: HxWx3 uint8 RGB. masks: NxHxW bool, the visible part of every part, object and group
    (a group's mask is the union of its members', an object's includes its parts'). parent: (N,)
    int, the index of the mask one level up (the object of a part, the group of an object), -1 at
    the top. level: N names from LEVELS. A click at a pixel is ambiguous between every mask that
    contains it: that chain (part < object < group) is what SAM's three outputs are for.
    """

    image: np.ndarray
    masks: np.ndarray
    parent: np.ndarray
    level: tuple[str, ...]

    def chain(self, x: int, y: int) -> list[int]:
        """Indices of the masks containing pixel (x, y), finest level first."""
        hit = [i for i in range(len(self.masks)) if self.masks[i, y, x]]
        return sorted(hit, key=lambda i: int(self.masks[i].sum()))


def _pick_color(rng: np.random.Generator, colors: list[np.ndarray], min_dist: float) -> np.ndarray:
    """A random RGB colour at least `min_dist` from every colour in `colors` (20 tries), appended."""
    for _try in range(20):
        base = _color(rng)
        if min(np.linalg.norm(base - c) for c in colors) >= min_dist:
            break
    colors.append(base)
    return base


def _deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of `mask` farthest from its boundary, image edges included; ties go to the
    first in row-major order (``evaluation.center_point``'s rule: micro.data sits below evaluation)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return int(x), int(y)


def _point_inside(rng: np.random.Generator, mask: np.ndarray, margin: float) -> tuple[float, float] | None:
    """A random (y, x) of `mask` at least `margin` px from its boundary (or its deepest pixels)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ok = dist >= min(margin, 0.8 * dist.max())
    ys, xs = np.nonzero(ok)
    if len(ys) == 0:
        return None
    k = rng.integers(len(ys))
    return float(ys[k]), float(xs[k])


def _composite(rng, kind: str, yy, xx, h: int, w: int, colors: list, min_dist: float, img: np.ndarray):
    """Paint one composite item on `img`; returns its entities [(full mask, level, parent)], the
    parent an index into this list or -1, parents before their children."""
    m = min(h, w)
    ents: list[tuple[np.ndarray, str, int]] = []
    if kind == "group":  # 2-4 touching objects of one fill, each its own shade, seams between
        n = int(rng.integers(2, 5))
        base = _pick_color(rng, colors, min_dist)
        fill = _fill(rng, h, w, base, yy, xx, kind=str(rng.choice(["solid", "gradient", "noise"])))
        shades = 1 + rng.permutation(np.linspace(-0.18, 0.18, n)) + rng.uniform(-0.03, 0.03)
        ents.append((np.zeros((h, w), bool), "group", -1))
        union = np.zeros((h, w), bool)
        cy, cx = rng.uniform(0.25 * h, 0.75 * h), rng.uniform(0.25 * w, 0.75 * w)
        r_prev = 0.0
        for i in range(n):
            r = m * rng.uniform(0.07, 0.13)
            for _try in range(6):
                if i > 0:
                    a = rng.uniform(0, 2 * np.pi)
                    d = (r + r_prev) * rng.uniform(0.55, 0.8)
                    c = (np.clip(cy + d * np.sin(a), 0, h - 1), np.clip(cx + d * np.cos(a), 0, w - 1))
                else:
                    c = (cy, cx)
                mask = _shape(
                    rng, str(rng.choice(["ellipse", "blob", "polygon", "rect"])), yy, xx, h, w, r, c
                )
                if i == 0 or (ndimage.binary_dilation(mask, iterations=2) & union).any():
                    break
            if mask.sum() < 48 or (i > 0 and not (ndimage.binary_dilation(mask, iterations=2) & union).any()):
                continue
            cy, cx, r_prev = c[0], c[1], r
            img[mask] = fill[mask] * shades[i]
            seam = mask & ~ndimage.binary_erosion(mask, iterations=1)
            img[seam] = fill[seam] * shades[i] * 0.6
            union |= mask
            ents.append((mask, "object", 0))
            if rng.random() < 0.35 and r > 0.09 * m:  # a member with a part: three levels
                c2 = _point_inside(rng, mask, 0.45 * r)
                if c2 is not None:
                    part = _shape(rng, "ellipse", yy, xx, h, w, 0.38 * r, c2) & mask
                    col = _pick_color(rng, colors, min_dist)
                    img[part] = _fill(rng, h, w, col, yy, xx, kind="solid")[part]
                    ents.append((part, "part", len(ents) - 1))
        ents[0] = (union, "group", -1)
        return ents
    r = m * rng.uniform(0.16, 0.3)
    center = (rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w))
    if kind == "ring":  # a ring around a disk of another fill: ring and disk are the parts
        t = rng.uniform(0.45, 0.7)
        rot, aspect = rng.uniform(0, np.pi), rng.uniform(0.7, 1.0)
        u = np.cos(rot) * (xx - center[1]) + np.sin(rot) * (yy - center[0])
        v = -np.sin(rot) * (xx - center[1]) + np.cos(rot) * (yy - center[0])
        q = (u / r) ** 2 + (v / (r * aspect)) ** 2
        whole, disk = q <= 1, q <= t**2
        ring = whole & ~disk
        for part in (ring, disk):
            col = _pick_color(rng, colors, min_dist)
            img[part] = _fill(rng, h, w, col, yy, xx)[part]
        return [(whole, "object", -1), (ring, "part", 0), (disk, "part", 0)]
    if kind == "striped":  # a striped region (a band across, or an inner ellipse) of a blob
        whole = _shape(rng, "blob", yy, xx, h, w, r, center)
        col = _pick_color(rng, colors, min_dist)
        img[whole] = _fill(rng, h, w, col, yy, xx, kind=str(rng.choice(["solid", "gradient", "noise"])))[
            whole
        ]
        if rng.random() < 0.5:
            a, off = rng.uniform(0, np.pi), rng.uniform(-0.4, 0.4) * r
            dist = np.cos(a) * (xx - center[1]) + np.sin(a) * (yy - center[0]) - off
            region = whole & (np.abs(dist) <= r * rng.uniform(0.18, 0.32))
        else:
            c2 = _point_inside(rng, whole, 0.4 * r)
            region = whole & _shape(rng, "ellipse", yy, xx, h, w, 0.4 * r, c2) if c2 else whole & False
        col = _pick_color(rng, colors, min_dist)
        img[region] = _fill(rng, h, w, col, yy, xx, kind="texture", stripes=True)[region]
        return [(whole, "object", -1), (region, "part", 0)]
    # "parts": a shape carrying 1-3 smaller shapes of other fills
    whole = _shape(rng, str(rng.choice(["ellipse", "blob", "polygon", "rect"])), yy, xx, h, w, r, center)
    col = _pick_color(rng, colors, min_dist)
    img[whole] = _fill(rng, h, w, col, yy, xx)[whole]
    ents.append((whole, "object", -1))
    for _ in range(int(rng.integers(1, 4))):
        rp = r * rng.uniform(0.22, 0.42)
        c2 = _point_inside(rng, whole, 0.9 * rp)
        if c2 is None:
            continue
        part = _shape(
            rng, str(rng.choice(["ellipse", "polygon", "star", "rect", "blob"])), yy, xx, h, w, rp, c2
        )
        part &= whole
        col = _pick_color(rng, colors, min_dist)
        img[part] = _fill(rng, h, w, col, yy, xx)[part]
        ents.append((part, "part", 0))
    return ents


def make_nested_scene(seed: int, size: int | tuple[int, int] = 256) -> NestedScene:
    """One scene with part/object/group structure, deterministic from `seed`.

    1-2 composite items (a shape carrying smaller shapes of other fills; a ring around a disk; a
    striped region inside a blob; a group of 2-4 touching objects of one fill, in different
    shades with darker seams, a member sometimes with a part of its own) and 0-3 plain objects
    as in make_scene, painted back to front (later items occlude earlier ones), then make_scene's
    lighting, blur and noise. Every level's visible part of at least 48 px is kept; a part that
    covers more than 85% of its parent's visible area is dropped (it would not be a distinct
    level), and its children move up to that parent.

    Args:
        seed: any non-negative int. Training uses seeds >= TRAIN_SEED_START; the ambiguity sets
            use AMBIGUITY_SEED_START + i (held out) and AMBIGUITY_VALIDATION_SEED_START + i.
        size: side in pixels, or (H, W).

    Returns:
        A NestedScene (image, masks NxHxW bool, parent (N,) int, level names), N >= 1.
    """
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = _background(rng, h, w, yy, xx)
    colors = [img.mean((0, 1))]
    min_dist = rng.uniform(45, 90)
    items = [str(rng.choice(_COMPOSITES)) for _ in range(int(rng.integers(1, 3)))]
    items += ["plain"] * int(rng.integers(0, 4))
    items = [items[i] for i in rng.permutation(len(items))]
    entities: list[tuple[np.ndarray, str, int, int]] = []  # (mask, level, parent, item)
    for k, kind in enumerate(items):
        if kind == "plain":
            mask = _shape(rng, str(rng.choice(_SHAPES, p=_SHAPE_P)), yy, xx, h, w)
            col = _pick_color(rng, colors, min_dist)
            img[mask] = _fill(rng, h, w, col, yy, xx)[mask]
            ents = [(mask, "object", -1)]
        else:
            ents = _composite(rng, kind, yy, xx, h, w, colors, min_dist, img)
        off = len(entities)
        entities += [(e, lev, p + off if p >= 0 else -1, k) for e, lev, p in ents]
    # visible parts: an item is occluded by every item painted after it
    covered = np.zeros((h, w), bool)
    cover_after = [None] * len(items)
    for k in reversed(range(len(items))):
        cover_after[k] = covered.copy()
        for e, _, _, item in entities:
            if item == k:
                covered |= e
    parent = [p for _, _, p, _ in entities]

    def descends(j: int, i: int) -> bool:
        while j >= 0 and j != i:
            j = parent[j]
        return j == i

    vis = []
    for i, (e, _, _, item) in enumerate(entities):
        v = e & ~cover_after[item]
        for j in range(i + 1, len(entities)):  # painted later in the same item, not inside it
            if entities[j][3] == item and not descends(j, i):
                v &= ~entities[j][0]
        vis.append(v)
    level = [lev for _, lev, _, _ in entities]
    keep = [bool(v.sum() >= 48) for v in vis]
    for i in range(len(entities)):  # parents come before children
        p = parent[i]
        while p >= 0 and not keep[p]:
            p = parent[p]
        parent[i] = p
        if keep[i] and p >= 0 and vis[i].sum() > 0.85 * vis[p].sum():
            keep[i] = False  # not a distinct level: the parent stands for it
            if level[p] == "group" and level[i] == "object":
                level[p] = "object"  # a group of one visible member is that object
    for i in range(len(entities)):  # re-link children of dropped entities
        p = parent[i]
        while p >= 0 and not keep[p]:
            p = parent[p]
        parent[i] = p
    idx = [i for i in range(len(entities)) if keep[i]]
    new = {old: j for j, old in enumerate(idx)}
    masks = [vis[i] for i in idx]
    parents = [new[parent[i]] if parent[i] >= 0 else -1 for i in idx]
    levels = [level[i] for i in idx]
    if not masks:  # pathological draw: one plain disc
        disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (min(h, w) / 5) ** 2
        img[disc] = np.clip(colors[0] + 120, 0, 255) if colors[0].mean() < 128 else colors[0] - 120
        masks, parents, levels = [disc], [-1], ["object"]
    image = _finish(rng, img, h, w)
    return NestedScene(image, np.stack(masks), np.array(parents, dtype=np.int64), tuple(levels))


def ambiguity_set(
    n: int = 100, size: int | tuple[int, int] = 256, split: str = "heldout"
) -> list[NestedScene]:
    """The first `n` nested scenes of the held-out ambiguity set (seeds AMBIGUITY_SEED_START + i,
    never trained on) or, with ``split="validation"``, of its validation counterpart."""
    if not 0 < n <= 10**5:
        raise ValueError(f"n must be in 1..100000, got {n}")
    starts = {"heldout": AMBIGUITY_SEED_START, "validation": AMBIGUITY_VALIDATION_SEED_START}
    if split not in starts:
        raise ValueError(f"split must be 'heldout' or 'validation', got {split!r}")
    return [make_nested_scene(starts[split] + i, size) for i in range(n)]


def nested_example(i: int = 0, size: int = 256) -> tuple[NestedScene, tuple[int, int], list[int]]:
    """A nested scene and an ambiguous click on it, for notebooks' candidate panels.

    Walks the held-out ambiguity set (``ambiguity_set``) from its start and returns the ``i``-th
    scene that has a part of at least 400 px whose whole is at least twice its size: (scene,
    click (x, y) at the center of the largest such part, chain: the indices of the masks under
    the click, finest first: part, object and, in a group, the group).
    """
    if i < 0:
        raise ValueError(f"i must be >= 0, got {i}")
    found = -1
    for k in range(10**5):
        scene = make_nested_scene(AMBIGUITY_SEED_START + k, size)
        area = scene.masks.reshape(len(scene.masks), -1).sum(1)
        parts = [
            j
            for j, lev in enumerate(scene.level)
            if lev == "part" and area[j] >= 400 and area[scene.parent[j]] >= 2 * area[j]
        ]
        if not parts:
            continue
        found += 1
        if found == i:
            part = max(parts, key=lambda j: area[j])
            x, y = _deepest_point(scene.masks[part])
            return scene, (x, y), scene.chain(x, y)
    raise ValueError(f"no {i}-th example in the ambiguity set")  # pragma: no cover
