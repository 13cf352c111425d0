"""anatomy: facts computed from segment_anything's modules match the code's own numbers."""

from __future__ import annotations

import numpy as np
import pytest

from sam_widgets import anatomy, measure
from sam_widgets.architectures import CONFIGS

from .conftest import TINY


@pytest.mark.parametrize(
    "name, width, depth, global_blocks",
    [
        ("vit_b", 768, 12, (2, 5, 8, 11)),
        ("vit_l", 1024, 24, (5, 11, 17, 23)),
        ("vit_h", 1280, 32, (7, 15, 23, 31)),
    ],
)
def test_describe_official(name, width, depth, global_blocks):
    a = anatomy.describe(name)
    assert (a.img_size, a.patch_size, a.grid) == (1024, 16, 64)
    assert (a.embed_dim, a.depth, a.global_blocks) == (width, depth, global_blocks)
    assert (a.window_size, a.padded_grid, a.windows) == (14, 70, 25)  # 64 -> 70 = 5 windows of 14
    assert a.embedding_shape == (256, 64, 64) and a.low_res_mask == 256


def test_param_counts_add_up_and_match_the_builder():
    counts = anatomy.param_counts("vit_b")
    encoder = sum(v for k, v in counts.items() if k.startswith("encoder."))
    assert encoder == 89_670_912  # DESIGN.md: 89.7 M
    assert counts["encoder.pos_embed"] == 64 * 64 * 768
    assert counts["encoder.patch_embed"] == 768 * 3 * 16 * 16 + 768
    # 4 global + 8 windowed blocks of the same width: global blocks differ only in their
    # relative-position tables (2 x (2*64-1) vs 2 x (2*14-1) rows of head_dim=64 each).
    per_global = counts["encoder.global_blocks"] / 4
    per_window = counts["encoder.windowed_blocks"] / 8
    assert per_global - per_window == 2 * ((2 * 64 - 1) - (2 * 14 - 1)) * 64


def test_flops_match_torch_flop_counter_figures():
    flops = anatomy.flop_counts("vit_b")
    assert round(flops["encoder"] / 1e9) == 972  # DESIGN.md
    parts = sum(v for k, v in flops.items() if k.startswith("encoder."))
    assert parts == pytest.approx(flops["encoder"])
    assert 0 < flops["prompt_encoder+decoder"] < flops["encoder"] / 100


def test_attention_cost_window_vs_global():
    cost = anatomy.attention_cost("vit_b")
    # 4096 tokens attending to 4096, against 25 windows of 196 attending to 196.
    assert cost["ratio"] == pytest.approx(4096**2 / (25 * 196**2))
    assert cost["global_block"] == 2 * 2 * 4096**2 * 768


def test_attention_map_window_and_global(tiny_sam, rgb_image):
    a = anatomy.describe(tiny_sam)
    assert a.grid == 8 and a.window_size == 4 and a.global_blocks == (1,)
    window = anatomy.attention_map(tiny_sam, rgb_image, block=0, query=(1, 6))
    assert window.shape == (8, 8)
    assert np.isclose(window.sum(), 1.0, atol=1e-5)  # this window holds no padding (8 = 2 x 4)
    assert window[:4, 4:].sum() == pytest.approx(1.0, abs=1e-5) and window[4:, :].sum() == 0
    full = anatomy.attention_map(tiny_sam, rgb_image, block=1, query=(1, 6))
    assert np.isclose(full.sum(), 1.0, atol=1e-5) and (full > 0).all()
    with pytest.raises(ValueError, match="outside"):
        anatomy.attention_map(tiny_sam, rgb_image, block=0, query=(8, 0))
    with pytest.raises(ValueError, match="block"):
        anatomy.attention_map(tiny_sam, rgb_image, block=5, query=(0, 0))


def test_preprocess_steps(tiny_sam, rgb_image):
    steps = anatomy.preprocess_steps(tiny_sam, rgb_image)
    assert steps["resized"].shape == (96, 128, 3)  # 90x120 -> long side 128
    assert steps["padded"].shape == (128, 128, 3) and (steps["padded"][96:] == 0).all()
    mean = tiny_sam.pixel_mean.view(3).numpy()
    std = tiny_sam.pixel_std.view(3).numpy()
    assert np.allclose(steps["normalized"][0, 0], (steps["resized"][0, 0] - mean) / std, atol=1e-5)


def test_meta_model_and_unknown_name():
    sam = anatomy.meta_model("vit_h")
    assert next(sam.parameters()).is_meta
    assert anatomy.describe(TINY).embed_dim == 32
    with pytest.raises(ValueError, match="Unknown model"):
        anatomy.meta_model("vit_x")
    assert all("source" in q for q in measure.QUOTED.values())
    assert CONFIGS["vit_h"].encoder_depth == anatomy.describe("vit_h").depth


