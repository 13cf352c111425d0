"""Session: the state of an interactive segmentation, with no widget in it.

A session holds images and, per image, a list of objects. Each object holds its prompts (points
and a box), the candidate masks SAM returned for them, and which candidate is chosen. Every gesture
of the widget is a public method here (``add_point``, ``set_box``, ``choose``, ``undo``, ...), so
plain pytest drives all of it.

Conventions:

- coordinates are (X, Y) in pixels of the original image: not canvas pixels, not SAM's 1024 input;
- masks are bool arrays, HxW (candidates NxHxW), read-only: the undo history shares them;
- with a ``CachedPredictor`` a click keeps SAM's low-res logits (Nx256x256), not full-size masks:
  a view asks for the mask of the region it shows at its own size (``mask_view``), and the
  full-size masks are made when first read (``mask``, ``candidates``, ``masks``, save, export)
  and kept. Every mask is made in one place, ``Session._materialize``;
- objects (``SessionObject``) are immutable values. A change replaces the object inside the session,
  so read ``session.active`` or ``session.objects`` again after a change;
- undo history is per image and holds whole per-image states, an object's masks as its low-res
  logits (or, for masks from elsewhere: adopted, loaded, another predictor, compressed as RLE by
  pycocotools), so undo and redo never run the model; the history of all images together is
  capped in bytes (``max_history_bytes``; what several steps share is counted once), the oldest
  steps going first;
- thread-safe: each public method holds the session's lock from reading the state to committing
  it, and commits to the image it started on (a callback-driven notebook may click from threads).

The image encoder runs lazily: on the first prediction of an image, or when ``ensure_encoded()``
is called (the widget calls it from a worker thread). Switching images encodes nothing. Image
files are only opened at first (their header: size and orientation); their pixels are decoded
and hashed when the image is first shown, encoded or saved.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import math
import operator
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import _annotation_files as _files
from . import export as _export
from ._annotation_files import ANNOTATIONS_FILE
from ._images import _is_pil, as_rgb_uint8
from ._io import open_image, rle_pack, rle_unpack
from .errors import AnnotationFileError, ImageMismatchError, SamWidgetsError
from .export import FORMATS, ExportError, ExportFolderError, MissingMaskError, default_category
from .predictor import LowResGeometry, box_from_low_res, masks_from_low_res, view_from_low_res
from .prompts import Prompt
from .record import record_of
from .strokes import Stroke, StrokeError, apply_strokes, stroke_of
from .viz import PALETTE

__all__ = [
    "Session",
    "SessionObject",
    "Proposal",
    "Stroke",
    "StrokeError",
    "LabelError",
    "CandidateError",
    "AnnotationFileError",
    "ImageMismatchError",
    "EVENTS",
    "ANNOTATIONS_FILE",
    "EXPORT_FORMATS",
    "ExportError",
    "ExportFolderError",
    "MissingMaskError",
    "default_category",
    "propose_defaults",
    "points_per_batch",
    "PROPOSE_DEFAULTS",
    "MICRO_PROPOSE_DEFAULTS",
]

EXPORT_FORMATS = FORMATS  # what Session.export(folder, format=...) writes

# What ``on_change`` callbacks receive, in the order they are sent after one change:
#   image    the current image changed: redraw everything
#   objects  objects were added, deleted, renamed or reordered (labels, colours)
#   active   another object is active (or none)
#   prompts  points or a box changed on some object of the current image
#   mask     a mask (candidates or chosen candidate) changed on some object of the current image
#   proposals  the "everything" proposals of the current image changed (see ``propose``)
#   history  what undo() / redo() can do may have changed
EVENTS = ("image", "objects", "active", "prompts", "mask", "proposals", "history")

#: ``Session.propose``'s defaults for the official checkpoints: segment_anything's own
#: SamAutomaticMaskGenerator defaults.
PROPOSE_DEFAULTS = {"points_per_side": 32, "pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
#: ... and for the bundled micro model, whose predicted IoUs run low (measured on the quickstart
#: scenes: these keep 6 proposals on make_scene(3), covering its 3 objects, and 1 on make_scene(7);
#: 16 points a side: 2-3 s on a loaded 2-core CPU instead of 25-50 s at 32).
MICRO_PROPOSE_DEFAULTS = {"points_per_side": 16, "pred_iou_thresh": 0.4, "stability_score_thresh": 0.7}
#: At most this many bytes of full-size logits per "everything" decoder call (``points_per_batch``).
EVERYTHING_BATCH_BYTES = 768 * 2**20
#: A proposal that overlaps an object of the image this much (IoU) is that object: not offered.
SAME_AS_OBJECT_IOU = 0.9
#: A positive click farther than this from the active object's mask (outside its bounding box grown
#: by this fraction of its longer side, at least FAR_MIN_PX) starts a new object (``Session.click``).
FAR_MARGIN = 0.25
FAR_MIN_PX = 8.0
#: A proposal touches the active object (``_touches``) if the two overlap on a grid of at most this
#: many pixels a side over their boxes' intersection (no full-size mask made for it).
TOUCH_GRID = 256

MIN_BOX_SIDE = 2.0  # pixels; a smaller drag is a click, not a box
MIN_REGION_SIDE = 16  # pixels; the smallest region ``set_region`` encodes on its own
MAX_HISTORY_BYTES = 256 * 2**20  # default cap of all images' undo/redo history together


class LabelError(SamWidgetsError, ValueError):
    """An object label is unknown, already taken, or not a usable name."""


class CandidateError(SamWidgetsError, IndexError):
    """The active object has no candidate mask of that number (the message says why, in words)."""


class _Predictor(Protocol):
    """What a session needs of a predictor: SamPredictor's ``set_image``, and its ``predict``
    (point_coords, point_labels, box, mask_input, multimask_output, return_logits -> masks,
    scores, low-res logits), as ``CachedPredictor`` has them."""

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None: ...

    predict: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------- objects and states


class _LowRes:
    """An object's candidates as SAM's low-res logits (Nx256x256, read-only) and where they sit on
    the image; the full-size masks made from them are kept once made (``Session._materialize``)."""

    __slots__ = ("logits", "geometry", "_full", "_stack", "_view", "__weakref__")

    def __init__(self, logits: np.ndarray, geometry: LowResGeometry) -> None:
        self.logits = logits
        self.geometry = geometry
        self._full: dict[int, np.ndarray] = {}  # candidate index -> HxW bool, read-only
        self._stack: np.ndarray | None = None  # all candidates, NxHxW
        self._view: tuple[tuple, np.ndarray] | None = None  # the last view asked for

    def __len__(self) -> int:
        return len(self.logits)

    @property
    def nbytes(self) -> int:
        return int(self.logits.nbytes) + 128


_UNSET: Any = object()


@dataclass(frozen=True, eq=False, init=False)
class SessionObject:
    """One object being segmented on one image: its prompts and SAM's answer. Immutable.

    Attributes:
      label: unique name on its image (``"object 1"`` by default); the COCO category by default.
      color: RGB 0-255 used to draw it.
      points: (X, Y) prompt points in pixels of the original image, in click order.
      point_labels: one per point: 1 positive (part of the object), 0 negative (not part of it).
      box: (X0, Y0, X1, Y1) in pixels of the original image, X0 < X1 and Y0 < Y1, or None.
      candidates: NxHxW bool masks SAM returned for these prompts (N = 3 for a single point and no
        box, else 1), read-only; None before any prompt. Made from ``logits`` when first read
        (then kept) if the session's predictor is a CachedPredictor.
      scores: N predicted IoUs of the candidates (float32), or None.
      chosen: index of the candidate that is the object's mask, or None.
      logits: Nx256x256 low-res logits (read-only), kept when the predictor is a CachedPredictor
        (the masks are made from them) or the session refines with them; else None.
      category: the object's class (COCO category, YOLO class, labelme label), or None: then its
        label without a trailing number (``category_name``; ``"cat 2"`` -> ``"cat"``). Two
        objects ``"cat 1"`` and ``"cat 2"`` are two instances of one class. ``Session.set_category``.
      strokes: brush and eraser strokes (``strokes.Stroke``, image pixels), in the order made,
        applied on top of the chosen candidate whenever ``mask`` is made (``Session.paint``):
        a new prediction replaces the candidates, never the strokes.
    """

    label: str
    color: tuple[int, int, int]
    points: tuple[tuple[float, float], ...] = ()
    point_labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    # The candidates as held: NxHxW bool, a _LowRes (made into masks when read), or None. The
    # constructor (and dataclasses.replace) take ``candidates=`` for it; copying an object with
    # replace() copies this as it is and makes no mask.
    _candidates: Any = field(default=None, repr=False)
    scores: np.ndarray | None = None
    chosen: int | None = None
    logits: np.ndarray | None = field(default=None, repr=False)
    category: str | None = None
    strokes: tuple[Stroke, ...] = ()

    def __init__(self, *args: Any, candidates: Any = _UNSET, **kwargs: Any) -> None:
        names = [f.name for f in dataclasses.fields(self)]
        public = ["candidates" if n == "_candidates" else n for n in names]
        if len(args) > len(public):
            raise TypeError(f"SessionObject takes at most {len(public)} positional arguments.")
        given = dict(zip(public, args, strict=False))
        if candidates is not _UNSET:
            if "candidates" in given:
                raise TypeError("SessionObject got candidates twice.")
            given["candidates"] = candidates
        if "candidates" in given:
            kwargs["_candidates"] = given.pop("candidates")  # wins over a copied _candidates
        for name in given:
            if name in kwargs:
                raise TypeError(f"SessionObject got {name} twice.")
        kwargs.update(given)
        for f in dataclasses.fields(self):
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                raise TypeError(f"SessionObject needs {f.name}.")
            object.__setattr__(self, f.name, value)
        if kwargs:
            raise TypeError(f"SessionObject got unknown arguments: {', '.join(kwargs)}.")

    @property
    def candidates(self) -> np.ndarray | None:
        """NxHxW bool (read-only) candidate masks, or None before any prompt (see the class)."""
        held = self._candidates
        if isinstance(held, _LowRes):
            return Session._materialize_all(held)
        return held

    @property
    def n_candidates(self) -> int:
        """How many candidate masks the object has (0 before any prompt), without making them."""
        return 0 if self._candidates is None else len(self._candidates)

    @property
    def has_mask(self) -> bool:
        """Whether the object has a mask (without making it)."""
        return self._candidates is not None and self.chosen is not None

    @property
    def mask_bbox(self) -> tuple[int, int, int, int] | None:
        """(X0, Y0, X1, Y1) in image pixels (X1, Y1 exclusive) around the mask, or None (no mask,
        or an empty one). Without making the full-size mask when it is not made yet: then from
        the low-res logits (holds the mask; may be larger by about 1/256 of the image's side)."""
        if not self.has_mask:
            return None
        cached = self.__dict__.get("_bbox")
        if cached is not None:
            return cached[0]
        held = self._candidates
        if isinstance(held, _LowRes) and self.chosen not in held._full and "mask" not in self.__dict__:
            box = _with_strokes(box_from_low_res(held.logits[self.chosen], held.geometry), self)
        else:
            box = _mask_bbox(self.mask)
        object.__setattr__(self, "_bbox", (box,))  # a cache, not a field: the object stays a value
        return box

    @property
    def category_name(self) -> str:
        """The object's class: ``category`` if set, else ``export.default_category(label)``."""
        return self.category if self.category is not None else default_category(self.label)

    @functools.cached_property
    def mask(self) -> np.ndarray | None:
        """The object's mask: the chosen candidate with the strokes applied on top (in order;
        the candidate itself when there are none). HxW bool (read-only), or None before any
        prompt; made from the low-res logits when first read, then kept (``Session._materialize``)."""
        if not self.has_mask:
            return None
        return Session._materialize(self)

    @property
    def score(self) -> float | None:
        """SAM's predicted IoU of the chosen candidate, or None."""
        if self.scores is None or self.chosen is None:
            return None
        return float(self.scores[self.chosen])

    @property
    def has_prompts(self) -> bool:
        return bool(self.points) or self.box is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionObject):
            return NotImplemented
        return (
            (self.label, self.color, self.points, self.point_labels, self.box, self.chosen)
            == (other.label, other.color, other.points, other.point_labels, other.box, other.chosen)
            and self.category == other.category
            and self.strokes == other.strokes
            and _same_store(self._candidates, other._candidates)
            and _same_array(self.scores, other.scores)
            # logits are how masks are held, not what they are: an object restored from a save
            # (masks, no logits) equals the one saved
            and (self.logits is None or other.logits is None or _same_array(self.logits, other.logits))
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: equal by value, not hashable

    def __repr__(self) -> str:
        parts = [repr(self.label), f"{len(self.points)} point{'s' if len(self.points) != 1 else ''}"]
        if self.box is not None:
            parts.append("box")
        if self.strokes:
            parts.append(f"{len(self.strokes)} stroke{'s' if len(self.strokes) != 1 else ''}")
        if self._candidates is not None and self.score is not None:
            parts.append(f"candidate {self.chosen} of {len(self._candidates)}, score {self.score:.3f}")
        return f"SessionObject({', '.join(parts)})"


def _same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b))


