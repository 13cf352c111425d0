"""The folder ``Session.save`` writes and ``Session.load`` reads, and COCO export.

``annotations.json`` is a COCO instance-segmentation dict (compressed RLE, bbox in pixels) plus a
``"sam_widgets"`` section (``FORMAT``) with each object's prompts, every candidate and the chosen
one; next to it one 0/255 PNG per object mask. Every file is written atomically. Reading checks the
whole file before the session changes anything. Private: ``Session`` is the API.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pycocotools import mask as mask_utils

from .errors import AnnotationFileError, ImageMismatchError

ANNOTATIONS_FILE = "annotations.json"
FORMAT = 1  # version of the "sam_widgets" section of annotations.json


class _Image(Protocol):  # what is read of a session's image slot
    name: str
    file_name: str
    width: int
    height: int
    state: Any  # .objects: SessionObjects; .active: label or None


def coco(slots: Sequence[_Image], category: Callable[[str], str] | None = None) -> dict[str, Any]:
    """The masks of all images as a COCO dict (see ``Session.to_coco``)."""
    category = category or (lambda label: label)
    images, annotations, categories = [], [], {}
    for image_id, slot in enumerate(slots, start=1):
        images.append(
            {"id": image_id, "file_name": slot.file_name, "width": slot.width, "height": slot.height}
        )
        for obj in slot.state.objects:
            if obj.mask is None or not obj.mask.any():
                continue
            name = str(category(obj.label))
            cat_id = categories.setdefault(name, len(categories) + 1)
            rle = _encode_rle(obj.mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_id,
                    "segmentation": rle,
                    "area": int(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                    "label": obj.label,
                    "score": obj.score,
                }
            )
    return {
        "info": {"description": "made with sam-widgets"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "object"} for n, i in categories.items()],
    }


def write_folder(
    folder: str | os.PathLike, slots: Sequence[_Image], category: Callable[[str], str] | None
) -> Path:
    """Write masks and ``annotations.json`` into ``folder`` (see ``Session.save``); its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old_pngs = _previous_pngs(folder / ANNOTATIONS_FILE)
    used: set[str] = set()
    section: dict[str, Any] = {"format": FORMAT, "images": []}
    for slot in slots:
        objects = []
        for obj in slot.state.objects:
            png = None
            if obj.mask is not None:
                png = unique_name(f"{_safe(slot.name)}__{_safe(obj.label)}", used) + ".png"
                _write_atomic(folder / png, _png_bytes(obj.mask))
            objects.append(
                {
                    "label": obj.label,
                    "color": list(obj.color),
                    "points": [list(p) for p in obj.points],
                    "point_labels": list(obj.point_labels),
                    "box": None if obj.box is None else list(obj.box),
                    "candidates": None
                    if obj.candidates is None
                    else [_encode_rle(c) for c in obj.candidates],
                    "scores": None if obj.scores is None else [float(s) for s in obj.scores],
                    "chosen": obj.chosen,
                    "png": png,
                }
            )
        section["images"].append(
            {
                "name": slot.name,
                "file_name": slot.file_name,
                "width": slot.width,
                "height": slot.height,
                "active": slot.state.active,
                "objects": objects,
            }
        )
    data = coco(slots, category)
    data["sam_widgets"] = section
    path = folder / ANNOTATIONS_FILE
    _write_atomic(path, json.dumps(data).encode())
    for name in old_pngs - {o["png"] for i in section["images"] for o in i["objects"]}:
        (folder / name).unlink(missing_ok=True)
    return path


def read_folder(folder: str | os.PathLike) -> tuple[Any, Path]:
    """The parsed ``annotations.json`` of ``folder`` and its path; clear errors when it is not one."""
    path = Path(folder) / ANNOTATIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {ANNOTATIONS_FILE} in {folder}: is it a folder written by Session.save?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationFileError(f"{path} is not readable JSON ({e}).") from e
    return data, path


