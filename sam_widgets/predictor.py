"""CachedPredictor: SamPredictor's API, one image-encoder pass per (model, image).

The image encoder holds nearly all of SAM's compute (vit_b: ~970 GFLOP per image, ~13 s on a
2-core CPU); a click only runs the prompt encoder and mask decoder. ``CachedPredictor`` keeps the
embeddings of recent images in an LRU cache bounded in bytes (and optionally on disk), so
returning to an image, or setting the same image again, runs no encoder at all.

It subclasses ``segment_anything.SamPredictor``: code written for it works unchanged, and at fp32
masks, scores and logits are those of the stock predictor (tested bit for bit). On a model with
the fast paths on (``load_sam(..., fast=True)``, the default with ``precision="auto"``) the
decoder runs ``sam_widgets.fast``'s modules. ``predict(..., out_size=(h, w))`` returns the masks
at the size a view shows them, and ``upscale(logits)`` turns kept low-res logits into full-size
masks later, equal to those ``predict`` would have returned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from . import fast as _fast
from ._images import as_rgb_uint8
from ._io import cuda_sync
from .embedding_cache import Embedding, EmbeddingCache, WeightsFingerprint, digest, weights_version
from .prompts import Prompt
from .record import record_of

__all__ = [
    "CachedPredictor",
    "PredictorStats",
    "LowResGeometry",
    "as_predictor",
    "masks_from_low_res",
    "view_from_low_res",
    "box_from_low_res",
]

MB = 1024**2

#: A decoder whose image embedding holds at most this many values (C x h x w) is "small": on the
#: cpu its click runs on one torch thread (micro: 128 x 16 x 16; the official models: 256 x 64 x 64).
SMALL_DECODER_VALUES = 64 * 1024


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads (None: as they are), then restore them."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class PredictorStats:
    """What the predictor did lately. Times in milliseconds, sizes in bytes."""

    encoder_ms: float | None = None  # last image encoding that ran the encoder
    click_ms: float | None = None  # last predict(): prompt encoder + decoder + masks at their size
    last_set_image_ms: float | None = None  # last set_image, hit or miss (hashing included)
    last_was_hit: bool | None = None
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    cache_entries: int = 0
    cache_bytes: int = 0
    device: str = ""
    precision: str = ""  # precision_label of the model: "fp32", "fp32-fast", "bf16-fast", ...

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CachedPredictor(SamPredictor):
    """SamPredictor with an embedding cache and input checking.

    Arguments:
      sam_model: a ``segment_anything.modeling.Sam`` (e.g. from ``load_sam``).
      cache_bytes: memory budget of the in-memory LRU cache of embeddings, in bytes (an official
        model's embedding is 4 MiB in fp32; the default keeps 64 of them).
      cache_dir: optional folder for an on-disk cache that outlives the process. Entries are keyed
        by a fingerprint of the weights, the precision and the device type, so an entry from
        another model or precision is never used.
      click_threads: torch threads for ``predict`` (the thread count is restored afterwards).
        None (default): 1 for a small decoder on the fast paths on the cpu (``SMALL_DECODER_VALUES``:
        micro as ``load_sam`` gives it), torch's setting otherwise (a stock model's fp32 results then
        stay those of segment_anything's predictor bit for bit: the thread count can change the
        last bits of a sum). A click of a small model is too little work to share: on a 2-core
        machine that also runs the browser and the Jupyter server, two threads wait for each other
        at every operation (measured in BENCHMARKS.md: micro's click in the browser 44 ms with
        2 threads, 21 ms with 1).
    """

    def __init__(
        self,
        sam_model: Sam,
        *,
        cache_bytes: int = 256 * MB,
        cache_dir: str | Path | None = None,
        click_threads: int | None = None,
    ) -> None:
        if not isinstance(sam_model, Sam):
            raise TypeError(
                f"CachedPredictor takes a segment_anything Sam (e.g. load_sam('vit_b')), "
                f"got {type(sam_model).__name__}."
            )
        if click_threads is not None and (not isinstance(click_threads, int) or click_threads < 1):
            raise ValueError(f"click_threads must be None or a positive int, got {click_threads!r}.")
        self.click_threads = click_threads
        self._lock = threading.RLock()
        self.cache = EmbeddingCache(cache_bytes, cache_dir)
        self._fingerprint = WeightsFingerprint(sam_model)
        self._out_size: tuple[int, int] | None = None  # predict() -> predict_torch(), under the lock
        self._no_masks = False  # predict(masks=False) -> predict_torch(), under the lock
        super().__init__(sam_model)
        self.stats = PredictorStats(device=str(sam_model.device), precision=record_of(sam_model).label)

    # ------------------------------------------------------------------ image setting

    def set_image(self, image: Any, image_format: str = "RGB") -> None:
        """Set the image to segment, running the encoder only if this image is not cached.

        Arguments:
          image: HxWx3 uint8 RGB array (the format), or grayscale, RGBA, 16-bit, float in
            [0, 1], a PIL image or a path: converted by the rules of ``sam_widgets._images``.
          image_format: ``"RGB"`` or ``"BGR"``, as in SamPredictor.
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}.")
        t0 = time.perf_counter()
        image = as_rgb_uint8(image)
        if image_format != self.model.image_format:
            image = np.ascontiguousarray(image[..., ::-1])
        key = self._key(digest(image))
        with self._lock:
            if self._use_cached(key, t0):
                return
            # Same steps as SamPredictor.set_image, so fp32 results are identical.
            input_image = self.transform.apply_image(image)
            input_torch = torch.as_tensor(input_image, device=self.device)
            input_torch = input_torch.permute(2, 0, 1).contiguous()[None, :, :, :]
            self._encode(input_torch, image.shape[:2], key, t0)

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """SamPredictor.set_torch_image, cached by the tensor's content and the original size."""
        t0 = time.perf_counter()
        data = transformed_image.detach().cpu().contiguous().numpy()
        key = self._key(digest(data, extra=tuple(original_image_size)))
        with self._lock:
            if self._use_cached(key, t0):
                return
            self._encode(transformed_image, original_image_size, key, t0)

    def _encode(self, input_torch: torch.Tensor, original_size, key: tuple, t0: float) -> None:
        self.stats.precision = key[2]  # the fast paths may have been switched since
        self.stats.misses += 1
        self.stats.last_was_hit = False
        te = time.perf_counter()
        SamPredictor.set_torch_image(self, input_torch, tuple(original_size))
        self._prepare_decoder()
        _sync(self.device)
        self.stats.encoder_ms = (time.perf_counter() - te) * 1000
        entry = Embedding(self.features, tuple(self.original_size), tuple(self.input_size))
        self.cache.put(key, self._disk_key(key), entry)
        self._update_cache_stats()
        self.stats.last_set_image_ms = (time.perf_counter() - t0) * 1000

    def _prepare_decoder(self) -> None:
        """With the fast paths on, make the decoder's per-image part now (~0.8 GFLOP for SAM,
        a few ms) rather than in the first click."""
        decoder = self.model.mask_decoder
        if isinstance(decoder, _fast.FastMaskDecoder):
            with torch.no_grad():
                pe = self.model.prompt_encoder
                decoder.prepare(self.features, pe.get_dense_pe(), pe(points=None, boxes=None, masks=None)[1])

    def _use_cached(self, key: tuple, t0: float) -> bool:
        entry, from_disk = self.cache.get(key, self._disk_key(key), self.device)
        if entry is None:
            return False
        self.stats.disk_hits += from_disk
        self._update_cache_stats()
        self.reset_image()
        self.features = entry.features
        self.original_size = entry.original_size
        self.input_size = entry.input_size
        self.is_image_set = True
        self.stats.hits += 1
        self.stats.last_was_hit = True
        self.stats.last_set_image_ms = (time.perf_counter() - t0) * 1000
        return True

    def is_cached(self, image: Any, image_format: str = "RGB") -> bool:
        """Whether ``set_image(image)`` would run no encoder (in memory or on disk)."""
        image = as_rgb_uint8(image)
        if image_format != self.model.image_format:
            image = np.ascontiguousarray(image[..., ::-1])
        key = self._key(digest(image))
        with self._lock:
            return self.cache.contains(key, self._disk_key(key))

    def precompute(self, image: Any, image_format: str = "RGB") -> bool:
        """Encode ``image`` into the cache without making it the current image; False if cached.

        For encoding ahead (the next image of a list) while clicks go on: the encoder pass runs
        outside the predictor's lock, so ``predict`` on the current image is never queued behind
        it (the two share the CPU). A later ``set_image(image)`` is then a cache hit.
        """
        image = as_rgb_uint8(image)
        if image_format != self.model.image_format:
            image = np.ascontiguousarray(image[..., ::-1])
        key = self._key(digest(image))
        with self._lock:
            if self.cache.contains(key, self._disk_key(key)):
                return False
        input_torch = torch.as_tensor(self.transform.apply_image(image), device=self.device)
        input_torch = input_torch.permute(2, 0, 1).contiguous()[None, :, :, :]
        with torch.no_grad():  # the steps of SamPredictor.set_torch_image, into an entry of our own
            features = self.model.image_encoder(self.model.preprocess(input_torch))
        _sync(self.device)
        entry = Embedding(features, tuple(image.shape[:2]), tuple(input_torch.shape[-2:]))
        with self._lock:
            self.cache.put(key, self._disk_key(key), entry)
            self._update_cache_stats()
        return True

    def clear_cache(self) -> None:
        """Forget every in-memory embedding (the disk cache is left alone)."""
        with self._lock:
            self.cache.clear()
            self._update_cache_stats()

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        out_size: tuple[int, int] | None = None,
        masks: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SamPredictor.predict with its inputs checked (see SamPredictor for the arguments).

        Points are (X, Y) in pixels of the original image and must lie inside it; labels are 1
        (positive) or 0 (negative); a box is XYXY in pixels inside the image.

        ``out_size=(h, w)``: return the masks (or logits) at that size, e.g. the size a view shows
        the image at, resized in one step from the low-res logits instead of to 1024x1024 and then
        to the image (see ``sam_widgets.fast.upscale_masks``: pixels near an edge can differ from
        the full-size mask resized). Scores and low-res logits are unchanged; ``upscale(logits)``
        gives the full-size masks later. Without ``out_size`` the masks are the image's size.

        ``masks=False``: make no masks (the first array is Nx0x0): only the scores and the low-res
        logits, for a caller that makes masks later from them (``low_res_geometry``,
        ``masks_from_low_res``, ``view_from_low_res``): a click then costs the decoder alone.
        """
        with self._lock:
            if not self.is_image_set:
                raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
            h, w = self.original_size
            prompt = Prompt.from_arrays(point_coords, point_labels, box)
            if prompt is not None:
                kw = prompt.check(w, h).predict_kwargs()
                point_coords, point_labels, box = kw["point_coords"], kw["point_labels"], kw["box"]
            if mask_input is not None:
                side = 4 * self.model.prompt_encoder.image_embedding_size[0]
                mask_input = np.asarray(mask_input, dtype=np.float32)
                if mask_input.shape != (1, side, side):
                    raise ValueError(
                        f"mask_input must have shape (1, {side}, {side}) (a low-res logits map "
                        f"returned by predict), got {mask_input.shape}."
                    )
            if out_size is not None:
                out_size = _check_size(out_size)
            t0 = time.perf_counter()
            self._out_size = out_size  # read by predict_torch, which SamPredictor.predict calls
            self._no_masks = not masks
            try:
                with _torch_threads(self.threads_for_click()):
                    out = super().predict(
                        point_coords, point_labels, box, mask_input, multimask_output, return_logits
                    )
            finally:
                self._out_size = None
                self._no_masks = False
            self.stats.click_ms = (time.perf_counter() - t0) * 1000
            return out

    def threads_for_click(self) -> int | None:
        """The torch thread count ``predict`` runs with (None: the caller's); see ``click_threads``."""
        if self.click_threads is not None:
            return self.click_threads
        if self.device.type != "cpu" or not _fast.is_fast(self.model):
            return None  # stock code keeps the caller's threads: its fp32 results stay stock's, bit for bit
        pe = self.model.prompt_encoder
        values = pe.embed_dim * pe.image_embedding_size[0] * pe.image_embedding_size[1]
        return 1 if values <= SMALL_DECODER_VALUES else None

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        out_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SamPredictor.predict_torch (batched, pre-transformed prompts), under the lock.

        On a stock model without ``out_size`` this is segment_anything's code. With the fast
        paths on, the full-size masks come from ``sam_widgets.fast.postprocess_masks`` (stock's
        upscaling bit for bit, without the rows and columns stock crops away); with ``out_size``
        from ``sam_widgets.fast.upscale_masks``.
        """
        with self._lock:
            if out_size is None:
                out_size = self._out_size
            if out_size is None and not self._no_masks and not _fast.is_fast(self.model):
                return super().predict_torch(
                    point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
                )
            if not self.is_image_set:
                raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
            with torch.no_grad():  # as SamPredictor.predict_torch
                points = (point_coords, point_labels) if point_coords is not None else None
                sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
                low_res, iou = self.model.mask_decoder(
                    image_embeddings=self.features,
                    image_pe=self.model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=multimask_output,
                )
                if self._no_masks:
                    masks = low_res[..., :0, :0]
                else:
                    masks = self._resize(low_res, out_size)
                if not return_logits:
                    masks = masks > self.model.mask_threshold
                return masks, iou, low_res

    def upscale(
        self, low_res_logits: np.ndarray, out_size: tuple[int, int] | None = None, return_logits: bool = False
    ) -> np.ndarray:
        """Masks from low-res logits that ``predict`` returned for the image now set.

        ``low_res_logits``: Cx256x256 (or 256x256) float. Without ``out_size`` the result is
        CxHxW at the image's size, equal bit for bit to the masks ``predict`` returned with those
        logits; with ``out_size=(h, w)`` as ``predict(..., out_size=...)`` gives them. Lets a view
        show small masks at once and make the full-size one only when it is asked for.
        """
        with self._lock:
            if not self.is_image_set:
                raise RuntimeError("An image must be set with .set_image(...) before upscaling masks.")
            logits = torch.as_tensor(np.asarray(low_res_logits, dtype=np.float32), device=self.device)
            if logits.ndim == 2:
                logits = logits[None]
            if logits.ndim != 3:
                raise ValueError(f"low_res_logits must be Cx256x256 (or 256x256), got shape {logits.shape}.")
            with torch.no_grad():
                out = self._resize(logits[None], None if out_size is None else _check_size(out_size))[0]
            if not return_logits:
                out = out > self.model.mask_threshold
            return out.detach().cpu().numpy()

    def low_res_geometry(self) -> LowResGeometry:
        """Where the low-res logits of the image now set sit on it (``masks_from_low_res``)."""
        with self._lock:
            if not self.is_image_set:
                raise RuntimeError("An image must be set with .set_image(...) first.")
            return LowResGeometry(
                tuple(int(v) for v in self.original_size),  # type: ignore[arg-type]
                tuple(int(v) for v in self.input_size),  # type: ignore[arg-type]
                int(self.model.image_encoder.img_size),
                float(self.model.mask_threshold),
            )

    def _resize(self, low_res: torch.Tensor, out_size: tuple[int, int] | None) -> torch.Tensor:
        img_size = self.model.image_encoder.img_size
        if out_size is not None:
            return _fast.upscale_masks(low_res, self.input_size, img_size, out_size)
        if _fast.is_fast(self.model):
            return _fast.postprocess_masks(low_res, self.input_size, self.original_size, img_size)
        return self.model.postprocess_masks(low_res, self.input_size, self.original_size)

    # ------------------------------------------------------------------ cache keys

    @property
    def cache_bytes(self) -> int:
        """The memory budget of the embedding cache, in bytes."""
        return self.cache.max_bytes

    @property
    def cache_dir(self) -> Path | None:
        """The folder of the on-disk embedding cache, or None."""
        return self.cache.folder

    def _key(self, image_digest: str) -> tuple:
        """In-memory key: this model object at its current weights version (see embedding_cache)."""
        label = record_of(self.model).label
        return (id(self.model), weights_version(self.model), label, str(self.device), image_digest)

    def _disk_key(self, key: tuple) -> str:
        _model, _version, label, _device, image_digest = key
        if self.cache.folder is None:
            return ""  # no disk cache: no weights to fingerprint
        return repr((self._fingerprint(), label, self.device.type, image_digest))

    def _update_cache_stats(self) -> None:
        self.stats.cache_entries = self.cache.entries
        self.stats.cache_bytes = self.cache.nbytes


# ---------------------------------------------------------------------- masks from low-res logits


@dataclass(frozen=True)
class LowResGeometry:
    """Where SAM's low-res logits (Cx256x256) sit on an image: what makes masks of them later.

    original_size: (H, W) of the image in pixels. input_size: (h, w) of the image resized inside
    the encoder's square (SamPredictor's ``input_size``). img_size: the square's side (SAM: 1024).
    threshold: the logit above which a pixel is in the mask (``Sam.mask_threshold``).
    offset, image_size: where the image SAM saw lies in a larger one, when it is a part of it
    (``Session.set_region``): its top-left corner (x, y) and the whole image's (H, W). Masks made
    from such logits are in pixels of the whole image, False outside the part. None: the image
    SAM saw is the whole image.
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    img_size: int
    threshold: float
    offset: tuple[int, int] = (0, 0)
    image_size: tuple[int, int] | None = None

    @property
    def full_size(self) -> tuple[int, int]:
        """(H, W) of the masks made from these logits: the whole image's."""
        return self.original_size if self.image_size is None else self.image_size

    def placed(self, offset: tuple[int, int], image_size: tuple[int, int]) -> LowResGeometry:
        """This geometry, for an image that is the part at ``offset`` (x, y) of an ``image_size``
        (H, W) one."""
        x, y = (int(v) for v in offset)
        H, W = (int(v) for v in image_size)
        h, w = self.original_size
        if x < 0 or y < 0 or x + w > W or y + h > H:
            raise ValueError(f"A {w}x{h} part at ({x}, {y}) does not fit in a {W}x{H} image.")
        return dataclasses.replace(self, offset=(x, y), image_size=(H, W))

    def valid(self, low: int) -> tuple[float, float, int, int]:
        """(src_h, src_w): low-res pixels the image covers; (rows, cols) a resize reads (one more:
        the neighbour the last pixels blend with), as ``fast.upscale_masks``."""
        src_h = self.input_size[0] * low / self.img_size
        src_w = self.input_size[1] * low / self.img_size
        return src_h, src_w, min(low, math.ceil(src_h) + 1), min(low, math.ceil(src_w) + 1)


