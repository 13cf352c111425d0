"""The ``sam-widgets`` command: download checkpoints, show what is here, benchmark.

sam-widgets download vit_b|vit_l|vit_h|mobile_sam|all
sam-widgets info
sam-widgets bench [--models micro,vit_b] [--device cpu] [--ray [ADDRESS]] ...
sam-widgets annotate IMAGES --out OUT [--model auto] [--prompts boxes.json] [--ray [ADDRESS]]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import checkpoints
from .errors import SamWidgetsError

__all__ = ["main", "bench_main", "add_bench_arguments", "add_annotate_arguments", "run_command", "UserError"]


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """``{name: args.name}`` for each option named: what the command line passes on as it is."""
    return {name: getattr(args, name) for name in names}


def _switch(parser: Any, flag: str, default: bool | None, help: str) -> None:  # noqa: A002 - argparse's name
    """An on/off option: ``--flag`` and ``--no-flag``."""
    parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help)


def _download(args: argparse.Namespace) -> int:
    names = list(checkpoints.REGISTRY) if args.name == "all" else [args.name]
    for name in names:
        path = checkpoints.download(name, progress=not args.quiet)
        print(f"{name}: {path} (sha256 verified)")
    return 0


def _info(args: argparse.Namespace) -> int:
    import torch

    from . import models
    from .micro import WEIGHTS_PATH

    print(f"cache dir:  {checkpoints.cache_dir()}")
    print(f"offline:    {'yes (SAM_WIDGETS_OFFLINE)' if checkpoints.is_offline() else 'no'}")
    cached = checkpoints.cached_models()
    for name in checkpoints.REGISTRY:
        state = f"cached, verified: {cached[name]}" if name in cached else "not cached"
        print(f"{name:<11} {state}  ({checkpoints.url_for(name)})")
    print(f"micro       {'bundled: ' + str(WEIGHTS_PATH) if WEIGHTS_PATH.is_file() else 'MISSING'}")
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    dev = models.pick_device("auto")
    free = models.free_memory_bytes(dev)
    # load_sam("auto")'s rule: a cached MobileSAM on a CPU, else by free memory.
    pick = "mobile_sam" if dev.type == "cpu" and "mobile_sam" in cached else models.pick_model(free)
    print(f"devices:    {', '.join(devices)}; auto -> {dev}")
    print(f"free mem:   {free / 2**30:.1f} GiB on {dev}")
    fallback = "" if pick in cached or not checkpoints.is_offline() else " (not cached and offline: micro)"
    print(f"auto model: {pick}{fallback}")
    print(f"torch:      {torch.__version__}, {torch.get_num_threads()} threads")
    return 0


# ----------------------------------------------------------------------------- bench


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sam-widgets bench`` (and ``python -m sam_widgets.bench``)."""
    parser.add_argument(
        "--models",
        default="micro,vit_b",
        help="comma-separated: vit_b, vit_l, vit_h, micro, mobile_sam (default: micro,vit_b)",
    )
    parser.add_argument(
        "--weights",
        default="auto",
        choices=["auto", "pretrained", "random"],
        help="auto: pretrained if available offline; a model without them is skipped unless "
        "--random-weights. random: every model at random init (timing only, no IoU)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="time official models whose checkpoint is not downloaded with random weights "
        "(timing only: their IoU is skipped and marked 'random weights: no IoU')",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="ours' precision; auto (as load_sam): the fastest path that keeps the masks, and the "
        "fast paths on; fp32 without --fast: segment_anything's own code, bit for bit (default: auto)",
    )
    _switch(
        parser,
        "--fast",
        None,
        "time ours on the fast paths (sam_widgets.fast); stock always runs stock code "
        "(default: on with --precision auto, off otherwise)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed encodings per predictor")
    parser.add_argument("--clicks", type=int, default=20, help="timed clicks per predictor")
    parser.add_argument("--image-size", default="768x1024", help="HxW of the timing test image")
    _switch(parser, "--timing", True, "time stock SamPredictor against CachedPredictor (default: on)")
    _switch(parser, "--iou", True, "measure IoU (1 click, 3 clicks, box) on --dataset (default: on)")
    parser.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (held-out scenes), skimage (scikit-image photos), or "
        "coco:<annotation.json>:<image_dir> (default: synthetic)",
    )
    parser.add_argument("--samples", type=int, default=10, help="images of the dataset to use (default: 10)")
    parser.add_argument(
        "--noc",
        action="store_true",
        help="clicks-to-IoU on --dataset: NoC@85, NoC@90, failures, mIoU after 1/3/5/10 clicks, with "
        "95%% bootstrap intervals (RITM's clicker, SAM's previous logits fed back)",
    )
    parser.add_argument(
        "--max-clicks", type=int, default=20, help="with --noc: clicks per object, the cap (default: 20)"
    )
    parser.add_argument("--min-area", type=int, default=100, help="skip objects smaller than this, pixels")
    parser.add_argument("--out", type=Path, help="write bench.json, summary.csv, per_object.csv here")
    parser.add_argument("--json", type=Path, help="also write the results JSON here")
    _add_ray_arguments(
        parser,
        "evaluate IoU (and --noc) on Ray, one image per task, each worker loading its own images "
        "(timing stays in this process)",
    )


