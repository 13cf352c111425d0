"""Tests for sam_widgets.checkpoints: registry, cache, verified download, sha256 memo, loading.

Downloads run against a real HTTP server on 127.0.0.1 serving small fake checkpoint files.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import pickle
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sam_widgets import checkpoints
from sam_widgets.checkpoints import (
    REGISTRY,
    CheckpointInfo,
    cache_dir,
    cached_models,
    cached_path,
    download,
    is_offline,
    load_state_dict,
    url_for,
    verify,
)
from sam_widgets.errors import CheckpointError, ChecksumError, DownloadError, OfflineError

NAME = "vit_test"
FILENAME = "sam_vit_test_000000.pth"
PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
OFFICIAL = f"https://dl.fbaipublicfiles.com/segment_anything/{FILENAME}"


# ---------------------------------------------------------------------------------------------
# A local HTTP server whose behaviour per file is set by the test


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        srv = self.server
        name = self.path.lstrip("/")
        with srv.counter_lock:
            srv.requests[name] += 1
        mode = srv.mode
        body = srv.files.get(name)
        if body is None or mode == "404":
            self.send_error(404, "Not Found")
            return
        if mode == "slow":
            srv.release.wait(10)  # longer than the client's timeout; set at teardown
            return
        if mode == "delay":
            time.sleep(0.3)  # keeps concurrent downloads overlapping
        if mode in ("endless", "trickle"):  # no Content-Length, never ends: only a cap or deadline stops it
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            piece = b"\0" * (65536 if mode == "endless" else 100)
            try:
                while not srv.release.is_set():
                    self.wfile.write(piece)
                    self.wfile.flush()
                    if mode == "trickle":
                        time.sleep(0.05)
            except OSError:  # the client gave up
                pass
            self.close_connection = True
            return
        content_type = "text/html; charset=utf-8" if mode == "html" else "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if mode != "nolength":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.mode = "ok"
        self.requests: Counter[str] = Counter()
        self.counter_lock = threading.Lock()
        self.release = threading.Event()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.files[FILENAME] = PAYLOAD
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: _Server) -> Path:
    """Registry entry for the fake file, mirror = local server, cache = tmp dir. Returns cache."""
    info = CheckpointInfo(NAME, FILENAME, OFFICIAL, SHA, len(PAYLOAD))
    monkeypatch.setitem(REGISTRY, NAME, info)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAM_WIDGETS_CACHE", str(cache))
    monkeypatch.setenv("SAM_WIDGETS_MIRROR", server.base_url + "/")
    monkeypatch.delenv("SAM_WIDGETS_OFFLINE", raising=False)
    return cache


def _leftovers(cache: Path) -> list[str]:
    """Files that would be trusted or are half-written (the lock file is harmless)."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


# ---------------------------------------------------------------------------------------------
# Registry and configuration


def test_registry_pins_the_official_files() -> None:
    assert set(REGISTRY) >= {"vit_b", "vit_l", "vit_h"}
    b, h, l_ = REGISTRY["vit_b"], REGISTRY["vit_h"], REGISTRY["vit_l"]
    assert b.url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert b.size_bytes == 375042383
    assert b.sha256 == "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    assert l_.filename == "sam_vit_l_0b3195.pth" and l_.size_bytes is None
    assert l_.sha256 == "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"
    assert h.size_bytes == 2564550879
    assert h.sha256 == "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.sha256 = "0"  # type: ignore[misc]


def test_cache_dir_env_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAM_WIDGETS_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "sam-widgets"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sam-widgets"
    monkeypatch.setenv("SAM_WIDGETS_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"


def test_offline_flag_and_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)]:
        monkeypatch.setenv("SAM_WIDGETS_OFFLINE", value)
        assert is_offline() is expected
    monkeypatch.delenv("SAM_WIDGETS_MIRROR", raising=False)
    assert url_for("vit_h") == REGISTRY["vit_h"].url
    monkeypatch.setenv("SAM_WIDGETS_MIRROR", "http://mirror.local/sam//")
    assert url_for("vit_b") == "http://mirror.local/sam/sam_vit_b_01ec64.pth"
    with pytest.raises(ValueError, match="vit_b"):
        url_for("vit_x")


