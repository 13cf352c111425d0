"""Shared fixtures: a tiny SAM built from segment_anything's real classes, a local file server."""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter

import numpy as np
import pytest

from sam_widgets.architectures import SamConfig

# The real architecture, shrunk: every code path of segment_anything runs, in milliseconds.
# 32 wide, 2 blocks (the second global), 2 heads; 128x128 input, 8x8 tokens in windows of 4.
TINY = SamConfig(
    32, 2, 2, (1,), img_size=128, window_size=4, prompt_embed_dim=32,
    decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32,
)  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test ever reads or writes the user's real cache or goes to the network."""
    monkeypatch.setenv("SAM_WIDGETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SAM_WIDGETS_MIRROR", raising=False)
    monkeypatch.setenv("SAM_WIDGETS_OFFLINE", "1")


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: the small models gain nothing from threads, and on a busy
    2-core machine two spin ~100x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_sam():
    import torch

    from sam_widgets.architectures import build_sam

    torch.manual_seed(0)
    return build_sam(TINY)


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(90, 120, 3), dtype=np.uint8)
    img[20:60, 30:80] = (250, 30, 30)  # a flat red block: something to segment
    return img


class FakePredictor:
    """Masks without a model: candidate k is a square around the last point (or the box's first
    corner), ``size + step * k`` pixels either way. ``delay`` (s) lets other threads run in the
    middle of a click; ``entered`` is set when a click starts, and a ``release`` event, when
    set on the object, holds every click until it is set."""

    def __init__(self, delay: float = 0.0, size: int = 20, step: int = 10) -> None:
        self.delay, self.size, self.step = delay, size, step
        self.entered = threading.Event()
        self.release: threading.Event | None = None

    def set_image(self, image, image_format="RGB"):
        self.shape = image.shape[:2]
        self.features = object()

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        shape = self.shape
        self.entered.set()
        if self.release is not None:
            assert self.release.wait(10)
        if self.delay:
            time.sleep(self.delay)
        h, w = shape
        x, y = point_coords[-1] if point_coords is not None else box[:2]
        n = 3 if multimask_output else 1
        masks = np.zeros((n, h, w), bool)
        for k in range(n):
            r = self.size + self.step * k
            masks[k, max(0, int(y) - r) : int(y) + r, max(0, int(x) - r) : int(x) + r] = True
        return masks, np.linspace(0.9, 0.7, n), np.zeros((n, 256, 256), np.float32)


class FileServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 and counts requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                name = self.path.lstrip("/")
                server.requests[name] += 1
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.close()