def parse_images(
    data: Any, path: Path, images: Sequence[tuple[str, int, int]]
) -> dict[int, tuple[tuple[dict[str, Any], ...], str | None]]:
    """Per index into ``images`` ((name, width, height) of the session's images): the saved
    objects' fields and the active label. Checks everything; raises ``ImageMismatchError`` or
    ``AnnotationFileError`` (``path`` names the file in messages)."""
    try:
        section = data["sam_widgets"]
        if section["format"] != FORMAT:
            raise AnnotationFileError(
                f"{path} has sam_widgets format {section['format']!r}; this version reads "
                f"format {FORMAT}. Update sam-widgets."
            )
        saved = section["images"]
        if not isinstance(saved, list):
            raise TypeError("images is not a list")
        by_name = {name: i for i, (name, _, _) in enumerate(images)}
        unknown = [s["name"] for s in saved if s["name"] not in by_name and s["objects"]]
        if unknown or (saved and not any(s["name"] in by_name for s in saved)):
            raise ImageMismatchError(
                f"{path} was saved for images {[s['name'] for s in saved]}; this session has "
                f"{list(by_name)}, and lacks {unknown or [s['name'] for s in saved]}. Open the "
                "session on the same images (names come from file names, or pass names=...)."
            )
        states: dict[int, tuple[tuple[dict[str, Any], ...], str | None]] = {}
        for entry in saved:
            if entry["name"] not in by_name:
                continue
            index = by_name[entry["name"]]
            name, width, height = images[index]
            if (int(entry["width"]), int(entry["height"])) != (width, height):
                raise ImageMismatchError(
                    f"Image {name!r} is {width}x{height} pixels, but {path} was "
                    f"saved for a {entry['width']}x{entry['height']} image of that name."
                )
            objects = tuple(_parse_object(o, width, height) for o in entry["objects"])
            labels = [o["label"] for o in objects]
            if len(set(labels)) != len(labels):
                raise ValueError(f"repeated labels on image {name!r}: {labels}")
            active = entry.get("active")
            if active is not None and active not in labels:
                raise ValueError(f"active object {active!r} is not among {labels}")
            states[index] = (objects, active)
        return states
    except AnnotationFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise AnnotationFileError(f"{path} is damaged or not written by Session.save: {e!r}.") from e


def unique_name(name: str, taken: set[str], sep: str = "-") -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name}{sep}{n}"
        n += 1
    taken.add(candidate)
    return candidate


def _safe(name: str) -> str:
    """A file-name-safe version of ``name`` (letters, digits, ``.``, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"


def _encode_rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _decode_rle(rle: dict[str, Any], width: int, height: int) -> np.ndarray:
    """HxW bool mask of a COCO compressed RLE.

    Decoded here, not with pycocotools.mask.decode: that one warns under numpy 2 (its ``__array__``
    lacks the ``copy`` keyword), and the format is short (cocoapi maskApi.c, rleFrString).
    """
    if [int(v) for v in rle["size"]] != [height, width]:
        raise ValueError(f"a mask of size {rle['size']} on a {width}x{height} image")
    counts: list[int] = []
    x = k = 0
    for char in str(rle["counts"]).encode("ascii"):
        c = char - 48  # 5 bits of value, a "more" bit (0x20); the last chunk's 0x10 is the sign
        x |= (c & 0x1F) << (5 * k)
        k += 1
        if c & 0x20:
            continue
        if c & 0x10:
            x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]  # runs after the first two are stored as differences
        counts.append(x)
        x = k = 0
    runs = np.asarray(counts, dtype=np.int64)
    if k or (runs < 0).any() or runs.sum() != height * width:
        raise ValueError(f"an RLE whose runs do not cover a {width}x{height} image")
    values = np.arange(len(runs)) % 2 == 1  # runs alternate 0, 1, 0, ... starting with 0s
    return np.ascontiguousarray(np.repeat(values, runs).reshape(width, height).T)  # column-major


def _parse_object(o: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """The fields of one saved object (``SessionObject(**fields)``), checked."""
    label = o["label"]
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"bad label {label!r}")
    color = tuple(int(v) for v in o["color"])
    if len(color) != 3 or not all(0 <= v <= 255 for v in color):
        raise ValueError(f"bad colour {o['color']!r}")
    points = tuple((float(x), float(y)) for x, y in o["points"])
    point_labels = tuple(int(v) for v in o["point_labels"])
    if len(point_labels) != len(points) or not set(point_labels) <= {0, 1}:
        raise ValueError(f"bad point labels {o['point_labels']!r}")
    if not all(0 <= x <= width and 0 <= y <= height for x, y in points):
        raise ValueError(f"points {o['points']!r} outside a {width}x{height} image")
    box = None
    if o["box"] is not None:
        x0, y0, x1, y1 = (float(v) for v in o["box"])
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"bad box {o['box']!r}")
        box = (x0, y0, x1, y1)
    candidates = scores = chosen = None
    if o["candidates"] is not None:
        candidates = np.stack([_decode_rle(r, width, height) for r in o["candidates"]])
        scores = np.array(o["scores"], dtype=np.float32).reshape(-1)
        chosen = int(o["chosen"])
        if len(scores) != len(candidates) or not 0 <= chosen < len(candidates):
            raise ValueError(f"{len(candidates)} candidates, {len(scores)} scores, chosen {chosen}")
        candidates.setflags(write=False)
        scores.setflags(write=False)
    return {
        "label": label,
        "color": color,
        "points": points,
        "point_labels": point_labels,
        "box": box,
        "candidates": candidates,
        "scores": scores,
        "chosen": chosen,
    }


def _png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")  # 2-D uint8: mode "L"
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # a reader sees the old file or the whole new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _previous_pngs(path: Path) -> set[str]:
    """Mask PNGs an earlier save listed in ``path`` (only those: never other files)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            o["png"]
            for i in data["sam_widgets"]["images"]
            for o in i["objects"]
            if isinstance(o.get("png"), str) and o["png"] == _safe(o["png"]) and o["png"].endswith(".png")
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
