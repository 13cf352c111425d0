"""Image embeddings kept for reuse: an LRU in memory bounded in bytes, optionally a folder on disk.

``EmbeddingCache`` stores an ``Embedding`` (the encoder's 1xCxhxw output and the two sizes
SamPredictor keeps with it) under a key, and ``CachedPredictor`` decides the key:

- in memory: this model object at its weights version, its precision label, its device and the
  image's digest (cheap: no weights are hashed);
- on disk: ``disk_key``, a string naming the weights by ``WeightsFingerprint`` instead of the
  object, so an entry outlives the process and is never served to another model or precision.

A disk entry is written atomically and read with ``weights_only=True``; a damaged or foreign one is
recomputed and overwritten, never trusted.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import atomic_write
from .record import record_of

__all__ = ["Embedding", "EmbeddingCache", "WeightsFingerprint", "weights_version", "digest"]


@dataclass
class Embedding:
    """One image's embedding: ``features`` 1xCxhxw on the model's device, and the sizes (h, w)
    of the original image and of its resized input (SamPredictor's ``original_size``,
    ``input_size``)."""

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.features.element_size() * self.features.numel()


def digest(arr: np.ndarray, extra: tuple = ()) -> str:
    """A 128-bit hash of an array's shape, dtype, bytes and ``extra``: the image part of a key."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((arr.shape, str(arr.dtype), extra)).encode())
    h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


def weights_version(model: Any) -> int:
    """The image encoder's weights version: ``Tensor._version`` counts in-place writes, so an
    optimizer step changes it and embeddings of a model trained in place are never served stale."""
    return sum(p._version for p in model.image_encoder.parameters())


class WeightsFingerprint:
    """The identity of a model's encoder weights across processes, computed once per version.

    An official checkpoint loaded by ``load_sam`` carries its sha256 (``record_of(model)``), used
    while the weights are at the version they were loaded at; other weights are hashed.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._known: tuple[int, str] | None = None  # (weights version, digest)

    def __call__(self) -> str:
        version = weights_version(self.model)
        if self._known is not None and self._known[0] == version:
            return self._known[1]
        record = record_of(self.model)
        if record.fingerprint is not None and version == record.fingerprint_version:
            value = record.fingerprint
        else:
            h = hashlib.blake2b(digest_size=16)
            for name, t in self.model.image_encoder.state_dict().items():
                h.update(name.encode())
                h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
            value = h.hexdigest()
        self._known = (version, value)
        return value


class EmbeddingCache:
    """Embeddings by key: at most ``max_bytes`` in memory (least recently used dropped first),
    and every one in ``folder`` when one is given. Not thread-safe: the caller holds a lock."""

    def __init__(self, max_bytes: int, folder: str | Path | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {max_bytes}.")
        self.max_bytes = int(max_bytes)
        self.folder = Path(folder).expanduser() if folder is not None else None
        self._memory: OrderedDict[tuple, Embedding] = OrderedDict()

    @property
    def entries(self) -> int:
        return len(self._memory)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._memory.values())

    def get(self, key: tuple, disk_key: str, device: torch.device) -> tuple[Embedding | None, bool]:
        """(embedding, from_disk): from memory, else from disk (then kept in memory), else None."""
        entry = self._memory.get(key)
        if entry is not None:
            self._memory.move_to_end(key)
            return entry, False
        entry = self._load(disk_key, device)
        if entry is not None:
            self._remember(key, entry)
        return entry, entry is not None

    def put(self, key: tuple, disk_key: str, entry: Embedding) -> None:
        self._remember(key, entry)
        self._save(disk_key, entry)

    def contains(self, key: tuple, disk_key: str) -> bool:
        path = self._path(disk_key)
        return key in self._memory or (path is not None and path.is_file())

    def clear(self) -> None:
        """Forget every in-memory embedding (the disk folder is left alone)."""
        self._memory.clear()

    def _remember(self, key: tuple, entry: Embedding) -> None:
        if entry.nbytes <= self.max_bytes:
            self._memory[key] = entry
            self._memory.move_to_end(key)
            while self.nbytes > self.max_bytes:
                self._memory.popitem(last=False)

    def _path(self, disk_key: str) -> Path | None:
        if self.folder is None:
            return None
        name = hashlib.blake2b(disk_key.encode(), digest_size=20)
        return self.folder / f"{name.hexdigest()}.pt"

    def _save(self, disk_key: str, entry: Embedding) -> None:
        path = self._path(disk_key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "key": disk_key,
            "features": entry.features.detach().cpu(),
            "original_size": list(entry.original_size),
            "input_size": list(entry.input_size),
        }
        # a reader sees the old file or the new one; 0600: embeddings of the user's own images
        atomic_write(path, lambda f: torch.save(data, f), private=True)

    def _load(self, disk_key: str, device: torch.device) -> Embedding | None:
        path = self._path(disk_key)
        if path is None or not path.is_file():
            return None
        try:
            data = torch.load(path, map_location=device, weights_only=True)
            if data["key"] != disk_key:
                return None  # a hash collision or a stale format: recompute
            return Embedding(data["features"], tuple(data["original_size"]), tuple(data["input_size"]))
        except Exception:
            return None  # a damaged entry is recomputed and overwritten, never trusted
