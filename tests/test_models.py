"""load_sam: official architectures, state dicts of the official shapes, auto choice, precision."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry

from sam_widgets import (
    ArchitectureMismatchError,
    ModelFallbackWarning,
    OfflineError,
    checkpoints,
    load_sam,
    models,
)
from sam_widgets.architectures import CONFIGS, build_sam, identify_architecture
from sam_widgets.models import pick_model
from sam_widgets.record import record_of

from .conftest import TINY

GB = 1024**3


def param_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_configs_build_the_official_architecture(name):
    """Our builder, on the meta device, gives exactly the keys and shapes of segment_anything's."""
    ours = build_sam(CONFIGS[name], device="meta").state_dict()
    with torch.device("meta"):
        theirs = sam_model_registry[name]().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_random_vit_b_matches_the_documented_parameter_counts():
    sam = load_sam("vit_b", weights="random", device="cpu")
    assert not sam.training
    assert round(param_count(sam.image_encoder) / 1e6, 1) == 89.7  # DESIGN.md, measured
    # DESIGN.md rounds this to "4.07 M"; the code has 6,220 + 4,058,340 = 4.06 M.
    assert param_count(sam.prompt_encoder) + param_count(sam.mask_decoder) == 4_064_560
    assert record_of(sam).weights == "random" and record_of(sam).name == "vit_b"


@pytest.fixture(scope="module")
def vit_b_file(tmp_path_factory):
    """A state dict of the official vit_b shapes, as the official file stores it."""
    torch.manual_seed(0)
    sd = sam_model_registry["vit_b"]().state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "my_vit_b.pth"
    torch.save(sd, path)
    return path, sd


def test_load_state_dict_of_official_shapes(vit_b_file):
    path, sd = vit_b_file
    sam = load_sam("vit_b", checkpoint=path, device="cpu", precision="fp32")
    got = sam.state_dict()
    assert got.keys() == sd.keys()
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert torch.equal(sam.pixel_mean, torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1))
    # name="auto" with a checkpoint reads the architecture from the file.
    assert record_of(load_sam(checkpoint=path, device="cpu")).name == "vit_b"


def test_wrong_architecture_names_both(vit_b_file):
    path, _ = vit_b_file
    with pytest.raises(ArchitectureMismatchError, match=r"vit_b \(768 wide, 12 blocks\).*vit_l"):
        load_sam("vit_l", checkpoint=path, device="cpu")


def test_official_file_name_is_verified(vit_b_file, tmp_path):
    path, _ = vit_b_file
    fake = tmp_path / checkpoints.REGISTRY["vit_b"].filename
    fake.write_bytes(path.read_bytes())
    with pytest.raises(checkpoints.ChecksumError, match="not the official file"):
        load_sam("vit_b", checkpoint=fake, device="cpu")


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_sam("vit_b", checkpoint=tmp_path / "nope.pth")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_l", "vit_h"])
def test_load_large_official_shapes(name, tmp_path):
    sd = build_sam(CONFIGS[name], device="cpu").state_dict()
    need = sum(t.numel() * t.element_size() for t in sd.values()) * 1.1
    free = shutil.disk_usage(tmp_path).free
    if free < need:  # say so, rather than let a full disk break every later test
        pytest.fail(
            f"this test writes a {need / 1e9:.1f} GB checkpoint to {tmp_path}, which has "
            f"{free / 1e9:.1f} GB free: free some disk space (old pytest-of-* folders?)"
        )
    try:  # a failed test's folder is kept: not its GB file
        torch.save(sd, tmp_path / "x.pth")
        del sd
        sam = load_sam(name, checkpoint=tmp_path / "x.pth", device="cpu")
    finally:
        (tmp_path / "x.pth").unlink(missing_ok=True)
    assert identify_architecture(sam.state_dict()).startswith(name)