def _add_ray_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    g = parser.add_argument_group("Ray (pip install 'sam-widgets[ray]')")
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help=f"{what}: alone, a local Ray runtime; with ADDRESS (auto, HOST:6379, ray://HOST:10001) "
        "join that cluster",
    )
    g.add_argument("--workers", type=int, help="Ray actors, one model each (default: from the cluster)")
    g.add_argument("--cpus-per-worker", type=float, help="CPUs per actor without GPUs (default: up to 4)")
    g.add_argument(
        "--gpus-per-worker",
        type=float,
        help="GPUs per actor (default: 1 when the cluster has GPUs)",
    )
    g.add_argument("--ray-num-cpus", type=int, help="CPUs of a local Ray runtime (default: all)")


def _bench(args: argparse.Namespace) -> int:
    """Check the options, load ``--dataset`` (``sam_widgets.datasets``), run the bench, print and write."""
    from . import bench

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        h, w = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--image-size {args.image_size!r}: write it as HxW, e.g. 768x1024") from None
    from ._images import MIN_SIDE

    if min(h, w) < MIN_SIDE:
        raise SystemExit(
            f"--image-size {args.image_size!r}: each side needs at least {MIN_SIDE} pixels, e.g. 768x1024"
        )
    for folder, flag in ((args.out, "--out"), (args.json.parent if args.json else None, "--json")):
        if folder is not None:
            _writable_folder(folder, flag)  # before minutes of measuring, not after
    if args.repeats < 1 or args.clicks < 1:
        raise SystemExit("--repeats and --clicks must be at least 1")
    if args.samples < 1:
        raise SystemExit("--samples must be at least 1")
    if not (args.timing or args.iou):
        raise SystemExit("--no-timing and --no-iou together leave nothing to measure")
    if args.noc and not args.iou:
        raise SystemExit("--noc measures on --dataset: drop --no-iou")
    if args.max_clicks < 1:
        raise SystemExit(f"--max-clicks {args.max_clicks}: give at least 1 (the literature uses 20)")
    from .architectures import MODEL_NAMES

    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        raise SystemExit(f"--models {args.models!r}: choose from {', '.join(MODEL_NAMES)}")
    samples = None
    ray_address = getattr(args, "ray", None)
    if args.iou:
        from . import datasets

        # On Ray the workers load the images (a large set never sits in this process): names here.
        load = datasets.load if ray_address is None else datasets.refs
        samples = load(args.dataset, limit=args.samples)
        if not samples:
            raise SystemExit(f"--dataset {args.dataset!r}: no image with an object in it")
    out = bench.run(
        models,
        weights=args.weights,
        random_weights=args.random_weights,
        timing=args.timing,
        iou_samples=samples if ray_address is None else None,
        **_given(args, "dataset", "min_area", "noc", "max_clicks", "device", "precision", "fast", "repeats"),
        clicks=args.clicks,
        image_size=(h, w),
    )
    objects = out.pop("_objects")
    if ray_address is not None and samples is not None:
        _bench_iou_on_ray(args, out, objects, samples)
    m = out["machine"]
    print(
        f"# {m['date']} | {m['processor']} | torch {m['torch']} | {m['torch_threads']} threads"
        + (f" | {m['gpu']}" if "gpu" in m else "")
    )
    for line in out["skipped"].values():
        print(f"skipped {line}")
    if args.timing and objects:
        print(bench.format_table(objects))
        from .bench.floor import format_floor

        print(format_floor(objects))
        if any(r.weights == "random" for r in objects):
            print("(random weights: timing only, masks are noise)")
    if samples is not None and objects:
        d = out["dataset"]
        print(f"\nIoU on {d['name']}: {d['samples']} images, objects of >= {args.min_area} pixels")
        print(bench.format_iou_table(objects))
        if args.noc:
            print(f"\nClicks to IoU on {d['name']}, at most {args.max_clicks} clicks per object")
            print(bench.format_noc_table(objects))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    if args.out:
        for path in bench.write_results(out, args.out):
            print(f"wrote {path}")
    if not objects:
        print("nothing was measured: every model was skipped", file=sys.stderr)
        return 1
    return 0


