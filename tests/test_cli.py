"""The sam-widgets command and the bench module."""

from __future__ import annotations

import hashlib
import json

import pytest

from sam_widgets import bench, checkpoints, measure
from sam_widgets.cli import main


def test_download_through_mirror(file_server, monkeypatch, capsys):
    body = b"weights" * 1000
    fake = checkpoints.CheckpointInfo(
        "vit_b",
        "sam_vit_b_01ec64.pth",
        "https://example.invalid/x",
        hashlib.sha256(body).hexdigest(),
        len(body),
    )
    monkeypatch.setitem(checkpoints.REGISTRY, "vit_b", fake)
    file_server.files[fake.filename] = body
    monkeypatch.setenv("SAM_WIDGETS_MIRROR", file_server.url)
    monkeypatch.delenv("SAM_WIDGETS_OFFLINE")
    assert main(["download", "vit_b", "-q"]) == 0
    out = capsys.readouterr().out
    assert "sha256 verified" in out
    assert checkpoints.cached_path("vit_b").read_bytes() == body
    # info now lists it as cached and verified
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "vit_b       cached, verified" in out and "auto model:" in out and "cache dir:" in out


def test_download_offline_fails_with_the_way_out(capsys):
    assert main(["download", "vit_h"]) == 1
    err = capsys.readouterr().err
    assert "sam_vit_h_4b8939.pth" in err and "put it at" in err


def test_download_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit):
        main(["download", "vit_x"])
    assert "invalid choice" in capsys.readouterr().err


def test_bench_compares_stock_and_cached(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "--models",
            "micro",
            "--weights",
            "random",
            "--repeats",
            "2",
            "--clicks",
            "3",
            "--image-size",
            "96x128",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ratio" in printed and "random weights: timing only" in printed
    data = json.loads(out.read_text())
    (r,) = data["results"]
    assert r["model"] == "micro" and r["weights"] == "random" and r["image_size"] == [96, 128]
    assert r["stock"]["set_image_ms"]["n"] == 2 and r["ours"]["click_ms"]["n"] == 3
    # stock re-encodes on a revisit; ours encodes each image once and serves revisits from cache
    assert r["stock"]["encoder_runs"] == 4 and r["ours"]["encoder_runs"] == 2
    assert set(r["ratio"]) == {"set_image_ms", "click_ms", "revisit_ms", "view_ms"}
    assert "processor" in data["machine"] and "torch" in data["machine"]
    # by default ours runs as load_sam gives it (precision auto: the fast paths on), stock stock code
    assert r["precision"].endswith("-fast") and data["settings"]["precision"] == "auto"


def test_bench_bad_image_size(capsys):
    assert main(["bench", "--image-size", "big"]) == 1
    assert capsys.readouterr().err.startswith("error: --image-size 'big': write it as HxW")


# Every user error: "error: <what, and what to do>", exit status 1, no traceback (each failed before).
BENCH = ["bench", "--models", "micro", "--weights", "random", "--repeats", "1", "--clicks", "1", "--no-iou"]


def _fails_cleanly(argv, capsys, *needles):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_cuda_on_a_cpu_machine(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _fails_cleanly([*BENCH, "--device", "cuda"], capsys, "CUDA is not available", "cpu")


def test_fp16_on_the_cpu(capsys):
    _fails_cleanly([*BENCH, "--device", "cpu", "--precision", "fp16"], capsys, "fp16", "bf16")


def test_image_size_of_zero(capsys):
    _fails_cleanly([*BENCH, "--image-size", "0x0"], capsys, "at least 8 pixels")


def test_unwritable_out_is_refused_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("measured before checking --out"))
    (tmp_path / "file").write_text("not a folder")
    _fails_cleanly([*BENCH, "--out", str(tmp_path / "file" / "out")], capsys, "--out", "writable folder")


def test_read_only_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SAM_WIDGETS_OFFLINE")
    monkeypatch.setenv("SAM_WIDGETS_CACHE", str(tmp_path))
    monkeypatch.setattr(checkpoints, "_read_only", lambda folder: True)
    _fails_cleanly(["download", "vit_b", "-q"], capsys, "read-only", "SAM_WIDGETS_CACHE")


def test_bad_mirror_url(capsys, monkeypatch):
    monkeypatch.delenv("SAM_WIDGETS_OFFLINE")
    monkeypatch.setenv("SAM_WIDGETS_MIRROR", "not a url")
    _fails_cleanly(["download", "vit_b", "-q"], capsys, "SAM_WIDGETS_MIRROR='not a url'", "http://")
    _fails_cleanly(["info"], capsys, "SAM_WIDGETS_MIRROR")


def test_timing_summary():
    t = measure.Timing.of([3.0, 1.0, 2.0])
    assert (t.median, t.min, t.max, t.n) == (2.0, 1.0, 3.0, 3)
