"""Batch auto-annotation: label a whole image folder with SAM, on one machine or a Ray cluster.

``annotate(IMAGES, OUT)`` (and ``sam-widgets annotate IMAGES --out OUT``) segments every image of
a folder, either "everything" (segment_anything's automatic mask generator with the widget's
settings) or from prompts (boxes, points) in a COCO detections JSON or a YOLO labels folder: the
"detector + SAM" labelling pipeline. It writes COCO JSON (RLE or polygons) and a manifest into OUT,
one JSON record per image as it finishes, so a killed run resumes where it stopped (``output``);
Ctrl-C ends a run with ``Interrupted``, which says how far it got.

Local (the default): one process, the next images decoded ahead in a thread, one encoder pass per
image, batched decoder calls for many boxes. ``ray=``: the same work on a Ray Data actor pool, one
model per actor (``ray_runner``). Bad images (unreadable, corrupt, too large or small) and bad
prompts (boxes outside the image) are recorded per image with the reason and skipped.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .output import ANNOTATIONS, MANIFEST, OutputFolder, OutputFolderError, brief
from .prompts import Detection, PromptFileError, PromptSet, read_image_ids, read_prompts
from .worker import Annotator, Settings, everything_defaults, failed_record, load_image

__all__ = [
    "annotate",
    "annotate_records",
    "list_images",
    "Summary",
    "Settings",
    "Annotator",
    "Detection",
    "PromptSet",
    "read_prompts",
    "everything_defaults",
    "IMAGE_SUFFIXES",
    "OutputFolderError",
    "PromptFileError",
    "ImageListError",
    "Interrupted",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
PREFETCH = 2  # images decoded ahead of the model, in a thread
MANIFEST_EVERY_S = 10.0
STEADY_MIN = 3  # images after the first below which no rate "after the first" is given


class ImageListError(OutputFolderError):
    """IMAGES is missing, empty, or not a folder, image file or list of image files."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended a run; the message says how many images are done in OUT and how to resume."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else word + 's'}"


def list_images(images: str | Path) -> tuple[Path, list[str]]:
    """The root folder and the image names (paths relative to it, ``/``-separated, sorted).

    ``images``: a folder (searched recursively for files ending in ``IMAGE_SUFFIXES``, any case),
    a single image file, or a ``.txt`` file listing image paths (one a line, relative to the list's
    folder or absolute). Names, not pixels: files are opened later, and a bad one only fails itself.
    """
    root, keys, _ = _list_images(images)
    return root, keys


def _list_images(images: str | Path) -> tuple[Path, list[str], list[str]]:
    """``list_images``, and the other files of a folder (not hidden, not an image by their
    suffix, sorted): those the run ignores."""
    path = Path(images).expanduser()
    if path.is_dir():
        keys, others = [], []
        for p in path.rglob("*"):
            if p.name.startswith(".") or not p.is_file():
                continue
            (keys if p.suffix.lower() in IMAGE_SUFFIXES else others).append(p.relative_to(path).as_posix())
        if not keys:
            raise ImageListError(
                f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)}, searched recursively)."
            )
        return path, sorted(keys), sorted(others)
    if path.is_file() and path.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        files = [(path.parent / ln).resolve() for ln in lines if ln and not ln.startswith("#")]
        if not files:
            raise ImageListError(f"{path} lists no images (one path a line).")
        root = Path(os.path.commonpath([f.parent for f in files]))
        return root, list(dict.fromkeys(f.relative_to(root).as_posix() for f in files)), []
    if path.is_file():
        return path.parent, [path.name], []
    raise ImageListError(
        f"IMAGES {str(images)!r} not found: pass a folder of images, an image file, or a .txt list of them."
    )


