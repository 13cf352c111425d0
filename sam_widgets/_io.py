"""Private I/O, written once: atomic file writes, reading image files, mask RLE, CUDA sync.

- ``atomic_write``: a reader sees the old file or the whole new one, never half of it; the file
  gets the mode ``open()`` gives (0666 less the umask), not ``tempfile.mkstemp``'s 0600.
- ``write_all_or_nothing``: several files into a folder through a staging folder, the one that
  says the set is complete last (saves and exports).
- ``read_image`` (``open_image``): the one way image files are opened (PIL): EXIF orientation
  applied (``ImageOps.exif_transpose``), size limits checked from the header before any pixel is
  decoded, truncated or corrupt files refused at open, every error a ``ValueError`` naming the file.
- ``rle_encode`` / ``rle_decode``: COCO compressed RLE through pycocotools.
- ``cuda_sync``: wait for a CUDA device (a no-op elsewhere), for timings.

No torch at import time.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_write",
    "write_all_or_nothing",
    "MIN_SIDE",
    "MAX_PIXELS",
    "MAX_ASPECT",
    "check_size",
    "open_image",
    "read_image",
    "rle_encode",
    "rle_decode",
    "rle_pack",
    "rle_unpack",
    "cuda_sync",
]

# ---------------------------------------------------------------------- atomic writes


def atomic_write(
    path: str | os.PathLike,
    data: bytes | Callable[[IO[bytes]], Any],
    *,
    fsync: bool = False,
    private: bool = False,
) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is renamed over ``path`` only once
    complete; on any error (disk full, Ctrl-C) the temporary file is removed and ``path`` is
    untouched. ``fsync=True`` also flushes the data to disk before the rename. The file's mode is
    the one ``open()`` would give it: 0666 less the user's umask; ``private=True``: 0600 (what a
    cache of the user's images holds is for the user alone). Returns ``path``.
    """
    path = Path(path)
    fd, tmp = _new_temp_file(path.parent, path.suffix, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _new_temp_file(folder: Path, suffix: str, mode: int = 0o666) -> tuple[int, str]:
    """A new empty file ``folder/.tmp-<random><suffix>``, open for writing: created as ``open()``
    creates files (``mode``, 0666 by default, less the umask), where ``tempfile.mkstemp`` gives 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {folder}")


def write_all_or_nothing(
    folder: Path,
    files: Iterable[tuple[str, bytes]],
    last: Callable[[], tuple[str, bytes]],
    *,
    prefix: str,
    error: Callable[[str], Exception],
    doing: str,
    done: str,
    create: bool = False,
) -> None:
    """Write ``files`` ((path relative to ``folder``, bytes), made as they are read), then the file
    ``last()`` returns, into ``folder``, all or nothing.

    Every file is first written into a staging folder inside ``folder`` (its name starts with
    ``prefix``) and only then moved into place, ``last`` last: the file that says the set is
    complete. A failure before the moves leaves the folder as it was and raises ``error`` with a
    message that says so (``doing``: "Saving", ``done``: "saved"); the staging folder is always
    removed. ``create``: make ``folder`` (and its parents) first.
    """
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=prefix))
    except OSError as e:
        raise error(
            f"Cannot write into {folder} ({e.strerror or e}): pass a writable folder. Nothing was {done}."
        ) from e
    try:
        written: list[str] = []
        try:
            for rel, blob in files:
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)  # open(): the user's umask, unlike mkstemp's 0600
                written.append(rel)
            final, blob = last()
            (staging / final).write_bytes(blob)
        except OSError as e:
            raise error(
                f"{doing} into {folder} failed ({e.strerror or e}); nothing in the folder changed."
            ) from e
        for rel in written:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, folder / rel)
        os.replace(staging / final, folder / final)  # last: the set is complete
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------- image files


MIN_SIDE = 8  # pixels; a SAM embedding of anything smaller is meaningless
MAX_PIXELS = 100_000_000  # 100 MP: beyond this it is almost surely a mistake (and 300 MB of RAM)
MAX_ASPECT = 64  # long side / short side; beyond it SAM's resize leaves the short side < 1 patch


def check_size(w: int, h: int, source: str = "") -> None:
    """ValueError (prefixed by ``source``) unless a ``w`` x ``h`` image is one SAM can use."""
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"{source}The image is {w}x{h} pixels; SAM needs at least {MIN_SIDE} on each side.")
    if h * w > MAX_PIXELS:
        raise ValueError(
            f"{source}The image is {w}x{h} = {h * w / 1e6:.0f} MP, over the {MAX_PIXELS // 1_000_000} "
            "MP limit; downscale it first (SAM works at 1024 pixels on the long side anyway)."
        )
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ValueError(
            f"{source}The image is {w}x{h} pixels, a strip longer than {MAX_ASPECT}:1: SAM shrinks "
            "the long side to its input size, which leaves the short side under one patch. Cut it "
            "into tiles, or pad the short side."
        )


def _check_size(path: Path, w: int, h: int) -> None:
    check_size(w, h, f"{path}: ")


def open_image(path: str | os.PathLike) -> Any:
    """``PIL.Image.open(path)`` with its header checked: a lazy PIL image (call ``.close()``).

    Raises FileNotFoundError, or ValueError naming the file: not an image, over the pixel limit
    or under the minimum side (read from the header: nothing is decoded).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below
            im = Image.open(path)
    except Image.DecompressionBombError as e:  # PIL refuses over 2x its own limit (179 MP)
        raise ValueError(
            f"{path}: the image is over the {MAX_PIXELS // 1_000_000} MP limit (PIL: {e}); "
            "downscale it first (SAM works at 1024 pixels on the long side anyway)."
        ) from e
    except UnidentifiedImageError as e:
        raise ValueError(f"{path} is not an image file PIL can read: {e}.") from e
    except OSError as e:
        raise ValueError(f"{path} cannot be read: {e}.") from e
    try:
        _check_size(path, *im.size)
    except BaseException:
        im.close()
        raise
    return im


def read_image(path: str | os.PathLike) -> Any:
    """The decoded PIL image of a file, EXIF orientation applied; checked before decoding.

    Raises FileNotFoundError, or ValueError naming the file for anything wrong with it (not an
    image, truncated or corrupt, too large, too small).
    """
    from PIL import Image, ImageOps

    path = Path(path)
    im = open_image(path)
    try:
        with im, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()  # truncated or corrupt data fails here, not at first use
            try:
                out = ImageOps.exif_transpose(im)
            except Exception:  # a damaged EXIF block: keep the pixels as stored
                out = im.copy()
            if out is im:
                out = im.copy()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path} is truncated or corrupt: PIL could not decode it ({e}).") from e
    return out