def _same_store(a: Any, b: Any) -> bool:
    """Equal candidates, held as arrays or as low-res logits (made into masks only when mixed)."""
    if a is b:
        return True
    if isinstance(a, _LowRes) and isinstance(b, _LowRes):
        return a.geometry == b.geometry and _same_array(a.logits, b.logits)
    if isinstance(a, _LowRes):
        a = Session._materialize_all(a)
    if isinstance(b, _LowRes):
        b = Session._materialize_all(b)
    return _same_array(a, b)


def _with_strokes(
    box: tuple[int, int, int, int] | None, obj: SessionObject
) -> tuple[int, int, int, int] | None:
    """``box`` (around the predicted mask) grown to hold ``obj``'s brush strokes, clipped to the
    image (erased pixels are not taken out: the box holds the mask, it may be larger)."""
    H, W = obj._candidates.geometry.full_size
    for stroke in obj.strokes:
        if stroke.mode != "add":
            continue
        x0, y0, x1, y1 = stroke.bounds
        sx0, sy0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        sx1, sy1 = min(W, math.ceil(x1) + 1), min(H, math.ceil(y1) + 1)
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        if box is None:
            box = (sx0, sy0, sx1, sy1)
        else:
            box = (min(box[0], sx0), min(box[1], sy0), max(box[2], sx1), max(box[3], sy1))
    return box


def _mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass(frozen=True, eq=False)
class Proposal:
    """One mask of "everything" mode (``Session.propose``), not yet an object. Immutable.

    Attributes:
      mask: HxW bool, read-only, in pixels of the original image.
      score: SAM's predicted IoU. stability: SAM's stability score.
      area: pixels in the mask. bbox: (X0, Y0, X1, Y1) in pixels, X1/Y1 exclusive.
    """

    mask: np.ndarray = field(repr=False)
    score: float
    stability: float
    area: int
    bbox: tuple[int, int, int, int]

    @classmethod
    def of(cls, mask: np.ndarray, score: float, stability: float) -> Proposal:
        mask = np.array(mask, dtype=bool)
        mask.setflags(write=False)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        bbox = (0, 0, 0, 0)
        if len(rows):
            bbox = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        return cls(mask, float(score), float(stability), int(mask.sum()), bbox)


@dataclass(frozen=True)
class _State:
    """Everything undo restores for one image."""

    objects: tuple[SessionObject, ...] = ()
    active: str | None = None
    proposals: tuple[Proposal, ...] | None = None  # None: those of the state it replaces (see _push)


class _Packed:
    """A candidate stack (NxHxW bool) kept compact in the history: RLE, decoded when restored.

    Holds a weak reference to the array it packed: while that array lives (in the current state,
    or in a user's variable), restoring gives the very same array back.
    """

    __slots__ = ("counts", "shape", "nbytes", "_ref", "__weakref__")

    def __init__(self, arr: np.ndarray) -> None:
        self.counts = rle_pack(arr)
        self.shape: tuple[int, int, int] = arr.shape  # type: ignore[assignment]
        self.nbytes = sum(len(c) for c in self.counts) + 64
        self._ref = weakref.ref(arr)

    def matches(self, arr: np.ndarray) -> bool:
        return self._ref() is arr

    def array(self) -> np.ndarray:
        arr = self._ref()
        if arr is None:
            arr = rle_unpack(self.counts, self.shape)
            arr.setflags(write=False)
            self._ref = weakref.ref(arr)
        return arr


class _Held:
    """Low-res candidates (``_LowRes``) in the history: the logits and their geometry, no mask.

    Holds a weak reference to the ``_LowRes`` it was made from: while that lives, restoring gives
    it back (with the masks made from it); else a new one, whose masks are made again when read.
    """

    __slots__ = ("logits", "geometry", "nbytes", "_ref", "__weakref__")

    def __init__(self, held: _LowRes) -> None:
        self.logits, self.geometry, self.nbytes = held.logits, held.geometry, held.nbytes
        self._ref = weakref.ref(held)

    def matches(self, held: Any) -> bool:
        return self._ref() is held

    def array(self) -> _LowRes:
        held = self._ref()
        if held is None:
            held = _LowRes(self.logits, self.geometry)
            self._ref = weakref.ref(held)
        return held


@dataclass(frozen=True)
class _Step:
    """One undo/redo entry: a ``_State`` with its masks packed.

    ``nbytes``: what the step holds apart from its packs (prompts, labels); each pack (``_Packed``
    or ``_Held``) is counted once in ``Session.history_bytes``, however many steps share it."""

    objects: tuple[tuple[SessionObject, _Packed | _Held | None], ...]  # (object without candidates, pack)
    active: str | None
    nbytes: int
    seq: int  # order of creation across images: the smallest is dropped first
    proposals: tuple[Proposal, ...] | None = None  # shared with the states that hold them


def _locked(method: Callable) -> Callable:
    """Run ``method`` holding the session's state lock (read-modify-commit is one step)."""

    @functools.wraps(method)
    def wrapper(self: Session, *args: Any, **kwargs: Any) -> Any:
        with self._state_lock:
            return method(self, *args, **kwargs)

    return wrapper


class _Slot:
    """One image of the session: its pixels (loaded lazily for paths), its state and its history."""

    def __init__(
        self,
        name: str,
        file_name: str,
        size: tuple[int, int],
        pixels: np.ndarray | None = None,
        path: Path | None = None,
        digest: str | None = None,
    ) -> None:
        self.name = name
        self.file_name = file_name
        self.height, self.width = size
        self._pixels: np.ndarray | None = pixels
        self._path: Path | None = path
        # a file's sha256 is taken when it is first decoded (None until then), an array's now
        self._digest = digest if digest is not None or pixels is None else _pixels_digest(pixels)
        self.state = _State()
        self.region: tuple[int, int, int, int] | None = None  # segment in this part (set_region)
        self.undo: list[_Step] = []  # oldest first
        self.redo: list[_Step] = []

    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            arr = as_rgb_uint8(self._path)
            digest = _pixels_digest(arr) if arr.shape[:2] == (self.height, self.width) else None
            if self._digest is None and digest is not None:
                self._digest = digest  # first decoded: what the session's work belongs to
            if digest is None or digest != self._digest:
                raise ValueError(
                    f"{self._path} changed since the session opened it (now {arr.shape[1]}x"
                    f"{arr.shape[0]} pixels, was {self.width}x{self.height}); its objects belong to "
                    "the old content: save the session, then start a new one."
                )
            self._pixels = arr
        return self._pixels

    @property
    def digest(self) -> str:
        """sha256 of the RGB pixels, as the session first decoded them (decoding them now if
        they never were, then forgetting the pixels again)."""
        if self._digest is None:
            self.pixels()
            self.release()
        return self._digest  # type: ignore[return-value]

    @property
    def digest_known(self) -> bool:
        """Whether ``digest`` costs nothing (the pixels were decoded once)."""
        return self._digest is not None

    def release(self) -> None:
        """Forget the pixels of an image read from a file (reloaded when needed)."""
        if self._path is not None:
            self._pixels = None


# ---------------------------------------------------------------------- the session