# ---------------------------------------------------------------------------------------------
# Download


def test_download_good_file_then_cached(env: Path, server: _Server) -> None:
    path = download(NAME, progress=False, timeout=5)
    assert path == env / FILENAME
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    assert _leftovers(env) == [FILENAME, FILENAME + ".sha256.json"]
    assert server.requests[FILENAME] == 1
    assert download(NAME, progress=False) == path  # cached: no request
    assert server.requests[FILENAME] == 1
    assert cached_path(NAME) == path
    assert cached_models() == {NAME: path}


def test_download_explicit_cache_dir(env: Path, server: _Server, tmp_path: Path) -> None:
    other = tmp_path / "other"
    path = download(NAME, cache_dir=other, progress=False, timeout=5)
    assert path == other / FILENAME and not env.exists()


def test_wrong_sha256_leaves_nothing(env: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, NAME, dataclasses.replace(REGISTRY[NAME], sha256="0" * 64))
    with pytest.raises(ChecksumError) as err:
        download(NAME, progress=False, timeout=5)
    msg = str(err.value)
    assert SHA in msg and "0" * 64 in msg and server.base_url in msg and "SAM_WIDGETS_MIRROR" in msg
    assert _leftovers(env) == []


def test_truncated_body(env: Path, server: _Server) -> None:
    server.mode = "truncate"
    with pytest.raises(DownloadError, match="truncated") as err:
        download(NAME, progress=False, timeout=5)
    assert f"{len(PAYLOAD) // 2:,}" in str(err.value)
    assert _leftovers(env) == []


def test_shorter_than_registry_size_without_content_length(env: Path, server: _Server) -> None:
    # No Content-Length, connection closed after 1000 bytes: the registry size catches it.
    server.files[FILENAME] = PAYLOAD[:1000]
    server.mode = "nolength"
    with pytest.raises(DownloadError, match="truncated.*registry size"):
        download(NAME, progress=False, timeout=5)
    assert _leftovers(env) == []


def test_announced_size_differs_from_registry(env: Path, server: _Server) -> None:
    server.files[FILENAME] = PAYLOAD[:1000]
    with pytest.raises(DownloadError, match="wrong file"):
        download(NAME, progress=False, timeout=5)
    assert server.requests[FILENAME] == 1 and _leftovers(env) == []


def test_404_names_url_and_target(env: Path, server: _Server) -> None:
    server.mode = "404"
    with pytest.raises(DownloadError) as err:
        download(NAME, progress=False, timeout=5)
    msg = str(err.value)
    assert "404" in msg
    assert f"{server.base_url}/{FILENAME}" in msg  # the URL tried
    assert OFFICIAL in msg and str(env / FILENAME) in msg  # the manual way out
    assert "checkpoint=" in msg and "SAM_WIDGETS_MIRROR" in msg
    assert _leftovers(env) == []


@pytest.mark.parametrize("how", ["content-type", "body"])
def test_html_page_is_refused(env: Path, server: _Server, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
    server.files[FILENAME] = page
    if how == "content-type":
        server.mode = "html"
    # Size pinned to the page's so the HTML check, not the size check, must catch it.
    monkeypatch.setitem(REGISTRY, NAME, dataclasses.replace(REGISTRY[NAME], size_bytes=len(page)))
    with pytest.raises(DownloadError, match="HTML"):
        download(NAME, progress=False, timeout=5)
    assert _leftovers(env) == []


def test_slow_server_times_out(env: Path, server: _Server) -> None:
    server.mode = "slow"
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timeout"):
        download(NAME, progress=False, timeout=0.5)
    assert time.monotonic() - start < 5
    assert _leftovers(env) == []


def test_concurrent_downloads_fetch_once(env: Path, server: _Server) -> None:
    server.mode = "delay"
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(download, NAME, progress=False, timeout=5) for _ in range(2)]
        paths = [f.result(timeout=20) for f in futures]
    assert paths[0] == paths[1] == env / FILENAME
    assert hashlib.sha256(paths[0].read_bytes()).hexdigest() == SHA
    assert server.requests[FILENAME] == 1
    assert _leftovers(env) == [FILENAME, FILENAME + ".sha256.json"]