# ---------------------------------------------------------------------- RLE


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of an HxW mask: ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """HxW bool mask of a COCO compressed RLE (counts as str or bytes), via pycocotools.

    Raises ValueError when the runs do not cover the size.
    """
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    coded = {"size": [h, w], "counts": counts}
    if int(mask_utils.area(coded)) > h * w:
        raise ValueError(f"an RLE whose runs do not fit a {w}x{h} image")
    # pycocotools' __array__ lacks numpy 2's copy keyword: a DeprecationWarning, not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out = np.asarray(mask_utils.decode(coded), dtype=bool)
    return np.ascontiguousarray(out)


def rle_pack(masks: np.ndarray) -> list[bytes]:
    """Compact form of an NxHxW bool stack: one RLE per mask, in row-major order (pycocotools).

    Private to this package (undo history): row-major runs need no transposed copy of the masks,
    which makes this ~15x faster than COCO's column-major ``rle_encode`` on large images.
    """
    from pycocotools import mask as mask_utils

    arr = np.ascontiguousarray(masks, dtype=bool)
    return [r["counts"] for r in mask_utils.encode(arr.transpose(2, 1, 0).view(np.uint8))]


def rle_unpack(counts: list[bytes], shape: tuple[int, int, int]) -> np.ndarray:
    """The NxHxW bool stack ``rle_pack`` packed (C-contiguous)."""
    from pycocotools import mask as mask_utils

    n, h, w = shape
    rles = [{"size": [w, h], "counts": c} for c in counts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fortran = mask_utils.decode(rles) if n else np.zeros((w, h, 0), np.uint8)
    return np.ascontiguousarray(fortran.transpose(2, 1, 0)).view(bool)


# ---------------------------------------------------------------------- CUDA


def cuda_sync(device: Any = None) -> None:
    """Wait until ``device``'s queued CUDA work is done (timings); nothing for CPU or MPS."""
    import torch

    dev = torch.device(device) if device is not None else None
    if dev is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    elif dev.type == "cuda":
        torch.cuda.synchronize(dev)