class Session:
    """The state of an interactive segmentation of one or more images with SAM.

    Arguments:
      images: one image or a list of them: HxWx3 uint8 RGB arrays (other layouts are converted by
        the rules of ``sam_widgets._images``), PIL images or paths. Names come from file names
        (without extension), else ``"image_0"``, ``"image_1"``, ...; repeated names get ``_2``, ...
      predictor: a ``CachedPredictor`` (or anything with SamPredictor's ``set_image`` and
        ``predict``). A CachedPredictor makes returning to an image cost no encoder pass.
      names: optional names for the images, one per image, unique.
      refine_with_logits: pass the previous low-res logits of the object as ``mask_input`` when its
        prompts change. Off by default: SAM's example notebook does this, but nobody has yet
        measured that it gives better masks.
      max_history: undo steps kept per image.
      max_history_bytes: cap of the undo/redo history of all images together, in bytes (default
        256 MiB); over it the oldest steps (of any image) are dropped. Masks in the history are
        compressed (RLE): a step costs a few KB per object for typical masks, not N*H*W bytes.
    """

    def __init__(
        self,
        images: Any,
        predictor: _Predictor,
        *,
        names: Sequence[str] | None = None,
        refine_with_logits: bool = False,
        max_history: int = 100,
        max_history_bytes: int = MAX_HISTORY_BYTES,
    ) -> None:
        if max_history < 0:
            raise ValueError(f"max_history must be >= 0, got {max_history}.")
        if max_history_bytes < 0:
            raise ValueError(f"max_history_bytes must be >= 0, got {max_history_bytes}.")
        self._slots = _open_images(images, names)
        self.predictor = predictor
        self.refine_with_logits = bool(refine_with_logits)
        #: masks the last ``propose`` found, before those repeating an object were left out
        self.found_last = 0
        self.max_history = int(max_history)
        self.max_history_bytes = int(max_history_bytes)
        self._state_lock = threading.RLock()  # images, objects, history: read-modify-commit
        self._packs: weakref.WeakValueDictionary[int, _Packed | _Held] = weakref.WeakValueDictionary()
        self._held: dict[int, list] = {}  # id(pack) -> [steps holding it, pack]: history_bytes
        self._history_bytes = 0
        self._seq = itertools.count()
        self.click_ms: float | None = None  # ms of the last prediction (decoder + upscaling)
        self._current = 0
        self._callbacks: list[Callable[[str], Any]] = []
        self._lock = threading.RLock()  # the predictor: encoding (worker thread) vs predicting
        # (image index, region encoded or None, predictor.features it set)
        self._encoded: tuple[int, tuple[int, int, int, int] | None, Any] | None = None
        # the last decoder pass without mask input: (its prompts, the _encoded it ran on, result);
        # a click where the hover preview just ran reuses it (see _decode)
        self._decoded: tuple[tuple, Any, tuple] | None = None
        #: whether the last prediction (``click_ms``'s) reused the hover preview's pass: no decoder ran
        self.click_reused = False
        self._pass_reused = False  # whether _decode's last pass was a remembered one

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, images: Any, predictor: _Predictor, **kwargs: Any
    ) -> Session:
        """A new session over ``images`` with the work saved in ``folder`` restored (see ``load``)."""
        session = cls(images, predictor, **kwargs)
        session.load(folder)
        session._clear_history()
        return session

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        n = len(self.objects)
        return (
            f"Session({len(self._slots)} image{'s' if len(self._slots) != 1 else ''}, current "
            f"{self._current} {self.image_name!r}, {n} object{'s' if n != 1 else ''})"
        )

    # ------------------------------------------------------------------ events

    def on_change(self, callback: Callable[[str], Any], remove: bool = False) -> None:
        """Call ``callback(event)`` after every change; ``remove=True`` unregisters it.

        ``event`` is one of ``EVENTS``; one change may send several, in the order of ``EVENTS``.
        """
        if remove:
            self._callbacks = [c for c in self._callbacks if c != callback]  # == : bound methods
        elif callback not in self._callbacks:
            self._callbacks.append(callback)

    def _emit(self, events: Iterable[str]) -> None:
        error: BaseException | None = None
        for event in events:
            for callback in list(self._callbacks):
                try:
                    callback(event)
                except Exception as e:  # one broken view must not keep the others stale
                    error = error or e
        if error is not None:
            raise error

    # ------------------------------------------------------------------ images

    @property
    def current(self) -> int:
        """Index of the image being worked on."""
        return self._current

    @property
    def names(self) -> list[str]:
        """Names of all images, in order."""
        return [s.name for s in self._slots]

    @property
    def image_name(self) -> str:
        return self._slot.name

    @property
    def image(self) -> np.ndarray:
        """The current image, HxWx3 uint8 RGB."""
        return self._slot.pixels()

    def image_at(self, index: int) -> np.ndarray:
        """Image ``index``, HxWx3 uint8 RGB (read from its file if it is a path)."""
        return self._slots[self._check_index(index)].pixels()

    @property
    def width(self) -> int:
        """Width of the current image in pixels."""
        return self._slot.width

    @property
    def height(self) -> int:
        """Height of the current image in pixels."""
        return self._slot.height

    @_locked
    def go(self, index: int) -> None:
        """Make image ``index`` current. Encodes nothing; every image keeps its own objects."""
        index = self._check_index(index)
        if index == self._current:
            return
        old = self._slot
        self._current = index
        old.release()
        self._emit(["image"])

    @_locked
    def next(self) -> bool:
        """Go to the next image; False (and no change) on the last one."""
        if self._current + 1 >= len(self._slots):
            return False
        self.go(self._current + 1)
        return True

    @_locked
    def previous(self) -> bool:
        """Go to the previous image; False (and no change) on the first one."""
        if self._current == 0:
            return False
        self.go(self._current - 1)
        return True

    # ------------------------------------------------------------------ encoding

    @property
    def is_encoded(self) -> bool:
        """Whether the predictor holds the current image's embedding (a click runs no encoder)."""
        return self._holds(self._current)

    def ensure_encoded(self, index: int | None = None) -> None:
        """Make the predictor hold the embedding of image ``index`` (default: the current one).

        Runs the image encoder unless the predictor holds or caches it. Safe to call from a worker
        thread: predictions wait for it.
        """
        index = self._current if index is None else self._check_index(index)
        with self._lock:
            if self._holds(index):
                return
            slot = self._slots[index]
            region = slot.region
            pixels = slot.pixels()
            if region is not None:  # "segment in this view": the region is the image SAM sees
                x0, y0, x1, y1 = region
                pixels = np.ascontiguousarray(pixels[y0:y1, x0:x1])
            self._decoded = None  # a remembered pass is of the embedding being replaced
            self.predictor.set_image(pixels)
            self._encoded = (index, region, getattr(self.predictor, "features", None))

    def _holds(self, index: int) -> bool:
        # Compare the features object itself: anyone else's set_image replaces it, and a
        # CachedPredictor hit restores the very tensor it stored.
        if self._encoded is None or self._encoded[:2] != (index, self._slots[index].region):
            return False
        features = getattr(self.predictor, "features", None)
        return features is not None and features is self._encoded[2]

    # ------------------------------------------------------------------ segment in this view

    @property
    def region(self) -> tuple[int, int, int, int] | None:
        """The part of the current image SAM segments in (``set_region``), or None: all of it."""
        return self._slot.region

    @_locked
    def set_region(self, region: Sequence[float] | None) -> tuple[int, int, int, int] | None:
        """Segment in a part of the current image: ``region`` (X0, Y0, X1, Y1) in image pixels
        (rounded outwards to whole pixels, clipped to the image), or None for the whole image.

        The region is encoded as an image of its own (cached like any image by a CachedPredictor),
        so SAM sees it at up to its full input size (1024 px for the official models): a small
        object in a large image gets many more of SAM's pixels. Prompts and masks stay in pixels
        of the whole image: points and boxes are shifted into the region for SAM, its masks put
        back in place (zero outside the region). Prompts outside the region are refused while it
        is set (``ValueError``): clear it (None) to work on them. Not an undo step; the encoder
        runs at the next prediction (or ``ensure_encoded``). Returns the region set.
        """
        if region is None:
            if self._slot.region is not None:
                self._slot.region = None
                self._emit(["prompts"])
            return None
        try:
            x0, y0, x1, y1 = (float(v) for v in region)
        except (TypeError, ValueError) as e:
            raise ValueError(f"A region is (x0, y0, x1, y1) in image pixels, got {region!r}.") from e
        if not all(np.isfinite((x0, y0, x1, y1))):
            raise ValueError(f"A region's corners must be finite numbers, got {region!r}.")
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        box = (
            max(0, math.floor(x0)),
            max(0, math.floor(y0)),
            min(self.width, math.ceil(x1)),
            min(self.height, math.ceil(y1)),
        )
        if box[2] - box[0] < MIN_REGION_SIDE or box[3] - box[1] < MIN_REGION_SIDE:
            raise ValueError(
                f"The region {box} is smaller than {MIN_REGION_SIDE} pixels each way inside the "
                f"{self.width}x{self.height} image: pick a larger part of it."
            )
        if box == (0, 0, self.width, self.height):
            box = None  # the whole image: nothing to crop
        if box != self._slot.region:
            self._slot.region = box
            self._emit(["prompts"])
        return box

    def _decode(
        self,
        points: Sequence[tuple[float, float]],
        labels: Sequence[int],
        box: tuple[float, float, float, float] | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, LowResGeometry | None]:
        """One decoder pass on the current image (in its region, if set): (masks, scores, low-res
        logits, geometry). Call holding ``_lock`` with the image encoded.

        With a predictor that gives low-res logits alone (a CachedPredictor: ``low_res_geometry``)
        no mask is made: masks None, ``geometry`` where the logits sit (``predict(..., masks=False)``;
        in a region (``set_region``), the region's place in the image: ``LowResGeometry.placed``).
        Otherwise masks NxHxW in pixels of the whole image and geometry None; in a region the
        region's masks are put in place in a full-size mask. In a region the logits are the
        region's, not the image's.

        A CachedPredictor's pass without ``mask_input`` is remembered: the same prompts on the same
        embedding (a click where the hover preview just ran) give the remembered result without
        running the decoder again. The embedding is told by ``_encoded``'s identity, which changes with every
        ``set_image``, a region, another image or model."""
        key = None
        if mask_input is None:
            key = (
                tuple((float(x), float(y)) for x, y in points),
                tuple(int(v) for v in labels),
                None if box is None else tuple(float(v) for v in box),
                bool(multimask),
            )
            memo = self._decoded
            if memo is not None and memo[0] == key and memo[1] is self._encoded:
                self._pass_reused = True
                return memo[2]
        self._pass_reused = False
        result = self._decode_now(points, labels, box, mask_input, multimask)
        # logits only (a CachedPredictor's pass, ~0.8 MB): full-size masks are not kept around
        lazy = result[3] is not None
        self._decoded = (key, self._encoded, result) if key is not None and lazy else None
        return result

    def forget_last_pass(self) -> None:
        """Forget the remembered decoder pass (``_decode``): the next one runs the decoder."""
        with self._lock:
            self._decoded = None

    def _decode_now(
        self,
        points: Sequence[tuple[float, float]],
        labels: Sequence[int],
        box: tuple[float, float, float, float] | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, LowResGeometry | None]:
        region = self._slot.region
        ox, oy = (0.0, 0.0) if region is None else (float(region[0]), float(region[1]))
        if region is not None:
            x0, y0, x1, y1 = region
            outside = [p for p in points if not (x0 <= p[0] <= x1 and y0 <= p[1] <= y1)]
            if box is not None and not (x0 <= box[0] and y0 <= box[1] and box[2] <= x1 and box[3] <= y1):
                outside.append(box[:2])
            if outside:
                raise ValueError(
                    f"A prompt at {outside[0]} lies outside the region being segmented "
                    f"({x0}, {y0})-({x1}, {y1}): start a new object inside it (n), or segment "
                    "the whole image again (v in the widget, set_region(None))."
                )
            mask_input = None  # logits of another frame do not fit this one
        lazy = callable(getattr(self.predictor, "low_res_geometry", None))
        coords = np.asarray(points, dtype=np.float64).reshape(-1, 2) - (ox, oy) if points else None
        masks, scores, logits = self.predictor.predict(
            point_coords=coords,
            point_labels=np.asarray(labels, dtype=np.int64) if points else None,
            box=None if box is None else np.asarray(box, dtype=np.float64) - (ox, oy, ox, oy),
            mask_input=mask_input,
            multimask_output=multimask,
            **({"masks": False} if lazy else {}),
        )
        if lazy:
            geometry = self.predictor.low_res_geometry()
            if region is not None:
                geometry = geometry.placed((x0, y0), (self.height, self.width))
            return None, scores, logits, geometry
        if region is not None:
            full = np.zeros((len(masks), self.height, self.width), dtype=bool)
            full[:, y0:y1, x0:x1] = np.asarray(masks, dtype=bool)
            masks = full
        return masks, scores, logits, None

    # ------------------------------------------------------------------ objects

    @property
    def objects(self) -> tuple[SessionObject, ...]:
        """Objects of the current image, in drawing order."""
        return self._slot.state.objects

    def objects_on(self, index: int) -> tuple[SessionObject, ...]:
        """Objects of image ``index``."""
        return self._slots[self._check_index(index)].state.objects

    @property
    def labels(self) -> list[str]:
        """Labels of the objects of the current image."""
        return [o.label for o in self.objects]

    @property
    def active(self) -> SessionObject | None:
        """The object prompts go to, or None (the next prompt then creates one)."""
        state = self._slot.state
        return None if state.active is None else _find(state, state.active)

    def object(self, label: str) -> SessionObject:
        """The object labelled ``label`` on the current image."""
        return self._get(self._slot.state, label)

    @_locked
    def add_object(self, label: str | None = None) -> SessionObject:
        """Add an object to the current image and make it active.

        ``label`` must be new on this image; by default ``"object N"``. Its colour is the first
        colour of ``viz.PALETTE`` no other object uses (cycling when all are used).
        """
        state = self._slot.state
        label = _new_label(state) if label is None else self._check_new_label(state, label)
        obj = SessionObject(label, _new_color(state))
        self._commit(_State(state.objects + (obj,), label))
        return obj

    @_locked
    def add_mask(self, mask: Any, score: float | None = None, label: str | None = None) -> SessionObject:
        """Adopt a ready mask (e.g. from "everything" mode) as a new, active object. No model run.

        ``mask``: HxW, the current image's size, truthy where the object is. ``score``: its
        predicted IoU if known. The object has no prompts; prompts added later re-segment it from
        those prompts alone. One undo step.
        """
        state, obj = self._mask_object(mask, score, label)
        self._commit(state)
        return obj

    def _mask_object(self, mask: Any, score: float | None, label: str | None) -> tuple[_State, SessionObject]:
        """The state with a new active object holding ``mask`` (checked), and that object."""
        arr = np.asarray(mask)
        if arr.shape != (self.height, self.width):
            raise ValueError(
                f"mask of shape {arr.shape} does not fit the current image ({self.height}, {self.width})."
            )
        if not arr.any():
            raise ValueError("the mask is empty: nothing to adopt.")
        state = self._slot.state
        label = _new_label(state) if label is None else self._check_new_label(state, label)
        candidates = arr.astype(bool)[None].copy()
        candidates.setflags(write=False)
        scores = np.array([1.0 if score is None else score], dtype=np.float32)
        obj = SessionObject(label, _new_color(state), candidates=candidates, scores=scores, chosen=0)
        return _State(state.objects + (obj,), label), obj

    @_locked
    def select(self, label: str | None) -> None:
        """Make ``label`` the active object (None: no object; the next prompt creates one).

        Selecting is not an undo step; undo restores the active object of the restored state.
        """
        state = self._slot.state
        if label is not None:
            self._get(state, label)
        if label == state.active:
            return
        self._slot.state = dataclasses.replace(state, active=label)
        self._emit(["active"])

    @_locked
    def drop_empty(self, keep: str | None = None) -> list[str]:
        """Remove the current image's objects that have no prompt and no mask (but ``keep``); their
        labels. Not an undo step. A view calls it when the user moves on (new object, another
        object or image), so that pressing n several times leaves no empty objects behind."""
        state = self._slot.state
        new = _without_empty(state, keep)
        if new is state:
            return []
        self._slot.state = new
        self._emit(_changes(state, new))
        return [o.label for o in state.objects if o not in new.objects]

    @_locked
    def rename(self, old: str, new: str) -> None:
        """Rename object ``old`` to ``new`` (which must be new on this image)."""
        state = self._slot.state
        obj = self._get(state, old)
        if new == old:
            return
        new = self._check_new_label(state, new)
        objects = tuple(dataclasses.replace(o, label=new) if o is obj else o for o in state.objects)
        self._commit(_State(objects, new if state.active == old else state.active))

    @_locked
    def delete(self, label: str) -> None:
        """Delete an object of the current image; if it was active, no object is active."""
        state = self._slot.state
        obj = self._get(state, label)
        objects = tuple(o for o in state.objects if o is not obj)
        self._commit(_State(objects, None if state.active == label else state.active))

    @_locked
    def clear(self) -> None:
        """Delete every object of the current image (one undo step)."""
        if self._slot.state.objects:
            self._commit(_State())

    # ------------------------------------------------------------------ prompts

    @_locked
    def add_point(self, x: float, y: float, positive: bool = True) -> SessionObject:
        """Add a point to the active object (creating one if none) and predict its mask.

        ``x``, ``y``: pixels of the original image, 0 <= x <= width, 0 <= y <= height.
        ``positive``: True for "part of the object", False for "not part of it".
        Returns the updated object. On any error nothing changes.
        """
        x, y = self._check_point(x, y)
        state, obj = self._active_or_new()
        changed = dataclasses.replace(
            obj, points=obj.points + ((x, y),), point_labels=obj.point_labels + (int(bool(positive)),)
        )
        return self._apply(state, obj, self._predict(changed, obj))

    @_locked
    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> SessionObject:
        """Set the box of the active object (creating one if none) and predict its mask.

        Corners in pixels of the original image, in any order (a drag in any direction); the box
        must lie inside the image and span at least 2 pixels each way (ValueError otherwise: a
        shorter drag is a click). Replaces a previous box. On any error nothing changes.
        """
        box = self._check_box(x0, y0, x1, y1)
        state, obj = self._active_or_new()
        return self._apply(state, obj, self._predict(dataclasses.replace(obj, box=box), obj))

    @_locked
    def clear_box(self) -> bool:
        """Remove the box of the active object; False if it has none."""
        state, obj = self._slot.state, self.active
        if obj is None or obj.box is None:
            return False
        self._apply(state, obj, self._predict(dataclasses.replace(obj, box=None), obj))
        return True

    @_locked
    def remove_last_point(self) -> bool:
        """Remove the last point of the active object and predict again; False if it has none."""
        state, obj = self._slot.state, self.active
        if obj is None or not obj.points:
            return False
        changed = dataclasses.replace(obj, points=obj.points[:-1], point_labels=obj.point_labels[:-1])
        self._apply(state, obj, self._predict(changed, obj))
        return True

    @_locked
    def choose(self, index: int) -> SessionObject:
        """Make candidate ``index`` the mask of the active object (no model run)."""
        obj = self.active
        if obj is None or obj._candidates is None:
            raise ValueError("The active object has no candidate masks yet: add a point or a box first.")
        index = operator.index(index)
        if not 0 <= index < len(obj._candidates):
            n = len(obj._candidates)
            if n == 1:
                why = (
                    "SAM offers three candidates only for a single click with no box; "
                    f"with {_prompt_words(obj)} it gives its one best mask. Undo back to one "
                    "click to choose among three"
                    if obj.has_prompts
                    else "it was adopted or painted, not predicted from one click"
                )
                raise CandidateError(
                    f"There is no mask {index + 1}: {obj.label!r} has 1 mask, not 3 ({why})."
                )
            raise CandidateError(
                f"There is no mask {index + 1}: {obj.label!r} has {n} candidate masks (1 to {n})."
            )
        if index == obj.chosen:
            return obj
        return self._apply(self._slot.state, obj, dataclasses.replace(obj, chosen=index))

    # ------------------------------------------------------------------ brush and eraser

    @_locked
    def paint(
        self, points: Iterable[Sequence[float]], radius: float, *, erase: bool = False
    ) -> SessionObject:
        """Paint a stroke into (``erase=False``: brush) or out of (``erase=True``: eraser) the
        active object's mask. One undo step; no model run.

        ``points``: the stroke's polyline [(x, y), ...] in pixels of the original image (one point
        paints a disc; points past the image's edge are fine, the mask is clipped to the image).
        ``radius``: the brush's radius in image pixels, > 0.

        The stroke is kept with the object (``SessionObject.strokes``) and applied on top of
        whatever SAM predicts for it, now and after later clicks: painted pixels stay in, erased
        pixels stay out, until undone. The brush on no active object starts a new object whose
        mask is the stroke; the eraser needs an object with a mask (``ValueError`` otherwise).
        Bad strokes raise ``StrokeError``. Returns the updated object.
        """
        stroke = stroke_of(points, radius, "erase" if erase else "add")
        state, obj = self._slot.state, self.active
        if erase and (obj is None or not obj.has_mask):
            raise ValueError(
                "Nothing to erase: the active object has no mask yet. Click on an object first "
                "(or pick the brush to paint one)."
            )
        if obj is None:
            state, obj = self._active_or_new()
        fields: dict[str, Any] = {"strokes": obj.strokes + (stroke,)}
        if obj._candidates is None:
            fields.update(self._blank())
        return self._apply(state, obj, dataclasses.replace(obj, **fields))

    # ------------------------------------------------------------------ clicks as a view means them

    @_locked
    def object_at(self, x: float, y: float) -> SessionObject | None:
        """The topmost object of the current image whose mask holds pixel (x, y), or None.

        Asks each mask for that one pixel (``mask_view``): a mask not made at full size yet is
        read from its low-res logits, as the widget draws it (within about a pixel of its edge
        it can differ from ``mask``)."""
        xi, yi = self._pixel(x, y)
        pixel = (xi, yi, xi + 1, yi + 1)
        return next(
            (o for o in reversed(self.objects) if o.has_mask and self._materialize(o, pixel, (1, 1))[0, 0]),
            None,
        )

    @_locked
    def click(self, x: float, y: float, positive: bool = True, *, new_point: bool = False) -> str:
        """A click on the image, with the rules of the widget; returns what it did.

        With ``new_point`` False (a plain click), unless the active object was just made and is
        still empty (then the click is its first point):

        - ``"select"``: a positive click inside another object's mask selects that object;
        - ``"adopt"``: a positive click inside a proposal (``propose``), on no object, adopts it,
          unless that proposal overlaps the active object's mask: then the click refines the
          active object (a point), as it would with no proposals shown;
        - ``"new"``: a positive click far from the active object's mask (outside its bounding box
          grown by ``FAR_MARGIN`` of its longer side, at least ``FAR_MIN_PX``) starts a new object
          there: two things are never merged into one mask by default;
        - ``"point"``: otherwise a point on the active object (a new one if none), as ``add_point``.

        ``new_point=True`` (the widget: alt+click) always adds the point to the active object.
        """
        x, y = self._check_point(x, y)
        active = self.active
        fresh = active is not None and not active.has_prompts and not active.has_mask
        if not new_point and positive and not fresh:
            hit = self.object_at(x, y)
            if hit is not None and (active is None or hit.label != active.label):
                self.select(hit.label)
                return "select"
            index = self.proposal_at(x, y) if hit is None else None
            if index is not None and not _touches(self.proposals[index], active):
                self.adopt(index)
                return "adopt"
            if hit is None and active is not None and active.has_mask and _far(active, x, y):
                self._new_object_with_point(x, y)
                return "new"
        self.add_point(x, y, positive)
        return "point"

    def preview(
        self,
        x: float,
        y: float,
        region: tuple[float, float, float, float] | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray | None:
        """The mask a positive plain click at (x, y) would give (``click``'s rules), changing
        nothing: no object, no history, no event. For a hover preview.

        None where such a click would select another object, where the image is not encoded yet
        (a preview never runs the encoder) or the point is outside the image. A click that would
        adopt a proposal previews that proposal. With ``region`` (x0, y0, x1, y1, image pixels)
        and ``size`` (h, w): the mask over that region at that size (hxw bool), what a view shows,
        made from the low-res logits with a CachedPredictor (``predictor.view_from_low_res``): a
        hover makes no full-size mask. Without them: the full-size HxW bool mask."""
        if (region is None) != (size is None):
            raise ValueError("Give both region and size (or neither, for the full-size mask).")
        if not (0 <= x <= self.width and 0 <= y <= self.height):
            return None
        with self._state_lock:  # a snapshot: the prediction itself runs without the state lock
            index = self._current
            active = self.active
            fresh = active is not None and not active.has_prompts and not active.has_mask
            hit = self.object_at(x, y)
            if hit is not None and (active is None or hit.label != active.label) and not fresh:
                return None
            proposal = self.proposal_at(x, y) if hit is None and not fresh else None
            if proposal is not None and not _touches(self.proposals[proposal], active):
                mask = self.proposals[proposal].mask
                return mask if region is None else _sample(mask, region, size)
            far = hit is None and active is not None and active.has_mask and _far(active, x, y)
            points, labels, box = [(x, y)], [1], None
            if active is not None and not fresh and not far:  # a point added to the active object
                points = list(active.points) + points
                labels = list(active.point_labels) + labels
                box = active.box
        with self._lock:
            if self._current != index or not self._holds(index):
                return None
            try:
                masks, scores, logits, geometry = self._decode(
                    points, labels, box, None, len(points) == 1 and box is None
                )
            except ValueError:  # a prompt outside the region being segmented: no preview
                return None
        best = int(np.argmax(np.asarray(scores).reshape(-1)))
        if geometry is not None:
            if region is None:
                return masks_from_low_res(np.asarray(logits)[best], geometry)[0]
            return view_from_low_res(np.asarray(logits)[best], geometry, region, size)
        mask = np.asarray(masks[best], dtype=bool)
        return mask if region is None else _sample(mask, region, size)

    def _new_object_with_point(self, x: float, y: float) -> SessionObject:
        state = _without_empty(self._slot.state)
        obj = SessionObject(_new_label(state), _new_color(state))
        state = _State(state.objects + (obj,), obj.label)
        changed = dataclasses.replace(obj, points=((x, y),), point_labels=(1,))
        return self._apply(state, obj, self._predict(changed, obj))

    # ------------------------------------------------------------------ "everything" proposals

    @property
    def proposals(self) -> tuple[Proposal, ...]:
        """The current image's "everything" proposals (``propose``), largest first."""
        return self._slot.state.proposals or ()

    def propose(self, **settings: Any) -> tuple[Proposal, ...]:
        """Segment everything in the current image: the masks become ``proposals``. One undo step.

        Runs segment_anything's ``SamAutomaticMaskGenerator`` on this session's predictor (a
        cached embedding is reused) with ``propose_defaults(predictor)``: segment_anything's own
        (points_per_side=32, pred_iou_thresh=0.88, stability_score_thresh=0.95) for the official
        checkpoints, ``MICRO_PROPOSE_DEFAULTS`` for micro; ``settings`` override them (any of the
        generator's arguments). Needs a predictor with a segment_anything ``model`` (a
        CachedPredictor). Masks that repeat an object of the image (IoU >= SAME_AS_OBJECT_IOU) are
        left out. Returns the proposals, largest first; none when no mask passed the thresholds
        (try lower ones).
        """
        from segment_anything import SamAutomaticMaskGenerator
        from segment_anything.modeling import Sam

        model = getattr(self.predictor, "model", None)
        if not isinstance(model, Sam):
            raise TypeError(
                "propose needs a predictor with a segment_anything model (a CachedPredictor or "
                f"SamPredictor); this session's is a {type(self.predictor).__name__}."
            )
        params = {**propose_defaults(self.predictor), **settings}
        slot = self._slot
        pixels = slot.pixels()
        params["points_per_batch"] = points_per_batch(*pixels.shape[:2], params.get("points_per_batch", 64))
        with self._lock:  # the generator drives the predictor itself (the state stays free meanwhile)
            generator = SamAutomaticMaskGenerator(model, **params)
            generator.predictor = self.predictor  # reuse the cached embedding
            found = generator.generate(pixels)
        self.found_last = len(found)
        with self._state_lock:  # commits to the image it started on, even if another is current now
            objects = [o.mask for o in slot.state.objects if o.mask is not None]
            proposals = tuple(
                sorted(
                    (
                        Proposal.of(m["segmentation"], m["predicted_iou"], m["stability_score"])
                        for m in found
                        if not any(_iou(m["segmentation"], mask) >= SAME_AS_OBJECT_IOU for mask in objects)
                    ),
                    key=lambda p: -p.area,
                )
            )
            if proposals or slot.state.proposals:
                self._commit(dataclasses.replace(slot.state, proposals=proposals), slot)
        return proposals

    @_locked
    def proposal_at(self, x: float, y: float) -> int | None:
        """Index of the smallest proposal holding pixel (x, y), or None."""
        xi, yi = self._pixel(x, y)
        hits = [i for i, p in enumerate(self.proposals) if p.mask[yi, xi]]
        return min(hits, key=lambda i: self.proposals[i].area) if hits else None

    @_locked
    def adopt(self, index: int, label: str | None = None) -> SessionObject:
        """Make proposal ``index`` a new, active object (its mask, no prompts). One undo step."""
        proposals = self.proposals
        index = operator.index(index)
        if not 0 <= index < len(proposals):
            raise IndexError(
                f"There is no proposal {index}: image {self.image_name!r} has {len(proposals)}"
                + (" (run propose() first)." if not proposals else f" (0 to {len(proposals) - 1}).")
            )
        p = proposals[index]
        state, obj = self._mask_object(p.mask, p.score, label)
        # The adopted proposal is an object now: no longer offered (undo offers it again).
        self._commit(dataclasses.replace(state, proposals=proposals[:index] + proposals[index + 1 :]))
        return obj

    @_locked
    def clear_proposals(self) -> bool:
        """Stop offering the current image's proposals (one undo step); False if there were none."""
        if not self.proposals:
            return False
        self._commit(dataclasses.replace(self._slot.state, proposals=()))
        return True

    def _pixel(self, x: float, y: float) -> tuple[int, int]:
        x, y = self._check_point(x, y)
        return min(int(x), self.width - 1), min(int(y), self.height - 1)

    # ------------------------------------------------------------------ undo / redo

    @property
    def can_undo(self) -> bool:
        return bool(self._slot.undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._slot.redo)

    @_locked
    def undo(self) -> bool:
        """Undo the last action on the current image; False if there is none. Runs no model."""
        slot = self._slot
        if not slot.undo:
            return False
        old = slot.state
        self._keep(slot.redo, self._freeze(old))
        slot.state = _thaw(self._forget(slot.undo, len(slot.undo) - 1))
        self._trim_history()
        self._emit(_changes(old, slot.state) + ["history"])
        return True

    @_locked
    def redo(self) -> bool:
        """Redo the last undone action on the current image; False if there is none."""
        slot = self._slot
        if not slot.redo:
            return False
        old = slot.state
        self._keep(slot.undo, self._freeze(old))
        slot.state = _thaw(self._forget(slot.redo, len(slot.redo) - 1))
        self._trim_history()
        self._emit(_changes(old, slot.state) + ["history"])
        return True

    @property
    def history_bytes(self) -> int:
        """Bytes the undo/redo history of all images holds (low-res logits, compressed masks,
        prompts; approx.), what several steps share counted once."""
        return self._history_bytes

    # ------------------------------------------------------------------ results

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """Label -> HxW bool mask (read-only) of the current image's objects that have one."""
        return {o.label: o.mask for o in self.objects if o.has_mask}

    @_locked
    def mask_view(
        self,
        label: str | SessionObject,
        region: tuple[float, float, float, float],
        size: tuple[int, int],
    ) -> np.ndarray | None:
        """The mask of object ``label`` (a label of the current image, or a ``SessionObject``) over
        ``region`` (x0, y0, x1, y1, image pixels) at ``size`` (h, w):
        hxw bool, what a view shows; None if it has no mask.

        From the low-res logits when the full-size mask is not made (only the logits under the
        region, resized once to ``size``: a zoomed view costs what a fitted one does), else the
        full-size mask sampled at the centre of each output pixel. The last view of each object
        is kept, so redrawing an unchanged object costs nothing."""
        obj = label if isinstance(label, SessionObject) else self._get(self._slot.state, label)
        return self._materialize(obj, region, size) if obj.has_mask else None

    @property
    def annotations(self) -> list[dict[str, Any]]:
        """All images' work as plain data, one dict per image.

        ``{"image": name, "file_name", "width", "height", "objects": [{"label", "category" (the
        class, ``category_name``), "color", "points"
        ([[x, y], ...] in pixels), "labels" (1/0 per point), "box" ([x0, y0, x1, y1] or None),
        "mask" (HxW bool or None), "score" (float or None)}]}``.
        """
        return [
            {
                "image": s.name,
                "file_name": s.file_name,
                "width": s.width,
                "height": s.height,
                "objects": [
                    {
                        "label": o.label,
                        "category": o.category_name,
                        "color": list(o.color),
                        "points": [list(p) for p in o.points],
                        "labels": list(o.point_labels),
                        "box": None if o.box is None else list(o.box),
                        "mask": o.mask,
                        "score": o.score,
                    }
                    for o in s.state.objects
                ],
            }
            for s in self._slots
        ]

    @_locked
    def to_coco(self, category: Callable[[str], str] | None = None) -> dict[str, Any]:
        """The masks of all images as a COCO instance-segmentation dict (``json.dumps`` works).

        Segmentations are compressed RLE (pycocotools), bbox is [x, y, width, height] in pixels.
        ``category`` maps a label to its category name (default: each object's
        ``category_name``: the class set with ``set_category``, else the label without a
        trailing number, so ``"cat 1"`` and ``"cat 2"`` are one category ``"cat"``). Objects
        without a mask, or with an empty one, are left out. Each annotation also carries its
        ``label`` and SAM's ``score``.
        """
        return _files.coco(self._slots, category)

    def save(
        self,
        folder: str | os.PathLike,
        category: Callable[[str], str] | None = None,
        *,
        overwrite: bool = False,
    ) -> Path:
        """Save all images' work to ``folder``; returns the path of ``annotations.json``.

        Writes one PNG per object mask (``<image>__<label>.png``, 0/255 grayscale, names made
        safe for any file system, long ones shortened with a hash) and ``annotations.json``: the
        COCO dict of ``to_coco`` plus a ``"sam_widgets"`` section with the prompts, all candidates,
        the chosen ones, each image's sha256 and its "everything" proposals (RLE), from which ``load``
        continues the work.

        All or nothing: every file is written into a staging folder first and moved into place
        only when all were written, so a failed save (disk full, a bad name) changes nothing.
        A folder holding the saved work of other images (other names, sizes or content) is
        refused with ``ImageMismatchError``, and one whose ``annotations.json`` Session.save did
        not write with ``AnnotationFileError``, unless ``overwrite=True``. Only mask PNGs an
        earlier save wrote (their sha256 is recorded) are ever replaced or removed: a file of
        yours with the same name is kept and the mask gets another name.
        """
        with self._state_lock:
            return _files.write_folder(folder, self._slots, category, overwrite=overwrite)

    @_locked
    def load(self, folder: str | os.PathLike) -> None:
        """Restore work saved by ``save``: objects, prompts, candidates, chosen masks. No model run.

        Each saved image is matched by name and must have the same size and the same pixels (their
        sha256, recorded by every save since it was added); images of this session
        that the folder does not mention keep their work. Raises ``ImageMismatchError`` if the
        folder belongs to other images, ``AnnotationFileError`` if it is damaged; then nothing
        changes. Loading is one undo step on each image it changes.
        """
        data, path = _files.read_folder(folder)
        states = self._parse_saved(data, path)  # checks everything before anything changes
        for index, proposals in _files.parse_proposals(data, path, self._slots).items():
            found = tuple(Proposal.of(mask, score, stability) for mask, score, stability in proposals)
            states[index] = dataclasses.replace(states.get(index, self._slots[index].state), proposals=found)
        changed = False
        for index, state in states.items():
            slot = self._slots[index]
            if state != slot.state:
                self._push(slot, state)
                changed = changed or index == self._current
        if changed:
            self._emit(["objects", "active", "prompts", "mask", "history"])

    @_locked
    def set_category(self, label: str, category: str | None) -> SessionObject:
        """Set the class of object ``label`` on the current image (None: back to the default rule,
        the label without a trailing number). One undo step; saved by ``save``, used by
        ``to_coco`` and ``export``. Returns the updated object."""
        state = self._slot.state
        obj = self._get(state, label)
        if category is not None:
            if not isinstance(category, str) or not category.strip():
                raise LabelError(
                    f"A class must be a non-empty string (or None for the default rule), got {category!r}."
                )
            category = category.strip()
        if category == obj.category:
            return obj
        new = dataclasses.replace(obj, category=category)
        objects = tuple(new if o is obj else o for o in state.objects)
        self._commit(_State(objects, state.active))
        return new

    def export(
        self,
        folder: str | os.PathLike,
        format: str = "coco",
        *,
        overwrite: bool = False,
        skip_unmasked: bool = False,
    ) -> Path:
        """Write all images and their masks into ``folder`` in a format other tools load.

        ``format``: one of ``EXPORT_FORMATS``: ``"coco"`` (RLE, exact), ``"coco-polygons"``
        (outer outlines, holes filled), ``"yolo"`` (segmentation labels + data.yaml),
        ``"labelme"`` (one JSON per image), ``"cutouts"`` (one RGBA PNG per object); layouts in
        ``sam_widgets.export``. Classes are the objects' ``category_name``. Images are written
        with the labels (files copied, arrays as PNG). Returns ``folder``.

        All or nothing, with the folder rules of ``save``: a folder holding files an export did
        not write is refused (``ExportFolderError``) unless ``overwrite=True``, and no file of
        yours is ever replaced. An object without a mask (or with an empty one) raises
        ``MissingMaskError`` naming it, unless ``skip_unmasked=True`` leaves such objects out.
        """
        _export.check_format(format)
        with self._state_lock:
            images, missing = [], []
            for slot in self._slots:
                objects = []
                for o in slot.state.objects:
                    if not o.has_mask or not o.mask.any():
                        missing.append(f"{o.label!r} on image {slot.name!r}")
                    else:
                        objects.append((o.label, o.category_name, o.mask))
                images.append(
                    _export._Image(slot.name, slot.width, slot.height, objects, slot._path, slot.pixels)
                )
            if missing and not skip_unmasked:
                raise MissingMaskError(
                    f"Nothing exported: {len(missing)} object(s) have no mask: {', '.join(missing[:5])}"
                    f"{', ...' if len(missing) > 5 else ''}. Click on them, delete them, or pass "
                    "skip_unmasked=True to leave them out."
                )
            try:
                for slot in self._slots:
                    slot.pixels()  # a file changed since it was opened is refused here, naming it
                    if slot is not self._slot:
                        slot.release()
                return _export.write(folder, images, format, overwrite=overwrite)
            finally:
                for slot in self._slots:
                    if slot is not self._slot:
                        slot.release()

    # ------------------------------------------------------------------ internals

    @property
    def _slot(self) -> _Slot:
        return self._slots[self._current]

    def _check_index(self, index: int) -> int:
        index = operator.index(index)
        if not 0 <= index < len(self._slots):
            raise IndexError(f"Image index {index} is out of range: there are {len(self._slots)} images.")
        return index

    def _clear_history(self) -> None:
        for slot in self._slots:
            for steps in (slot.undo, slot.redo):
                while steps:
                    self._forget(steps, 0)

    def _get(self, state: _State, label: str) -> SessionObject:
        obj = _find(state, label) if isinstance(label, str) else None
        if obj is None:
            known = ", ".join(repr(o.label) for o in state.objects) or "none"
            raise LabelError(
                f"No object labelled {label!r} on image {self._slot.name!r}; known labels: {known}."
            )
        return obj

    def _check_new_label(self, state: _State, label: str) -> str:
        if not isinstance(label, str) or not label.strip():
            raise LabelError(f"An object label must be a non-empty string, got {label!r}.")
        if _find(state, label) is not None:
            raise LabelError(
                f"Image {self._slot.name!r} already has an object labelled {label!r}; labels are "
                "unique per image: pick another, or rename or delete that object first."
            )
        return label

    def _check_point(self, x: float, y: float) -> tuple[float, float]:
        x, y = float(x), float(y)
        Prompt(points=((x, y),), labels=(1,)).check(self.width, self.height, self.image_name)
        return x, y

    def _check_box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        x0, x1 = sorted((float(x0), float(x1)))
        y0, y1 = sorted((float(y0), float(y1)))
        Prompt(box=(x0, y0, x1, y1)).check(self.width, self.height, self.image_name)
        if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
            raise ValueError(
                f"The box is {x1 - x0:g}x{y1 - y0:g} pixels; a box needs at least {MIN_BOX_SIDE:g} "
                "pixels each way (treat a shorter drag as a click)."
            )
        return (x0, y0, x1, y1)

    def _active_or_new(self) -> tuple[_State, SessionObject]:
        """The state to edit and the active object in it (a new one, in the state, if none)."""
        state = self._slot.state
        obj = self.active
        if obj is None:
            obj = SessionObject(_new_label(state), _new_color(state))
            state = _State(state.objects + (obj,), obj.label)
        return state, obj

    def _apply(self, state: _State, old: SessionObject, new: SessionObject) -> SessionObject:
        objects = tuple(new if o is old else o for o in state.objects)
        self._commit(_State(objects, new.label))
        return new

    def _predict(self, obj: SessionObject, previous: SessionObject) -> SessionObject:
        """``obj`` with the candidates SAM predicts for its prompts (none without prompts).

        With a predictor that gives low-res logits alone (a CachedPredictor: ``low_res_geometry``)
        no mask is made here: the object holds the logits, and masks are made when asked for
        (``_materialize``). Otherwise the predictor's full-size masks are kept."""
        if not obj.has_prompts:
            if obj.strokes:  # painted only: the strokes on an empty mask
                return dataclasses.replace(obj, **self._blank(), logits=None)
            return dataclasses.replace(obj, candidates=None, scores=None, chosen=None, logits=None)
        mask_input = None
        if self.refine_with_logits and previous.logits is not None and previous.chosen is not None:
            mask_input = np.array(previous.logits[previous.chosen][None])  # 1x256x256, writable copy
        # SAM's recommendation: several candidates only when one point leaves the object ambiguous.
        multimask = len(obj.points) == 1 and obj.box is None
        with self._lock:
            self.ensure_encoded()
            t0 = time.perf_counter()
            masks, scores, logits, geometry = self._decode(
                obj.points, obj.point_labels, obj.box, mask_input, multimask
            )
            elapsed_ms = (time.perf_counter() - t0) * 1000
            reused = self._pass_reused  # then the predictor's figure is of a pass not run now
        click_ms = getattr(getattr(self.predictor, "stats", None), "click_ms", None)
        self.click_ms = float(click_ms) if click_ms is not None and not reused else elapsed_ms
        self.click_reused = reused
        if geometry is not None:
            scores = np.array(scores, dtype=np.float32).reshape(-1)
            logits = np.array(logits, dtype=np.float32)
            if tuple(geometry.full_size) != (self.height, self.width) or logits.shape[0] != len(scores):
                raise RuntimeError(
                    f"The predictor holds a {geometry.full_size[1]}x{geometry.full_size[0]} "
                    f"image, not this session's {self.width}x{self.height} one."
                )
            scores.setflags(write=False)
            logits.setflags(write=False)
            return dataclasses.replace(
                obj,
                candidates=_LowRes(logits, geometry),
                scores=scores,
                chosen=int(np.argmax(scores)),
                logits=logits if geometry.image_size is None else None,  # a region's: not a prior
            )
        masks = np.array(masks, dtype=bool)  # NxHxW, our own copy
        scores = np.array(scores, dtype=np.float32).reshape(-1)
        if masks.ndim != 3 or masks.shape[1:] != (self.height, self.width) or len(scores) != len(masks):
            raise RuntimeError(
                f"The predictor returned masks of shape {masks.shape} and {len(scores)} scores for a "
                f"{self.width}x{self.height} image: it does not hold this session's image."
            )
        masks.setflags(write=False)
        scores.setflags(write=False)
        kept_logits = None
        if self.refine_with_logits and self._slot.region is None:  # a region's are not a prior
            kept_logits = np.array(logits, dtype=np.float32)
            kept_logits.setflags(write=False)
        return dataclasses.replace(
            obj, candidates=masks, scores=scores, chosen=int(np.argmax(scores)), logits=kept_logits
        )

    def _blank(self) -> dict[str, Any]:
        """The fields of an object whose mask is its strokes alone: one empty candidate, no score."""
        blank = np.zeros((1, self.height, self.width), dtype=bool)
        blank.setflags(write=False)
        return {"candidates": blank, "scores": None, "chosen": 0}

    def _commit(self, state: _State, slot: _Slot | None = None) -> None:
        """Make ``state`` the state of ``slot`` (default: the current image) as one undo step,
        and tell the views when it is the current image. Call holding ``_state_lock``."""
        slot = self._slot if slot is None else slot
        old = slot.state
        self._push(slot, state)
        if slot is self._slot:
            self._emit(_changes(old, state) + ["history"])

    def _push(self, slot: _Slot, state: _State) -> None:
        if state.proposals is None:  # a change to objects keeps the proposals shown
            state = dataclasses.replace(state, proposals=slot.state.proposals)
        self._keep(slot.undo, self._freeze(slot.state))
        while len(slot.undo) > self.max_history:
            self._forget(slot.undo, 0)
        while slot.redo:
            self._forget(slot.redo, 0)
        slot.state = state
        self._trim_history()

    def _freeze(self, state: _State) -> _Step:
        """``state`` as a history entry, masks packed (each candidate stack once per session):
        low-res logits as they are (``_Held``), full-size masks as RLE (``_Packed``)."""
        objects, nbytes = [], 256
        for o in state.objects:
            packed, held = None, o._candidates
            if held is not None:
                packed = self._packs.get(id(held))
                if packed is None or not packed.matches(held):
                    packed = _Held(held) if isinstance(held, _LowRes) else _Packed(held)
                    self._packs[id(held)] = packed
            if o.logits is not None and not isinstance(held, _LowRes):  # refining: kept beside masks
                nbytes += o.logits.nbytes
            objects.append((dataclasses.replace(o, candidates=None), packed))
            nbytes += 256 + 16 * len(o.points) + sum(64 + 16 * len(k.points) for k in o.strokes)
        return _Step(tuple(objects), state.active, nbytes, next(self._seq), state.proposals)

    def _keep(self, steps: list[_Step], step: _Step) -> None:
        """Append ``step`` to an undo or redo list, counting its bytes (each pack once)."""
        steps.append(step)
        self._history_bytes += step.nbytes
        for _, pack in step.objects:
            if pack is not None:
                entry = self._held.setdefault(id(pack), [0, pack])
                entry[0] += 1
                if entry[0] == 1:
                    self._history_bytes += pack.nbytes

    def _forget(self, steps: list[_Step], index: int) -> _Step:
        """Remove step ``index`` of an undo or redo list, and its bytes (packs no step holds)."""
        step = steps.pop(index)
        self._history_bytes -= step.nbytes
        for _, pack in step.objects:
            if pack is not None:
                entry = self._held[id(pack)]
                entry[0] -= 1
                if entry[0] == 0:
                    del self._held[id(pack)]
                    self._history_bytes -= pack.nbytes
        return step

    def _trim_history(self) -> None:
        """Drop the oldest undo steps of any image (then redo steps) while over the byte cap."""
        while self._history_bytes > self.max_history_bytes:
            with_undo = [s for s in self._slots if s.undo]
            if with_undo:
                slot = min(with_undo, key=lambda s: s.undo[0].seq)
                self._forget(slot.undo, 0)
                continue
            with_redo = [s for s in self._slots if s.redo]
            if not with_redo:
                break
            slot = min(with_redo, key=lambda s: s.redo[0].seq)  # redo[0]: the furthest away
            self._forget(slot.redo, 0)

    # ------------------------------------------------------------------ masks made when asked for

    @staticmethod
    def _materialize(
        obj: SessionObject,
        region: tuple[float, float, float, float] | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """THE place an object's mask is made (its chosen candidate; call with ``obj.has_mask``).

        Without ``region`` and ``size``: the full-size HxW mask (read-only), made once and kept
        with the object's candidates. With them: the mask over ``region`` (x0, y0, x1, y1 in image
        pixels) at ``size`` (h, w), what a view shows (``Session.mask_view``): from the low-res
        logits when the full-size mask is not made yet and the image is larger than the view
        (``predictor.view_from_low_res``), else sampled from the full-size mask (made if the image
        is no larger than the view: then exact at no extra cost); the last view is kept.
        Anything drawn on top of the predicted mask (e.g. brush strokes kept per object) belongs
        here, so that every reader (views, ``masks``, save, export, undo) sees it.
        """
        if obj.strokes:
            return Session._painted(obj, region, size)
        held, index = obj._candidates, obj.chosen
        if region is None and size is None:
            if not isinstance(held, _LowRes):
                return held[index]
            full = held._full.get(index)
            if full is None:
                full = held._stack[index] if held._stack is not None else None
            if full is None:
                full = masks_from_low_res(held.logits[index], held.geometry)[0]
                full.setflags(write=False)
            held._full[index] = full
            return full
        if region is None or size is None:
            raise ValueError("Give both region and size (or neither, for the full-size mask).")
        key = (index, tuple(float(v) for v in region), tuple(int(v) for v in size))
        if isinstance(held, _LowRes):
            if held._view is not None and held._view[0] == key:
                return held._view[1]
            H, W = held.geometry.full_size
            small = held.geometry.image_size is None and H * W <= 2 * key[2][0] * key[2][1]
            if index not in held._full and small:
                Session._materialize(obj)  # an image no larger than the view: exact, as cheap
            if index in held._full:
                out = _sample(held._full[index], *key[1:])
            else:
                out = view_from_low_res(held.logits[index], held.geometry, *key[1:])
            out.setflags(write=False)
            if key[2][0] * key[2][1] > 1:  # a view, not one pixel asked for (object_at): kept
                held._view = (key, out)
            return out
        return _sample(held[index], *key[1:])

    @staticmethod
    def _painted(
        obj: SessionObject,
        region: tuple[float, float, float, float] | None,
        size: tuple[int, int] | None,
    ) -> np.ndarray:
        """``_materialize`` of an object with strokes: the predicted mask (full-size, or the view's)
        with the strokes applied on top, in order. The full-size one is kept with the object
        (``mask`` is cached); a view has its strokes drawn at the view's scale (pixel centres of
        the view), so a view of a large image still makes no full-size mask. The last view is
        kept with the object (its predicted part with the candidates, as without strokes)."""
        bare = dataclasses.replace(obj, strokes=())
        if region is None and size is None:
            out = apply_strokes(Session._materialize(bare), obj.strokes)
            out.setflags(write=False)
            return out
        if region is None or size is None:
            raise ValueError("Give both region and size (or neither, for the full-size mask).")
        key = (tuple(float(v) for v in region), tuple(int(v) for v in size))
        kept = obj.__dict__.get("_view")
        if kept is not None and kept[0] == key:
            return kept[1]
        if "mask" in obj.__dict__:  # the full-size painted mask is made: sample it (exact)
            out = _sample(obj.mask, *key)
        else:
            (x0, y0, x1, y1), (h, w) = key
            predicted = Session._materialize(bare, region, size)
            out = apply_strokes(predicted, obj.strokes, (x0, y0), (w / (x1 - x0), h / (y1 - y0)))
        out.setflags(write=False)
        if key[1][0] * key[1][1] > 1:  # a view, not one pixel asked for (object_at): kept
            object.__setattr__(obj, "_view", (key, out))  # a cache, not a field (like _bbox)
        return out

    @staticmethod
    def _materialize_all(held: _LowRes) -> np.ndarray:
        """All full-size candidates (NxHxW bool, read-only) of low-res ones, made once and kept."""
        if held._stack is None:
            stack = masks_from_low_res(held.logits, held.geometry)
            for i, full in held._full.items():  # keep what was handed out already
                stack[i] = full
            stack.setflags(write=False)
            held._stack = stack
        return held._stack

    def _parse_saved(self, data: Any, path: Path) -> dict[int, _State]:
        saved = _files.parse_images(
            data, path, [(x.name, x.width, x.height, _files._digest_of(x)) for x in self._slots]
        )
        return {
            i: _State(tuple(SessionObject(**fields) for fields in objects), active)
            for i, (objects, active) in saved.items()
        }


# ---------------------------------------------------------------------- helpers


def _thaw(step: _Step) -> _State:
    """The ``_State`` a history entry holds (masks decoded, or the very arrays while alive)."""
    objects = tuple(
        o if packed is None else dataclasses.replace(o, candidates=packed.array())
        for o, packed in step.objects
    )
    return _State(objects, step.active, step.proposals)


def propose_defaults(predictor: Any) -> dict[str, Any]:
    """``Session.propose``'s settings for ``predictor``'s model (or a model name, as ``load_sam``
    takes it): MICRO_PROPOSE_DEFAULTS for the bundled micro model, else segment_anything's own
    (PROPOSE_DEFAULTS). ``sam-widgets annotate`` uses the same."""
    name = predictor if isinstance(predictor, str) else record_of(getattr(predictor, "model", None)).name
    return dict(MICRO_PROPOSE_DEFAULTS if name == "micro" else PROPOSE_DEFAULTS)


def points_per_batch(height: int, width: int, wanted: int = 64) -> int:
    """How many points "everything" decodes per call on an image of this size: ``wanted`` (the
    generator's ``points_per_batch``, 64 by default), fewer on large images. segment_anything's
    generator brings each batch's 3 masks per point back to the image's size as float32 logits,
    so a batch costs 12 bytes per pixel per point and its temporaries as much again: 64 points on
    a 3000x2000 image held ~10 GB. The batch is cut to keep the logits within
    EVERYTHING_BATCH_BYTES; the masks found are the same (only how many points go per call changes)."""
    per_point = 3 * 4 * int(height) * int(width)
    return max(1, min(int(wanted), EVERYTHING_BATCH_BYTES // max(per_point, 1)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _touches(proposal: Proposal, active: SessionObject | None) -> bool:
    """Does ``proposal`` overlap the active object's mask (a click there refines the object)?

    Without making the active object's full-size mask: the two bounding boxes first, then both
    masks over their intersection at no more than TOUCH_GRID pixels a side (a view of the active
    object from its low-res logits, ``Session._materialize``)."""
    if active is None or not active.has_mask:
        return False
    box = active.mask_bbox
    if box is None:
        return False
    x0, y0 = max(proposal.bbox[0], box[0]), max(proposal.bbox[1], box[1])
    x1, y1 = min(proposal.bbox[2], box[2]), min(proposal.bbox[3], box[3])
    if x1 <= x0 or y1 <= y0:
        return False
    region = (float(x0), float(y0), float(x1), float(y1))
    size = (min(y1 - y0, TOUCH_GRID), min(x1 - x0, TOUCH_GRID))
    mine = Session._materialize(active, region, size)
    return bool((_sample(proposal.mask, region, size) & mine).any())


def _sample(mask: np.ndarray, region: tuple, size: tuple) -> np.ndarray:
    """``mask`` over ``region`` (x0, y0, x1, y1) at ``size`` (h, w): the pixel under each centre."""
    x0, y0, x1, y1 = region
    h, w = size
    H, W = mask.shape
    cols = np.clip(np.floor(x0 + (np.arange(w) + 0.5) * ((x1 - x0) / w)), 0, W - 1).astype(np.intp)
    rows = np.clip(np.floor(y0 + (np.arange(h) + 0.5) * ((y1 - y0) / h)), 0, H - 1).astype(np.intp)
    return mask[np.ix_(rows, cols)]


def _far(obj: SessionObject, x: float, y: float) -> bool:
    """Is (x, y) outside ``obj``'s mask's bounding box grown by FAR_MARGIN (see Session.click)?"""
    box = obj.mask_bbox
    if box is None:
        return False
    x0, y0, x1, y1 = box
    margin = max(FAR_MARGIN * max(x1 - x0, y1 - y0), FAR_MIN_PX)
    return not (x0 - margin <= x <= x1 + margin and y0 - margin <= y <= y1 + margin)


def _prompt_words(obj: SessionObject) -> str:
    """ "2 points and a box": an object's prompts in words."""
    n = len(obj.points)
    words = [f"{n} point{'s' if n != 1 else ''}"] if n else []
    return " and ".join(words + (["a box"] if obj.box is not None else []))


def _find(state: _State, label: str) -> SessionObject | None:
    return next((o for o in state.objects if o.label == label), None)


def _new_label(state: _State) -> str:
    taken = {o.label for o in state.objects}
    n = len(state.objects) + 1
    while f"object {n}" in taken:
        n += 1
    return f"object {n}"


def _new_color(state: _State) -> tuple[int, int, int]:
    used = {o.color for o in state.objects}
    colors = [tuple(int(v) for v in c) for c in PALETTE]
    free = [c for c in colors if c not in used]
    return free[0] if free else colors[len(state.objects) % len(colors)]  # type: ignore[return-value]


def _changes(old: _State, new: _State) -> list[str]:
    """The events that tell a view what differs between two states of one image."""
    events = []
    if [(o.label, o.color, o.category) for o in old.objects] != [
        (o.label, o.color, o.category) for o in new.objects
    ]:
        events.append("objects")
    if old.active != new.active:
        events.append("active")

    # Keyed by what is drawn (colour and content), so renaming or adding an empty object is
    # no "prompts" or "mask" change. Both states are alive here: id() of arrays cannot repeat.
    def prompts(state: _State) -> list:
        return [(o.color, o.points, o.point_labels, o.box) for o in state.objects if o.has_prompts]

    def masks(state: _State) -> list:
        return [(o.color, id(o._candidates), o.chosen, o.strokes) for o in state.objects if o.has_mask]

    if prompts(old) != prompts(new):
        events.append("prompts")
    if masks(old) != masks(new):
        events.append("mask")
    if (old.proposals or ()) is not (new.proposals or ()) and (old.proposals or new.proposals):
        events.append("proposals")
    return events


def _without_empty(state: _State, keep: str | None = None) -> _State:
    """``state`` without its objects that have no prompt and no mask (but ``keep``)."""
    objects = tuple(o for o in state.objects if o.has_prompts or o.has_mask or o.label == keep)
    if len(objects) == len(state.objects):
        return state
    labels = {o.label for o in objects}
    active = state.active if state.active in labels else None
    return dataclasses.replace(state, objects=objects, active=active)


def _open_images(images: Any, names: Sequence[str] | None) -> list[_Slot]:
    single = isinstance(images, (np.ndarray, str, os.PathLike)) or _is_pil(images)
    items = [images] if single else list(images)
    if not items:
        raise ValueError("A session needs at least one image; got an empty list.")
    if names is not None:
        names = list(names)
        if len(names) != len(items):
            raise ValueError(f"{len(names)} names for {len(items)} images: give one name per image.")
        if not all(isinstance(n, str) and n.strip() for n in names) or len(set(names)) != len(names):
            raise ValueError(f"Image names must be unique non-empty strings, got {names}.")
    slots = []
    for i, item in enumerate(items):
        try:
            slot = _open_image(item, i)
        except (TypeError, ValueError, FileNotFoundError) as e:
            raise type(e)(f"Image {i}: {e}") from e
        if names is not None:
            slot.name = names[i]
        slots.append(slot)
    taken: set[str] = set()
    for slot in slots:
        slot.name = _files.unique_name(slot.name, taken, sep="_")
        slot.file_name = slot.file_name or slot.name  # an array has no file: its name stands in
    return slots


def _open_image(item: Any, index: int) -> _Slot:
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if index == 0:  # the first image is shown at once: decode it now (a broken file fails here)
            pixels = as_rgb_uint8(path)
            slot = _Slot(path.stem, path.name, pixels.shape[:2], path=path, digest=_pixels_digest(pixels))
            slot._pixels = pixels
            return slot
        # The others: only the header (missing, not an image, too large or thin fail here, naming
        # the file); pixels are decoded and hashed when the image is first shown, encoded or saved.
        return _Slot(path.stem, path.name, _displayed_size(path), path=path)
    filename = getattr(item, "filename", "") if _is_pil(item) else ""
    pixels = as_rgb_uint8(item)
    name = Path(filename).stem if filename else f"image_{index}"
    return _Slot(name, Path(filename).name, pixels.shape[:2], pixels=pixels)


def _displayed_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as ``as_rgb_uint8`` gives it (EXIF orientation applied), from its
    header: nothing is decoded."""
    with open_image(path) as im:
        width, height = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation
        except Exception:  # a damaged EXIF block: read_image keeps the pixels as stored too
            orientation = 1
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _pixels_digest(pixels: np.ndarray) -> str:
    """sha256 of an image's RGB pixels (after EXIF rotation): its identity in saved folders."""
    h = hashlib.sha256(repr(pixels.shape).encode())
    h.update(memoryview(np.ascontiguousarray(pixels)).cast("B"))
    return h.hexdigest()
