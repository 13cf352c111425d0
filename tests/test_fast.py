"""Fast paths: same keys and weights, results equal to stock up to rounding, stock when off."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from sam_widgets import CachedPredictor, _kernels, architectures, fast, load_sam, models
from sam_widgets.architectures import build_sam
from sam_widgets.micro.data import heldout_set
from sam_widgets.models import model_info

from .conftest import TINY

FAST_CLASSES = {
    "FastBlock",
    "FastEncoderAttention",
    "FastDecoderAttention",
    "FastTwoWayAttentionBlock",
    "FastPromptEncoder",
    "FastMaskDecoder",
}


def fast_classes(sam) -> set[str]:
    return {type(m).__name__ for m in sam.modules()} & FAST_CLASSES


def with_rel_pos(sam):
    """segment_anything zero-initialises rel_pos: give it values so the bias is exercised."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return sam


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def rel_err(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / a.norm())


@pytest.fixture(autouse=True)
def _fast_paths_even_for_tiny_models(monkeypatch, request):
    """The tiny test models are below the size where the encoder's fast attention takes over."""
    if "micro_pair" not in request.fixturenames:
        monkeypatch.setattr(fast, "STOCK_BELOW_BYTES", 0)


@pytest.fixture
def pair(tiny_sam):
    """(stock, fast): the same tiny SAM twice, rel-pos non-zero."""
    stock = with_rel_pos(tiny_sam)
    return stock, fast.enable_fast(copy.deepcopy(stock))


PROMPTS = [
    dict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1])),
    dict(point_coords=np.array([[50.0, 40.0], [5.0, 5.0], [100.0, 80.0]]), point_labels=np.array([1, 0, 1])),
    dict(box=np.array([30, 20, 80, 60])),
    dict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]), box=np.array([30, 20, 80, 60])),
]


# ---------------------------------------------------------------------- switching


def test_keys_and_weights_stay_official_and_disable_restores_stock(tiny_sam):
    before = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    stock_classes = [type(m) for m in tiny_sam.modules()]
    fast.enable_fast(tiny_sam)
    assert fast.is_fast(tiny_sam) and fast_classes(tiny_sam) == FAST_CLASSES
    after = tiny_sam.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    # A swapped module is still an instance of segment_anything's class.
    from segment_anything.modeling.image_encoder import Attention

    assert isinstance(tiny_sam.image_encoder.blocks[0].attn, Attention)
    fast.disable_fast(tiny_sam)
    assert not fast.is_fast(tiny_sam) and [type(m) for m in tiny_sam.modules()] == stock_classes


def test_explicit_precision_is_stock_and_auto_is_fast():
    stock = load_sam("micro", device="cpu", precision="fp32")
    assert not fast_classes(stock) and model_info(stock)["path"] == "fp32"
    auto = load_sam("micro", device="cpu")
    info = model_info(auto)
    assert fast_classes(auto) == FAST_CLASSES and info["fast"]
    assert info["path"] == f"{info['precision']}-fast" and info["path_reason"]
    assert fast_classes(load_sam("micro", device="cpu", precision="fp32", fast=True)) == FAST_CLASSES
    assert not fast_classes(load_sam("micro", device="cpu", fast=False))
    with pytest.raises(ValueError, match="fast="):
        load_sam("micro", device="cpu", fast="yes")


def test_auto_precision_says_what_it_picked_on_this_cpu():
    use_bf16, why = models.cpu_bf16_is_faster()
    sam = load_sam("micro", device="cpu")
    info = model_info(sam)
    assert info["precision"] == ("bf16" if use_bf16 else "fp32")
    assert info["path_reason"] == why and "bf16" in why
    has_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if not has_bf16:  # e.g. the AVX2 dev machine: bf16 is emulated there, never picked
        assert not use_bf16 and "no bf16 instructions" in why
    assert CachedPredictor(sam).stats.precision == info["path"]


# ---------------------------------------------------------------------- same results


