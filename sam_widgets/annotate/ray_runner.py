"""The same work on Ray: Ray Data feeds images to an actor pool, one model per actor.

``connect(address)`` starts a local Ray runtime (``address`` None or ``"local"``) or joins a
cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``). ``annotate_records`` is the
local runner's ``annotate_records`` on Ray: a dataset of image names, ``map_batches`` with a
callable class (``ActorPoolStrategy(size=workers)``, ``num_gpus=1`` per actor when the cluster
has GPUs, else ``num_cpus``), and the records stream back to the driver, which writes them as they
come (so resume works as locally). ``evaluate_iou_ray`` is ``bench``'s IoU (and NoC) evaluation
with one image per Ray task, merged into the same ``IoUResult``: the driver sends sample references
(``datasets.refs``) and each actor loads its own images, so a COCO-sized set streams through.

Workers open image files by the path the driver sees: on a cluster, IMAGES must be on storage
every node mounts at the same path (NFS, a shared volume), and sam-widgets must be installed on
every node (the cluster's image, or ``runtime_env``).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SamWidgetsError
from ..record import record_of
from .prompts import Detection
from .worker import Annotator, Settings, failed_record, load_image

if TYPE_CHECKING:  # pragma: no cover
    from ..bench.iou import IoUResult
    from ..datasets import Sample, SampleRef

log = logging.getLogger("sam_widgets")
START_ATTEMPTS = 3  # starts of a local Ray runtime before giving up (see connect)

__all__ = [
    "RayMissingError",
    "connect",
    "start_local",
    "disconnect",
    "plan_workers",
    "annotate_records",
    "evaluate_iou_ray",
]


class RayMissingError(SamWidgetsError, ImportError):
    """``--ray`` was asked for and Ray Data is not installed (the ``ray`` extra)."""


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayMissingError(
            "--ray needs Ray Data, which is not installed: pip install 'sam-widgets[ray]' "
            "(or pip install 'ray[data]')."
        ) from None
    return ray


def start_local(num_cpus: int | None = None, attempts: int = START_ATTEMPTS) -> None:
    """``ray.init`` of a local runtime, tried ``attempts`` times.

    On a loaded machine Ray's raylet can give up on its agents after a fixed 15 s and the start
    fails with "The current node timed out during startup" (ray-project/ray#65983); a later
    attempt may succeed when the load drops. Other errors are raised at once.
    """
    ray = _ray()
    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, **_INIT)
            break
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this
            ray.shutdown()
            if "timed out during startup" not in str(e) or attempt == attempts:
                raise
            reason = str(e)
        # Out of the except block the failed node's frames are gone: free its process handles now,
        # quietly (the processes are dying), not at some later garbage collection.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        log.warning(
            "Ray's local runtime did not start (attempt %d of %d: %s); trying again",
            attempt,
            attempts,
            reason,
        )
    _quiet_data()


def _quiet_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts images; Ray's would count blocks
    ctx.print_on_execution_start = False


_INIT = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Start a local Ray runtime (``address`` None/"local") or join a cluster at ``address``.

    Returns True when this call started or joined it (then ``disconnect`` when done); False when
    Ray was already initialised by the caller (it is used as it is, and left running).
    """
    ray = _ray()
    if ray.is_initialized():
        _quiet_data()
        return False
    if address in (None, "", "local"):
        start_local(num_cpus)
    else:
        ray.init(address=address, **_INIT)
        _quiet_data()
    return True


def disconnect() -> None:
    """``ray.shutdown()``: stops a local runtime started by ``connect``; leaves a cluster running."""
    import ray

    ray.shutdown()


def plan_workers(
    workers: int | None = None, cpus_per_worker: float | None = None, gpus_per_worker: float | None = None
) -> dict[str, Any]:
    """Actors and their resources from what the cluster has: one GPU per actor when there are GPUs,
    else ``cpus_per_worker`` CPUs each (default: up to 4, and at least 2 actors when there are 2 CPUs)."""
    ray = _ray()
    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1)), float(res.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    if gpus_per_worker > 0:
        cpus_per_worker = cpus_per_worker or 1.0
        n = workers or max(1, int(gpus // gpus_per_worker))
    else:
        cpus_per_worker = cpus_per_worker or float(max(1, min(4, int(cpus) // 2)))
        n = workers or max(1, int(cpus // cpus_per_worker))
    return {
        "workers": int(n),
        "cpus_per_worker": float(cpus_per_worker),
        "gpus_per_worker": float(gpus_per_worker),
        "cluster": {"CPU": cpus, "GPU": gpus, "nodes": len(ray.nodes())},
    }


class _AnnotateActor:
    """A Ray Data callable class: one ``Annotator`` (one model) per actor."""

    def __init__(self, settings: dict[str, Any], root: str) -> None:
        self.annotator = Annotator(settings)
        self.root = root

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for key, prompts in zip(batch["key"], batch["prompts"], strict=True):
            key = str(key)
            try:
                image = load_image(os.path.join(self.root, key))
            except Exception as e:  # noqa: BLE001 - recorded per image, the run goes on
                rec = failed_record(key, e, "image")
            else:
                plist = None if prompts is None or prompts == "" else json.loads(prompts)
                rec = self.annotator.annotate(key, image, [Detection.from_dict(p) for p in plist or []])
            out.append(json.dumps(rec))
        return {"record": np.array(out, dtype=object)}


def _map(ds: Any, fn: type, plan: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    ray = _ray()
    return ds.map_batches(
        fn,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=plan["workers"]),
        fn_constructor_kwargs=kwargs,
        num_cpus=plan["cpus_per_worker"],
        num_gpus=plan["gpus_per_worker"],
    )


def annotate_records(
    root: str,
    keys: list[str],
    settings: Settings,
    prompts: dict[str, list[Detection]] | None,
    plan: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    """Records of ``keys`` (paths under ``root``) as the actors finish them, in any order."""
    ray = _ray()
    if not keys:
        return
    items = [
        {
            "key": k,
            "prompts": "" if prompts is None else json.dumps([p.as_dict() for p in prompts.get(k, [])]),
        }
        for k in keys
    ]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 10_000))
    s = Settings(**settings.as_dict())
    if s.threads is None and plan["gpus_per_worker"] == 0:
        s.threads = max(1, int(plan["cpus_per_worker"]))  # torch in an actor: its share of the node
    ds = _map(ds, _AnnotateActor, plan, {"settings": s.as_dict(), "root": str(root)})
    for row in ds.iter_rows():
        yield json.loads(row["record"])


# ----------------------------------------------------------------------------- bench --ray


class _IoUActor:
    """One model per actor; ``__call__`` runs bench's IoU protocol (and NoC) on one image.

    An image arrives as a ``datasets.SampleRef`` (named, loaded here: the driver never holds the
    set's pixels) or as a pickled ``Sample``.
    """

    def __init__(
        self,
        name: str,
        weights: str,
        device: str,
        precision: str,
        threads: int | None,
        n_clicks: int,
        min_area: int,
        noc: bool = False,
    ) -> None:
        import torch

        from ..models import load_sam
        from ..predictor import CachedPredictor

        if threads:
            torch.set_num_threads(threads)
        self.sam = load_sam(name, weights=weights, device=device, precision=precision, progress=False)
        self.predictor = CachedPredictor(self.sam, cache_bytes=0)
        self.n_clicks, self.min_area, self.noc = n_clicks, min_area, noc
        self.warm = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..datasets import DatasetError, SampleRef
        from ..evaluation import NOC_THRESHOLDS, evaluate_samples
        from ..measure import sync_for

        dev = self.sam.device
        sync = sync_for(dev)
        out = []
        for index, blob in zip(batch["index"], batch["sample"], strict=True):
            part: dict[str, Any] = {"index": int(index)}
            try:
                sample = pickle.loads(blob)
                if isinstance(sample, SampleRef):
                    sample = sample.load()
            except DatasetError as e:  # the driver raises it: a bad dataset is the user's to fix
                part["error"] = f"{type(e).__name__}: {e}"
                out.append(json.dumps(part))
                continue
            if sample is None:  # a COCO image whose masks are all empty: not a sample (as load)
                part.update(records=[], encoder_ms=[], name=None, masks=0)
                out.append(json.dumps(part))
                continue
            if not self.warm:  # as evaluate_iou: one untimed encoding first (allocator, kernels)
                self.predictor.set_image(sample.image)
                self.warm = True
            records, enc = evaluate_samples(
                self.predictor,
                [sample],
                n_clicks=self.n_clicks,
                min_area=self.min_area,
                progress=False,
                sync=sync,
                noc_thresholds=NOC_THRESHOLDS if self.noc else None,
            )
            part.update(
                records=records,
                encoder_ms=enc,
                name=sample.name,
                masks=len(sample.masks),
                device=str(dev),
                precision=record_of(self.sam).precision,
            )
            out.append(json.dumps(part))
            del sample
        return {"result": np.array(out, dtype=object)}


def evaluate_iou_ray(
    name: str,
    samples: list[Sample] | list[SampleRef],
    *,
    weights: str = "pretrained",
    dataset: str = "",
    device: str = "auto",
    precision: str = "fp32",
    n_clicks: int = 3,
    min_area: int = 100,
    noc: bool = False,
    max_clicks: int = 20,
    plan: dict[str, Any] | None = None,
    progress: bool = True,
    seen: dict[str, Any] | None = None,
) -> IoUResult:
    """``bench.evaluate_iou`` on Ray: one image per task, the per-object records merged in the
    samples' order and summarised as locally (``evaluation.summarize``; with ``noc``, every object
    through ``max_clicks`` clicks and ``evaluation.noc_summary``, as ``evaluate_iou(noc=True)``).

    ``samples``: ``datasets.SampleRef`` (``datasets.refs``: each actor loads its own images, so the
    driver holds only the small per-object records, never the pixels) or loaded ``Sample``. Trained
    weights only (random weights have no IoU: use ``evaluate_iou``, which times them).
    ``result.samples`` counts the images that had an object (as ``datasets.load`` keeps them);
    ``seen``, when given, receives ``names`` (theirs, in order) and ``objects`` (their masks).
    """
    from tqdm.auto import tqdm

    from ..bench.iou import IoUResult
    from ..datasets import DatasetError
    from ..evaluation import curves_of, noc_summary, summarize
    from ..measure import Timing

    ray = _ray()
    if weights != "pretrained":
        raise ValueError("evaluate_iou_ray measures IoU of trained weights only; random weights have none.")
    if noc and max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}.")
    plan = plan or plan_workers()
    items = [{"index": i, "sample": pickle.dumps(s)} for i, s in enumerate(samples)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 10_000)))
    del items
    threads = None if plan["gpus_per_worker"] else max(1, int(plan["cpus_per_worker"]))
    ds = _map(
        ds,
        _IoUActor,
        plan,
        {
            "name": name,
            "weights": weights,
            "device": device,
            "precision": precision,
            "threads": threads,
            "n_clicks": max_clicks if noc else n_clicks,
            "min_area": min_area,
            "noc": noc,
        },
    )
    parts: dict[int, dict[str, Any]] = {}
    for row in tqdm(
        ds.iter_rows(),
        total=len(samples),
        desc=f"{'NoC' if noc else 'IoU'} {name} (Ray)",
        unit="img",
        disable=not progress,
        leave=False,
    ):
        part = json.loads(row["result"])
        if "error" in part:
            raise DatasetError(part["error"])
        parts[part["index"]] = part
    loaded = [parts[i] for i in sorted(parts) if parts[i]["name"] is not None]
    records = [r for p in loaded for r in p["records"]]
    encoder_ms = [e for p in loaded for e in p["encoder_ms"]]
    summary = summarize(records)
    first = loaded[0] if loaded else {"device": device, "precision": precision}
    result = IoUResult(
        model=name,
        weights=weights,
        device=first["device"],
        precision=first["precision"],
        dataset=dataset,
        status="measured",
        samples=len(loaded),
        min_area_px=min_area,
        encoder_ms_runs=encoder_ms,
        objects=summary["objects"],
        miou=summary["miou"],
        ci95=summary["ci95"],
        pearson_r=summary["pearson_r"],
        click_ms_median=summary["click_ms_median"],
        per_object=[{"model": name, **r} for r in records],
    )
    if noc:
        result.noc = {"model": name, **noc_summary(curves_of(records), max_clicks=max_clicks)}
    if encoder_ms:
        result.encoder_ms = asdict(Timing.of(encoder_ms))
    if seen is not None:
        seen.update(names=[p["name"] for p in loaded], objects=sum(p["masks"] for p in loaded))
    return result
