"""Compare SAM checkpoints on one image: the same prompts, masks, candidate scores, measured time.

The logic of notebook 03, where a test can reach it:

- ``CHELSEA_PROMPTS``: ``sam_widgets.prompts.Prompt``s (points (X, Y), boxes XYXY, in pixels) for
  skimage's chelsea;
- ``checkpoint_status``: whether an official checkpoint is in the cache here, and if not the one
  line that says how to fetch it;
- ``run_model``: one model on the image and every prompt through ``CachedPredictor``: encoder
  time per repeat (``measure.encoder_ms``), click time per prompt, RAM added by encoding
  (``measure.PeakRSS``), and masks and candidate scores only if the weights are trained;
- ``compare``: all of that for vit_b, vit_l, vit_h, mobile_sam and micro, each model loaded, measured and
  freed in turn. A checkpoint that is not here gives architecture facts and, if asked,
  random-weight timing (the real architecture, so the real speed); never a mask;
- ``plot_masks``, ``plot_candidates``, ``plot_encode_times``, ``table``: the figures and the table.

A ``ModelResult`` refuses masks from anything but trained weights: a random-weight mask is noise
and must never be shown as a result.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import checkpoints
from .architectures import OFFICIAL
from .errors import ChecksumError
from .measure import PeakRSS, encoder_ms, sync_for
from .models import MEASURED_PEAK_GIB, available_ram_bytes
from .prompts import Prompt
from .record import record_of

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
    from segment_anything.modeling import Sam

    from .anatomy import Anatomy

__all__ = [
    "ALL_MODELS",
    "DOWNLOAD_SIZE",
    "ENCODE_PEAK_RAM",
    "CHELSEA_PROMPTS",
    "ModelResult",
    "parse_models",
    "checkpoint_status",
    "not_downloaded_line",
    "Architecture",
    "architecture",
    "RANDOM_LABEL",
    "run_model",
    "compare",
    "table",
    "agreement",
    "plot_prompts",
    "plot_masks",
    "plot_candidates",
    "plot_encode_times",
]

GiB = 1024**3
ALL_MODELS = (*OFFICIAL, "mobile_sam", "micro")
#: Download sizes for people ("375 MB"), from ``checkpoints.REGISTRY`` (``CheckpointInfo.download_size``).
DOWNLOAD_SIZE = {name: info.download_size for name, info in checkpoints.REGISTRY.items()}
#: Peak RAM of one image encoding and a click on the CPU, fp32, stock attention (the most any path
#: needs), in bytes: a fresh process's whole peak, measured by scripts/measure_memory.py
#: (``models.MEASURED_PEAK_GIB``). ``compare`` skips a model that would not fit in the memory
#: free here; the fast paths need much less, so these are bounds.
ENCODE_PEAK_RAM = {name: int(peaks["fp32-stock"] * GiB) for name, peaks in MEASURED_PEAK_GIB.items()} | {
    "micro": 0
}
#: Shown on every random-weight result: what it is good for, and what it is not.
RANDOM_LABEL = "random weights: timing only, no masks"


# ----------------------------------------------------------------------------- prompts


#: For ``skimage.data.chelsea()`` (451x300): an ambiguous click, a click with a negative one,
#: and a box.
CHELSEA_PROMPTS = (
    Prompt("one click: left eye", points=((170, 115),), labels=(1,)),
    Prompt("click + negative click", points=((255, 185), (420, 190)), labels=(1, 0)),
    Prompt("box: right eye", box=(300, 105, 370, 170)),
)


# ----------------------------------------------------------------------------- what is here


def parse_models(text: str, allowed: Sequence[str] = OFFICIAL) -> tuple[str, ...]:
    """A list of model names from an environment variable's text.

    ``"vit_b,vit_l"`` -> ("vit_b", "vit_l"); ``"all"`` or ``"1"`` -> every allowed name;
    ``"none"``, ``"0"`` or ``""`` -> (). Order follows ``allowed``.
    """
    text = text.strip().lower()
    if text in ("all", "1", "yes", "true"):
        return tuple(allowed)
    if text in ("", "none", "0", "no", "false"):
        return ()
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}: use {', '.join(allowed)}, 'all' or 'none'.")
    return tuple(n for n in allowed if n in names)


def not_downloaded_line(name: str) -> str:
    """The one line a notebook prints for a checkpoint that is not in the cache."""
    return f"{name}: not downloaded here - `sam-widgets download {name}` fetches it ({DOWNLOAD_SIZE[name]})"


def checkpoint_status(name: str) -> tuple[Path | None, str]:
    """(path, line): the verified cached checkpoint of ``name`` and a line saying so, or (None, why not).

    Never downloads. A cached file with the wrong sha256 is reported, not used.
    """
    try:
        path = checkpoints.cached_path(name)
    except ChecksumError:
        target = checkpoints.cache_dir() / checkpoints.REGISTRY[name].filename
        return None, (
            f"{name}: the cached file fails its sha256 check - delete {target} and run "
            f"`sam-widgets download {name}`"
        )
    if path is None:
        return None, not_downloaded_line(name)
    return path, f"{name}: downloaded, sha256 verified ({path})"


# ----------------------------------------------------------------------------- running


@dataclass
class ModelResult:
    """One model on one image. Times in milliseconds, memory in bytes.

    weights: ``"pretrained"`` (trained: masks are results), ``"random"`` (the real architecture
    at random init: timing only) or ``"none"`` (not run: architecture facts only).
    masks: prompt name -> 3xHxW bool candidates; scores: prompt name -> 3 predicted IoUs.
    Both are empty unless ``weights == "pretrained"``.
    """

    name: str
    weights: str
    note: str
    anatomy: Anatomy
    encoder_params: int
    device: str = ""
    precision: str = ""
    encode_ms: list[float] = field(default_factory=list)
    click_ms: list[float] = field(default_factory=list)
    weights_bytes: int | None = None  # the parameters in memory
    encode_added_bytes: int | None = None  # RAM the first encoding added (CPU, sampled RSS)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weights not in ("pretrained", "random", "none"):
            raise ValueError(f"weights={self.weights!r}: use 'pretrained', 'random' or 'none'.")
        if (self.masks or self.scores) and self.weights != "pretrained":
            raise ValueError(
                f"{self.name}: masks from {self.weights} weights are not results; keep them out "
                f"(timing only)."
            )

    @property
    def has_masks(self) -> bool:
        return self.weights == "pretrained" and bool(self.masks)

    @property
    def encode_median_ms(self) -> float | None:
        return statistics.median(self.encode_ms) if self.encode_ms else None

    @property
    def click_median_ms(self) -> float | None:
        return statistics.median(self.click_ms) if self.click_ms else None

    def best(self, prompt: str) -> tuple[np.ndarray, float]:
        """The candidate with the highest predicted IoU for ``prompt``: (HxW bool mask, score)."""
        if not self.has_masks:
            raise ValueError(f"{self.name}: no masks ({self.note}).")
        i = int(np.argmax(self.scores[prompt]))
        return self.masks[prompt][i], float(self.scores[prompt][i])


class Architecture(NamedTuple):
    """What a model is, without its weights."""

    anatomy: Anatomy  # shape facts (grid, width, depth, global blocks, ...)
    encoder_params: int  # image encoder: runs once per image
    prompt_decoder_params: int  # prompt encoder + mask decoder: run at every click


def architecture(model: str | Sam) -> Architecture:
    """The architecture of a model name (built on the meta device: no memory, no weights) or a Sam."""
    from . import anatomy

    sam = anatomy.meta_model(model) if isinstance(model, str) else model

    def n(*modules: Any) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    return Architecture(anatomy.describe(sam), n(sam.image_encoder), n(sam.prompt_encoder, sam.mask_decoder))


def run_model(
    sam: Sam,
    image: Any,
    prompts: Sequence[Prompt],
    *,
    repeats: int = 1,
    warmup: int | None = None,
    weights: str | None = None,
    note: str = "",
) -> ModelResult:
    """Encode ``image`` ``repeats`` times and run every prompt after each encoding.

    Returns the encoder time of each repeat (the embedding cache is off, so each one runs the
    encoder), the time of each click (prompt encoder + decoder + upscaling), the RAM added by the
    first encoding (CPU), and, for trained weights only, the 3 candidate masks and predicted IoUs
    of each prompt (from the last repeat).

    weights: ``"pretrained"`` or ``"random"``; by default what ``load_sam`` recorded on ``sam``.
    warmup: untimed encodings first (default 1 on a GPU, 0 on the CPU).
    """
    from .predictor import CachedPredictor

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    record = record_of(sam)
    weights = weights or record.weights
    if weights not in ("pretrained", "random"):
        raise ValueError(
            "This model does not say whether its weights are trained: pass weights='pretrained' "
            "or weights='random' (load_sam records it)."
        )
    predictor = CachedPredictor(sam, cache_bytes=0)  # no cache: every set_image runs the encoder
    if warmup is None:
        warmup = 0 if predictor.device.type == "cpu" else 1
    for _ in range(warmup):
        predictor.set_image(image)
    encode_ms: list[float] = []
    click_ms: list[float] = []
    added: int | None = None
    masks: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    sync = sync_for(predictor.device)
    for r in range(repeats):
        if r == 0 and predictor.device.type == "cpu":
            with PeakRSS() as peak:
                encode_ms.append(encoder_ms(predictor, image, sync))
            added = peak.bytes
        else:
            encode_ms.append(encoder_ms(predictor, image, sync))
        assert predictor.stats.last_was_hit is False  # no cache: the encoder ran
        for prompt in prompts:
            m, s, _ = predictor.predict(**prompt.predict_kwargs(), multimask_output=True)
            assert predictor.stats.click_ms is not None
            click_ms.append(predictor.stats.click_ms)
            masks[prompt.name], scores[prompt.name] = m, s
    anat, n_params, _ = architecture(sam)
    trained = weights == "pretrained"
    return ModelResult(
        name=record.name,
        weights=weights,
        note=note,
        anatomy=anat,
        encoder_params=n_params,
        device=str(predictor.device),
        precision=predictor.stats.precision,  # the label: "-fast" when sam_widgets.fast's paths ran
        encode_ms=encode_ms,
        click_ms=click_ms,
        weights_bytes=sum(p.numel() * p.element_size() for p in sam.parameters()),
        encode_added_bytes=added,
        masks=masks if trained else {},  # random weights: noise, never kept
        scores=scores if trained else {},
    )


def compare(
    image: Any,
    prompts: Sequence[Prompt],
    models: Iterable[str] = ALL_MODELS,
    *,
    random_timing: Iterable[str] = OFFICIAL,
    repeats: int = 1,
    warmup: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    check_memory: bool = True,
    log: Callable[[str], Any] | None = print,
) -> list[ModelResult]:
    """Run each model in ``models`` (vit_b, vit_l, vit_h, mobile_sam, then micro) on ``image``, ``prompts``.

    A model whose checkpoint is cached here runs with its trained weights: masks, candidate
    scores, times. One that is not gets its architecture facts and, if it is in
    ``random_timing``, times measured with random weights (``weights="random"``, no masks). A
    model whose encoding would not fit in the RAM free here (``ENCODE_PEAK_RAM``, CPU only) is not
    run. Each model is freed before the next one is loaded. ``log`` gets one line per model.
    ``repeats`` timed encodings per model after ``warmup`` untimed ones (``run_model``'s default:
    1 on a GPU, 0 on the CPU); ``precision="auto"`` times the project's fast path, ``"fp32"``
    stock segment_anything (``load_sam``).
    """
    from .models import load_sam, pick_device

    say = log or (lambda _line: None)
    random_timing = set(random_timing)
    dev = pick_device(device)
    models = set(models)
    unknown = models - set(ALL_MODELS)
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(sorted(unknown))}: use {', '.join(ALL_MODELS)}.")
    names = [n for n in ALL_MODELS if n in models]
    results: list[ModelResult] = []
    for name in names:
        path, line = checkpoint_status(name) if name != "micro" else (None, "micro: bundled")
        trained = name == "micro" or path is not None
        if not trained and name not in random_timing:
            anat, n_params, _ = architecture(name)
            results.append(ModelResult(name, "none", line, anat, n_params))
            say(f"{name}: not run (architecture only)")
            continue
        free = available_ram_bytes() if dev.type == "cpu" else None
        if check_memory and free is not None and free < ENCODE_PEAK_RAM[name]:
            anat, n_params, _ = architecture(name)
            why = (
                f"{name}: not run - encoding needs ~{ENCODE_PEAK_RAM[name] / GiB:.1f} GiB of RAM, "
                f"{free / GiB:.1f} GiB free here"
            )
            results.append(ModelResult(name, "none", f"{line}; {why}", anat, n_params))
            say(why)
            continue
        weights = "pretrained" if trained else "random"
        sam = load_sam(name, weights=weights, device=dev, precision=precision, progress=False)
        note = line if trained else f"{line}; {RANDOM_LABEL}"
        result = run_model(sam, image, prompts, repeats=repeats, warmup=warmup, note=note)
        del sam
        gc.collect()
        results.append(result)
        label = "trained weights" if weights == "pretrained" else RANDOM_LABEL
        say(
            f"{name}: {label}: encode {result.encode_median_ms / 1000:.2f} s, "
            f"click {result.click_median_ms:.0f} ms ({result.device}, {result.precision})"
        )
    return results


# ----------------------------------------------------------------------------- tables


def table(results: Sequence[ModelResult]) -> str:
    """A fixed-width text table per model: architecture, weights, measured times and memory.

    ``weights`` is the memory its parameters take; ``encode +RAM`` what one encoding added on top
    (CPU only). A fresh process needs about both plus Python and torch themselves.
    """
    head = (
        f"{'model':<10} {'weights':<10} {'width':>5} {'blocks':>6} {'global blocks':<13} "
        f"{'enc. params':>11} {'encode':>8} {'click':>8} {'weights':>8} {'encode +RAM':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        a = r.anatomy
        enc = f"{r.encode_median_ms / 1000:.2f} s" if r.encode_ms else "-"
        click = f"{r.click_median_ms:.0f} ms" if r.click_ms else "-"
        mem = f"{r.weights_bytes / GiB:.2f} GiB" if r.weights_bytes is not None else "-"
        ram = f"{r.encode_added_bytes / GiB:.2f} GiB" if r.encode_added_bytes is not None else "-"
        blocks = ",".join(map(str, a.global_blocks)) if len(a.global_blocks) < a.depth else "all"
        blocks = blocks or "none"  # mobile_sam's TinyViT: windows and convolutions only
        lines.append(
            f"{r.name:<10} {r.weights:<10} {a.embed_dim:>5} {a.depth:>6} {blocks:<13} "
            f"{r.encoder_params / 1e6:>9.1f} M {enc:>8} {click:>8} {mem:>8} {ram:>11}"
        )
    return "\n".join(lines)


def agreement(results: Sequence[ModelResult], prompt: str) -> dict[tuple[str, str], float]:
    """IoU between the best masks of every two models with trained weights, for one prompt."""
    from .viz import mask_iou

    have = [r for r in results if r.has_masks]
    return {
        (a.name, b.name): mask_iou(a.best(prompt)[0], b.best(prompt)[0])
        for i, a in enumerate(have)
        for b in have[i + 1 :]
    }


# ----------------------------------------------------------------------------- figures


def _title(r: ModelResult) -> str:
    return "micro (ours, not SAM)" if r.name == "micro" else r.name


def _draw_prompt(ax: Any, prompt: Prompt) -> None:
    for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
        if label:
            ax.plot(x, y, marker="*", color="lime", markersize=16, markeredgecolor="black")
        else:
            ax.plot(x, y, marker="X", color="red", markersize=12, markeredgecolor="black")
    if prompt.box is not None:
        from matplotlib.patches import Rectangle

        x0, y0, x1, y1 = prompt.box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=2))


def _why_no_mask(r: ModelResult) -> str:
    if "not downloaded" in r.note:
        why = "not downloaded"
    elif "RAM" in r.note:
        why = "not run:\ntoo little RAM here"
    elif "sha256" in r.note:
        why = "cached file\nfails its sha256"
    else:
        why = "not run"
    if r.weights == "random":
        why += "\n" + RANDOM_LABEL.replace(": ", ":\n")
    return why


def plot_prompts(image: Any, prompts: Sequence[Prompt]) -> Figure:
    """The image once per prompt, the prompt drawn on it (green star: on the object, red X: not)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(prompts), figsize=(4 * len(prompts), 3.2), squeeze=False)
    for ax, prompt in zip(axes[0], prompts, strict=True):
        ax.imshow(image)
        _draw_prompt(ax, prompt)
        ax.set_title(prompt.name)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_masks(results: Sequence[ModelResult], image: Any, prompts: Sequence[Prompt]) -> Figure:
    """One row per prompt, one column per model: each model's best candidate mask.

    A model without trained weights gets a panel that says why there is no mask (never a mask).
    """
    import matplotlib.pyplot as plt

    from .viz import overlay_masks

    fig, axes = plt.subplots(
        len(prompts), len(results), figsize=(3.4 * len(results), 2.6 * len(prompts)), squeeze=False
    )
    for row, prompt in enumerate(prompts):
        for col, r in enumerate(results):
            ax = axes[row, col]
            ax.axis("off")
            if r.has_masks:
                mask, score = r.best(prompt.name)
                ax.imshow(overlay_masks(image, mask))
                _draw_prompt(ax, prompt)
                ax.set_title(f"{_title(r)}\npredicted IoU {score:.2f}", fontsize=9)
            else:
                ax.imshow(image, alpha=0.25)
                ax.text(
                    0.5, 0.5, _why_no_mask(r), transform=ax.transAxes, ha="center", va="center", fontsize=10
                )
                ax.set_title(_title(r), fontsize=9)
            if col == 0:
                ax.text(-0.05, 0.5, prompt.name, transform=ax.transAxes, rotation=90, ha="right", va="center")
    fig.tight_layout()
    return fig


