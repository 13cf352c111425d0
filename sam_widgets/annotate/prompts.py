"""Prompts for the batch annotator: boxes (and points) per image, from a detector's output.

Two formats, the two that detectors write:

- **COCO detections JSON** (``read_coco_prompts``): either a COCO dict (``images``,
  ``annotations`` with ``bbox`` [x, y, w, h] in pixels, ``categories``), or a bare list of
  detections (``[{"image_id", "bbox", "category_id", "score"}, ...]``, the results format of
  detectron2/mmdetection). A bare list names images by ``image_id``: a file name (string), or an
  integer id that ``image_ids=`` (a COCO file with an ``images`` list, e.g. the dataset's
  instances JSON) maps to a file name. A ``bbox``'s width and height are >= 0. An entry may also
  carry ``"points": [[x, y], ...]`` and ``"point_labels": [1, 0, ...]`` (1 positive, 0 negative;
  default all 1), with or without a box. The integer ``id`` the ``images`` lists give an image is
  its id in the output (``PromptSet.image_ids``; ``read_image_ids`` for ``--image-ids`` alone).
- **YOLO label folder** (``read_yolo_prompts``): one ``<image stem>.txt`` per image, lines
  ``class cx cy w h [confidence]`` normalised to [0, 1]; segment lines (``class x1 y1 x2 y2 ...``)
  give their bounding box. Class names from ``classes.txt`` in the folder, or ``names`` in a
  ``data.yaml`` beside or above it; else the class number. A coordinate outside [0, 1] (pixels),
  or a class those names do not name, is an error naming the file and line.

Images are matched by file name relative to the image folder, else by base name, else by stem.
Each object read is a ``Detection``: a ``sam_widgets.prompts.Prompt`` (the package's one prompt
type) with the detector's category and score. Whether it fits its image is decided per image, by
the worker (``check_prompt``): a box that reaches outside is clipped to the image, one with
nothing inside it is skipped and recorded, and the rest is ``Prompt.check``'s, as for a click.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SamWidgetsError
from ..prompts import Prompt

__all__ = ["Detection", "PromptFileError", "PromptSet", "read_prompts", "read_image_ids", "check_prompt"]

MIN_BOX_SIDE = 2.0  # pixels, as the session's (a smaller drag is a click)


class PromptFileError(SamWidgetsError, ValueError):
    """A prompts file or folder cannot be read: missing, not JSON, or not a format we know."""


@dataclass(frozen=True)
class Detection:
    """One object to segment, as a detector gave it: its ``prompt`` (``sam_widgets.prompts.Prompt``,
    the package's one prompt type: a box and/or points with their labels), in pixels, or in
    [0, 1] of the image's width and height when ``normalized`` (YOLO); ``category_id`` as in the
    output's categories; ``score``: the detector's confidence.
    """

    prompt: Prompt
    category_id: int = 1
    score: float | None = None
    normalized: bool = False

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """X0, Y0, X1, Y1 (X0 <= X1, Y0 <= Y1), or None."""
        return self.prompt.box

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        """(X, Y) points, each with its label in ``point_labels`` (1 on the object, 0 not)."""
        return self.prompt.points

    @property
    def point_labels(self) -> tuple[int, ...]:
        return self.prompt.labels

    def as_dict(self) -> dict[str, Any]:
        return {
            "box": None if self.box is None else list(self.box),
            "points": [list(p) for p in self.points],
            "point_labels": list(self.point_labels),
            "category_id": self.category_id,
            "score": self.score,
            "normalized": self.normalized,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detection:
        return cls(
            Prompt(
                points=tuple((float(x), float(y)) for x, y in d["points"]),
                labels=tuple(int(v) for v in d["point_labels"]),
                box=None if d["box"] is None else _xyxy(*(float(v) for v in d["box"])),
            ),
            category_id=int(d["category_id"]),
            score=None if d["score"] is None else float(d["score"]),
            normalized=bool(d["normalized"]),
        )


def _xyxy(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """A box with its corners in order (detectors may write them either way round)."""
    (x0, x1), (y0, y1) = sorted((x0, x1)), sorted((y0, y1))
    return x0, y0, x1, y1


@dataclass
class PromptSet:
    """The prompts of a run: per image key, its prompts; the categories; what was not matched; the
    COCO ids the file gives images (key -> id)."""

    by_image: dict[str, list[Detection]]
    categories: list[dict[str, Any]]
    unmatched: list[str] = field(default_factory=list)  # image names of the file not found in IMAGES
    source: str = ""
    image_ids: dict[str, int] = field(default_factory=dict)


def check_prompt(d: Detection, width: int, height: int) -> tuple[Detection | None, str | None]:
    """``d`` in pixels of a ``width`` x ``height`` image, its box clipped to it; or (None, the reason).

    A box that reaches outside the image is clipped; one with less than ``MIN_BOX_SIDE`` pixels
    each way inside it is refused. The rest is ``Prompt.check``'s, as for a click in the widget.
    """
    sx, sy = (width, height) if d.normalized else (1.0, 1.0)
    box = None
    if d.box is not None:
        x0, y0, x1, y1 = d.box
        x0, x1 = sorted((x0 * sx, x1 * sx))
        y0, y1 = sorted((y0 * sy, y1 * sy))
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            return None, f"box {list(d.box)} is not finite"
        cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
        if cx1 - cx0 < MIN_BOX_SIDE or cy1 - cy0 < MIN_BOX_SIDE:
            where = "outside" if (cx1 <= cx0 or cy1 <= cy0) else "too small in"
            return None, (
                f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies {where} the {width}x{height} image "
                f"(a box needs {MIN_BOX_SIDE:g} pixels each way inside it)"
            )
        box = (cx0, cy0, cx1, cy1)
    points = tuple((x * sx, y * sy) for x, y in d.points)
    try:
        prompt = Prompt(points=points, labels=d.point_labels, box=box).check(width, height)
    except ValueError as e:
        return None, str(e)
    return Detection(prompt, d.category_id, d.score, False), None


# ----------------------------------------------------------------------------- matching


class _Matcher:
    """Image name in a prompts file -> image key (a path relative to the image folder)."""

    def __init__(self, keys: list[str]) -> None:
        self.exact = set(keys)
        self.base: dict[str, list[str]] = {}
        self.stem: dict[str, list[str]] = {}
        for k in keys:
            self.base.setdefault(Path(k).name, []).append(k)
            self.stem.setdefault(Path(k).stem, []).append(k)

    def __call__(self, name: str) -> str | None:
        name = str(name).replace("\\", "/")
        if name in self.exact:
            return name
        for table, key in ((self.base, Path(name).name), (self.stem, Path(name).stem)):
            found = table.get(key, [])
            if len(found) == 1:
                return found[0]
        return None


# ----------------------------------------------------------------------------- COCO


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise PromptFileError(f"{what} {str(path)!r} not found: pass the path of a JSON file.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PromptFileError(f"{what} {path} is not readable JSON ({e}).") from None


def _given_ids(images: list[dict[str, Any]], match: _Matcher, source: str) -> dict[str, int]:
    """Image key -> the integer id a COCO ``images`` list gives it, for the images of the run (an
    image of the list not in IMAGES is left out; ids that are not integers only name images for
    the detections). Two ids for one image, or one id for two, is a ``PromptFileError``."""
    ids: dict[str, int] = {}
    keys_of: dict[int, str] = {}
    for im in images:
        image_id = im["id"]
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            continue
        key = match(str(im["file_name"]))
        if key is None:
            continue
        if ids.get(key, image_id) != image_id:
            raise PromptFileError(
                f"{source}: images {ids[key]} and {image_id} both match {key!r} of IMAGES; list each "
                "image once (file names by their path in IMAGES tell apart images of the same name)."
            )
        if keys_of.get(image_id, key) != key:
            raise PromptFileError(
                f"{source}: image id {image_id} is given to {keys_of[image_id]!r} and to {key!r}; "
                "COCO image ids must be unique."
            )
        ids[key], keys_of[image_id] = image_id, key
    return ids


def read_image_ids(path: str | Path, keys: list[str]) -> dict[str, int]:
    """Image key -> COCO id from a COCO file's ``images`` (``--image-ids``, e.g. the dataset's
    instances JSON), for runs whose prompts give no ids (everything, YOLO labels)."""
    path = Path(path).expanduser()
    data = _load_json(path, "image ids file")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise PromptFileError(f"{path} has no 'images' list: pass a COCO file (e.g. instances JSON).")
    if not all(isinstance(im, dict) and "id" in im and "file_name" in im for im in images):
        raise PromptFileError(f"{path}: an 'images' entry lacks 'id' or 'file_name'.")
    return _given_ids(images, _Matcher(keys), str(path))


def _points_of(d: dict[str, Any]) -> tuple[tuple[tuple[float, float], ...], tuple[int, ...]]:
    """A detection's points and their labels (all 1 when it gives none); ``Prompt`` checks them."""
    points = tuple((float(x), float(y)) for x, y in d.get("points") or [])
    return points, tuple(int(v) for v in d.get("point_labels", [1] * len(points)))


