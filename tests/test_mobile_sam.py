"""MobileSAM through the same API: registry, verified download, checkpoint path, auto, CLI, predictor."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from sam_widgets import (
    ArchitectureMismatchError,
    CachedPredictor,
    architectures,
    checkpoints,
    load_sam,
    models,
)
from sam_widgets.architectures import identify_architecture
from sam_widgets.cli import main
from sam_widgets.record import record_of


def test_registry_pins_the_published_file():
    info = checkpoints.REGISTRY["mobile_sam"]
    assert info.filename == "mobile_sam.pt"
    assert info.url == (
        "https://github.com/ChaoningZhang/MobileSAM/raw/f706ad9c4eb7f219c00d9050e46328518ffb65d2/weights/mobile_sam.pt"
    )
    assert info.sha256 == "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
    assert info.size_bytes == 40_728_226


@pytest.fixture(scope="module")
def mobile_file(tmp_path_factory):
    """A state dict of the official mobile_sam shapes (random init), saved as the file stores it."""
    torch.manual_seed(0)
    sd = load_sam("mobile_sam", weights="random", device="cpu", precision="fp32").state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "my_mobile_sam.pt"
    torch.save(sd, path)
    return path, sd


@pytest.fixture
def pinned_to(monkeypatch):
    """Pin the registry's mobile_sam entry to a fake file's sha256 and size."""

    def pin(body: bytes) -> checkpoints.CheckpointInfo:
        info = checkpoints.REGISTRY["mobile_sam"]
        fake = checkpoints.CheckpointInfo(
            "mobile_sam", info.filename, info.url, hashlib.sha256(body).hexdigest(), len(body)
        )
        monkeypatch.setitem(checkpoints.REGISTRY, "mobile_sam", fake)
        return fake

    return pin


def test_download_through_the_loopback_server_then_load(
    mobile_file, file_server, monkeypatch, pinned_to, capsys
):
    path, sd = mobile_file
    body = path.read_bytes()
    fake = pinned_to(body)
    file_server.files["mobile_sam.pt"] = body
    monkeypatch.setenv("SAM_WIDGETS_MIRROR", file_server.url)
    monkeypatch.delenv("SAM_WIDGETS_OFFLINE")

    assert main(["download", "mobile_sam", "-q"]) == 0
    assert "mobile_sam: " in capsys.readouterr().out
    sam = load_sam("mobile_sam", device="cpu", precision="fp32", progress=False)
    assert record_of(sam).name == "mobile_sam" and record_of(sam).fingerprint == fake.sha256
    got = sam.state_dict()
    assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    assert got["image_encoder.layers.0.blocks.0.conv1.bn.num_batches_tracked"].dtype == torch.int64
    assert file_server.requests["mobile_sam.pt"] == 1

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "mobile_sam  cached, verified" in out
    assert "auto model: mobile_sam" in out  # the CPU rule, as load_sam("auto") applies it


def test_download_refuses_a_file_that_is_not_the_pinned_one(file_server, monkeypatch, capsys):
    file_server.files["mobile_sam.pt"] = b"x" * checkpoints.REGISTRY["mobile_sam"].size_bytes
    monkeypatch.setenv("SAM_WIDGETS_MIRROR", file_server.url)
    monkeypatch.delenv("SAM_WIDGETS_OFFLINE")
    assert main(["download", "mobile_sam", "-q"]) == 1
    err = capsys.readouterr().err
    assert (
        "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f" in err
        and "nothing was saved" in err
    )
    assert checkpoints.cached_path("mobile_sam") is None


def test_checkpoint_path_and_auto_from_the_file(mobile_file, tmp_path):
    path, sd = mobile_file
    sam = load_sam("mobile_sam", checkpoint=path, device="cpu", precision="fp32")
    assert torch.equal(sam.image_encoder.neck[0].weight, sd["image_encoder.neck.0.weight"])
    assert identify_architecture(sd) == "mobile_sam (TinyViT encoder)"
    assert record_of(load_sam(checkpoint=path, device="cpu", precision="fp32")).name == "mobile_sam"
    # A file under the official name is verified against the pinned sha256 first.
    fake = tmp_path / "mobile_sam.pt"
    fake.write_bytes(path.read_bytes())
    with pytest.raises(checkpoints.ChecksumError, match="not the official file"):
        load_sam("mobile_sam", checkpoint=fake, device="cpu")


def test_wrong_architecture_names_both(mobile_file, tmp_path):
    path, _ = mobile_file
    with pytest.raises(
        ArchitectureMismatchError, match=r"holds mobile_sam \(TinyViT encoder\).*vit_b \(768 wide"
    ):
        load_sam("vit_b", checkpoint=path, device="cpu")
    vit = tmp_path / "vit.pth"
    torch.save(
        architectures.build_sam(architectures.CONFIGS["vit_b"], device="meta").state_dict(), vit
    )  # meta: shapes only
    with pytest.raises(ArchitectureMismatchError, match=r"vit_b.*mobile_sam \(TinyViT"):
        load_sam("mobile_sam", checkpoint=vit, device="cpu")


def test_auto_on_the_cpu_picks_a_cached_mobile_sam(mobile_file, pinned_to, monkeypatch):
    path, _ = mobile_file
    pinned_to(path.read_bytes())
    cache = checkpoints.cache_dir()
    cache.mkdir(parents=True)
    (cache / "mobile_sam.pt").write_bytes(path.read_bytes())
    monkeypatch.setattr(models, "free_memory_bytes", lambda device: 64 * 1024**3)  # vit_h by memory
    sam = load_sam("auto", device="cpu")
    assert record_of(sam).name == "mobile_sam"


def test_fp32_cached_predictor_equals_stock_sam_predictor():
    torch.manual_seed(0)
    sam = load_sam("mobile_sam", weights="random", device="cpu", precision="fp32")
    assert not record_of(sam).fast  # an explicit fp32: segment_anything's code around our encoder
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    stock, ours = SamPredictor(sam), CachedPredictor(sam)
    stock.set_image(image)
    ours.set_image(image)
    assert torch.equal(stock.features, ours.features)
    for prompt in (
        dict(point_coords=np.array([[200.0, 150.0]]), point_labels=np.array([1])),
        dict(point_coords=np.array([[50.0, 60.0], [300.0, 200.0]]), point_labels=np.array([1, 0])),
        dict(box=np.array([20.0, 30.0, 250.0, 280.0])),
    ):
        a, b = stock.predict(**prompt), ours.predict(**prompt)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_bench_times_mobile_sam_against_its_floor(tmp_path, capsys, monkeypatch):
    from sam_widgets.bench import floor

    monkeypatch.setattr(floor.gemm_rate, "__defaults__", ("cpu", ((256, 256, 256),), 2))  # a quick floor
    floor._floor_cached.cache_clear()
    out = tmp_path / "bench.json"
    argv = ["bench", "--models", "mobile_sam", "--weights", "random", "--no-iou", "--repeats", "1"]
    assert main([*argv, "--clicks", "1", "--image-size", "96x128", "--json", str(out)]) == 0
    floor._floor_cached.cache_clear()
    printed = capsys.readouterr().out
    assert "mobile_sam random" in printed and "mobile_sam: encoder 77.5 GFLOP" in printed
    import json

    (r,) = json.loads(out.read_text())["results"]
    assert r["model"] == "mobile_sam" and r["floor"]["encoder_gflop"] == pytest.approx(77.54, abs=0.01)
    assert 0 < r["floor"]["ours"]["fraction"]


def test_mobile_sam_gets_the_fast_decoder_path():
    """load_sam's default path swaps mobile_sam's SAM decoder for the fast one, as for vit_b, and
    a click after set_image uses the per-image part made at set_image."""
    from sam_widgets import fast

    sam = load_sam("mobile_sam", weights="random", device="cpu")
    assert record_of(sam).fast
    kinds = {type(m) for m in sam.modules()}
    assert {
        fast.FastMaskDecoder,
        fast.FastPromptEncoder,
        fast.FastTwoWayAttentionBlock,
        fast.FastDecoderAttention,
    } <= kinds
    p = CachedPredictor(sam)
    p.set_image(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    side = sam.mask_decoder.__dict__["_sam_widgets_image_side"]
    masks, scores, _ = p.predict(point_coords=np.array([[80.0, 60.0]]), point_labels=np.array([1]))
    assert sam.mask_decoder.__dict__["_sam_widgets_image_side"] is side  # reused, not remade
    assert masks.shape == (3, 120, 160) and scores.shape == (3,)
