"""Images with ground-truth object masks, for measuring IoU: bundled sets and a COCO loader.

Every loader returns a list of ``Sample``: a name, an HxWx3 uint8 RGB image, NxHxW bool masks
(one per object) and N labels.

- ``synthetic(n)``: the held-out procedural scenes of ``sam_widgets.micro.data`` (never trained
  on), exact masks of the visible part of each object;
- ``skimage_samples()``: photos and drawings bundled with scikit-image, masks made by fixed,
  documented procedures (no download, deterministic);
- ``load_coco(annotation_json, image_dir)``: any dataset in COCO format (polygons and RLE).

``load("synthetic" | "skimage" | "coco:<ann.json>:<image_dir>", limit)`` picks one by name (the
``--dataset`` of ``sam-widgets bench``). ``refs(spec, limit)`` names the same samples without loading
them (``SampleRef``: small and picklable, ``.load()`` makes the ``Sample``): ``bench --ray`` sends
those to its workers, so a large set never sits in one process's memory.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SamWidgetsError

__all__ = [
    "Sample",
    "SampleRef",
    "DatasetError",
    "DatasetFileNotFoundError",
    "SKIMAGE_SAMPLES",
    "synthetic",
    "skimage_samples",
    "load_coco",
    "load",
    "refs",
    "coco_refs",
]


class DatasetError(SamWidgetsError):
    """A dataset cannot be read: bad JSON, not COCO, an image of the wrong size, a bad spec."""


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """A file a dataset needs (its annotation file, one of its images) is not there."""


@dataclass(frozen=True, eq=False)
class Sample:
    """One image with the ground-truth masks of its objects.

    Attributes:
      name: unique within its dataset (a file name, ``heldout-500003``, ``coins``).
      image: HxWx3 uint8 RGB.
      masks: NxHxW bool, one mask per object, each with at least one pixel.
      labels: N strings, the object classes (``"coin"``, a COCO category name, ``"shape"``).
    """

    name: str
    image: np.ndarray
    masks: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        img, masks = self.image, self.masks
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"{self.name}: image must be HxWx3 uint8, got {img.shape} {img.dtype}.")
        if masks.ndim != 3 or masks.shape[1:] != img.shape[:2] or masks.dtype != bool:
            raise ValueError(
                f"{self.name}: masks must be NxHxW bool with HxW = {img.shape[:2]}, "
                f"got {masks.shape} {masks.dtype}."
            )
        if len(self.labels) != len(masks):
            raise ValueError(f"{self.name}: {len(masks)} masks but {len(self.labels)} labels.")


# ----------------------------------------------------------------------------- synthetic


def synthetic(n: int = 20, size: int | tuple[int, int] = 256) -> list[Sample]:
    """The first ``n`` held-out procedural scenes (``micro.data.heldout_set``), never trained on.

    Masks are exact: the visible part of each object (at least 48 pixels). Labels are ``"shape"``.
    """
    from .micro.data import HELDOUT_SEED_START, heldout_set

    return [
        Sample(f"heldout-{HELDOUT_SEED_START + i}", image, masks, ("shape",) * len(masks))
        for i, (image, masks) in enumerate(heldout_set(n, size))
    ]


def _synthetic_one(index: int, size: int | tuple[int, int] = 256) -> Sample:
    """``synthetic(n)[index]`` alone (the scene of seed HELDOUT_SEED_START + index)."""
    from .micro.data import HELDOUT_SEED_START, make_scene

    image, masks = make_scene(HELDOUT_SEED_START + index, size)
    return Sample(f"heldout-{HELDOUT_SEED_START + index}", image, masks, ("shape",) * len(masks))


# ----------------------------------------------------------------------------- scikit-image


def _components(fg: np.ndarray, min_area: int) -> list[np.ndarray]:
    """The 8-connected components of ``fg`` with at least ``min_area`` pixels, in label order."""
    from scipy import ndimage

    lab, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    return [lab == i for i in range(1, n + 1) if sizes[i] >= min_area]


def _gray_to_rgb(g: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(g, dtype=np.uint8)[..., None], 3, axis=2)


def _coins() -> tuple[np.ndarray, list[np.ndarray], str]:
    """``skimage.data.coins()`` (303x384 gray): the 24 coins.

    scikit-image's gallery procedure ("Comparing edge-based and region-based segmentation"):
    markers background where gray < 30 and coin where gray > 150, watershed of the Sobel gradient
    from those markers, holes filled, components of >= 500 pixels.
    """
    from scipy import ndimage
    from skimage import data, filters, segmentation

    g = data.coins()
    markers = np.zeros(g.shape, np.int32)
    markers[g < 30] = 1
    markers[g > 150] = 2
    regions = segmentation.watershed(filters.sobel(g), markers)
    fg = ndimage.binary_fill_holes(regions == 2)
    return _gray_to_rgb(g), _components(fg, 500), "coin"


def _hubble() -> tuple[np.ndarray, list[np.ndarray], str]:
    """``skimage.data.hubble_deep_field()`` (872x1000 RGB): the largest galaxies.

    Gray level (``rgb2gray``) above max(Otsu's threshold, 0.2), holes filled, components of
    >= 400 pixels (the few galaxies large enough to click; thousands of specks are dropped).
    """
    from scipy import ndimage
    from skimage import color, data, filters

    img = data.hubble_deep_field()
    g = color.rgb2gray(img)
    fg = ndimage.binary_fill_holes(g > max(float(filters.threshold_otsu(g)), 0.2))
    return img, _components(fg, 400), "galaxy"


def _coffee() -> tuple[np.ndarray, list[np.ndarray], str]:
    """``skimage.data.coffee()`` (400x600 RGB): the open top of the cup (white rim and coffee).

    Pixels with HSV saturation < 0.2 and value > 0.6 (the white porcelain), opened with a disk of
    radius 3, holes filled (the coffee inside the rim), components of >= 2000 pixels.
    """
    from scipy import ndimage
    from skimage import color, data, morphology

    img = data.coffee()
    hsv = color.rgb2hsv(img)
    fg = (hsv[..., 1] < 0.2) & (hsv[..., 2] > 0.6)
    fg = ndimage.binary_fill_holes(ndimage.binary_opening(fg, structure=morphology.disk(3)))
    return img, _components(fg, 2000), "cup"


def _horse() -> tuple[np.ndarray, list[np.ndarray], str]:
    """``skimage.data.horse()`` (328x400 binary drawing): the horse silhouette.

    The drawing is False on the horse: the mask is its complement; the image is the drawing in
    gray 40 (horse) on gray 230 (background).
    """
    from skimage import data

    horse = ~data.horse()
    return _gray_to_rgb(np.where(horse, 40, 230)), [horse], "horse"


#: Name -> procedure of the scikit-image samples, in order.
SKIMAGE_SAMPLES: dict[str, Callable[[], tuple[np.ndarray, list[np.ndarray], str]]] = {
    "coins": _coins,
    "hubble_deep_field": _hubble,
    "coffee": _coffee,
    "horse": _horse,
}


def skimage_samples(names: list[str] | None = None) -> list[Sample]:
    """Images bundled with scikit-image, with masks made by a fixed procedure (see each one).

    - ``coins``: 24 coins (watershed from gray-level markers, scikit-image's gallery recipe);
    - ``hubble_deep_field``: the ~10 largest galaxies (Otsu threshold, components >= 400 px);
    - ``coffee``: the open top of the cup (low saturation, high value, filled);
    - ``horse``: a binary drawing's silhouette (an easy case).

    Deterministic (no randomness; the same scikit-image version gives the same masks). Only
    objects of a reasonable size are kept (thresholds per image, in each procedure's docstring).
    These masks are made by thresholds, not drawn by people: good on these images, not exact.
    """
    names = list(SKIMAGE_SAMPLES) if names is None else names
    unknown = [n for n in names if n not in SKIMAGE_SAMPLES]
    if unknown:
        raise ValueError(f"unknown scikit-image sample(s) {unknown}; choose from {list(SKIMAGE_SAMPLES)}.")
    out = []
    for name in names:
        image, masks, label = SKIMAGE_SAMPLES[name]()
        out.append(Sample(name, image, np.stack(masks).astype(bool), (label,) * len(masks)))
    return out


# ----------------------------------------------------------------------------- COCO


def _decode(segmentation: Any, h: int, w: int) -> np.ndarray:
    """HxW bool mask of a COCO segmentation: polygons, uncompressed or compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...]
        polys = [p for p in segmentation if len(p) >= 6]
        if not polys:
            return np.zeros((h, w), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        if [int(v) for v in segmentation.get("size", [h, w])] != [h, w]:
            raise ValueError(f"an RLE of size {segmentation.get('size')} on a {w}x{h} image")
        if isinstance(segmentation["counts"], list):  # uncompressed
            rle = mask_utils.frPyObjects(segmentation, h, w)
        else:
            rle = {"size": [h, w], "counts": str(segmentation["counts"]).encode("ascii")}
    else:
        raise ValueError(f"a segmentation that is neither polygons nor RLE: {str(segmentation)[:80]}")
    # pycocotools' __array__ lacks numpy 2's copy keyword: a DeprecationWarning, not our bug.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(mask_utils.decode(rle), dtype=bool)


def _read_image(path: Path) -> np.ndarray:
    """HxWx3 uint8 by the package's one image reader (EXIF orientation applied, checked)."""
    from ._images import as_rgb_uint8

    try:
        return as_rgb_uint8(path)
    except ValueError as e:
        raise DatasetError(str(e)) from e


@dataclass(frozen=True)
class SampleRef:
    """A sample named but not loaded: a few hundred bytes, picklable (a Ray task's argument).

    ``load()`` makes the ``Sample`` (None for a COCO image whose every mask is empty), reading the
    image and decoding the masks only then. ``kind``: ``synthetic`` (``index``: its place in
    ``synthetic(n)``), ``skimage`` (``name``) or ``coco`` (``path`` of the image, its ``height`` and
    ``width`` from the JSON, ``annotations``: a JSON list of ``[annotation id, segmentation,
    label]``, ``source``: the annotation file's name, for messages).
    """

    name: str
    kind: str
    index: int = 0
    path: str = ""
    height: int = 0
    width: int = 0
    annotations: str = ""
    source: str = ""

    def load(self) -> Sample | None:
        """The ``Sample``; raises ``DatasetError`` as ``load_coco`` does (wrong size, bad mask)."""
        if self.kind == "synthetic":
            return _synthetic_one(self.index)
        if self.kind == "skimage":
            return skimage_samples([self.name])[0]
        if self.kind != "coco":
            raise DatasetError(f"a sample reference of unknown kind {self.kind!r}.")
        path, h, w = Path(self.path), self.height, self.width
        if not path.is_file():
            raise DatasetFileNotFoundError(
                f"image {self.name!r} of {self.source} is not in {path.parent}: pass the folder that "
                "holds it as image_dir, or limit= to load fewer images."
            )
        image = _read_image(path)
        if image.shape[:2] != (h, w):
            raise DatasetError(
                f"{path} is {image.shape[1]}x{image.shape[0]} pixels but {self.source} says {w}x{h}: "
                "the annotations belong to other images (or resized ones)."
            )
        masks, labels = [], []
        for ann_id, segmentation, label in json.loads(self.annotations):
            try:
                m = _decode(segmentation, h, w)
            except (ValueError, TypeError, KeyError) as e:
                raise DatasetError(f"{self.source}: annotation {ann_id} of {self.name}: {e}.") from None
            if m.any():
                masks.append(m)
                labels.append(label)
        return Sample(self.name, image, np.stack(masks), tuple(labels)) if masks else None


def coco_refs(
    annotation_json: str | Path, image_dir: str | Path, limit: int | None = None
) -> list[SampleRef]:
    """``load_coco``'s images as ``SampleRef``: the JSON read and checked, every image file's
    presence checked, no pixels read and no mask decoded. Same arguments and errors."""
    ann_path = Path(annotation_json).expanduser()
    image_dir = Path(image_dir).expanduser()
    if not ann_path.is_file():
        raise DatasetFileNotFoundError(
            f"annotation file {str(ann_path)!r} not found: pass the path of a COCO instances JSON "
            "(e.g. annotations/instances_val2017.json)."
        )
    if not image_dir.is_dir():
        raise DatasetFileNotFoundError(
            f"image folder {str(image_dir)!r} not found: pass the folder holding the images named in "
            f"{ann_path.name}."
        )
    try:
        coco = json.loads(ann_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(
            f"{ann_path} is not valid JSON ({e}): check that the download or export finished."
        ) from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise DatasetError(
            f"{ann_path} is JSON but not COCO instances: it needs 'images', 'annotations' and "
            "'categories' lists (the format of instances_val2017.json)."
        )
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}.")
    categories = {c["id"]: c.get("name", str(c["id"])) for c in coco.get("categories", [])}
    by_image: dict[Any, list[dict]] = {}
    for a in coco.get("annotations", []):
        if a.get("iscrowd", 0):
            continue
        by_image.setdefault(a.get("image_id"), []).append(a)
    todo = [im for im in coco["images"] if by_image.get(im.get("id"))]
    if limit is not None:
        todo = todo[:limit]
    out = []
    for im in todo:
        try:
            name, h, w = im["file_name"], int(im["height"]), int(im["width"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(
                f"{ann_path}: image entry {str(im)[:120]} lacks file_name, height or width."
            ) from None
        path = image_dir / name
        if not path.is_file():
            raise DatasetFileNotFoundError(
                f"image {name!r} (id {im.get('id')}) of {ann_path.name} is not in {image_dir}: "
                "pass the folder that holds it as image_dir, or limit= to load fewer images."
            )
        anns = [
            [
                a.get("id"),
                a.get("segmentation"),
                categories.get(a.get("category_id"), str(a.get("category_id"))),
            ]
            for a in by_image[im["id"]]
        ]
        out.append(
            SampleRef(
                name,
                "coco",
                path=str(path),
                height=h,
                width=w,
                annotations=json.dumps(anns),
                source=ann_path.name,
            )
        )
    return out


def load_coco(
    annotation_json: str | Path,
    image_dir: str | Path,
    limit: int | None = None,
    progress: bool = True,
) -> list[Sample]:
    """Load a dataset in COCO format: one ``Sample`` per image that has at least one object.

    Arguments:
      annotation_json: a COCO instances file (``images``, ``annotations``, ``categories``).
        Segmentations may be polygons, uncompressed RLE or compressed RLE. ``iscrowd: 1``
        annotations (a crowd, not one object) and empty masks are skipped.
      image_dir: the folder holding the images, by their ``file_name``.
      limit: load at most this many images (in the file's order); None for all. Images and masks
        are held in memory (a few MB per image: all of COCO val2017 would take many GB; ``coco_refs``
        names them without loading, for ``bench --ray``).
      progress: show a tqdm progress bar.

    Raises:
      DatasetFileNotFoundError: the JSON file or an image is missing.
      DatasetError: the JSON is not valid COCO, or an image's size differs from the JSON's.
    """
    from tqdm.auto import tqdm

    todo = coco_refs(annotation_json, image_dir, limit)
    name = Path(annotation_json).name
    loaded = (r.load() for r in tqdm(todo, desc=f"loading {name}", disable=not progress, leave=False))
    return [s for s in loaded if s is not None]


# ----------------------------------------------------------------------------- by name


def _coco_spec(spec: str) -> tuple[str, str]:
    """``coco:<annotation.json>:<image_dir>`` -> (annotation.json, image_dir)."""
    parts = spec[len("coco:") :].split(":")
    if len(parts) != 2 or not all(parts):
        raise DatasetError(
            f"dataset {spec!r}: write coco:<annotation.json>:<image_dir>, "
            "e.g. coco:annotations/instances_val2017.json:val2017"
        )
    return parts[0], parts[1]


def load(spec: str, limit: int | None = None, progress: bool = True) -> list[Sample]:
    """A dataset by name: ``synthetic``, ``skimage`` or ``coco:<annotation.json>:<image_dir>``.

    ``limit`` caps the number of images (``synthetic`` makes exactly ``limit``, default 20).
    """
    if spec == "synthetic":
        return synthetic(limit or 20)
    if spec == "skimage":
        return skimage_samples()[:limit]
    if spec.startswith("coco:"):
        return load_coco(*_coco_spec(spec), limit=limit, progress=progress)
    raise DatasetError(
        f"unknown dataset {spec!r}: use synthetic, skimage or coco:<annotation.json>:<image_dir>."
    )


def refs(spec: str, limit: int | None = None) -> list[SampleRef]:
    """``load(spec, limit)``'s samples as ``SampleRef`` (named, not loaded), in the same order.

    A COCO image whose masks all turn out empty loads as None (``load`` leaves it out).
    """
    if spec == "synthetic":
        n = limit or 20
        if not 0 < n <= 10**5:
            raise ValueError(f"limit must be in 1..100000 for synthetic, got {n}")
        from .micro.data import HELDOUT_SEED_START

        return [SampleRef(f"heldout-{HELDOUT_SEED_START + i}", "synthetic", index=i) for i in range(n)]
    if spec == "skimage":
        return [SampleRef(name, "skimage") for name in list(SKIMAGE_SAMPLES)[:limit]]
    if spec.startswith("coco:"):
        return coco_refs(*_coco_spec(spec), limit=limit)
    raise DatasetError(
        f"unknown dataset {spec!r}: use synthetic, skimage or coco:<annotation.json>:<image_dir>."
    )
