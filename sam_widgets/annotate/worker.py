"""One model, one image at a time: the work both runners (local and Ray) share.

``Annotator(settings)`` loads the model once; ``annotate(key, image, prompts)`` returns the
image's record (a JSON-ready dict, written by ``output.OutputFolder``). With prompts: the image
is encoded once and all boxes go through the decoder in batched calls (as the session's
``set_box``: one mask per box, ``multimask_output=False``); prompts with points run one call each
(the session's rule: three candidates for a single point, the best kept). Without prompts:
"everything", segment_anything's ``SamAutomaticMaskGenerator`` with the widget's settings for the
model (``session.propose_defaults``: micro's own, segment_anything's for the others), its batch of
points cut on large images to bound memory (``session.points_per_batch``).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..formats import segmentation
from ..record import record_of
from .prompts import Detection, check_prompt

__all__ = ["Settings", "Annotator", "load_image", "failed_record", "everything_defaults"]

BOX_BATCH = 64  # boxes per decoder call


@dataclass
class Settings:
    """What decides the masks of a run (recorded in the manifest; a resume must match it).

    ``model``/``weights``/``device``/``precision`` as ``load_sam``; ``mode`` ``"everything"`` or
    ``"prompts"``; ``everything``: ``SamAutomaticMaskGenerator`` arguments (None: the widget's
    for ``model``, ``everything_defaults``); ``format``: ``"rle"``
    or ``"polygons"`` (``sam_widgets.formats``); ``threads``: torch threads per worker (None:
    torch's default).
    """

    model: str = "micro"
    weights: str = "pretrained"
    device: str = "auto"
    precision: str = "auto"
    mode: str = "everything"
    everything: dict[str, Any] | None = None
    format: str = "rle"
    polygon_tolerance: float = 0.0
    threads: int | None = None

    def __post_init__(self) -> None:
        self.everything = {**everything_defaults(self.model), **(self.everything or {})}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def everything_defaults(model: str) -> dict[str, Any]:
    """The widget's "everything" settings for ``model`` (a ``load_sam`` name): its thresholds and
    points a side (``session.propose_defaults``) and 64 points per decoder call."""
    from ..session import propose_defaults

    return {**propose_defaults(model), "points_per_batch": 64}


def load_image(path: str) -> np.ndarray:
    """HxWx3 uint8 RGB of an image file by the package's rules (``sam_widgets._images``)."""
    from .._images import as_rgb_uint8

    return as_rgb_uint8(path)


def failed_record(key: str, error: BaseException, stage: str) -> dict[str, Any]:
    """The record of an image that could not be annotated: the reason, no annotations."""
    return {
        "file_name": key,
        "status": "failed",
        "reason": f"{stage}: {type(error).__name__}: {error}",
        "annotations": [],
        "skipped_prompts": [],
    }


class Annotator:
    """Holds one model and annotates images with it (``annotate``)."""

    def __init__(self, settings: Settings | dict[str, Any]) -> None:
        import torch

        from ..models import load_sam, precision_label
        from ..predictor import CachedPredictor

        self.settings = settings if isinstance(settings, Settings) else Settings(**settings)
        s = self.settings
        if s.threads:
            torch.set_num_threads(int(s.threads))
        self.sam = load_sam(
            s.model, weights=s.weights, device=s.device, precision=s.precision, progress=False
        )
        self.predictor = CachedPredictor(self.sam, cache_bytes=0)
        self.info = {
            "model": record_of(self.sam).name if record_of(self.sam).weights != "unknown" else s.model,
            "device": str(self.sam.device),
            "precision": precision_label(self.sam),
            "torch_threads": torch.get_num_threads(),
        }
        self._generator = None

    # ------------------------------------------------------------------ one image

    def annotate(self, key: str, image: np.ndarray, prompts: list[Detection] | None = None) -> dict[str, Any]:
        """The record of one image: ``{"file_name", "width", "height", "status": "done",
        "annotations": [...], "skipped_prompts": [...], "seconds", "worker"}``; a failure inside the
        model gives a ``failed_record`` instead of raising (one bad image never ends a run)."""
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        try:
            if self.settings.mode == "everything":
                found, skipped = self._everything(image), []
            else:
                found, skipped = self._prompted(image, prompts or [])
            annotations = [self._annotation(m) for m in found]
        except Exception as e:  # noqa: BLE001 - recorded per image, the run goes on
            rec = failed_record(key, e, "model")
            rec["traceback"] = traceback.format_exc(limit=4)
            rec.update(width=w, height=h)
            return rec
        return {
            "file_name": key,
            "width": int(w),
            "height": int(h),
            "status": "done",
            "reason": None,
            "annotations": annotations,
            "skipped_prompts": skipped,
            "seconds": round(time.perf_counter() - t0, 4),
            "worker": self.info,
        }

    def _annotation(self, m: dict[str, Any]) -> dict[str, Any]:
        seg, area, bbox = segmentation(
            m.pop("mask"), self.settings.format, tolerance=self.settings.polygon_tolerance
        )
        return {"segmentation": seg, "area": area, "bbox": bbox, "iscrowd": 0, **m}

    def _everything(self, image: np.ndarray) -> list[dict[str, Any]]:
        from segment_anything import SamAutomaticMaskGenerator

        from ..session import points_per_batch

        params = dict(self.settings.everything or {})
        if self._generator is None:
            self._generator = SamAutomaticMaskGenerator(self.sam, **params)
            self._generator.predictor = self.predictor  # the checked, fast-path predictor
        # fewer points per call on a large image: the same masks in bounded memory
        self._generator.points_per_batch = points_per_batch(
            *image.shape[:2], params.get("points_per_batch", 64)
        )
        found = self._generator.generate(image)
        found.sort(key=lambda m: (-int(m["area"]), m["bbox"]))  # as the widget: largest first
        return [
            {
                "mask": m["segmentation"],
                "category_id": 1,
                "score": float(m["predicted_iou"]),
                "predicted_iou": float(m["predicted_iou"]),
                "stability_score": float(m["stability_score"]),
                "prompt": {"points": [[float(v) for v in p] for p in m["point_coords"]]},
            }
            for m in found
            if m["area"] > 0
        ]

    def _prompted(
        self, image: np.ndarray, prompts: list[Detection]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        h, w = image.shape[:2]
        ok: list[tuple[int, Detection]] = []
        skipped = []
        for i, p in enumerate(prompts):
            checked, reason = check_prompt(p, w, h)
            if checked is None:
                skipped.append({"index": i, "prompt": p.as_dict(), "reason": reason})
            else:
                ok.append((i, checked))
        if not ok:
            return [], skipped
        self.predictor.set_image(image)  # once per image, whatever the number of prompts
        results: dict[int, tuple[np.ndarray, float]] = {}
        boxes = [(i, p) for i, p in ok if not p.points]
        for start in range(0, len(boxes), BOX_BATCH):
            chunk = boxes[start : start + BOX_BATCH]
            masks, scores = self._decode_boxes(np.array([p.box for _, p in chunk], dtype=np.float64))
            for (i, _), m, s in zip(chunk, masks, scores, strict=True):
                results[i] = (m, s)
        for i, p in ok:
            if p.points:  # the session's rule: several candidates only for one point alone
                masks, scores, _ = self.predictor.predict(
                    point_coords=np.asarray(p.points, dtype=np.float64),
                    point_labels=np.asarray(p.point_labels, dtype=np.int64),
                    box=None if p.box is None else np.asarray(p.box, dtype=np.float64),
                    multimask_output=len(p.points) == 1 and p.box is None,
                )
                k = int(np.argmax(scores))
                results[i] = (np.asarray(masks[k], bool), float(scores[k]))
        found = []
        for i, p in ok:
            mask, score = results[i]
            if not mask.any():
                skipped.append({"index": i, "prompt": p.as_dict(), "reason": "SAM returned an empty mask"})
                continue
            prompt = {"box": None if p.box is None else [float(v) for v in p.box]}
            if p.points:
                prompt.update(points=[list(q) for q in p.points], point_labels=list(p.point_labels))
            found.append(
                {
                    "mask": mask,
                    "category_id": p.category_id,
                    "score": score,
                    "predicted_iou": score,
                    "detector_score": p.score,
                    "prompt": prompt,
                }
            )
        return found, skipped

    def _decode_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """Masks (NxHxW bool) and scores of N XYXY pixel boxes, one batched decoder call."""
        import torch

        pred = self.predictor
        transformed = pred.transform.apply_boxes(boxes, pred.original_size)  # as SamPredictor.predict
        box_t = torch.as_tensor(transformed, dtype=torch.float, device=pred.device)
        masks, iou, _ = pred.predict_torch(None, None, boxes=box_t, multimask_output=False)
        return masks[:, 0].cpu().numpy(), [float(v) for v in iou[:, 0].cpu()]
