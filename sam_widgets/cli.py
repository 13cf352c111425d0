"""The ``sam-widgets`` command: download checkpoints, show what is here, benchmark.

sam-widgets download vit_b|vit_l|vit_h|all
sam-widgets info
sam-widgets bench [--models micro,vit_b] [--device cpu] ...
"""

from __future__ import annotations

import argparse
import sys

from . import checkpoints
from .errors import SamWidgetsError

__all__ = ["main"]


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
        print(f"{name:<6}      {state}  ({checkpoints.url_for(name)})")
    print(f"micro       {'bundled: ' + str(WEIGHTS_PATH) if WEIGHTS_PATH.is_file() else 'MISSING'}")
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    dev = models.pick_device("auto")
    free = models.free_memory_bytes(dev)
    pick = models.pick_model(free)
    print(f"devices:    {', '.join(devices)}; auto -> {dev}")
    print(f"free mem:   {free / 2**30:.1f} GiB on {dev}")
    fallback = "" if pick in cached or not checkpoints.is_offline() else " (not cached and offline: micro)"
    print(f"auto model: {pick}{fallback}")
    print(f"torch:      {torch.__version__}, {torch.get_num_threads()} threads")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.main_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    from . import bench

    parser = argparse.ArgumentParser(prog="sam-widgets", description="Segment Anything in Jupyter.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="download and verify official checkpoints into the cache")
    d.add_argument("name", choices=[*checkpoints.REGISTRY, "all"])
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_download)
    i = sub.add_parser("info", help="cache dir, cached checkpoints, devices, free memory")
    i.set_defaults(func=_info)
    b = sub.add_parser("bench", help="time stock SamPredictor against CachedPredictor")
    bench.add_arguments(b)
    b.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SamWidgetsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