def test_offline_names_the_path(env: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM_WIDGETS_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        download(NAME, progress=False)
    assert str(env / FILENAME) in str(err.value) and OFFICIAL in str(err.value)
    assert server.requests[FILENAME] == 0
    # A cached file is still served offline.
    env.mkdir(parents=True)
    (env / FILENAME).write_bytes(PAYLOAD)
    assert download(NAME, progress=False) == env / FILENAME


def test_disk_full(env: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(f: object, chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "_write_chunk", full)
    with pytest.raises(DownloadError, match="disk full") as err:
        download(NAME, progress=False, timeout=5)
    assert f"{len(PAYLOAD):,} bytes needed" in str(err.value)
    assert _leftovers(env) == []


def test_stale_part_file_is_cleaned(env: Path, server: _Server) -> None:
    env.mkdir(parents=True)
    (env / f"{FILENAME}.part-999999").write_bytes(b"half")
    download(NAME, progress=False, timeout=5)
    assert _leftovers(env) == [FILENAME, FILENAME + ".sha256.json"]


# ---------------------------------------------------------------------------------------------
# Verification memo


def test_verify_memo_skips_rehash(env: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    path = download(NAME, progress=False, timeout=5)
    calls = []
    real = checkpoints._sha256_file
    monkeypatch.setattr(checkpoints, "_sha256_file", lambda p: calls.append(p) or real(p))
    verify(path, NAME)
    assert cached_models() == {NAME: path}
    assert calls == []  # the download's memo is trusted
    # Without a memo: hashed once, then remembered.
    (env / (FILENAME + ".sha256.json")).unlink()
    verify(path, NAME)
    verify(path, NAME)
    assert calls == [path]


def test_modified_file_fails_verification(env: Path, server: _Server) -> None:
    path = download(NAME, progress=False, timeout=5)
    stat = path.stat()
    path.write_bytes(bytes(len(PAYLOAD)))  # same size, other bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ChecksumError, match="Delete") as err:
        verify(path, NAME)
    assert str(path) in str(err.value)
    with pytest.raises(ChecksumError):
        cached_path(NAME)
    with pytest.raises(ChecksumError):
        download(NAME, progress=False)  # a bad cached file is reported, not overwritten
    assert cached_models() == {}
    assert server.requests[FILENAME] == 1


def test_wrong_size_fails_without_hashing(env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(b"short")
    monkeypatch.setattr(checkpoints, "_sha256_file", lambda p: pytest.fail("hashed"))
    with pytest.raises(ChecksumError, match="bytes"):
        verify(path, NAME)


# ---------------------------------------------------------------------------------------------
# load_state_dict


def _write_marker(path: str) -> None:
    Path(path).write_text("code ran")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_write_marker, (str(self.marker),))


def test_load_state_dict_real_and_wrapped(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    sd = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    torch.save(sd, tmp_path / "plain.pth")
    torch.save({"model": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    torch.save({"state_dict": sd}, tmp_path / "wrapped2.pth")
    for name in ("plain.pth", "wrapped.pth", "wrapped2.pth"):
        loaded = load_state_dict(tmp_path / name)
        assert set(loaded) == {"w", "b"}
        assert torch.equal(loaded["w"], sd["w"]) and loaded["w"].device.type == "cpu"


def test_load_state_dict_rejects_garbage(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    (tmp_path / "random.pth").write_bytes(os.urandom(4096))
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    for name in ("random.pth", "tensor.pth", "missing.pth"):
        with pytest.raises(CheckpointError, match=name):
            load_state_dict(tmp_path / name)


def test_load_state_dict_refuses_code(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    # The payload is real: plain pickle runs it.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()

    marker = tmp_path / "marker"
    torch.save({"w": _Evil(marker)}, tmp_path / "evil.pth")
    with (tmp_path / "evil.pkl").open("wb") as f:
        pickle.dump(_Evil(marker), f)
    for name in ("evil.pth", "evil.pkl"):
        with pytest.raises(CheckpointError, match="weights_only"):
            load_state_dict(tmp_path / name)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Read-only storage, deadline, byte cap, mirror URL, key names (each failed before its fix)


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch):
    """``read_only(folder)``: writes under ``folder`` fail with EROFS, as on Kaggle's /kaggle/input.

    Emulated (the tests run as any user, without mount rights) at the OS calls that write.
    """
    import builtins
    import io

    roots: list[str] = []

    def blocked(path: object) -> bool:
        try:
            p = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except TypeError:
            return False
        return any(p == r or p.startswith(r + os.sep) for r in roots)

    def erofs(path: object) -> OSError:
        return OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))  # type: ignore[arg-type]

    def guard(fn, writes=lambda *a, **k: True):
        def wrapped(path, *args, **kwargs):
            if blocked(path) and writes(*args, **kwargs):
                raise erofs(path)
            return fn(path, *args, **kwargs)

        return wrapped

    def open_writes(mode="r", *args, **kwargs):
        return any(c in mode for c in "wax+")

    def os_open_writes(flags, *args, **kwargs):
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))

    monkeypatch.setattr(builtins, "open", guard(builtins.open, open_writes))
    monkeypatch.setattr(io, "open", guard(io.open, open_writes))
    monkeypatch.setattr(os, "open", guard(os.open, os_open_writes))
    for name in ("mkdir", "unlink", "remove", "rmdir", "utime"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def two(src, dst, *args, _real=real, **kwargs):
            if blocked(src) or blocked(dst):
                raise erofs(dst)
            return _real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, name, two)
    monkeypatch.setattr(checkpoints, "_read_only", lambda d: blocked(d))
    return lambda folder: roots.append(os.path.abspath(folder))


def test_a_genuine_file_on_read_only_storage_verifies_and_loads(
    env: Path, tmp_path: Path, read_only, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    ro = tmp_path / "kaggle-input"
    ro.mkdir()
    path = ro / FILENAME
    torch.save({"w": torch.ones(3)}, path)
    body = path.read_bytes()
    monkeypatch.setitem(
        REGISTRY, NAME, CheckpointInfo(NAME, FILENAME, OFFICIAL, hashlib.sha256(body).hexdigest(), len(body))
    )
    read_only(ro)
    read_only(env)  # the cache too: the memo cannot be written anywhere
    verify(path, NAME)  # was: a raw OSError (EROFS) from the memo beside the file
    assert torch.equal(load_state_dict(path)["w"], torch.ones(3))
    assert sorted(p.name for p in ro.iterdir()) == [FILENAME]


def test_the_memo_is_never_written_beside_a_users_file(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "my-models"
    mine.mkdir()
    path = mine / FILENAME
    path.write_bytes(PAYLOAD)
    calls = []
    real = checkpoints._sha256_file
    monkeypatch.setattr(checkpoints, "_sha256_file", lambda p: calls.append(p) or real(p))
    verify(path, NAME)
    verify(path, NAME)
    assert sorted(p.name for p in mine.iterdir()) == [FILENAME]  # nothing beside it
    assert calls == [path]  # remembered (in the cache's memo folder): hashed once
    assert list((env / "sha256-memos").iterdir())


def test_an_empty_read_only_cache_says_to_set_the_cache_variable(env: Path, read_only) -> None:
    env.mkdir(parents=True)
    read_only(env)
    with pytest.raises(DownloadError, match="SAM_WIDGETS_CACHE") as err:
        download(NAME, progress=False, timeout=5)
    assert "read-only" in str(err.value)


def test_a_trickling_download_ends_at_the_deadline(env: Path, server: _Server) -> None:
    server.mode = "trickle"  # 100 bytes every 50 ms: never a read timeout
    start = time.monotonic()
    with pytest.raises(DownloadError, match="deadline: 0.5 s"):
        download(NAME, progress=False, timeout=5, deadline=0.5)
    assert time.monotonic() - start < 10
    assert _leftovers(env) == []


def test_no_content_length_and_no_registry_size_is_capped(
    env: Path, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, NAME, dataclasses.replace(REGISTRY[NAME], size_bytes=None))
    monkeypatch.setattr(checkpoints, "MAX_DOWNLOAD_BYTES", 1_000_000)
    server.mode = "endless"
    with pytest.raises(DownloadError, match=r"more than 1,000,000 bytes \(no size announced\)"):
        download(NAME, progress=False, timeout=5)
    assert _leftovers(env) == []


def test_more_bytes_than_the_registry_size_stop_at_once(env: Path, server: _Server) -> None:
    server.mode = "endless"
    with pytest.raises(DownloadError, match=r"more than 300,000 bytes \(the file's size\)"):
        download(NAME, progress=False, timeout=5)


@pytest.mark.parametrize("mirror", ["not a url", "lab-server/sam", "ftp://x/sam", "http://"])
def test_a_bad_mirror_url_gets_a_clear_error(env: Path, monkeypatch: pytest.MonkeyPatch, mirror: str) -> None:
    from sam_widgets.errors import MirrorURLError

    monkeypatch.setenv("SAM_WIDGETS_MIRROR", mirror)
    with pytest.raises(MirrorURLError, match="SAM_WIDGETS_MIRROR=.*http://lab-server/sam"):
        download(NAME, progress=False, timeout=5)
    assert isinstance(MirrorURLError("x"), DownloadError)


def _can_mount_read_only() -> bool:
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "mount", "--bind", "-o", "ro", "/tmp", "/tmp"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and unshare to mount a folder read-only")
def test_a_real_read_only_mount(tmp_path: Path) -> None:
    """The emulation above, checked once on a real read-only bind mount (root only: skipped in CI)."""
    import subprocess
    import sys

    import torch

    ro, cache = tmp_path / "ro", tmp_path / "cache"
    ro.mkdir()
    cache.mkdir()
    path = ro / FILENAME
    torch.save({"w": torch.ones(3)}, path)
    script = f"""
import hashlib
from pathlib import Path
from sam_widgets import checkpoints
from sam_widgets.errors import DownloadError
p = Path({str(path)!r}); body = p.read_bytes()
checkpoints.REGISTRY[{NAME!r}] = checkpoints.CheckpointInfo(
    {NAME!r}, {FILENAME!r}, "x", hashlib.sha256(body).hexdigest(), len(body))
checkpoints.verify(p, {NAME!r})
assert checkpoints.load_state_dict(p)["w"].sum() == 3
try:
    checkpoints.download("vit_h", progress=False)
except DownloadError as e:
    assert "SAM_WIDGETS_CACHE" in str(e), e
print("ok")
"""
    mounts = f"mount --bind -o ro {ro} {ro} && mount --bind -o ro {cache} {cache}"
    env = {**os.environ, "SAM_WIDGETS_CACHE": str(cache), "SAM_WIDGETS_OFFLINE": "0"}
    env.pop("SAM_WIDGETS_MIRROR", None)
    run = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$0" -c "$1"', sys.executable, script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
    assert sorted(p.name for p in ro.iterdir()) == [FILENAME]