@pytest.mark.parametrize("chunk_bytes", [None, 1])  # 1: one query row, one token per chunk
def test_encoder_matches_stock(pair, chunk_bytes):
    stock, quick = pair
    fast.enable_fast(quick, chunk_bytes=chunk_bytes)
    x = torch.randn(1, 3, TINY.img_size, TINY.img_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = stock.image_encoder(x), quick.image_encoder(x)
    assert rel_err(a, b) < 1e-5
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_encoder_with_padded_windows_matches_stock():
    # 8x8 tokens in 3x3 windows: the last window of each row and column is padded.
    config = dataclasses.replace(TINY, window_size=3)
    torch.manual_seed(0)
    stock = with_rel_pos(build_sam(config))
    quick = fast.enable_fast(copy.deepcopy(stock))
    x = torch.randn(2, 3, config.img_size, config.img_size)
    with torch.inference_mode():
        assert rel_err(stock.image_encoder(x), quick.image_encoder(x)) < 1e-5


def test_a_hook_on_encoder_attention_sees_what_it_sees_in_stock(pair, rgb_image):
    """sam_widgets.anatomy hooks blocks[i].attn: a fast model then runs stock's partition."""
    from sam_widgets import anatomy

    stock, quick = pair
    for block in (0, 1):  # TINY: block 0 windowed, block 1 global
        a = anatomy.attention_map(stock, rgb_image, block, (3, 2))
        b = anatomy.attention_map(quick, rgb_image, block, (3, 2))
        np.testing.assert_allclose(b, a, atol=1e-5)


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("multimask", [True, False])
def test_decoder_matches_stock(pair, rgb_image, prompt, multimask):
    stock, quick = pair
    a, b = CachedPredictor(stock), CachedPredictor(quick)
    a.set_image(rgb_image)
    b.set_image(rgb_image)
    assert rel_err(a.features, b.features) < 1e-5
    b.features = a.features  # the decoder alone, from the same embedding
    ma, sa, la = a.predict(**prompt, multimask_output=multimask, return_logits=True)
    mb, sb, lb = b.predict(**prompt, multimask_output=multimask, return_logits=True)
    np.testing.assert_allclose(lb, la, rtol=1e-4, atol=1e-4 * np.abs(la).max())
    np.testing.assert_allclose(sb, sa, rtol=1e-4, atol=1e-5)
    # With a mask prompt (the previous logits), as the session refines.
    mask_input = la[np.argmax(sa)][None]
    la2 = a.predict(**prompt, mask_input=mask_input, multimask_output=multimask)[2]
    lb2 = b.predict(**prompt, mask_input=mask_input, multimask_output=multimask)[2]
    np.testing.assert_allclose(lb2, la2, rtol=1e-4, atol=1e-4 * np.abs(la2).max())


def test_first_block_image_side_is_made_once_per_image_and_never_stale(pair, rgb_image):
    stock, quick = pair
    a, b = CachedPredictor(stock), CachedPredictor(quick)
    other = np.ascontiguousarray(rgb_image[::-1])
    made = []
    original = fast._ImageSide.__init__

    def counting_init(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    fast._ImageSide.__init__ = counting_init
    try:
        for image, clicks in ((rgb_image, 3), (other, 2), (rgb_image, 2)):  # the last: a cache hit
            a.set_image(image)
            b.set_image(image)
            if not b.stats.last_was_hit:
                assert len(made) == b.stats.misses  # made while encoding, before the first click
            for x in range(clicks):
                prompt = dict(point_coords=np.array([[10.0 + 30 * x, 40.0]]), point_labels=np.array([1]))
                la, lb = a.predict(**prompt)[2], b.predict(**prompt)[2]
                np.testing.assert_allclose(lb, la, rtol=1e-4, atol=1e-4 * np.abs(la).max())
        assert len(made) == 3  # once per image shown, not per click
        with torch.no_grad():
            b.features.mul_(1.5)  # changed in place: the side is made again
            a.features.mul_(1.5)
        la, lb = a.predict(**PROMPTS[0])[2], b.predict(**PROMPTS[0])[2]
        np.testing.assert_allclose(lb, la, rtol=1e-4, atol=1e-4 * np.abs(la).max())
        assert len(made) == 4
    finally:
        fast._ImageSide.__init__ = original


def test_batched_prompts_match_stock(pair, rgb_image):
    """predict_torch with several prompts at once (the automatic mask generator's path)."""
    stock, quick = pair
    a, b = SamPredictor(stock), SamPredictor(quick)
    a.set_image(rgb_image)
    b.set_image(rgb_image)
    b.features = a.features
    coords = torch.tensor([[[10.0, 10.0]], [[60.0, 50.0]], [[100.0, 20.0]]])
    labels = torch.ones(3, 1, dtype=torch.int)
    with torch.inference_mode():
        ma, sa, la = a.predict_torch(coords, labels, return_logits=True)
        mb, sb, lb = b.predict_torch(coords, labels, return_logits=True)
    assert la.shape == lb.shape == (3, 3, 32, 32)
    torch.testing.assert_close(lb, la, rtol=1e-4, atol=1e-4 * float(la.abs().max()))
    torch.testing.assert_close(sb, sa, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def micro_pair():
    stock = load_sam("micro", device="cpu", precision="fp32")
    return stock, fast.enable_fast(copy.deepcopy(stock))


def one_click_per_object(predictor_pairs, scenes):
    """Yield (masks_a, masks_b, logits_a, logits_b) for a centre click on every object."""
    for image, objects in scenes:
        for p in predictor_pairs:
            p.set_image(image)
        for obj in objects:
            ys, xs = np.nonzero(obj)
            i = len(ys) // 2
            prompt = dict(point_coords=np.array([[xs[i], ys[i]]], float), point_labels=np.array([1]))
            (ma, _, la), (mb, _, lb) = (p.predict(**prompt) for p in predictor_pairs)
            yield ma, mb, la, lb


@pytest.mark.parametrize("fast_encoder", [False, True])  # micro's size runs stock attention unless forced
def test_fast_fp32_masks_agree_with_stock_on_held_out_scenes(micro_pair, monkeypatch, fast_encoder):
    if fast_encoder:
        monkeypatch.setattr(fast, "STOCK_BELOW_BYTES", 0)
    stock, quick = micro_pair
    a, b = SamPredictor(stock), SamPredictor(quick)
    ious, errs = [], []
    for ma, mb, la, lb in one_click_per_object((a, b), heldout_set(12)):
        ious += [iou(x, y) for x, y in zip(ma, mb, strict=True)]
        errs.append(rel_err(la, lb))
    assert min(ious) >= 0.98 and np.mean(ious) > 0.999
    assert max(errs) < 1e-4


def test_bf16_masks_agree_with_fp32_on_held_out_scenes():
    fp32 = load_sam("micro", device="cpu", precision="fp32")
    bf16 = load_sam("micro", device="cpu", precision="bf16", fast=True)
    assert bf16.image_encoder.neck[0].weight.dtype == torch.bfloat16
    a, b = SamPredictor(fp32), SamPredictor(bf16)
    ious = []
    for ma, mb, _la, _lb in one_click_per_object((a, b), heldout_set(6)):
        best = 0  # the candidate a user sees first
        ious.append(iou(ma[best], mb[best]))
    assert np.mean(ious) >= 0.98


# ---------------------------------------------------------------------- masks at a size


def test_postprocess_masks_is_stock_bit_for_bit():
    vit_b = build_sam(architectures.CONFIGS["vit_b"], device="meta")  # postprocess needs no weights
    g = torch.Generator().manual_seed(0)
    for input_size, original_size in [
        ((768, 1024), (768, 1024)),  # stock's second resize is the identity
        ((768, 1024), (1536, 2048)),
        ((1024, 683), (3000, 2001)),
        ((1023, 1024), (999, 1000)),
        ((1024, 3), (4000, 11)),
        ((1024, 1024), (500, 500)),
    ]:
        low = torch.randn(1, 3, 256, 256, generator=g) * 5
        expected = vit_b.postprocess_masks(low, input_size, original_size)
        assert torch.equal(fast.postprocess_masks(low, input_size, original_size, 1024), expected)


@pytest.mark.parametrize(
    "input_size, original_size, out_size",
    [
        ((768, 1024), (768, 1024), (768, 1024)),
        ((768, 1024), (768, 1024), (576, 768)),
        ((1024, 683), (3000, 2001), (700, 467)),
        ((577, 1024), (577, 1024), (300, 533)),
    ],
)
def test_display_size_geometry_is_stocks(input_size, original_size, out_size):
    """On a linear ramp bilinear resizing is exact: each output pixel must hold the ramp's value
    at the centre of the image region it shows (stock's geometry, padding cut off)."""
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    low = (0.37 * yy - 0.81 * xx + 3.0)[None, None].double()
    got = fast.upscale_masks(low, input_size, 1024, out_size)[0, 0]
    i = (torch.arange(out_size[0]).double() + 0.5) * input_size[0] / 4 / out_size[0] - 0.5
    j = (torch.arange(out_size[1]).double() + 0.5) * input_size[1] / 4 / out_size[1] - 0.5
    expected = 0.37 * i[:, None] - 0.81 * j[None, :] + 3.0
    inner = (slice(8, -8), slice(8, -8))  # away from the clamped borders
    torch.testing.assert_close(got[inner], expected[inner], rtol=0, atol=1e-3)
    if tuple(out_size) == tuple(original_size):
        stock = fast._stock_postprocess(low, input_size, original_size, 1024)[0, 0]
        torch.testing.assert_close(got[inner], stock[inner], rtol=0, atol=1e-3)


@pytest.mark.parametrize("size", [(256, 256), (300, 400), (500, 180)])
def test_display_size_masks_agree_with_full_size_masks_resized(micro_pair, size):
    """predict(out_size=...) against the full mask sampled as the widget samples it (nearest).

    Both are the same low-res logits resized bilinearly, read at points up to half an image pixel
    apart (the centre of each canvas pixel, the centre of the image pixel under it). So the masks
    may differ only where the decision is marginal, and on few pixels: where |logit| is under a
    tenth of the mask's logit range (a broad, nearly flat stretch), or within one image pixel of the
    full mask's edge (stock resizes in two bilinear steps, through 1024x1024, the display size in
    one: on a steep edge |logit| there is larger, 0.105 of the range with run 11's weights). A
    mask shifted by a pixel would flip pixels along the whole edge at large |logit|: of the display
    pixels sampled within a pixel of an edge, sure ones flip on at most 0.2% (1 of ~43,600 with
    run 11's weights; a one-pixel shift of the display mask: 0.8-3%).
    """
    from scipy import ndimage

    stock, _ = micro_pair
    p = CachedPredictor(stock)
    h, w = size
    scale = 0.6
    ch, cw = round(h * scale), round(w * scale)
    rows = np.minimum((np.arange(ch) + 0.5) / scale, h - 1).astype(int)
    cols = np.minimum((np.arange(cw) + 0.5) / scale, w - 1).astype(int)
    differ = total = sure_flips = band = 0
    for image, objects in heldout_set(4, size=size):
        p.set_image(image)
        for obj in objects:
            ys, xs = np.nonzero(obj)
            point = np.array([[xs[len(xs) // 2], ys[len(ys) // 2]]], float)
            full, scores, logits = p.predict(point_coords=point, point_labels=[1], return_logits=True)
            small, scores2, logits2 = p.predict(point_coords=point, point_labels=[1], out_size=(ch, cw))
            assert small.shape == (3, ch, cw) and small.dtype == bool
            assert np.array_equal(scores, scores2) and np.array_equal(logits, logits2)
            shown = full[:, rows][:, :, cols]  # logits, sampled as the widget samples a full mask
            assert np.array_equal(
                small,
                p.predict(point_coords=point, point_labels=[1], out_size=(ch, cw), return_logits=True)[0] > 0,
            )
            for whole, logit, mask in zip(full, shown, small, strict=True):
                flipped = (logit > stock.mask_threshold) != mask
                differ += int(flipped.sum())
                total += flipped.size
                inside = whole > stock.mask_threshold
                ring = np.ones((3, 3), bool)  # within one image pixel of the edge
                edge = ndimage.binary_dilation(inside, ring) & ndimage.binary_dilation(~inside, ring)
                edge = edge[rows][:, cols]
                sure = np.abs(logit) > 0.1 * np.abs(logit).max()
                assert not (flipped & sure & ~edge).any(), "a mask differs where it is sure, off its edge"
                sure_flips += int((flipped & sure).sum())
                band += int(edge.sum())
    assert differ <= 0.01 * total
    assert sure_flips <= 0.002 * band, (sure_flips, band)


@pytest.mark.parametrize("use_fast", [False, True])
def test_upscale_gives_predicts_full_size_masks(pair, rgb_image, use_fast):
    sam = pair[1] if use_fast else pair[0]
    p = CachedPredictor(sam)
    p.set_image(rgb_image)
    masks, _, logits = p.predict(**PROMPTS[0])
    assert np.array_equal(p.upscale(logits), masks)
    assert np.array_equal(p.upscale(logits[1]), masks[1:2])
    assert np.array_equal(p.upscale(logits, out_size=(45, 60)), p.predict(**PROMPTS[0], out_size=(45, 60))[0])
    with pytest.raises(ValueError, match="out_size"):
        p.predict(**PROMPTS[0], out_size=(0, 10))
    with pytest.raises(ValueError, match="Cx256x256"):
        p.upscale(np.zeros((1, 1, 32, 32), np.float32))


def test_fast_and_stock_embeddings_are_cached_apart(tiny_sam, rgb_image, tmp_path):
    p = CachedPredictor(tiny_sam, cache_dir=tmp_path)
    p.set_image(rgb_image)
    assert p.stats.precision == "fp32"
    fast.enable_fast(tiny_sam)
    p.set_image(rgb_image)  # same image, other path: encoded again, not served the stock one
    assert (p.stats.misses, p.stats.hits, p.stats.precision) == (2, 0, "fp32-fast")
    assert len(list(tmp_path.glob("*.pt"))) == 2


# ---------------------------------------------------------------------- bf16 products by oneDNN

needs_onednn = pytest.mark.skipif(
    _kernels._MKLDNN_LINEAR is None or not torch.backends.mkldnn.is_available(),
    reason="no oneDNN in this torch",
)


@needs_onednn
@pytest.mark.parametrize("gelu", [False, True])
def test_bf16_linear_by_onednn_is_f_linear_within_bf16_rounding(gelu):
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(64, 96).to(torch.bfloat16)
    x = torch.randn(3, 5, 64, generator=g).to(torch.bfloat16)
    with torch.no_grad():
        exact = torch.nn.functional.linear(x.double(), lin.weight.double(), lin.bias.double())
        exact = torch.nn.functional.gelu(exact) if gelu else exact
        got = _kernels._linear(x, lin, gelu=gelu)
        stock = lin(x)
        stock = torch.nn.functional.gelu(stock) if gelu else stock
    assert got.dtype == torch.bfloat16 and got.shape == (3, 5, 96)
    # Bias and GELU on the fp32 accumulator: no further from the exact values than F.linear's.
    assert rel_err(exact, got) <= rel_err(exact, stock) * 1.05 + 1e-6
    assert rel_err(exact, got) < 1e-2


def test_linear_falls_back_to_the_module_outside_bf16_cpu_inference(monkeypatch):
    calls = []
    monkeypatch.setattr(_kernels, "_MKLDNN_LINEAR", lambda *a: calls.append(a))
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    torch.testing.assert_close(_kernels._linear(x, lin, gelu=True), torch.nn.functional.gelu(lin(x)))
    lin16 = torch.nn.Linear(8, 4).to(torch.bfloat16)
    y = _kernels._linear(x.to(torch.bfloat16), lin16)  # autograd on: the module's own code
    assert y.requires_grad and not calls
    with torch.no_grad():
        _kernels._linear(x.to(torch.bfloat16), lin16)
    assert len(calls) == 1


@needs_onednn
def test_bf16_encoder_with_onednn_products_is_as_close_to_fp32(tiny_sam, monkeypatch):
    """The fast bf16 encoder (qkv, proj, MLP with its GELU by oneDNN) is no further from the fp32
    encoder than the same bf16 weights through F.linear."""
    ref = fast.enable_fast(with_rel_pos(tiny_sam))
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref.image_encoder(x)
        enc = copy.deepcopy(ref.image_encoder).to(torch.bfloat16)
        real = _kernels._MKLDNN_LINEAR
        calls = []
        monkeypatch.setattr(_kernels, "_MKLDNN_LINEAR", lambda *a: calls.append(1) or real(*a))
        new = enc(x.to(torch.bfloat16)).float()
        assert calls  # the path ran
        monkeypatch.setattr(_kernels, "_MKLDNN_LINEAR", None)
        old = enc(x.to(torch.bfloat16)).float()
    assert rel_err(want, new) <= rel_err(want, old) * 1.2 + 1e-4
    assert rel_err(want, new) < 0.05
