"""The folder ``Session.save`` writes and ``Session.load`` reads, and COCO export.

``annotations.json`` is a COCO instance-segmentation dict (compressed RLE, bbox in pixels) plus a
``"sam_widgets"`` section (``FORMAT``) with each object's prompts, every candidate and the chosen
one; next to it one 0/255 PNG per object mask. Every file is written atomically. Reading checks the
whole file before the session changes anything. Private: ``Session`` is the API.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pycocotools import mask as mask_utils

from ._io import rle_decode, rle_encode, write_all_or_nothing
from .errors import AnnotationFileError, ImageMismatchError
from .prompts import Prompt
from .strokes import Stroke, StrokeError

ANNOTATIONS_FILE = "annotations.json"
FORMAT = 1  # version of the "sam_widgets" section of annotations.json
_STAGING_PREFIX = ".sam-widgets-saving-"  # a save writes here first, then moves files into place
_MAX_STEM = 120  # bytes of a mask file name before ".png"; longer names get a short hash


class _Image(Protocol):  # what is read of a session's image slot
    name: str
    file_name: str
    width: int
    height: int
    digest: str  # sha256 of the RGB pixels (decoded to take it, if never yet)
    digest_known: bool  # whether digest costs nothing
    state: Any  # .objects: SessionObjects; .active: label or None


def coco(slots: Sequence[_Image], category: Callable[[str], str] | None = None) -> dict[str, Any]:
    """The masks of all images as a COCO dict (see ``Session.to_coco``)."""
    images, annotations, categories = [], [], {}
    for image_id, slot in enumerate(slots, start=1):
        images.append(
            {"id": image_id, "file_name": slot.file_name, "width": slot.width, "height": slot.height}
        )
        for obj in slot.state.objects:
            if obj.mask is None or not obj.mask.any():
                continue
            name = str(category(obj.label)) if category is not None else obj.category_name
            cat_id = categories.setdefault(name, len(categories) + 1)
            rle = rle_encode(obj.mask)
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
    folder: str | os.PathLike,
    slots: Sequence[_Image],
    category: Callable[[str], str] | None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write masks and ``annotations.json`` into ``folder`` (see ``Session.save``); its path.

    All or nothing: every file name is worked out first, every file is written into a staging
    folder inside ``folder``, and only then moved into place (``annotations.json`` last). A folder
    holding another session's work is refused unless ``overwrite``; only PNGs this package wrote
    (their sha256 is in the old ``annotations.json``) are ever replaced or deleted.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AnnotationFileError(f"{folder} is a file, not a folder: pass a folder to save into.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnnotationFileError(
            f"Cannot create the folder {folder} ({e.strerror or e}): pass a writable folder."
        ) from e
    ours = _files_we_wrote(folder, slots, overwrite)
    taken = {p.name.casefold() for p in folder.iterdir() if p.name not in ours}
    entries: list[tuple[str, bytes]] = []  # (png name, bytes), all computed before any write
    section: dict[str, Any] = {"format": FORMAT, "images": []}
    for slot in slots:
        objects = []
        for obj in slot.state.objects:
            png = sha = None
            if obj.mask is not None:
                png = _png_name(f"{_safe(slot.name)}__{_safe(obj.label)}", taken)
                data = _png_bytes(obj.mask)
                sha = hashlib.sha256(data).hexdigest()
                entries.append((png, data))
            objects.append(
                {
                    "label": obj.label,
                    "category": obj.category,
                    "color": list(obj.color),
                    "points": [list(p) for p in obj.points],
                    "point_labels": list(obj.point_labels),
                    "box": None if obj.box is None else list(obj.box),
                    "candidates": None if obj.candidates is None else [rle_encode(c) for c in obj.candidates],
                    "scores": None if obj.scores is None else [float(s) for s in obj.scores],
                    "chosen": obj.chosen,
                    "strokes": [k.to_json() for k in obj.strokes],
                    "png": png,
                    "png_sha256": sha,
                }
            )
        section["images"].append(
            {
                "name": slot.name,
                "file_name": slot.file_name,
                "width": slot.width,
                "height": slot.height,
                # an image without work that was never shown is not decoded to hash it
                "sha256": slot.digest if objects or slot.state.proposals or slot.digest_known else None,
                "active": slot.state.active,
                "objects": objects,
            }
        )
        proposals = getattr(slot.state, "proposals", None)
        if proposals:  # "everything" mode's masks (Session.propose), kept with the work
            section["images"][-1]["proposals"] = [
                {"segmentation": rle_encode(p.mask), "score": p.score, "stability": p.stability}
                for p in proposals
            ]
    data = coco(slots, category)
    data["sam_widgets"] = section
    payload = json.dumps(data).encode()
    path = folder / ANNOTATIONS_FILE
    write_all_or_nothing(
        folder,
        entries,
        lambda: (ANNOTATIONS_FILE, payload),
        prefix=_STAGING_PREFIX,
        error=AnnotationFileError,
        doing="Saving",
        done="saved",
    )
    for name in set(ours) - {n for n, _ in entries}:
        (folder / name).unlink(missing_ok=True)
    return path


def _png_name(stem: str, taken: set[str]) -> str:
    """``stem.png``, shortened with a hash when long, unique (case-insensitively) in ``taken``."""
    if len(stem.encode()) > _MAX_STEM:
        digest = hashlib.sha1(stem.encode()).hexdigest()[:10]
        stem = f"{stem.encode()[: _MAX_STEM - 11].decode('ascii', 'ignore')}-{digest}"
    name, n = f"{stem}.png", 2
    while name.casefold() in taken:
        name = f"{stem}-{n}.png"
        n += 1
    taken.add(name.casefold())
    return name


def _files_we_wrote(folder: Path, slots: Sequence[_Image], overwrite: bool) -> dict[str, str]:
    """PNGs in ``folder`` that an earlier save wrote and that still hold what it wrote.

    Refuses (``ImageMismatchError`` / ``AnnotationFileError``) a folder whose ``annotations.json``
    belongs to other images or was not written by ``Session.save``, unless ``overwrite``.
    """
    path = folder / ANNOTATIONS_FILE
    if not path.exists():
        return {}
    data: Any = None
    try:
        data, _ = read_folder(folder)
        parse_images(data, path, [(s.name, s.width, s.height, _digest_of(s)) for s in slots])
    except AnnotationFileError as e:
        if not overwrite:
            raise type(e)(
                f"Not saving into {folder}: {e} Save into another folder, or pass overwrite=True "
                "to replace that annotations.json (PNGs of yours are never deleted)."
            ) from e
    found: dict[str, str] = {}
    try:
        images = list(data["sam_widgets"]["images"])
    except (KeyError, TypeError):  # not ours (overwrite=True): none of its files are ours either
        return found
    for image in images:
        for o in image.get("objects", ()) if isinstance(image, dict) else ():
            name = o.get("png") if isinstance(o, dict) else None
            if not isinstance(name, str) or name != _safe(name) or not name.endswith(".png"):
                continue
            file = folder / name
            try:
                blob = file.read_bytes()
            except OSError:
                continue
            sha = o.get("png_sha256")
            if sha is None:  # written before hashes were recorded: ours if it is a mask PNG
                if _is_mask_png(blob, image):
                    found[name] = hashlib.sha256(blob).hexdigest()
            elif hashlib.sha256(blob).hexdigest() == sha:
                found[name] = sha
    return found


def _is_mask_png(blob: bytes, image: dict[str, Any]) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as im:
            if im.format != "PNG" or im.mode != "L" or im.size != (image["width"], image["height"]):
                return False
            return set(np.unique(np.asarray(im)).tolist()) <= {0, 255}
    except Exception:
        return False


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
    data: Any, path: Path, images: Sequence[tuple[str, int, int, str | Callable[[], str]]]
) -> dict[int, tuple[tuple[dict[str, Any], ...], str | None]]:
    """Per index into ``images`` ((name, width, height, sha256 of the pixels, or a function giving
    it) of the session's images): the saved objects' fields and the active label. Checks everything; raises
    ``ImageMismatchError`` or ``AnnotationFileError`` (``path`` names the file in messages).
    An image is the same when its name, size and (where the file records it) content agree."""
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
        by_name = {image[0]: i for i, image in enumerate(images)}
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
            name, width, height, digest = images[index]
            if (int(entry["width"]), int(entry["height"])) != (width, height):
                raise ImageMismatchError(
                    f"Image {name!r} is {width}x{height} pixels, but {path} was "
                    f"saved for a {entry['width']}x{entry['height']} image of that name."
                )
            saved_digest = entry.get("sha256")
            if not (entry["objects"] or entry.get("proposals")):
                saved_digest = None  # no work on it: nothing to belong to other pixels
            if saved_digest is not None and callable(digest):  # a file's: decoded only if needed
                digest = digest()
            if saved_digest is not None and digest is not None and saved_digest != digest:
                raise ImageMismatchError(
                    f"Image {name!r} has other pixels than the image of that name and size {path} "
                    "was saved for (their sha256 differ): it is another picture, or was edited. "
                    "Open the session on the images the work was done on."
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


def parse_proposals(
    data: Any, path: Path, images: Sequence[_Image]
) -> dict[int, list[tuple[np.ndarray, float, float]]]:
    """Per image index: the saved "everything" proposals as (HxW bool mask, score, stability).
    Call after ``parse_images`` (which checks names and sizes)."""
    by_name = {slot.name: i for i, slot in enumerate(images)}
    out: dict[int, list[tuple[np.ndarray, float, float]]] = {}
    try:
        for entry in data["sam_widgets"]["images"]:
            if entry["name"] in by_name and entry.get("proposals"):
                slot = images[by_name[entry["name"]]]
                out[by_name[entry["name"]]] = [
                    (
                        _decode_rle(p["segmentation"], slot.width, slot.height),
                        float(p["score"]),
                        float(p["stability"]),
                    )
                    for p in entry["proposals"]
                ]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise AnnotationFileError(f"{path} has damaged proposals: {e!r}.") from e
    return out


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


def _decode_rle(rle: dict[str, Any], width: int, height: int) -> np.ndarray:
    """HxW bool mask of a saved COCO RLE (pycocotools), checked to be one of this image."""
    if [int(v) for v in rle["size"]] != [height, width]:
        raise ValueError(f"a mask of size {rle['size']} on a {width}x{height} image")
    try:
        mask = rle_decode(rle)
    except Exception as e:  # pycocotools: "Invalid RLE mask representation"
        raise ValueError(f"an RLE that is not valid ({e})") from e
    if rle_encode(mask)["counts"] != str(rle["counts"]):  # runs short of or past the image
        raise ValueError(f"an RLE whose runs do not cover a {width}x{height} image")
    return mask


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
    box = None if o["box"] is None else tuple(float(v) for v in o["box"])
    if points or point_labels or box is not None:  # an object may have no prompts yet
        Prompt(points=points, labels=point_labels, box=box).check(width, height)
    category = o.get("category")  # absent in folders saved before classes existed
    if category is not None and (not isinstance(category, str) or not category.strip()):
        raise ValueError(f"bad class {category!r}")
    candidates = scores = chosen = None
    if o["candidates"] is not None:
        candidates = np.stack([_decode_rle(r, width, height) for r in o["candidates"]])
        chosen = int(o["chosen"])
        if o["scores"] is not None:  # None: a mask painted with the brush alone
            scores = np.array(o["scores"], dtype=np.float32).reshape(-1)
            scores.setflags(write=False)
        if (scores is not None and len(scores) != len(candidates)) or not 0 <= chosen < len(candidates):
            n = "no" if scores is None else len(scores)
            raise ValueError(f"{len(candidates)} candidates, {n} scores, chosen {chosen}")
        candidates.setflags(write=False)
    try:  # absent in folders saved before the brush existed
        strokes = tuple(Stroke.from_json(k) for k in o.get("strokes") or ())
    except StrokeError as e:
        raise ValueError(f"a bad stroke on {label!r}: {e}") from e
    if strokes and candidates is None:
        raise ValueError(f"{label!r} has strokes but no mask to paint them on")
    return {
        "label": label,
        "color": color,
        "points": points,
        "point_labels": point_labels,
        "box": box,
        "candidates": candidates,
        "scores": scores,
        "chosen": chosen,
        "category": category,
        "strokes": strokes,
    }


def _png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")  # 2-D uint8: mode "L"
    return buf.getvalue()


def _digest_of(slot: Any) -> Any:
    """A slot's sha256 as ``parse_images`` takes it: a function, so that only the images a saved
    folder names are decoded to check it."""
    return lambda: slot.digest