def _writable_folder(folder: Path, flag: str) -> None:
    """Create ``folder`` if needed; a UserError naming ``flag`` unless files can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".sam-widgets-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"{flag} {folder}: cannot write there ({e.strerror or e}); pass a writable folder."
        ) from e


class UserError(Exception):
    """A mistake in the command line: printed as ``error: ...``, exit status 1."""


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand so that every user error prints ``error: <what, and what to do>`` and
    exits with status 1, without a traceback: the package's errors (SamWidgetsError), bad values
    (ValueError), files that cannot be read or written (OSError) and messages given to
    SystemExit. Anything else is a bug and keeps its traceback. Ctrl-C exits with 130, after
    what the command says of where it stopped (``annotate.Interrupted``), if anything."""
    try:
        return func(args)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if isinstance(e.code, str):
            print(f"error: {e.code}", file=sys.stderr)
            return 1
        raise
    except (UserError, SamWidgetsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(
            f"error: cannot use{where}: {e.strerror or e}. Check the path, its permissions and free space.",
            file=sys.stderr,
        )
        return 1


def _bench_iou_on_ray(args: argparse.Namespace, out: dict, objects: list, samples: list) -> None:
    """``bench --ray``: each model's IoU (and NoC) on a Ray actor pool (``annotate.ray_runner``),
    merged into the same results as a local run; random weights keep their local, timing-only
    entry. ``samples`` are ``datasets.SampleRef``: the actors load the images, not this process."""
    from dataclasses import asdict

    from . import bench
    from .annotate import ray_runner

    started = ray_runner.connect(args.ray, num_cpus=args.ray_num_cpus)
    seen: dict = {}
    try:
        plan = ray_runner.plan_workers(args.workers, args.cpus_per_worker, args.gpus_per_worker)
        print(
            f"Ray: {plan['workers']} workers on {plan['cluster']['nodes']} node(s), "
            f"{plan['cluster']['CPU']:g} CPUs, {plan['cluster']['GPU']:g} GPUs",
            file=sys.stderr,
        )
        for r in objects:
            if r.weights == "random":
                first = next(s for s in (ref.load() for ref in samples) if s is not None)
                res = bench.evaluate_iou(
                    r.model,
                    [first],
                    dataset=args.dataset,
                    weights="random",
                    device=args.device,
                    precision=args.precision,
                    repeats=args.repeats,
                    progress=False,
                )
            else:
                res = ray_runner.evaluate_iou_ray(
                    r.model,
                    samples,
                    dataset=args.dataset,
                    device=args.device,
                    precision=args.precision,
                    min_area=args.min_area,
                    noc=args.noc,
                    max_clicks=args.max_clicks,
                    plan=plan,
                    seen=seen,
                )
            r.iou = asdict(res)
    finally:
        if started:
            ray_runner.disconnect()
    out["results"] = [asdict(r) for r in objects]
    out["settings"].update(n_clicks=3, min_area=args.min_area, ray={"address": args.ray, **plan})
    if args.noc:
        out["settings"].update(noc=True, max_clicks=args.max_clicks)
    if not seen:  # random weights only: no image went to Ray
        loaded = [s for s in (ref.load() for ref in samples[:1]) if s is not None]
        seen = {"names": [s.name for s in loaded], "objects": sum(len(s.masks) for s in loaded)}
    out["dataset"] = {
        "name": args.dataset,
        "samples": len(seen["names"]),
        "objects": int(seen["objects"]),
        "names": seen["names"],
    }


# ----------------------------------------------------------------------------- annotate


def add_annotate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sam-widgets annotate``."""
    parser.add_argument("images", type=Path, help="a folder of images (recursive), an image, or a .txt list")
    parser.add_argument("--out", type=Path, required=True, help="output folder (resumed if it exists)")
    parser.add_argument(
        "--model",
        default="auto",
        help="auto (load_sam's rule: by free memory and what is cached), micro, mobile_sam, vit_b, "
        "vit_l, vit_h (default: auto)",
    )
    parser.add_argument(
        "--weights", default="pretrained", choices=["pretrained", "random"], help="random: timing only"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p = parser.add_argument_group("prompts (default: segment everything)")
    p.add_argument(
        "--prompts",
        type=Path,
        help="boxes (and points) per image: a COCO detections JSON, or a YOLO labels folder",
    )
    p.add_argument(
        "--image-ids",
        type=Path,
        help="a COCO JSON (e.g. the dataset's instances file) whose 'images' give the ids: of "
        "--prompts' detections, and of the images in annotations.json",
    )
    p.add_argument("--min-score", type=float, default=0.0, help="ignore detections below this score")
    from .session import MICRO_PROPOSE_DEFAULTS as micro
    from .session import PROPOSE_DEFAULTS as sam

    def both(key: str) -> str:
        return f"default: the widget's, {micro[key]} for micro, {sam[key]} for the others"

    e = parser.add_argument_group("everything (the widget's settings for the model by default)")
    e.add_argument("--points-per-side", type=int, help=both("points_per_side"))
    e.add_argument("--pred-iou-thresh", type=float, help=both("pred_iou_thresh"))
    e.add_argument("--stability-score-thresh", type=float, help=both("stability_score_thresh"))
    e.add_argument(
        "--points-per-batch",
        type=int,
        default=64,
        help="points per decoder call at most (default 64; fewer on large images, to bound memory: "
        "the masks are the same)",
    )
    o = parser.add_argument_group("output")
    o.add_argument(
        "--format", default="rle", choices=["rle", "polygons"], help="COCO segmentation (default: rle)"
    )
    o.add_argument("--polygon-tolerance", type=float, default=0.0, help="simplify polygons, pixels")
    _switch(o, "--resume", True, "continue the run in --out, skipping images already done (default: on)")
    o.add_argument("--overwrite", action="store_true", help="start over: remove --out's earlier results")
    o.add_argument("--retry-failed", action="store_true", help="on resume, try failed images again")
    o.add_argument("--threads", type=int, help="torch threads per model")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_ray_arguments(parser, "annotate on Ray, one model per actor")


def _annotate(args: argparse.Namespace) -> int:
    from .annotate import annotate

    if (args.points_per_side is not None and args.points_per_side < 1) or args.points_per_batch < 1:
        raise SystemExit("--points-per-side and --points-per-batch must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    summary = annotate(
        args.images,
        args.out,
        **_given(args, "model", "weights", "device", "precision", "prompts", "image_ids", "min_score"),
        everything={  # those not given: the widget's for the model
            k: v
            for k, v in _given(
                args, "points_per_side", "pred_iou_thresh", "stability_score_thresh", "points_per_batch"
            ).items()
            if v is not None
        },
        **_given(args, "format", "polygon_tolerance", "retry_failed", "threads"),
        resume=args.resume and not args.overwrite,
        **_given(args, "ray", "workers", "cpus_per_worker", "gpus_per_worker", "ray_num_cpus"),
        progress=not args.quiet,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(summary.format())
    return 0


def bench_main(argv: list[str] | None = None) -> int:
    """``python -m sam_widgets.bench``: the ``bench`` command on its own."""
    from . import bench

    parser = argparse.ArgumentParser(
        prog="python -m sam_widgets.bench", description=bench.__doc__.split("\n")[0]
    )
    add_bench_arguments(parser)
    return run_command(_bench, parser.parse_args(argv))


# ----------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam-widgets", description="Segment Anything in Jupyter.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="download and verify official checkpoints into the cache")
    d.add_argument("name", choices=[*checkpoints.REGISTRY, "all"])
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_download)
    i = sub.add_parser("info", help="cache dir, cached checkpoints, devices, free memory")
    i.set_defaults(func=_info)
    b = sub.add_parser("bench", help="time stock SamPredictor against CachedPredictor")
    add_bench_arguments(b)
    b.set_defaults(func=_bench)
    a = sub.add_parser(
        "annotate",
        help="label a folder of images with SAM (everything, or boxes from a detector): COCO JSON",
        description="Label every image of IMAGES with SAM into OUT: annotations.json (COCO), "
        "manifest.json, one JSON record per image in OUT/images/ (a killed run resumes). Local by "
        "default; --ray for a Ray runtime or cluster.",
    )
    add_annotate_arguments(a)
    a.set_defaults(func=_annotate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