def test_download_then_load_through_a_mirror(vit_b_file, file_server, monkeypatch):
    """The whole path a user meets: mirror -> verified download -> cache -> load -> predict."""
    path, sd = vit_b_file
    body = path.read_bytes()
    info = checkpoints.REGISTRY["vit_b"]
    fake = checkpoints.CheckpointInfo(
        name="vit_b",
        filename=info.filename,
        url=info.url,
        sha256=hashlib.sha256(body).hexdigest(),
        size_bytes=len(body),
    )
    monkeypatch.setitem(checkpoints.REGISTRY, "vit_b", fake)
    file_server.files[info.filename] = body
    monkeypatch.setenv("SAM_WIDGETS_MIRROR", file_server.url)
    monkeypatch.delenv("SAM_WIDGETS_OFFLINE")

    sam = load_sam("vit_b", device="cpu", precision="fp32", progress=False)
    assert torch.equal(sam.image_encoder.neck[0].weight, sd["image_encoder.neck.0.weight"])
    assert record_of(sam).fingerprint == fake.sha256

    # Offline now: the verified cached file is enough, and the server is not asked again.
    monkeypatch.setenv("SAM_WIDGETS_OFFLINE", "1")
    load_sam("vit_b", device="cpu", progress=False)
    assert file_server.requests[info.filename] == 1


def test_offline_and_not_cached_says_what_to_do():
    with pytest.raises(OfflineError, match="sam_vit_b_01ec64.pth"):
        load_sam("vit_b", device="cpu")