def test_block_costs_whole_blocks_not_just_attention():
    # Issue 19: QK^T and AV alone say 17.5x; whole blocks (projections, MLP) say 1.7x for vit_b.
    b = anatomy.block_costs("vit_b")
    assert b["ratio"] == pytest.approx(1.70, abs=0.01)
    assert b["all_global_increase"] == pytest.approx(0.374, abs=0.005)
    assert b["encoder"] == pytest.approx(anatomy.flop_counts("vit_b")["encoder"])
    assert anatomy.block_costs("vit_h")["ratio"] == pytest.approx(1.40, abs=0.01)


def test_attention_memory_is_the_reason_for_windows():
    m = anatomy.attention_memory("vit_b")
    assert m["global_block"] == 12 * 4096**2 * 4  # ~805 MB in fp32
    assert m["window_block"] == 25 * 12 * 196**2 * 4
    assert anatomy.attention_memory("vit_b", bytes_per_value=2)["global_block"] == 12 * 4096**2 * 2


def test_receptive_field_stays_in_the_window_until_a_global_block():
    rf = anatomy.receptive_field("vit_b", (10, 12))
    assert rf.shape == (12, 64, 64)
    assert rf[0].sum() == rf[1].sum() == 14 * 14 and rf[0][:14, :14].all()
    assert rf[2].all() and rf[-1].all()  # block 2 is the first global block
    edge = anatomy.receptive_field("vit_b", (63, 63))[0]
    assert edge.sum() == 8 * 8  # the last window is cut by the image (56..63): 8x8 real tokens
    with pytest.raises(ValueError, match="outside"):
        anatomy.receptive_field("vit_b", (64, 0))


def test_trace_pipeline_shapes_vit_b():
    shapes = dict(anatomy.trace_pipeline("vit_b", (300, 451), (170, 115)))
    assert shapes["resized, normalised, padded"] == (1, 3, 1024, 1024)
    assert shapes["patch embedding (tokens, B x H x W x C)"] == (1, 64, 64, 768)
    assert shapes["block 0 attention input: padded, cut into windows"] == (25, 14, 14, 768)
    assert shapes["neck: image embedding"] == (1, 256, 64, 64)
    assert shapes["two-way transformer: tokens"] == (1, 1 + 4 + 2, 256)
    assert shapes["low-res mask logits (3 candidates)"] == (1, 3, 256, 256)
    assert shapes["masks at the image's size"] == (1, 3, 300, 451)


def test_decoder_attention_and_click_position(tiny_sam, rgb_image):
    h, w = rgb_image.shape[:2]
    maps, low, iou = anatomy.decoder_attention(tiny_sam, rgb_image, np.array([[w / 2, h / 2]]), np.array([1]))
    assert list(maps)[:5] == ["IoU token", "mask 0", "mask 1", "mask 2", "mask 3"]
    assert "point 0" in maps and "point 1" in maps  # the click and the padding point
    grid = anatomy.describe(tiny_sam).grid
    for amap in maps.values():
        assert amap.shape == (grid, grid) and np.isclose(amap.sum(), 1, atol=1e-4)
    assert low.shape == (4, 4 * grid, 4 * grid) and iou.shape == (4,)
    sim = anatomy.click_position_match(tiny_sam, (w - 1, 0), (h, w))  # top right corner
    assert sim.shape == (grid, grid) and np.unravel_index(sim.argmax(), sim.shape) == (0, grid - 1)


def test_mobile_sam_stages_description_params_and_flops():
    """MobileSAM's TinyViT through the same helpers: its four stages read from the modules, the
    last one in describe(), parameters and FLOPs that add up (notebook 03's fourth column)."""
    st = anatomy.stages("mobile_sam")
    assert [(s.kind.split()[0], s.blocks, s.width, s.grid, s.heads, s.window) for s in st] == [
        ("convolution", 2, 64, 256, 0, 0),
        ("windowed", 2, 128, 128, 4, 7),
        ("windowed", 6, 160, 64, 5, 14),
        ("windowed", 2, 320, 64, 10, 7),
    ]
    a = anatomy.describe("mobile_sam")
    assert (a.encoder, a.grid, a.patch_size, a.embed_dim, a.depth, a.global_blocks) == (
        "tiny_vit",
        64,
        16,
        320,
        12,
        (),
    )
    assert a.embedding_shape == anatomy.describe("vit_b").embedding_shape == (256, 64, 64)
    params = anatomy.param_counts("mobile_sam")
    assert params["encoder.global_blocks"] == 0 and params["encoder.classifier_unused"] > 0
    vit_b = anatomy.param_counts("vit_b")
    light = ("prompt_encoder", "decoder.transformer", "decoder.upscaling", "decoder.hypernetworks")
    assert all(params[k] == vit_b[k] for k in light)  # SAM's own decoder
    flops = anatomy.flop_counts("mobile_sam")
    parts = sum(v for k, v in flops.items() if k.startswith("encoder."))
    assert parts == pytest.approx(flops["encoder"]) and flops["encoder.global_blocks"] == 0
    assert 10 < anatomy.flop_counts("vit_b")["encoder"] / flops["encoder"] < 15
    assert anatomy.stages("vit_b")[0].blocks == 12
