"""What sam-widgets knows about a loaded model, in one frozen record: ``record_of(sam)``.

``load_sam`` attaches a ``ModelRecord`` to the ``Sam`` it returns (name, weights and where they
came from, precision, whether the fast paths are on and why that path was chosen); every other
module reads it through ``record_of``, which gives the record of a plain ``Sam`` (one built
without ``load_sam``) when none is attached. The record is replaced, never changed in place:
``fast.enable_fast`` and ``models``' precision step call ``update``.

No torch import: a record is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["ModelRecord", "record_of", "attach", "update"]

#: The one attribute of a ``Sam`` that sam-widgets sets.
ATTRIBUTE = "sam_widgets_record"


@dataclass(frozen=True)
class ModelRecord:
    """Facts about a loaded model that its modules do not show.

    name: ``vit_b`` | ``vit_l`` | ``vit_h`` | ``micro`` (a key of ``architectures.CONFIGS``), or
      ``"custom"`` for a model not loaded by ``load_sam``.
    weights: ``"pretrained"`` (trained: masks are results), ``"random"`` (random init: timing
      only) or ``"unknown"``.
    source: where the weights came from (a file, ``"bundled"``, ``"random init"``), in words.
    fingerprint: the sha256 of the official checkpoint loaded, or None; ``fingerprint_version``
      the encoder's weights version (sum of ``Tensor._version``) when it was attached: while the
      weights are at that version the fingerprint identifies them without hashing.
    precision: ``"fp32"`` | ``"bf16"`` | ``"fp16"``: what the image encoder runs in.
    fast: whether ``sam_widgets.fast``'s paths are on.
    reason: why load_sam chose this precision, in words.
    """

    name: str = "custom"
    weights: str = "unknown"
    source: str = "set by the caller"
    fingerprint: str | None = None
    fingerprint_version: int = 0
    precision: str = "fp32"
    fast: bool = False
    reason: str = "set by the caller"

    @property
    def label(self) -> str:
        """What the model runs, in a word: the precision, ``-fast`` when the fast paths are on
        (``"fp32"``, ``"fp32-fast"``, ``"bf16-fast"``). Embeddings of different labels differ."""
        return f"{self.precision}-fast" if self.fast else self.precision


_PLAIN = ModelRecord()


def record_of(sam: Any) -> ModelRecord:
    """The record attached to ``sam``, or that of a plain model (name ``"custom"``, fp32, stock)."""
    return getattr(sam, ATTRIBUTE, None) or _PLAIN


def attach(sam: Any, record: ModelRecord) -> None:
    """Make ``record`` the record of ``sam`` (``load_sam`` does, once per model)."""
    setattr(sam, ATTRIBUTE, record)


def update(sam: Any, **changes: Any) -> ModelRecord:
    """Attach ``record_of(sam)`` with ``changes`` to ``sam`` and return it."""
    record = replace(record_of(sam), **changes)
    attach(sam, record)
    return record