@dataclass
class Summary:
    """What a run did: counts, time, throughput, failures, and where the outputs are."""

    total: int
    done: int
    failed: int
    skipped_before: int  # records found in OUT from an earlier run (resume)
    annotations: int
    seconds: float
    runner: str
    out: Path
    failures: list[tuple[str, str]] = field(default_factory=list)  # (image, reason), all of OUT
    skipped_prompts: int = 0
    first_s: float | None = None  # seconds to the first record: loading the model(s) + one image
    ignored: list[str] = field(default_factory=list)  # files of IMAGES that are not images

    @property
    def images_per_s(self) -> float:
        """Images done or failed per second of the run, model loading included."""
        ran = self.done + self.failed
        return ran / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_s(self) -> float | None:
        """Images per second after the first record (without loading the model); None when fewer
        than ``STEADY_MIN`` images came after it (a rate of one or two images says little)."""
        ran = self.done + self.failed
        if self.first_s is None or ran - 1 < STEADY_MIN or self.seconds <= self.first_s:
            return None
        return (ran - 1) / (self.seconds - self.first_s)

    def format(self, max_failures: int = 20) -> str:
        ran = self.done + self.failed
        if ran == 0:
            timing = f"({self.runner})"
        else:
            rates = [f"{self.images_per_s:.2f} images/s"]
            if self.first_s is not None and ran > 1:
                rates.append(f"the first image, with the model load, took {self.first_s:.1f} s")
                if self.steady_images_per_s is not None:
                    rates[-1] += f", the others {self.steady_images_per_s:.2f} images/s"
            timing = f"in {self.seconds:.1f} s ({'; '.join([*rates, self.runner])})"
        lines = [
            f"annotated {ran} of {_plural(self.total, 'image')} {timing}: {self.done} done, "
            f"{self.failed} failed"
            + (f", {self.skipped_before} already in {self.out} (resumed)" if self.skipped_before else ""),
            f"{_plural(self.annotations, 'mask')} in {self.out / ANNOTATIONS}"
            + (
                f"; {_plural(self.skipped_prompts, 'prompt')} skipped (reasons in the manifest)"
                if self.skipped_prompts
                else ""
            ),
        ]
        if self.ignored:
            lines.append(
                f"ignored {_plural(len(self.ignored), 'file')} in IMAGES whose suffix is not an image "
                f"type (e.g. {self.ignored[0]}; image types: {', '.join(IMAGE_SUFFIXES)})"
            )
        if self.failures:
            n = len(self.failures)
            lines.append(
                f"{_plural(n, 'image')} failed and {'was' if n == 1 else 'were'} skipped "
                f"(reasons in {self.out / MANIFEST}):"
            )
            lines += [f"  {name}: {reason}" for name, reason in self.failures[:max_failures]]
            if len(self.failures) > max_failures:
                lines.append(f"  ... and {len(self.failures) - max_failures} more")
        return "\n".join(lines)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        h.update(f.read_bytes())
    return h.hexdigest()


def _resolve_model(
    model: str, ray: str | None, weights: str = "pretrained", device: str = "auto", precision: str = "auto"
) -> str:
    """``auto`` -> a name, by ``load_sam("auto")``'s rule on this machine (the driver), so that the
    manifest names the model and every worker loads the same one."""
    if model != "auto":
        return model
    if ray not in (None, "", "local"):
        raise OutputFolderError(
            "--model auto picks by the memory of this machine, not the cluster's workers: with "
            "--ray ADDRESS name the model (--model vit_h, vit_l, vit_b, mobile_sam or micro)."
        )
    from .. import checkpoints, models

    dev = models.pick_device(device)
    # the fast paths run with precision="auto" (load_sam's fast=None), stock code otherwise
    wanted = models.pick_model(models.free_memory_bytes(dev), fast=precision == "auto")
    if weights == "random":
        return wanted
    cached = checkpoints.cached_models()
    if dev.type == "cpu" and "mobile_sam" in cached:
        return "mobile_sam"
    order = ["vit_b", "vit_l", "vit_h"]
    for candidate in reversed(order[: order.index(wanted) + 1]):
        if candidate in cached:
            return candidate
    return "micro" if checkpoints.is_offline() else wanted


def _check_model(name: str, weights: str, ray: str | None, progress: bool = True) -> None:
    """Fail before anything is written when the model cannot load: an unknown name, or (for a run
    on this machine) an official checkpoint that is neither cached nor downloadable; a missing one
    is downloaded here, once, with its progress bar, not inside the run."""
    from ..models import check_model_name

    check_model_name(name)  # "auto" is resolved to a name before this
    if weights != "pretrained" or name == "micro" or ray not in (None, "", "local"):
        return  # a cluster's workers have caches of their own
    from .. import checkpoints

    if checkpoints.cached_path(name) is None:
        checkpoints.download(name, progress=progress)