def read_coco_prompts(
    path: str | Path, keys: list[str], *, image_ids: str | Path | None = None, min_score: float = 0.0
) -> PromptSet:
    """Prompts from a COCO JSON (dict with ``images``) or a list of detections (see the module)."""
    path = Path(path).expanduser()
    data = _load_json(path, "prompts file")
    names: dict[Any, str] = {}
    categories: list[dict[str, Any]] = []
    if isinstance(data, dict):
        if not isinstance(data.get("annotations"), list) or not isinstance(data.get("images"), list):
            raise PromptFileError(
                f"{path} is a JSON object but not COCO: it needs 'images' and 'annotations' lists "
                "(or give a list of detections [{'image_id', 'bbox', 'category_id', 'score'}, ...])."
            )
        detections = data["annotations"]
        categories = list(data.get("categories") or [])
        images = data["images"]
    elif isinstance(data, list):
        detections, images = data, []
    else:
        raise PromptFileError(f"{path} holds {type(data).__name__}; expected COCO or a list of detections.")
    sources = str(path)  # the files whose 'images' name the ids, for the errors
    if image_ids is not None:
        sources = f"{path} and {image_ids}" if images else str(image_ids)
        extra = _load_json(Path(image_ids).expanduser(), "image ids file")
        if not isinstance(extra, dict) or not isinstance(extra.get("images"), list):
            raise PromptFileError(
                f"{image_ids} has no 'images' list: pass a COCO file (e.g. instances JSON)."
            )
        images = images + extra["images"]
        categories = categories or list(extra.get("categories") or [])
    try:
        names.update({im["id"]: str(im["file_name"]) for im in images})
    except (KeyError, TypeError):
        raise PromptFileError(f"{sources}: an 'images' entry lacks 'id' or 'file_name'.") from None
    match = _Matcher(keys)
    given_ids = _given_ids(images, match, sources)
    by_image: dict[str, list[Detection]] = {}
    unmatched: dict[str, None] = {}
    for i, d in enumerate(detections):
        where = f"{path.name}, detection {i}"
        try:
            if not isinstance(d, dict):
                raise TypeError(f"not an object: {str(d)[:60]}")
            if float(d.get("score", 1.0)) < min_score:
                continue
            ref = d["file_name"] if "file_name" in d else d["image_id"]
            name = ref if isinstance(ref, str) else names.get(ref)
            if name is None:
                raise PromptFileError(
                    f"{where}: image_id {ref!r} is a number and no 'images' list names it. Pass the "
                    "COCO file that lists the images (--image-ids instances.json), or name images by "
                    "file name."
                )
            box = None
            if d.get("bbox") is not None:
                x, y, w, h = (float(v) for v in d["bbox"])
                if w < 0 or h < 0:
                    raise ValueError(
                        f"bbox {d['bbox']} has a negative width or height: COCO's bbox is "
                        "[x, y, width, height] with width, height >= 0 (not two corners)"
                    )
                box = _xyxy(x, y, x + w, y + h)
            points, labels = _points_of(d)
            if box is None and not points:
                raise ValueError(f"{where}: neither 'bbox' nor 'points'")
            detection = Detection(
                Prompt(points=points, labels=labels, box=box),
                int(d.get("category_id", 1)),
                None if d.get("score") is None else float(d["score"]),
            )
        except PromptFileError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise PromptFileError(
                f"{where} is not a detection ({e!s}); see `sam-widgets annotate --help`."
            ) from None
        key = match(name)
        if key is None:
            unmatched[name] = None
            continue
        by_image.setdefault(key, []).append(detection)
    if not categories:
        ids = sorted({p.category_id for ps in by_image.values() for p in ps})
        categories = [{"id": c, "name": str(c)} for c in ids]
    categories = [
        {
            "id": int(c["id"]),
            "name": str(c.get("name", c["id"])),
            "supercategory": c.get("supercategory", "object"),
        }
        for c in categories
    ]
    return PromptSet(by_image, categories, list(unmatched), str(path), given_ids)


