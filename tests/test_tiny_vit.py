"""MobileSAM's TinyViT encoder (sam_widgets.tiny_vit) against MobileSAM's published code.

tests/data/mobile_sam_keys.json: the state-dict keys, shapes and dtypes of MobileSAM's published
``build_sam_vit_t`` (the keys ``mobile_sam.pt`` loads into with strict=True), made by running the
published code. tests/data/mobile_sam_reference_out.npy: the published encoder's output on
``reference_input()`` with ``seeded_state_dict`` weights, sampled every 8th pixel. Both are made by
``python scripts/mobile_sam_reference.py /path/to/MobileSAM`` (a checkout of ChaoningZhang/MobileSAM).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sam_widgets.tiny_vit import MOBILE_SAM_ENCODER, TinyViT, bias_index, mobile_sam_encoder

DATA = Path(__file__).parent / "data"
SUBSAMPLE = (0, slice(None), slice(None, None, 8), slice(None, None, 8))  # 256 x 8 x 8 of 1 x 256 x 64 x 64


def official_keys() -> dict[str, tuple[list[int], str]]:
    doc = json.loads((DATA / "mobile_sam_keys.json").read_text())
    assert doc["count"] == len(doc["keys"])
    return {k: (shape, dtype) for k, shape, dtype in doc["keys"]}


def seeded_state_dict(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Deterministic non-trivial weights for an encoder state dict (numpy's PCG64, key order):
    BN variances in [0.5, ...), norm scales near 1, everything else N(0, 0.1^2)."""
    rng = np.random.default_rng(0)
    out = {}
    for k, v in template.items():
        if not v.is_floating_point():
            out[k] = v.clone()
            continue
        r = rng.standard_normal(tuple(v.shape)).astype(np.float32)
        if k.endswith("running_var"):
            t = 0.5 + np.abs(r)
        elif k.endswith(".weight") and (".bn." in k or "norm" in k or k.startswith(("neck.1", "neck.3"))):
            t = 1 + 0.1 * r
        else:
            t = 0.1 * r
        out[k] = torch.from_numpy(np.ascontiguousarray(t))
    return out


def reference_input() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).standard_normal((1, 3, 1024, 1024)).astype(np.float32))


def test_random_init_keys_and_shapes_equal_the_official_files():
    from sam_widgets.models import load_sam

    sam = load_sam("mobile_sam", weights="random", device="cpu", precision="fp32")
    ours = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sam.state_dict().items()}
    official = official_keys()
    assert list(ours) == list(official)  # same names, same order
    assert ours == official
    assert len(official) == 439


def test_encoder_numbers_match_the_published_config():
    enc = mobile_sam_encoder()
    assert MOBILE_SAM_ENCODER["embed_dims"] == (64, 128, 160, 320)
    assert MOBILE_SAM_ENCODER["depths"] == (2, 2, 6, 2)
    assert [len(layer.blocks) for layer in enc.layers] == [2, 2, 6, 2]
    heads = [blk.attn.num_heads for layer in enc.layers[1:] for blk in layer.blocks[:1]]
    assert heads == [4, 5, 10]
    assert [blk.window for layer in enc.layers[1:] for blk in layer.blocks[:1]] == [7, 14, 7]
    assert [layer.downsample.conv2.c.stride for layer in enc.layers[:3]] == [(2, 2), (2, 2), (1, 1)]
    assert enc.img_size == 1024
    params = sum(p.numel() for p in enc.parameters())
    classifier = sum(p.numel() for m in (enc.head, enc.norm_head) for p in m.parameters())
    assert (params, classifier) == (6_065_532, 321_640)


def test_bias_index_is_the_published_construction():
    """The published code numbers (|dy|, |dx|) offsets in order of first appearance over all
    pairs of points; ours computes |dy| * window + |dx|."""
    import itertools

    for window in (7, 14):
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                offsets.setdefault(off, len(offsets))
                idxs.append(offsets[off])
        published = torch.tensor(idxs).view(len(points), len(points))
        assert torch.equal(bias_index(window, torch.device("cpu")), published)


def test_output_equals_the_published_encoders():
    enc = mobile_sam_encoder()
    enc.load_state_dict(seeded_state_dict(enc.state_dict()))
    enc.eval()
    with torch.no_grad():
        out = enc(reference_input())
    assert out.shape == (1, 256, 64, 64)
    want = np.load(DATA / "mobile_sam_reference_out.npy")
    got = out[SUBSAMPLE].numpy()
    assert np.abs(want).mean() > 0.3  # a real signal, not zeros
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_train_mode_runs_the_batch_norm_and_gives_gradients():
    enc = TinyViT(img_size=256)  # 16 x 16 tokens: small
    enc.train()
    x = torch.randn(2, 3, 256, 256)
    out = enc(x)
    assert out.shape == (2, 256, 16, 16)
    out.mean().backward()
    assert enc.layers[1].blocks[0].attn.attention_biases.grad is not None


def test_mismatched_stage_lists_are_refused():
    with pytest.raises(ValueError, match="one entry per stage"):
        TinyViT(depths=(2, 2, 6))


def test_folded_batch_norm_equals_the_unfolded_one():
    from sam_widgets.tiny_vit import Conv2dBN

    torch.manual_seed(0)
    layer = Conv2dBN(8, 16, 3, 2, 1)
    layer.bn.running_mean.normal_()
    layer.bn.running_var.uniform_(0.5, 2)
    layer.bn.weight.data.uniform_(0.5, 2)
    layer.bn.bias.data.normal_()
    layer.eval()
    x = torch.randn(2, 8, 20, 20)
    with torch.no_grad():
        unfolded = layer.bn(layer.c(x))
        torch.testing.assert_close(layer(x), unfolded, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            layer(x, gelu=True), torch.nn.functional.gelu(unfolded), rtol=1e-5, atol=1e-5
        )


def seeded_small_encoder() -> TinyViT:
    enc = TinyViT(img_size=256)
    enc.load_state_dict(seeded_state_dict(enc.state_dict()))
    return enc.eval()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
def test_conv_gelu_in_one_onednn_call_equals_the_two_steps(monkeypatch):
    from sam_widgets import tiny_vit

    enc = seeded_small_encoder()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    real = tiny_vit._CONV_POINTWISE
    calls = []
    with torch.no_grad():
        monkeypatch.setattr(tiny_vit, "_CONV_POINTWISE", lambda *a: calls.append(1) or real(*a))
        fused = enc(x)
        assert len(calls) == 11  # patch embed 1, MBConv 2 x 2, PatchMerging 3 x 2
        monkeypatch.setattr(tiny_vit, "_CONV_POINTWISE", None)
        two_steps = enc(x)
    torch.testing.assert_close(fused, two_steps, rtol=0, atol=1e-5)


def test_bf16_encoder_stays_close_to_fp32():
    """bf16 weights stored once (as load_sam does): the output within bf16 rounding of fp32's."""
    enc = seeded_small_encoder()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = enc(x)
        got = enc.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    err = float((got - want).norm() / want.norm())
    assert err < 0.03