def masks_from_low_res(logits: np.ndarray, geometry: LowResGeometry) -> np.ndarray:
    """Full-size masks from low-res logits: CxHxW bool, on the cpu.

    Equal bit for bit to the masks ``CachedPredictor.predict`` returns with those logits on the
    cpu (stock's resize chain, ``fast.postprocess_masks``), whatever image the predictor holds now.
    """
    t = torch.from_numpy(np.array(logits, dtype=np.float32))  # a copy: the logits are read-only
    if t.ndim == 2:
        t = t[None]
    with torch.no_grad():
        up = _fast.postprocess_masks(t[None], geometry.input_size, geometry.original_size, geometry.img_size)
    masks = (up[0] > geometry.threshold).numpy()
    if geometry.image_size is None:
        return masks
    (x, y), (h, w) = geometry.offset, geometry.original_size
    full = np.zeros((len(masks), *geometry.image_size), dtype=bool)
    full[:, y : y + h, x : x + w] = masks
    return full


def view_from_low_res(
    logits: np.ndarray,
    geometry: LowResGeometry,
    region: tuple[float, float, float, float],
    size: tuple[int, int],
) -> np.ndarray:
    """The mask of one region of the image at a view's size, from one low-res logits map.

    ``logits``: 256x256 (one candidate). ``region``: (x0, y0, x1, y1) in image pixels; ``size``:
    (h, w) of the result, e.g. a canvas. Each result pixel samples the logits bilinearly at the
    centre of the image area it covers, with ``fast.upscale_masks``'s geometry: only the low-res
    rows and columns under the region are read, so a zoomed view costs what a fitted one does
    (h x w pixels). Near a mask's edge a pixel can differ from the full-size mask (one resize,
    not stock's two). Returns hxw bool.
    """
    logits = np.asarray(logits, dtype=np.float32)
    low = logits.shape[-1]
    H, W = geometry.original_size
    src_h, src_w, rows, cols = geometry.valid(low)
    ox, oy = geometry.offset
    x0, y0, x1, y1 = (float(v) for v in region)
    x0, y0, x1, y1 = x0 - ox, y0 - oy, x1 - ox, y1 - oy  # in pixels of the image SAM saw
    oh, ow = (int(v) for v in size)

    def axis(a0: float, a1: float, n: int, full: int, src: float, last: int):
        centre = a0 + (np.arange(n, dtype=np.float64) + 0.5) * ((a1 - a0) / n)
        pos = np.clip(centre * (src / full) - 0.5, 0.0, last - 1)
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, last - 1)
        return i0, i1, (pos - i0).astype(np.float32)

    r0, r1, wr = axis(y0, y1, oh, H, src_h, rows)
    c0, c1, wc = axis(x0, x1, ow, W, src_w, cols)
    lo, hi = int(min(c0.min(), c1.min())), int(max(c0.max(), c1.max())) + 1
    band = logits[:, lo:hi]
    by_rows = band[r0] * (1 - wr)[:, None] + band[r1] * wr[:, None]  # oh x (hi - lo)
    c0, c1 = c0 - lo, c1 - lo
    out = by_rows[:, c0] * (1 - wc) + by_rows[:, c1] * wc
    out = out > geometry.threshold
    if geometry.image_size is not None:  # a part of the image: nothing outside it
        ys = y0 + (np.arange(oh) + 0.5) * ((y1 - y0) / oh)
        xs = x0 + (np.arange(ow) + 0.5) * ((x1 - x0) / ow)
        out &= ((ys >= 0) & (ys < H))[:, None] & ((xs >= 0) & (xs < W))[None, :]
    return out