# ----------------------------------------------------------------------------- YOLO


def _yolo_names(folder: Path) -> tuple[dict[int, str], Path] | tuple[None, None]:
    """Class number -> name, and the file that gives them (``classes.txt``, or a ``data.yaml``'s
    ``names``, a list or a dict); (None, None) when there is none."""
    classes = folder / "classes.txt"
    if classes.is_file():
        lines = [line.strip() for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()]
        return dict(enumerate(lines)), classes
    for parent in (folder, folder.parent, folder.parent.parent):
        for name in ("data.yaml", "data.yml", "dataset.yaml"):
            f = parent / name
            if f.is_file():
                try:
                    import yaml

                    names = yaml.safe_load(f.read_text(encoding="utf-8")).get("names")
                    if isinstance(names, dict):
                        return {int(k): str(v) for k, v in names.items()}, f
                except Exception as e:  # noqa: BLE001 - any YAML problem: say which file
                    raise PromptFileError(
                        f"{f} is not readable YAML with 'names' (a list, or class numbers to names) ({e})."
                    ) from None
                if isinstance(names, list):
                    return dict(enumerate(str(n) for n in names)), f
    return None, None


def _classes(names: dict[int, str]) -> str:
    """``0 to 2``, or the numbers themselves when they are not 0..N-1."""
    numbers = sorted(names)
    if numbers == list(range(len(numbers))) and len(numbers) > 1:
        return f"{numbers[0]} to {numbers[-1]}"
    return ", ".join(str(c) for c in numbers)


