"""Where SAM weights come from: the official checkpoints, a verified download, a cache.

The registry pins each official file (vit_b, vit_l, vit_h; MobileSAM's mobile_sam) by its full
sha256. A download streams
into ``<file>.part-<pid>`` next to the target, hashes while writing, and only an exact sha256 match
is renamed into place, so the cache never holds a half-written or wrong file under the official
name. A ``<file>.lock`` serialises concurrent downloads of the same file (threads or processes).

Hashing 2.5 GB takes seconds, so a verified file's digest is remembered in a memo ({path, sha256,
size, mtime_ns}); while size and mtime_ns are unchanged the file is not read again. The memo is an
optimisation only: it sits beside files in the cache (``<file>.sha256.json``) and in the cache's
``sha256-memos/`` folder for a file passed by path (never beside a user's file); when it cannot be
written (read-only storage: Kaggle's /kaggle/input, a shared lab disk) the file is hashed again
next time, and loads all the same.

A download has an overall deadline (``deadline``, default 2 hours) besides the per-read timeout,
and never takes more bytes than the file has (the registry size, else Content-Length, else
``MAX_DOWNLOAD_BYTES``).

Environment (read at call time):

- ``SAM_WIDGETS_CACHE``: cache directory (default ``$XDG_CACHE_HOME/sam-widgets`` or
  ``~/.cache/sam-widgets``).
- ``SAM_WIDGETS_MIRROR``: base URL serving the same file names (firewalled networks).
- ``SAM_WIDGETS_OFFLINE``: ``1``/``true``/``yes`` forbids the network; only cached files load.

torch is imported only inside :func:`load_state_dict`, so this module imports without it.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sam_widgets._io import atomic_write
from sam_widgets.errors import (
    CheckpointError,
    ChecksumError,
    DownloadError,
    MirrorURLError,
    OfflineError,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CheckpointInfo",
    "REGISTRY",
    "cache_dir",
    "is_offline",
    "url_for",
    "download",
    "verify",
    "cached_path",
    "cached_models",
    "load_state_dict",
    "describe_key_mismatch",
    "MAX_DOWNLOAD_BYTES",
    "DEFAULT_DEADLINE_S",
]

_OFFICIAL_BASE = "https://dl.fbaipublicfiles.com/segment_anything"
_MOBILE_SAM_REVISION = "f706ad9c4eb7f219c00d9050e46328518ffb65d2"
_MOBILE_SAM_BASE = f"https://github.com/ChaoningZhang/MobileSAM/raw/{_MOBILE_SAM_REVISION}/weights"
_CHUNK = 1 << 20  # bytes per read/write/hash step
_USER_AGENT = "sam-widgets"
MAX_DOWNLOAD_BYTES = 4 * 2**30  # no official file is larger (vit_h: 2.4 GiB); when nothing says the size
DEFAULT_DEADLINE_S = 2 * 3600.0  # a whole download, however slowly the bytes trickle in


@dataclass(frozen=True)
class CheckpointInfo:
    """One official checkpoint (SAM v1's three, MobileSAM's).

    Attributes:
        name: registry key, e.g. "vit_b", "mobile_sam".
        filename: file name in the cache and on the server, e.g. "sam_vit_b_01ec64.pth".
        url: official download URL.
        sha256: full sha256 hex digest (the suffix in the file name is not a prefix of it).
        size_bytes: file size in bytes, or None where it is not pinned.
        listed_bytes: where the size is not pinned, the size other projects list for the file:
            shown to users (``download_size``), never checked on a download.
    """

    name: str
    filename: str
    url: str
    sha256: str
    size_bytes: int | None
    listed_bytes: int | None = None

    @property
    def download_size(self) -> str:
        """The download's size for people: "375 MB", "2.6 GB" (pinned or listed; "" if neither)."""
        n = self.size_bytes if self.size_bytes is not None else self.listed_bytes
        if n is None:
            return ""
        return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _pinned(
    name: str, filename: str, sha256: str, size_bytes: int | None, base: str, listed_bytes: int | None = None
) -> CheckpointInfo:
    return CheckpointInfo(name, filename, f"{base}/{filename}", sha256, size_bytes, listed_bytes)


