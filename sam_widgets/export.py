"""Export a session's masks in the formats other annotation and training tools load.

``Session.export(folder, format=...)`` is the API; this module holds the writers. Formats
(``FORMATS``), each a self-contained folder (the images are written next to the labels):

- ``"coco"``: ``annotations.json`` (COCO instances, compressed RLE: exact) and ``images/``;
  each image's ``file_name`` is its path relative to the folder (``"images/photo.jpg"``).
- ``"coco-polygons"``: the same with polygon segmentations (``sam_widgets.formats``): one polygon
  per connected part, tracing its outer outline, so **holes are filled** (COCO polygons cannot
  hold a hole; ``area`` and ``bbox`` still come from the exact mask). Use ``"coco"`` when holes or
  exact pixels matter.
- ``"yolo"``: Ultralytics YOLO segmentation: ``images/<name>``, ``labels/<name>.txt`` with one line
  ``class x1 y1 x2 y2 ...`` per polygon (coordinates divided by the image's width and height, in
  [0, 1]; an object of several parts gives one line per part, holes filled) and ``data.yaml``
  (``path``, ``train``, ``val``, ``names``: class index -> class name).
- ``"labelme"``: per image the image file and ``<name>.json`` as labelme writes it (``version``,
  ``flags``, ``shapes``, ``imagePath`` relative to the JSON, ``imageData`` null, ``imageHeight``,
  ``imageWidth``); one ``polygon`` shape per part, ``label`` = the class, ``group_id`` = the object
  (parts of one object share it), ``description`` = the object's label.
- ``"cutouts"``: one RGBA PNG per object, ``<image>__<label>.png``, cropped to the mask's bounding
  box; alpha is 255 inside the mask and 0 outside (colour 0 outside too).

Images: an image the session opened from a file is copied byte for byte (same name); an image
given as an array, or a file whose EXIF orientation the session applied, is written as PNG of the
pixels the masks belong to. Classes: each object's ``category`` (``Session.set_category``), by
default its label without a trailing number (``"cat 2"`` -> ``"cat"``).

Folder rules (as ``Session.save``): every file is written into a staging folder inside ``folder``,
then moved into place (the manifest ``sam_widgets_export.json`` last), with the user's umask. The
manifest records each file's sha256: a later export into the same folder replaces (and removes)
only files an earlier export wrote that still hold what it wrote. A folder holding other files is
refused unless ``overwrite=True``; even then no file of yours is replaced: a name in use gets a
``-2`` suffix.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ._annotation_files import _safe
from ._io import write_all_or_nothing
from .errors import ExportError, ExportFolderError, MissingMaskError
from .formats import mask_to_polygons, segmentation

__all__ = [
    "FORMATS",
    "MANIFEST",
    "ExportError",
    "ExportFolderError",
    "MissingMaskError",
    "default_category",
    "check_format",
]

FORMATS = ("coco", "coco-polygons", "yolo", "labelme", "cutouts")
MANIFEST = "sam_widgets_export.json"
_STAGING_PREFIX = ".sam-widgets-exporting-"
_LABELME_VERSION = "5.5.0"  # the labelme file format these JSONs follow (LabelFile keys)


def default_category(label: str) -> str:
    """The class of an object whose class was not set: its label without a trailing number.

    A number counts when it ends the label and follows a space, ``_`` or ``-``: ``"cat 2"``,
    ``"cat_2"``, ``"cat-2"`` -> ``"cat"``; ``"object 3"`` -> ``"object"``; ``"R2D2"`` and ``"7"``
    stay as they are.
    """
    return re.sub(r"[\s_-]+\d+$", "", label).strip() or label


def check_format(format: str) -> str:
    """``format`` if it is one of ``FORMATS``, else ``ExportError`` listing them."""
    if format not in FORMATS:
        raise ExportError(f"Unknown export format {format!r}; use one of: {', '.join(FORMATS)}.")
    return format


# ---------------------------------------------------------------------- planning


class _Image:
    """What an export needs of one session image."""

    def __init__(
        self,
        name: str,
        width: int,
        height: int,
        objects: Sequence[tuple[str, str, np.ndarray]],
        source: Path | None,
        pixels: Callable[[], np.ndarray],
    ) -> None:
        self.name, self.width, self.height = name, width, height
        self.objects = objects  # (label, class, HxW bool mask)
        self.source = source  # the file the image came from, copied as is when safe
        self.pixels = pixels


def _image_file(image: _Image) -> tuple[str, Callable[[], bytes]]:
    """(suffix, bytes) of the image file to write: the original file, or a PNG of the pixels."""
    src = image.source
    if src is not None and not _needs_png(src):
        return src.suffix.lower() or ".png", src.read_bytes
    return ".png", lambda: _png(image.pixels())


def _needs_png(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.getexif().get(0x0112, 1) not in (1, None) or im.format not in (
                "PNG",
                "JPEG",
                "BMP",
                "TIFF",
                "WEBP",
            )
    except Exception:
        return True


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _classes(images: Sequence[_Image]) -> list[str]:
    """Class names in order of first appearance (index = YOLO class, index + 1 = COCO id)."""
    seen: dict[str, None] = {}
    for image in images:
        for _, cls, _ in image.objects:
            seen.setdefault(cls, None)
    return list(seen)


def _stem(base: str, paths: Callable[[str], list[str]], taken: set[str]) -> str:
    """``base`` (or ``base-2``, ...) such that none of ``paths(stem)`` is in ``taken`` (casefolded)."""
    stem, n = base, 2
    while any(p.casefold() in taken for p in paths(stem)):
        stem = f"{base}-{n}"
        n += 1
    taken.update(p.casefold() for p in paths(stem))
    return stem


def plan(images: Sequence[_Image], format: str, taken: set[str]) -> dict[str, Callable[[], bytes]]:
    """Relative path -> function giving its bytes, for every file of the export (no manifest)."""
    check_format(format)
    files: dict[str, Callable[[], bytes]] = {}
    classes = _classes(images)
    if format == "cutouts":
        for image in images:
            for label, _, mask in image.objects:
                stem = _stem(f"{_safe(image.name)}__{_safe(label)}", lambda s: [f"{s}.png"], taken)
                files[f"{stem}.png"] = _cutout_bytes(image, mask)
        return files

    names: list[tuple[_Image, str, str]] = []  # (image, stem, image path)
    img_dir = "" if format == "labelme" else "images/"
    for image in images:
        suffix, data = _image_file(image)
        if format == "yolo":
            paths = lambda s, x=suffix: [f"images/{s}{x}", f"labels/{s}.txt"]  # noqa: E731
        elif format == "labelme":
            paths = lambda s, x=suffix: [f"{s}{x}", f"{s}.json"]  # noqa: E731
        else:
            paths = lambda s, x=suffix: [f"images/{s}{x}"]  # noqa: E731
        stem = _stem(_safe(image.name), paths, taken)
        path = f"{img_dir}{stem}{suffix}"
        files[path] = data
        names.append((image, stem, path))

    if format in ("coco", "coco-polygons"):
        fmt = "rle" if format == "coco" else "polygons"
        files["annotations.json"] = lambda: _coco_bytes(names, classes, fmt)
    elif format == "yolo":
        for image, stem, _ in names:
            files[f"labels/{stem}.txt"] = _yolo_bytes(image, classes)
        files["data.yaml"] = lambda: _yaml_bytes(classes)
    elif format == "labelme":
        for image, stem, path in names:
            files[f"{stem}.json"] = _labelme_bytes(image, path)
    return files


# ---------------------------------------------------------------------- the formats


def _coco_bytes(names: Sequence[tuple[_Image, str, str]], classes: list[str], fmt: str) -> bytes:
    ids = {c: i for i, c in enumerate(classes, start=1)}
    images, annotations = [], []
    for image_id, (image, _, path) in enumerate(names, start=1):
        images.append({"id": image_id, "file_name": path, "width": image.width, "height": image.height})
        for label, cls, mask in image.objects:
            seg, area, bbox = segmentation(mask, fmt)  # type: ignore[arg-type]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[cls],
                    "segmentation": seg,
                    "area": area,
                    "bbox": bbox,
                    "iscrowd": 0,
                    "label": label,
                }
            )
    data = {
        "info": {"description": "made with sam-widgets", "segmentation": fmt},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": ids[c], "name": c, "supercategory": "object"} for c in classes],
    }
    return json.dumps(data, indent=1).encode()


def _yolo_bytes(image: _Image, classes: list[str]) -> Callable[[], bytes]:
    def make() -> bytes:
        lines = []
        for _, cls, mask in image.objects:
            for poly in mask_to_polygons(mask):
                xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
                xy[:, 0] = np.clip(xy[:, 0] / image.width, 0, 1)
                xy[:, 1] = np.clip(xy[:, 1] / image.height, 0, 1)
                coords = " ".join(f"{v:.6f}" for v in xy.reshape(-1))
                lines.append(f"{classes.index(cls)} {coords}")
        return "".join(line + "\n" for line in lines).encode()

    return make


def _yaml_bytes(classes: list[str]) -> bytes:
    import yaml

    data = {
        "path": ".",  # Ultralytics resolves a relative path from the yaml's folder
        "train": "images",
        "val": "images",
        "nc": len(classes),
        "names": dict(enumerate(classes)),
    }
    head = "# YOLO segmentation dataset made with sam-widgets (labels/ mirror images/)\n"
    return (head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)).encode()


def _labelme_bytes(image: _Image, image_path: str) -> Callable[[], bytes]:
    def make() -> bytes:
        shapes = []
        for group, (label, cls, mask) in enumerate(image.objects, start=1):
            for poly in mask_to_polygons(mask):
                points = np.asarray(poly, dtype=np.float64).reshape(-1, 2).tolist()
                shapes.append(
                    {
                        "label": cls,
                        "points": points,
                        "group_id": group,
                        "description": label,
                        "shape_type": "polygon",
                        "flags": {},
                        "mask": None,
                    }
                )
        data = {
            "version": _LABELME_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": image_path,
            "imageData": None,
            "imageHeight": image.height,
            "imageWidth": image.width,
        }
        return json.dumps(data, indent=2, ensure_ascii=False).encode()

    return make


def _cutout_bytes(image: _Image, mask: np.ndarray) -> Callable[[], bytes]:
    def make() -> bytes:
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        crop = mask[y0:y1, x0:x1]
        rgba = np.zeros((*crop.shape, 4), np.uint8)
        rgba[..., :3] = np.where(crop[..., None], image.pixels()[y0:y1, x0:x1], 0)
        rgba[..., 3] = crop * np.uint8(255)
        return _png(rgba)

    return make


# ---------------------------------------------------------------------- the folder


def _ours(folder: Path) -> tuple[dict[str, str], set[str]]:
    """(files an earlier export wrote that still hold what it wrote: relative path -> sha256,
    every other file in ``folder``, relative, casefolded)."""
    recorded: dict[str, str] = {}
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                recorded = {str(k): str(v) for k, v in data["files"].items()}
        except (OSError, ValueError):
            recorded = {}
    ours: dict[str, str] = {}
    others: set[str] = set()
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not (Path(root) == folder and d.startswith(_STAGING_PREFIX))]
        for name in files:
            rel = (Path(root) / name).relative_to(folder).as_posix()
            sha = recorded.get(rel)
            if sha is not None and _sha256_file(Path(root) / name) == sha:
                ours[rel] = sha
            elif rel == MANIFEST and recorded:
                ours[rel] = ""
            else:
                others.add(rel.casefold())
    return ours, others


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def write(
    folder: str | os.PathLike, images: Sequence[_Image], format: str, *, overwrite: bool = False
) -> Path:
    """Write the export of ``images`` in ``format`` into ``folder``; the folder's path.

    All or nothing (see the module). Raises ``ExportError`` (format), ``ExportFolderError`` (the
    folder holds files we did not write and ``overwrite`` is False, or cannot be written).
    """
    check_format(format)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportFolderError(f"{folder} is a file, not a folder: pass a folder to export into.")
    ours, others = _ours(folder) if folder.is_dir() else ({}, set())
    if others and not overwrite:
        listed = ", ".join(sorted(others)[:5]) + (", ..." if len(others) > 5 else "")
        raise ExportFolderError(
            f"Not exporting into {folder}: it holds {len(others)} file(s) an export did not write "
            f"({listed}). Export into a new or empty folder, or pass overwrite=True to add the "
            "export beside them (files of yours are never replaced: a name in use gets '-2')."
        )
    taken = set(others) | {MANIFEST.casefold()}
    files = plan(images, format, taken)
    clash = sorted(rel for rel in [*files, MANIFEST] if rel.casefold() in others)  # fixed names
    if clash:
        raise ExportFolderError(
            f"Not exporting into {folder}: it holds files of yours named {', '.join(clash)}, which "
            f"a {format!r} export must write. Export into another folder."
        )
    created = not folder.exists()
    hashes: dict[str, str] = {}

    def blobs() -> Iterator[tuple[str, bytes]]:
        for rel, make in files.items():
            blob = make()
            hashes[rel] = hashlib.sha256(blob).hexdigest()
            yield rel, blob

    def manifest() -> tuple[str, bytes]:
        manifest = {"sam_widgets_export": 1, "format": format, "files": hashes}
        return MANIFEST, json.dumps(manifest, indent=1).encode("utf-8")

    try:
        write_all_or_nothing(
            folder,
            blobs(),
            manifest,
            prefix=_STAGING_PREFIX,
            error=ExportFolderError,
            doing="Exporting",
            done="exported",
            create=True,
        )
        created = False
    finally:
        if created:  # failed in a folder it made: leave no empty folder behind
            try:
                folder.rmdir()
            except OSError:
                pass
    for rel in set(ours) - set(files) - {MANIFEST}:  # an earlier export's files, unchanged since
        (folder / rel).unlink(missing_ok=True)
        parent = (folder / rel).parent
        if parent != folder:
            try:
                parent.rmdir()  # only when empty: images/ or labels/ of another format
            except OSError:
                pass
    return folder
