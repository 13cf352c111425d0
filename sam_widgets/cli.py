"""The ``sam-widgets`` command: download checkpoints, show what is here, benchmark.

sam-widgets download vit_b|vit_l|vit_h|mobile_sam|all
sam-widgets info
sam-widgets bench [--models micro,vit_b] [--device cpu] ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from . import checkpoints
from .errors import SamWidgetsError

__all__ = ["main", "bench_main", "add_bench_arguments", "run_command", "UserError"]


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
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time ours on the fast paths (sam_widgets.fast); stock always runs stock code "
        "(default: on with --precision auto, off otherwise)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed encodings per predictor")
    parser.add_argument("--clicks", type=int, default=20, help="timed clicks per predictor")
    parser.add_argument("--image-size", default="768x1024", help="HxW of the timing test image")
    parser.add_argument(
        "--timing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time stock SamPredictor against CachedPredictor (default: on)",
    )
    parser.add_argument(
        "--iou",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure IoU (1 click, 3 clicks, box) on --dataset (default: on)",
    )
    parser.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (held-out scenes), skimage (scikit-image photos), or "
        "coco:<annotation.json>:<image_dir> (default: synthetic)",
    )
    parser.add_argument("--samples", type=int, default=10, help="images of the dataset to use (default: 10)")
    parser.add_argument("--min-area", type=int, default=100, help="skip objects smaller than this, pixels")
    parser.add_argument(
        "--out", type=Path, default=None, help="write bench.json, summary.csv, per_object.csv here"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results JSON here")


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
    from .models import MODEL_NAMES

    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        raise SystemExit(f"--models {args.models!r}: choose from {', '.join(MODEL_NAMES)}")
    samples = None
    if args.iou:
        from . import datasets

        samples = datasets.load(args.dataset, limit=args.samples)
        if not samples:
            raise SystemExit(f"--dataset {args.dataset!r}: no image with an object in it")
    out = bench.run(
        models,
        weights=args.weights,
        random_weights=args.random_weights,
        timing=args.timing,
        iou_samples=samples,
        dataset=args.dataset,
        min_area=args.min_area,
        device=args.device,
        precision=args.precision,
        fast=args.fast,
        repeats=args.repeats,
        clicks=args.clicks,
        image_size=(h, w),
    )
    objects = out.pop("_objects")
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
    SystemExit. Anything else is a bug and keeps its traceback. Ctrl-C exits with 130."""
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
