"""Which weights the bench loads for a model: pretrained when available offline, else random or none."""

from __future__ import annotations

__all__ = ["resolve_weights"]


def resolve_weights(name: str, weights: str = "auto", random_weights: bool = False) -> str | None:
    """The weights to load for ``name``: ``"pretrained"``, ``"random"``, or None (skip it).

    ``weights="auto"``: pretrained when available offline (micro's bundled file, an official
    checkpoint in the cache); otherwise random weights if ``random_weights`` (timing only), else
    None. ``"pretrained"`` and ``"random"`` are returned as asked.
    """
    if weights not in ("auto", "pretrained", "random"):
        raise ValueError(f"weights={weights!r}: use 'auto', 'pretrained' or 'random'.")
    if weights != "auto":
        return weights
    if name == "micro":
        from ..micro import WEIGHTS_PATH

        available = WEIGHTS_PATH.is_file()
    else:
        from .. import checkpoints

        available = name in checkpoints.cached_models()
    if available:
        return "pretrained"
    return "random" if random_weights else None


def _skip_message(name: str) -> str:
    if name == "micro":
        return "micro: its weights file is missing from this install (reinstall sam-widgets)"
    return (
        f"{name}: no checkpoint in the cache; `sam-widgets download {name}` fetches it "
        "(or --random-weights: its architecture with random weights, timing only, no IoU)"
    )