REGISTRY: dict[str, CheckpointInfo] = {
    info.name: info
    for info in (
        _pinned(
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375_042_383,
            _OFFICIAL_BASE,
        ),
        _pinned(
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            None,  # not pinned: 1,249,524,607 bytes as listed beside this sha256 by other projects
            _OFFICIAL_BASE,
            listed_bytes=1_249_524_607,
        ),
        _pinned(
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            2_564_550_879,
            _OFFICIAL_BASE,
        ),
        # MobileSAM (TinyViT encoder + SAM's prompt encoder and mask decoder; Apache-2.0), the file
        # in its GitHub repository at the revision that independent projects pin, with their sha256.
        _pinned(
            "mobile_sam",
            "mobile_sam.pt",
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            40_728_226,
            _MOBILE_SAM_BASE,
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Configuration


def cache_dir() -> Path:
    """Directory holding downloaded checkpoints (not created here).

    ``$SAM_WIDGETS_CACHE``, else ``$XDG_CACHE_HOME/sam-widgets``, else ``~/.cache/sam-widgets``.
    """
    explicit = os.environ.get("SAM_WIDGETS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "sam-widgets"
    return Path.home() / ".cache" / "sam-widgets"


def is_offline() -> bool:
    """True when ``SAM_WIDGETS_OFFLINE`` is "1", "true" or "yes" (any case): no network use."""
    return os.environ.get("SAM_WIDGETS_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def url_for(name: str) -> str:
    """URL to fetch checkpoint ``name`` from: ``$SAM_WIDGETS_MIRROR/<filename>``, else official."""
    info = _info(name)
    mirror = os.environ.get("SAM_WIDGETS_MIRROR", "").strip()
    if mirror:
        return f"{_check_mirror(mirror).rstrip('/')}/{info.filename}"
    return info.url


def _check_mirror(mirror: str) -> str:
    """``mirror`` if it is a usable base URL (http or https); else MirrorURLError."""
    parts = urllib.parse.urlsplit(mirror)
    ok = parts.scheme in ("http", "https") and parts.netloc
    if not ok or parts.query or parts.fragment or any(c.isspace() for c in mirror):
        raise MirrorURLError(
            f"SAM_WIDGETS_MIRROR={mirror!r} is not a base URL: set it to the http(s) address of a "
            "folder serving the official file names, e.g. SAM_WIDGETS_MIRROR=http://lab-server/sam "
            "or unset it to download from the official site."
        )
    return mirror


def _info(name: str) -> CheckpointInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown SAM checkpoint {name!r}; known: {known}") from None


def _resolve_dir(directory: str | os.PathLike[str] | None) -> Path:
    return cache_dir() if directory is None else Path(directory).expanduser()


def _way_out(info: CheckpointInfo, target: Path) -> str:
    """The manual fix every failure message ends with."""
    return (
        f"Download {info.filename} yourself from {info.url} and put it at {target}, "
        f"or pass checkpoint='/path/to/{info.filename}' to load_sam. "
        f"Behind a firewall, set SAM_WIDGETS_MIRROR to a server that hosts {info.filename}."
    )


# ---------------------------------------------------------------------------------------------
# Verification (sha256, remembered in a sidecar memo)


def _sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks (hashlib.file_digest is 3.11+)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _memo_path(path: Path, in_cache: bool = False) -> Path:
    """Where the digest of ``path`` is remembered: beside it in a cache folder (``in_cache``, or
    the default cache), else in the cache's ``sha256-memos/`` folder under a hash of its absolute
    path: never beside a file the user passed."""
    real = path.resolve()
    cache = cache_dir().expanduser().resolve()
    if in_cache or real.parent == cache:
        return path.with_name(path.name + ".sha256.json")
    key = hashlib.sha256(str(real).encode()).hexdigest()[:32]
    return cache / "sha256-memos" / f"{key}.json"


def _read_memo(path: Path, stat: os.stat_result, in_cache: bool = False) -> str | None:
    """The remembered digest if the memo matches the file's current size and mtime_ns."""
    try:
        memo = json.loads(_memo_path(path, in_cache).read_text(encoding="utf-8"))
        if memo.get("path", str(path.resolve())) != str(path.resolve()):
            return None
        if memo["size"] == stat.st_size and memo["mtime_ns"] == stat.st_mtime_ns:
            return str(memo["sha256"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing, unreadable or stale memo: hash again
    return None


def _write_memo(path: Path, sha256: str, stat: os.stat_result, in_cache: bool = False) -> None:
    """Remember a digest; any failure (read-only storage, no cache folder) is ignored."""
    data = {"path": str(path.resolve()), "sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        memo = _memo_path(path, in_cache)
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, json.dumps(data).encode())
    except OSError:
        pass  # an optimisation only: the file is hashed again next time


def verify(path: str | os.PathLike[str], name: str) -> None:
    """Check that the file at ``path`` is checkpoint ``name`` (full sha256); raise ChecksumError.

    The digest is remembered (see the module's docstring: never beside a file you passed, and
    never required); while the file's size and mtime_ns are unchanged it is not read again. A size
    that differs from the registry fails without hashing. Works on read-only storage.
    """
    _verify(Path(path), name, in_cache=False)


def _verify(path: Path, name: str, in_cache: bool) -> None:
    info = _info(name)
    path = Path(path)
    stat = path.stat()
    if info.size_bytes is not None and stat.st_size != info.size_bytes:
        raise ChecksumError(
            f"{path} is {stat.st_size:,} bytes but {info.filename} ({name}) is "
            f"{info.size_bytes:,} bytes: it is not the official file (truncated or another file). "
            f"Delete {path} and download it again. {_way_out(info, path)}"
        )
    digest = _read_memo(path, stat, in_cache)
    if digest is None:
        digest = _sha256_file(path)
        _write_memo(path, digest, stat, in_cache)
    if digest != info.sha256:
        raise ChecksumError(
            f"{path} has sha256 {digest} but {info.filename} ({name}) has sha256 {info.sha256}: "
            f"the file is corrupted or not the official checkpoint. "
            f"Delete {path} and download it again. {_way_out(info, path)}"
        )


def cached_path(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Path of checkpoint ``name`` in the cache if present and verified, else None.

    Raises ChecksumError (naming the path to delete) when a cached file has the wrong sha256.
    """
    info = _info(name)
    path = _resolve_dir(cache_dir) / info.filename
    if not path.is_file():
        return None
    _verify(path, name, in_cache=True)
    return path


def cached_models(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """{name: path} of the cached checkpoints that verify; files that fail are left out.

    Uses the sha256 memo, so repeated calls do not re-read multi-GB files.
    """
    found: dict[str, Path] = {}
    for name in REGISTRY:
        try:
            path = cached_path(name, cache_dir)
        except (ChecksumError, OSError):
            continue
        if path is not None:
            found[name] = path
    return found


# ---------------------------------------------------------------------------------------------
# Download


def _write_chunk(f: IO[bytes], chunk: bytes) -> None:
    f.write(chunk)


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip()[:16].lower()
    return start.startswith(b"<!doctype") or start.startswith(b"<html")


def download(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    deadline: float | None = DEFAULT_DEADLINE_S,
) -> Path:
    """Return the path of checkpoint ``name`` in the cache, downloading and verifying it if needed.

    Args:
        name: registry key ("vit_b", "vit_l", "vit_h", "mobile_sam").
        cache_dir: directory to use instead of :func:`cache_dir`.
        progress: show a tqdm progress bar.
        timeout: seconds allowed for connecting and for each read.
        deadline: seconds allowed for the whole download (None: no limit); a server that
            trickles bytes just fast enough to beat ``timeout`` still ends.

    A cached, verified file is returned without network use. Otherwise the file is fetched from
    :func:`url_for` into ``<file>.part-<pid>``, hashed while written, and renamed into place only
    when its sha256 matches. Whatever fails, the partial file is removed.

    Raises:
        OfflineError: not cached and ``SAM_WIDGETS_OFFLINE`` is set.
        DownloadError: HTTP error, timeout or deadline, HTML page instead of the file, truncated,
            more bytes than the file has, disk full, a cache folder that cannot be written.
        MirrorURLError: ``SAM_WIDGETS_MIRROR`` is not a URL.
        ChecksumError: the downloaded (or already cached) file has the wrong sha256.
    """
    from filelock import FileLock

    info = _info(name)
    directory = _resolve_dir(cache_dir)
    target = directory / info.filename

    found = cached_path(name, directory)
    if found is not None:
        return found
    if is_offline():
        raise OfflineError(
            f"{name} ({info.filename}) is not in the cache at {target} and SAM_WIDGETS_OFFLINE "
            f"is set, so it is not downloaded. {_way_out(info, target)}"
        )
    url = url_for(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"Could not download {name} from {url}: cannot create the cache directory "
            f"{directory} ({exc}). Set SAM_WIDGETS_CACHE to a writable directory. "
            f"{_way_out(info, target)}"
        ) from exc

    if not os.access(directory, os.W_OK) or _read_only(directory):
        raise DownloadError(
            f"{name} ({info.filename}) is not in the cache at {directory}, and that folder cannot "
            f"be written (read-only storage), so it cannot be downloaded there. Set "
            f"SAM_WIDGETS_CACHE to a writable folder, or pass checkpoint='/path/to/"
            f"{info.filename}' to load_sam. {_way_out(info, target)}"
        )
    lock = FileLock(str(target) + ".lock")
    try:
        lock.acquire()
    except OSError as exc:
        raise DownloadError(
            f"Could not download {name}: cannot create the lock file {target}.lock in the cache "
            f"({exc}). Set SAM_WIDGETS_CACHE to a writable folder. {_way_out(info, target)}"
        ) from exc
    try:
        # Another process may have finished while we waited for the lock.
        found = cached_path(name, directory)
        if found is not None:
            return found
        # Holding the lock, any .part file is a leftover of a killed process.
        for stale in directory.glob(f"{info.filename}.part-*"):
            stale.unlink(missing_ok=True)
        _fetch(info, url, target, progress=progress, timeout=timeout, deadline=deadline)
    finally:
        lock.release()
    return target


def _read_only(directory: Path) -> bool:
    """True when ``directory`` is on a read-only mount (``os.access`` says yes to root there)."""
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): trust os.access
        return False


def _fetch(
    info: CheckpointInfo,
    url: str,
    target: Path,
    *,
    progress: bool,
    timeout: float,
    deadline: float | None = DEFAULT_DEADLINE_S,
) -> None:
    """Stream ``url`` into a temp file beside ``target``, verify, rename. Caller holds the lock."""
    from tqdm.auto import tqdm

    def fail(cause: str) -> DownloadError:
        return DownloadError(
            f"Could not download {info.name} ({info.filename}) from {url}: {cause}. {_way_out(info, target)}"
        )

    part = target.with_name(f"{target.name}.part-{os.getpid()}")
    ends = None if deadline is None else time.monotonic() + deadline
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise fail(f"HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise fail(f"timeout: no connection within {timeout:g} s") from exc
            raise fail(f"cannot connect ({exc.reason})") from exc
        except TimeoutError as exc:
            raise fail(f"timeout: the server sent no response within {timeout:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise fail(f"connection failed ({exc!r})") from exc

        with response:
            status = response.status
            if status != 200:
                raise fail(f"HTTP {status} {response.reason} (expected 200)")
            content_type = response.headers.get("Content-Type", "")
            if content_type.split(";")[0].strip().lower() == "text/html":
                raise fail(
                    f"the server sent an HTML page (Content-Type {content_type}), not the "
                    f"checkpoint: probably a proxy, login or error page"
                )
            length_header = response.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.isdigit() else None
            expected = info.size_bytes if info.size_bytes is not None else length
            cap = expected if expected is not None else MAX_DOWNLOAD_BYTES
            if info.size_bytes is not None and length is not None and length != info.size_bytes:
                raise fail(
                    f"the server announces {length:,} bytes but {info.filename} is "
                    f"{info.size_bytes:,} bytes: wrong file at this URL"
                )
            if expected is not None:
                free = shutil.disk_usage(target.parent).free
                if free < expected:
                    raise fail(
                        f"disk full: {expected:,} bytes needed in {target.parent}, only {free:,} bytes free"
                    )

            digest = hashlib.sha256()
            received = 0

            def read_chunk() -> bytes:
                try:
                    return response.read1(_CHUNK)  # what has arrived: the deadline is checked often
                except http.client.IncompleteRead as exc:
                    return exc.partial  # stream ended early: the size checks below report it
                except TimeoutError as exc:
                    raise fail(f"timeout: no data for {timeout:g} s after {received:,} bytes") from exc
                except (OSError, http.client.HTTPException) as exc:
                    raise fail(f"connection lost after {received:,} bytes ({exc!r})") from exc

            bar = tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=info.filename,
                disable=not progress,
            )
            try:
                with open(part, "wb") as f:
                    while chunk := read_chunk():
                        if received == 0 and _looks_like_html(chunk):
                            raise fail(
                                "the server sent an HTML page, not the checkpoint: probably a "
                                "proxy, login or error page"
                            )
                        if received + len(chunk) > cap:
                            raise fail(
                                f"the server sent more than {cap:,} bytes"
                                + (" (the file's size)" if expected is not None else " (no size announced)")
                                + ": wrong file at this URL, or a never-ending stream"
                            )
                        _write_chunk(f, chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                        if ends is not None and time.monotonic() > ends:
                            raise fail(
                                f"deadline: {deadline:g} s passed with {received:,} bytes received; "
                                "the connection is too slow (pass a longer deadline= to download)"
                            )
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:  # our side only: network errors are DownloadError by now
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    need = f"{expected:,} bytes" if expected is not None else "the whole file"
                    raise fail(
                        f"disk full while writing {part} after {received:,} bytes: "
                        f"{need} needed in {target.parent}; free space or set SAM_WIDGETS_CACHE "
                        f"to another disk"
                    ) from exc
                raise fail(f"cannot write {part} ({exc})") from exc
            finally:
                bar.close()

        for announced, what in ((length, "Content-Length"), (info.size_bytes, "registry size")):
            if announced is not None and received < announced:
                raise fail(
                    f"truncated: received {received:,} of {announced:,} bytes ({what}); "
                    f"the connection closed early"
                )
        sha = digest.hexdigest()
        if sha != info.sha256:
            raise ChecksumError(
                f"The file downloaded from {url} for {info.name} has sha256 {sha} but "
                f"{info.filename} has sha256 {info.sha256} ({received:,} bytes received): "
                f"the server (or a mirror set by SAM_WIDGETS_MIRROR) did not send the official "
                f"file; nothing was saved. {_way_out(info, target)}"
            )
        os.replace(part, target)
        _write_memo(target, sha, target.stat(), in_cache=True)
    finally:
        part.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Loading


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a checkpoint file as a state dict {parameter name: tensor} on the CPU.

    Uses ``torch.load(..., weights_only=True)``: a pickle that would run code is refused. A dict
    wrapping the weights under "model" or "state_dict" (training checkpoints) is unwrapped.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a state dict of tensors.
    """
    import torch

    path = Path(path)
    fix = (
        "Pass the path of an official SAM checkpoint (sam_vit_*.pth) or of a state dict saved "
        "with torch.save(model.state_dict(), path)."
    )
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}. {fix}") from exc
    except Exception as exc:  # pickle, zip, torch format errors: all mean "not a checkpoint"
        raise CheckpointError(
            f"{path} is not a loadable PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Files holding code or arbitrary "
            f"objects are refused (weights_only=True). {fix}"
        ) from exc

    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict. {fix}")
    if not obj:
        raise CheckpointError(f"{path} holds an empty dict, not a state dict. {fix}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path} is not a state dict: entry {key!r} is a {type(value).__name__}, not a tensor. {fix}"
            )
    return obj


def describe_key_mismatch(missing: list[str], unexpected: list[str], wrong: list[str] | None = None) -> str:
    """The keys a state dict lacks / has too many / has mis-shaped, the first few by name, and the
    fix when the cause is known (a ``module.`` prefix from DataParallel/DDP, a wrapper key)."""

    def first(keys: list[str], n: int = 3) -> str:
        shown = ", ".join(repr(k) for k in keys[:n])
        return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")

    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {first(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {first(unexpected)}")
    if wrong:
        parts.append(f"mis-shaped {len(wrong)}: {first(wrong)}")
    text = "; ".join(parts) + "."
    stripped = {k.removeprefix("module.") for k in unexpected}
    if unexpected and all(k.startswith("module.") for k in unexpected) and set(missing) <= stripped:
        text += (
            " Every key starts with 'module.': the weights were saved from a DataParallel/"
            "DistributedDataParallel wrapper. Save the inner model's weights instead "
            "(torch.save(model.module.state_dict(), path)), or strip the prefix: "
            "sd = {k.removeprefix('module.'): v for k, v in sd.items()}; torch.save(sd, path)."
        )
    return text