def test_pick_model_rule_from_measured_peaks():
    """load_sam("auto")'s memory rule: the largest of vit_h, vit_l whose measured peak x 1.25 (to 1/4
    GiB) fits, else vit_b; the stock code (precision="fp32") needs its own, larger peak."""
    from sam_widgets.models import MEASURED_PEAK_GIB, MEMORY_MARGIN, memory_needed

    assert MEMORY_MARGIN == 1.25
    for name, peaks in MEASURED_PEAK_GIB.items():
        fast = max(peaks["fp32-fast"], peaks["bf16-fast"]) * 1.25
        assert fast * GB <= memory_needed(name) < (fast + 0.25) * GB and memory_needed(name) % (GB // 4) == 0
        assert memory_needed(name, fast=False) >= peaks["fp32-stock"] * 1.25 * GB
    # the figures of docs/choosing_a_model.md, from scripts/measure_memory.py's table
    assert [memory_needed(n) / GB for n in ("vit_b", "vit_l", "vit_h")] == [1.75, 2.75, 4.25]
    assert [memory_needed(n, fast=False) / GB for n in ("vit_b", "vit_l", "vit_h")] == [4.5, 6.5, 8.0]
    # fake free memory -> the model
    cases = {
        0: "vit_b",
        2 * GB: "vit_b",  # mybinder.org
        int(2.74 * GB): "vit_b",
        int(2.75 * GB): "vit_l",
        4 * GB: "vit_l",
        int(4.25 * GB): "vit_h",
        16 * GB: "vit_h",
    }
    for free, want in cases.items():
        assert pick_model(free) == want, free
    stock = [pick_model(f * GB, fast=False) for f in (4, 6, 7, 8, 24)]
    assert stock == ["vit_b", "vit_b", "vit_l", "vit_h", "vit_h"]
    assert (
        pick_model(memory_needed("vit_h") - 1) == "vit_l"
        and pick_model(memory_needed("vit_l") - 1) == "vit_b"
    )


def test_auto_uses_free_memory(monkeypatch):
    from sam_widgets.models import memory_needed

    monkeypatch.setattr(models, "free_memory_bytes", lambda device: memory_needed("vit_l"))
    sam = load_sam("auto", weights="random", device="cpu")
    assert record_of(sam).name == "vit_l"


def test_auto_offline_with_nothing_cached_falls_back_to_micro(monkeypatch):
    monkeypatch.setattr(models, "free_memory_bytes", lambda device: 2 * GB)
    with pytest.warns(ModelFallbackWarning, match="vit_b.*micro"):
        sam = load_sam("auto", device="cpu")
    assert record_of(sam).name == "micro"


def test_bf16_runs_the_encoder_in_bf16_and_keeps_official_keys(tiny_sam):
    ref = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    models._apply_precision(tiny_sam, "bf16")
    assert tiny_sam.image_encoder.neck[0].weight.dtype == torch.bfloat16
    assert tiny_sam.mask_decoder.iou_token.weight.dtype == torch.float32
    assert tiny_sam.state_dict().keys() == ref.keys()
    # Stock SamPredictor still works; the embedding comes back as fp32.
    p = SamPredictor(tiny_sam)
    p.set_image(np.zeros((64, 64, 3), np.uint8))
    assert p.features.dtype == torch.float32
    masks, scores, _ = p.predict(point_coords=np.array([[3, 3]]), point_labels=np.array([1]))
    assert masks.shape == (3, 64, 64) and np.isfinite(scores).all()


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(name="vit_x"), ValueError, "vit_b, vit_l, vit_h, micro"),
        (dict(name="vit_b", weights="noise"), ValueError, "pretrained"),
        (dict(name="vit_b", precision="fp8"), ValueError, "precision"),
        (dict(name="vit_b", precision="fp16", device="cpu"), ValueError, "not supported on the CPU"),
        (dict(name="vit_b", device="cuda:0"), ValueError, "CUDA is not available"),
        (dict(name="vit_b", checkpoint="x.pth", weights="random"), ValueError, "contradict"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    if "cuda" in str(kwargs.get("device", "")) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    name = kwargs.pop("name")
    with pytest.raises(err, match=match):
        load_sam(name, **kwargs)


def test_identify_architecture():
    assert identify_architecture({}).startswith("not a SAM state dict")
    sd = build_sam(TINY, device="meta").state_dict()
    assert identify_architecture(sd) == "an unknown SAM variant (32 wide, 2 blocks)"


def test_free_memory_on_cpu_counts_the_containers_limit(tmp_path, monkeypatch):
    """In a container (mybinder: 2 GB on a large machine) the cgroup's limit, not the machine's
    free memory, decides what 'auto' loads."""
    from sam_widgets import models

    (tmp_path / "memory.max").write_text(f"{2 * GB}\n")
    (tmp_path / "memory.current").write_text(f"{GB // 2}\n")
    monkeypatch.setattr(models, "CGROUP_ROOT", str(tmp_path))
    assert models.free_memory_bytes("cpu") == min(GB + GB // 2, models.available_ram_bytes("/nonexistent"))
    assert pick_model(models.free_memory_bytes("cpu")) == "vit_b"


def test_missing_and_extra_keys_are_named(tmp_path):
    from sam_widgets.micro import build_micro

    sd = build_micro(weights=False).state_dict()
    sd.pop("mask_decoder.iou_token.weight")
    sd["extra.thing"] = torch.zeros(1)
    torch.save(sd, tmp_path / "edited.pth")
    with pytest.raises(ArchitectureMismatchError) as err:
        load_sam("micro", checkpoint=tmp_path / "edited.pth", device="cpu")
    message = str(err.value)
    assert "missing 1: 'mask_decoder.iou_token.weight'" in message
    assert "unexpected 1: 'extra.thing'" in message


def test_a_module_prefix_suggests_the_fix(tmp_path):
    from sam_widgets.micro import build_micro

    sd = {f"module.{k}": v for k, v in build_micro(weights=False).state_dict().items()}
    torch.save(sd, tmp_path / "ddp.pth")
    with pytest.raises(ArchitectureMismatchError, match=r"starts with 'module\.'.*removeprefix") as err:
        load_sam("micro", checkpoint=tmp_path / "ddp.pth", device="cpu")
    assert "and " in str(err.value) and "more" in str(err.value)  # the first few keys, not all


def test_one_record_says_what_was_loaded(tiny_sam):
    """load_sam attaches one ModelRecord; every fact is read through record_of, none by string."""
    from sam_widgets.fast import disable_fast, enable_fast
    from sam_widgets.record import ModelRecord

    assert record_of(tiny_sam) == ModelRecord() and record_of(tiny_sam).label == "fp32"
    sam = load_sam("micro", device="cpu")
    r = record_of(sam)
    assert (r.name, r.weights, r.source) == ("micro", "pretrained", "bundled")
    assert r.label == f"{r.precision}-fast" and r.reason
    assert [k for k in vars(sam) if k.startswith("sam_widgets")] == ["sam_widgets_record"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "vit_b"
    disable_fast(sam)
    assert record_of(sam).label == r.precision and record_of(sam).name == "micro"
    enable_fast(sam)
    assert record_of(sam) == r