def annotate_records(
    root: Path, keys: list[str], settings: Settings, prompts: dict[str, list[Detection]] | None
) -> Iterator[dict[str, Any]]:
    """Local runner: the record of each of ``keys`` in order; the next images decode in a thread."""
    annotator = Annotator(settings)
    with ThreadPoolExecutor(1, thread_name_prefix="sam-widgets-decode") as pool:
        queue: deque = deque()
        todo = iter(keys)

        def submit() -> None:
            key = next(todo, None)
            if key is not None:
                queue.append((key, pool.submit(load_image, str(root / key))))

        for _ in range(PREFETCH):
            submit()
        while queue:
            key, future = queue.popleft()
            submit()
            try:
                image = future.result()
            except Exception as e:  # noqa: BLE001 - recorded per image, the run goes on
                yield failed_record(key, e, "image")
                continue
            yield annotator.annotate(key, image, None if prompts is None else prompts.get(key, []))


def annotate(
    images: str | Path,
    out: str | Path,
    *,
    model: str = "auto",
    weights: str = "pretrained",
    device: str = "auto",
    precision: str = "auto",
    prompts: str | Path | None = None,
    image_ids: str | Path | None = None,
    min_score: float = 0.0,
    everything: dict[str, Any] | None = None,
    format: str = "rle",
    polygon_tolerance: float = 0.0,
    resume: bool = True,
    retry_failed: bool = False,
    ray: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float | None = None,
    ray_num_cpus: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    log: Any = None,
) -> Summary:
    """Annotate every image of ``images`` into ``out``; returns the ``Summary`` (see the module).

    Arguments:
      images: a folder (recursive), an image file, or a ``.txt`` list (``list_images``).
      out: the output folder (``output``); created if missing. An existing one is resumed.
      model, weights, device, precision: as ``load_sam``; ``auto`` model: by this machine's memory.
      prompts: a COCO detections JSON or a YOLO labels folder (``prompts``); None: "everything".
      image_ids: a COCO file whose ``images`` map the integer ids of a bare detections list; with
        any prompts (or none), the ids it gives the images are their ids in ``annotations.json``.
      min_score: detections below this confidence are ignored.
      everything: ``SamAutomaticMaskGenerator`` arguments over the widget's for the model
        (``everything_defaults``: micro 16 points a side, thresholds 0.4 / 0.7; the others
        segment_anything's 32, 0.88 / 0.95); ``points_per_batch`` is a maximum, cut on large images.
      format: ``"rle"`` or ``"polygons"`` (``sam_widgets.formats``: polygons fill holes).
      resume: continue the run in ``out`` (skip images with a record). False: start over.
      retry_failed: on resume, try the images that failed before again.
      ray: None (local), ``"local"`` (a local Ray runtime) or a cluster address.
      workers, cpus_per_worker, gpus_per_worker: the Ray actor pool (``ray_runner.plan_workers``).
      ray_num_cpus: CPUs of a local Ray runtime (default: all).
      threads: torch threads per model (default: torch's locally, the actor's CPUs on Ray).
      progress: a progress bar (images/s, ETA) on stderr. log: where the summary lines go (a
        callable taking a str; default: none).

    Image ids in ``annotations.json``: those the prompts (or ``image_ids``) give, else stable
    across resumes (``output.OutputFolder.assign_ids``). Ctrl-C raises ``Interrupted`` (a
    ``KeyboardInterrupt``) once the manifest says what is done; the next run resumes.
    """
    if format not in ("rle", "polygons"):
        raise ValueError(f"format={format!r}: use 'rle' or 'polygons'.")
    root, keys, ignored = _list_images(images)
    prompt_set: PromptSet | None = None
    given_ids: dict[str, int] = {}
    if prompts is not None:
        prompt_set = read_prompts(prompts, keys, image_ids=image_ids, min_score=min_score)
        given_ids = prompt_set.image_ids
    elif image_ids is not None:
        given_ids = read_image_ids(image_ids, keys)
    name = _resolve_model(model, ray, weights, device, precision)
    _check_model(name, weights, ray, progress)  # before --out is made: a typo leaves nothing behind
    settings = Settings(
        model=name,
        weights=weights,
        device=device,
        precision=precision,
        mode="everything" if prompt_set is None else "prompts",
        everything=dict(everything or {}),
        format=format,
        polygon_tolerance=float(polygon_tolerance),
        threads=threads,
    )
    identity = {
        "settings": {k: v for k, v in settings.as_dict().items() if k not in ("device", "threads")},
        "prompts": None
        if prompt_set is None
        else {"sha256": _digest(Path(prompts).expanduser()), "min_score": min_score},
    }
    if image_ids is not None:  # which image a bare detection's integer id means: part of the prompts
        identity["image_ids"] = _digest(Path(image_ids).expanduser())
    if settings.mode == "prompts":
        identity["settings"].pop("everything")
    else:  # how many points go per decoder call changes no mask: a resume may change it
        identity["settings"]["everything"] = {
            k: v for k, v in identity["settings"]["everything"].items() if k != "points_per_batch"
        }
    categories = (
        [{"id": 1, "name": "object", "supercategory": "object"}]
        if prompt_set is None
        else prompt_set.categories
    )
    say = log or (lambda line: None)
    if prompt_set is not None and prompt_set.unmatched:
        n = len(prompt_set.unmatched)
        say(
            f"note: {_plural(n, 'image')} named in {prompts} {'is' if n == 1 else 'are'} not in {images} "
            f"(e.g. {prompt_set.unmatched[0]!r}); {'its' if n == 1 else 'their'} prompts are ignored"
        )
    with OutputFolder(out, identity, resume=resume) as folder:
        folder.assign_ids(keys, given_ids)
        records = folder.done(keys, retry_failed=retry_failed)
        before = len(records)
        todo = [k for k in keys if k not in records]
        extra: dict[str, Any] = {
            "images_root": str(root),
            "prompts_source": None if prompts is None else str(prompts),
            "categories": categories,
        }
        started_ray = False
        runner = "local"
        done = failed = 0
        first_s = None
        try:
            if ray is not None and todo:
                from . import ray_runner

                started_ray = ray_runner.connect(ray, num_cpus=ray_num_cpus)
                plan = ray_runner.plan_workers(workers, cpus_per_worker, gpus_per_worker)
                extra["ray"] = {"address": ray, **plan}
                runner = f"Ray, {plan['workers']} workers x " + (
                    f"{plan['gpus_per_worker']:g} GPU"
                    if plan["gpus_per_worker"]
                    else f"{plan['cpus_per_worker']:g} CPU"
                )
                stream = ray_runner.annotate_records(
                    str(root), todo, settings, None if prompt_set is None else prompt_set.by_image, plan
                )
            else:
                stream = annotate_records(
                    root, todo, settings, None if prompt_set is None else prompt_set.by_image
                )
            folder.write_manifest(keys, records, extra, finished=False)
            t0 = time.perf_counter()
            last_manifest = t0
            from tqdm.auto import tqdm

            with tqdm(
                total=len(todo),
                desc="annotate",
                unit="img",
                file=sys.stderr,
                disable=not progress or not todo,
                dynamic_ncols=True,
                smoothing=0.1,
            ) as bar:
                for rec in stream:
                    if first_s is None:
                        first_s = time.perf_counter() - t0
                    folder.write_record(rec)  # first: a record on disk is an image done for good
                    records[rec["file_name"]] = brief(rec)  # its masks stay on disk only
                    if rec["status"] == "done":
                        done += 1
                    else:
                        failed += 1
                        bar.set_postfix(failed=failed, refresh=False)
                    bar.update(1)
                    if time.perf_counter() - last_manifest > MANIFEST_EVERY_S:
                        folder.write_manifest(keys, records, extra, finished=False)
                        last_manifest = time.perf_counter()
            seconds = time.perf_counter() - t0
        except KeyboardInterrupt:
            folder.write_manifest(keys, records, extra, finished=False)
            raise Interrupted(
                f"{len(records)} of {_plural(len(keys), 'image')} annotated in {folder.root} so far "
                f"({done + failed} in this run); {ANNOTATIONS} is written when a run finishes: run the "
                "same command again to resume (the images done are skipped)"
            ) from None
        finally:
            if started_ray:
                from . import ray_runner

                ray_runner.disconnect()
        folder.write_manifest(keys, records, extra, finished=len(records) == len(keys))
        folder.write_coco(keys, records, categories)
    summary = Summary(
        total=len(keys),
        done=done,
        failed=failed,
        skipped_before=before,
        annotations=sum(r["n_annotations"] for r in records.values()),
        seconds=seconds,
        runner=runner,
        out=Path(out),
        failures=[(k, records[k]["reason"]) for k in keys if k in records and records[k]["status"] != "done"],
        skipped_prompts=sum(len(r.get("skipped_prompts", [])) for r in records.values()),
        first_s=first_s,
        ignored=ignored,
    )
    return summary