def read_yolo_prompts(folder: str | Path, keys: list[str], *, min_score: float = 0.0) -> PromptSet:
    """Prompts from a YOLO labels folder (see the module); category ids are class + 1."""
    folder = Path(folder).expanduser()
    names, names_file = _yolo_names(folder)
    match = _Matcher(keys)
    by_image: dict[str, list[Detection]] = {}
    unmatched: list[str] = []
    seen: set[int] = set()
    for txt in sorted(folder.rglob("*.txt")):
        if txt.name == "classes.txt":
            continue
        rel = txt.relative_to(folder).with_suffix("").as_posix()
        key = match(rel)
        if key is None:
            unmatched.append(rel)
            continue
        prompts = by_image.setdefault(key, [])
        for n, line in enumerate(txt.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            vals = line.split()
            if not vals:
                continue
            try:
                cls, nums = int(vals[0]), [float(v) for v in vals[1:]]
                if cls < 0:
                    raise ValueError(f"class {cls} is negative")
                if len(nums) in (4, 5):
                    coords = nums[:4]
                    cx, cy, w, h = coords
                    score = nums[4] if len(nums) == 5 else None
                    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                elif len(nums) >= 6 and len(nums) % 2 == 0:  # a segment: its bounding box
                    coords, xs, ys = nums, nums[0::2], nums[1::2]
                    score, box = None, (min(xs), min(ys), max(xs), max(ys))
                else:
                    raise ValueError(f"{len(vals)} values")
                outside = [v for v in coords if not 0.0 <= v <= 1.0]
                if outside:
                    raise ValueError(
                        f"{outside[0]:g} is outside [0, 1] (pixels? divide x and w by the image's "
                        "width, y and h by its height)"
                    )
            except ValueError as e:
                raise PromptFileError(
                    f"{txt}:{n}: {line.strip()!r} is not a YOLO label ('class cx cy w h [conf]', "
                    f"normalised to [0, 1]): {e}."
                ) from None
            if names is not None and cls not in names:
                raise PromptFileError(
                    f"{txt}:{n}: class {cls}, but {names_file} names {len(names)} "
                    f"{'class' if len(names) == 1 else 'classes'} ({_classes(names) or 'none'}): add "
                    "its name there, or correct the label."
                )
            if score is not None and score < min_score:
                continue
            seen.add(cls)
            prompts.append(Detection(Prompt(box=_xyxy(*box)), cls + 1, score, normalized=True))
    if not by_image and not unmatched:
        raise PromptFileError(f"{folder} holds no YOLO label files (<image stem>.txt).")
    count = max(max(names or [-1]) + 1, max(seen, default=-1) + 1)
    categories = [
        {"id": c + 1, "name": (names or {}).get(c, str(c)), "supercategory": "object"} for c in range(count)
    ]
    return PromptSet(by_image, categories, unmatched, str(folder))


def read_prompts(
    source: str | Path, keys: list[str], *, image_ids: str | Path | None = None, min_score: float = 0.0
) -> PromptSet:
    """Prompts from a COCO detections JSON file or a YOLO labels folder, matched to ``keys``."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = read_yolo_prompts(path, keys, min_score=min_score)
        if image_ids is not None:
            found.image_ids = read_image_ids(image_ids, keys)
        return found
    if not path.exists():
        raise PromptFileError(
            f"prompts {str(source)!r} not found: pass a COCO detections JSON file or a YOLO labels folder."
        )
    return read_coco_prompts(path, keys, image_ids=image_ids, min_score=min_score)