def plot_candidates(results: Sequence[ModelResult], image: Any, prompt: Prompt) -> Figure | None:
    """The 3 candidate masks of each model with trained weights for one prompt, with their scores."""
    import matplotlib.pyplot as plt

    from .viz import overlay_masks

    have = [r for r in results if r.has_masks]
    if not have:
        return None
    fig, axes = plt.subplots(len(have), 3, figsize=(10, 2.8 * len(have)), squeeze=False)
    for row, r in enumerate(have):
        best = int(np.argmax(r.scores[prompt.name]))
        for k in range(3):
            ax = axes[row, k]
            ax.imshow(overlay_masks(image, r.masks[prompt.name][k], colors=[(0, 114, 178)]))
            _draw_prompt(ax, prompt)
            mark = " (best)" if k == best else ""
            score = r.scores[prompt.name][k]
            ax.set_title(f"{_title(r)}: candidate {k + 1}\npredicted IoU {score:.2f}{mark}", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def plot_encode_times(results: Sequence[ModelResult]) -> Figure:
    """Encoder time per model (log scale): solid bars trained weights, hatched bars random weights."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    timed = [r for r in results if r.encode_ms]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.55 * max(len(timed), 1)))
    for i, r in enumerate(timed):
        seconds = r.encode_median_ms / 1000
        random = r.weights == "random"
        ax.barh(
            i,
            seconds,
            color="lightgrey" if random else "tab:blue",
            hatch="//" if random else None,
            edgecolor="black",
        )
        label = f"{seconds:.2f} s" + ("  (random weights: timing only)" if random else "")
        ax.text(seconds, i, "  " + label, va="center", fontsize=9)
    ax.set_yticks(range(len(timed)), [_title(r) for r in timed])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("image encoder, seconds per image (median, measured here; log scale)")
    if timed:
        ax.set_xlim(right=max(r.encode_median_ms for r in timed) / 1000 * 10)
        ax.set_title(f"measured on {timed[0].device}, {timed[0].precision}")
    ax.legend(
        handles=[
            Patch(facecolor="tab:blue", edgecolor="black", label="trained weights"),
            Patch(facecolor="lightgrey", edgecolor="black", hatch="//", label="random weights: timing only"),
        ],
        loc="lower right",
        fontsize=8,
    )
    fig.tight_layout()
    return fig