def box_from_low_res(logits: np.ndarray, geometry: LowResGeometry) -> tuple[int, int, int, int] | None:
    """(X0, Y0, X1, Y1) in image pixels (X1, Y1 exclusive) holding the mask of one low-res logits
    map: the image area of the low-res pixels above the threshold, so it holds the full-size mask
    but for pixels within about one low-res pixel (1/256 of the image's longer side). None: empty."""
    logits = np.asarray(logits)
    H, W = geometry.original_size
    src_h, src_w, rows, cols = geometry.valid(logits.shape[-1])
    on = logits[:rows, :cols] > geometry.threshold
    r, c = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    if not len(r):
        return None

    def edge(i: float, full: int, src: float) -> int:
        return int(np.clip(round(i * full / src), 0, full))

    # pixel i of the low-res map blends into image pixels up to half a pixel beyond its own area
    ox, oy = geometry.offset
    return (
        ox + edge(c[0] - 0.5, W, src_w),
        oy + edge(r[0] - 0.5, H, src_h),
        ox + edge(c[-1] + 1.5, W, src_w),
        oy + edge(r[-1] + 1.5, H, src_h),
    )


# ---------------------------------------------------------------------- helpers


def as_predictor(model: Any = "micro", *, device: str = "auto", precision: str = "auto") -> Any:
    """The predictor a view runs: a ``CachedPredictor`` from a model name (``load_sam``), from a
    segment_anything ``Sam``, or any object with ``set_image`` and ``predict`` passed through."""
    from .models import load_sam

    if isinstance(model, str):
        return CachedPredictor(load_sam(model, device=device, precision=precision))
    if isinstance(model, Sam):
        return CachedPredictor(model)
    if hasattr(model, "set_image") and hasattr(model, "predict"):
        return model
    raise TypeError(
        f"model must be a name for load_sam ('micro', 'vit_b', ...), a segment_anything Sam or a "
        f"CachedPredictor; got {type(model).__name__}."
    )


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"out_size must be (height, width) in pixels, got {size!r}.") from None
    if h < 1 or w < 1:
        raise ValueError(f"out_size must be (height, width) of at least 1 pixel each, got {size!r}.")
    return h, w


def _sync(device: torch.device) -> None:
    cuda_sync(device)
