"""CachedPredictor: same results as stock SamPredictor, one encoder pass per image, checked input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamPredictor

from sam_widgets import CachedPredictor
from sam_widgets._images import as_rgb_uint8
from sam_widgets.architectures import build_sam
from sam_widgets.models import _apply_precision

from .conftest import TINY


def count_encoder_calls(sam) -> list[int]:
    calls = [0]
    sam.image_encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


PROMPTS = [
    dict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1])),
    dict(point_coords=np.array([[50.0, 40.0], [5.0, 5.0]]), point_labels=np.array([1, 0])),
    dict(box=np.array([30, 20, 80, 60])),
    dict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]), box=np.array([30, 20, 80, 60])),
]


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("multimask", [True, False])
def test_fp32_results_equal_stock_predictor(tiny_sam, rgb_image, prompt, multimask):
    stock = SamPredictor(tiny_sam)
    ours = CachedPredictor(tiny_sam)
    stock.set_image(rgb_image)
    ours.set_image(rgb_image)
    assert torch.equal(stock.features, ours.features)
    assert stock.original_size == ours.original_size and stock.input_size == ours.input_size
    for return_logits in (False, True):
        a = stock.predict(**prompt, multimask_output=multimask, return_logits=return_logits)
        b = ours.predict(**prompt, multimask_output=multimask, return_logits=return_logits)
        for x, y in zip(a, b, strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    # A cache hit serves the very same embedding, so the results stay equal.
    ours.set_image(rgb_image.copy())
    assert ours.stats.last_was_hit
    a = stock.predict(**prompt, multimask_output=multimask)
    b = ours.predict(**prompt, multimask_output=multimask)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_bgr_input_matches_stock(tiny_sam, rgb_image):
    stock, ours = SamPredictor(tiny_sam), CachedPredictor(tiny_sam)
    bgr = np.ascontiguousarray(rgb_image[..., ::-1])
    stock.set_image(bgr, image_format="BGR")
    ours.set_image(bgr, image_format="BGR")
    assert torch.equal(stock.features, ours.features)


def test_cached_image_runs_no_encoder(tiny_sam, rgb_image):
    calls = count_encoder_calls(tiny_sam)
    p = CachedPredictor(tiny_sam)
    other = np.ascontiguousarray(rgb_image[::-1])
    p.set_image(rgb_image)
    p.set_image(other)
    assert calls[0] == 2
    p.set_image(rgb_image.copy())  # same content, another array object
    p.set_image(other)
    assert calls[0] == 2
    assert (p.stats.hits, p.stats.misses) == (2, 2)
    assert p.is_cached(rgb_image) and not p.is_cached(np.zeros_like(rgb_image))
    masks, scores, _ = p.predict(point_coords=np.array([[10, 10]]), point_labels=np.array([1]))
    assert masks.shape == (3, 90, 120) and scores.shape == (3,)
    assert p.stats.click_ms is not None and p.stats.encoder_ms is not None


def test_set_torch_image_is_cached(tiny_sam, rgb_image):
    calls = count_encoder_calls(tiny_sam)
    p = CachedPredictor(tiny_sam)
    x = torch.as_tensor(p.transform.apply_image(rgb_image)).permute(2, 0, 1)[None]
    p.set_torch_image(x, rgb_image.shape[:2])
    p.set_torch_image(x.clone(), rgb_image.shape[:2])
    assert calls[0] == 1
    p.set_torch_image(x, (91, 120))  # another original size is another entry
    assert calls[0] == 2


def test_lru_is_bounded_in_bytes(tiny_sam):
    calls = count_encoder_calls(tiny_sam)
    entry = 32 * 8 * 8 * 4  # 1x32x8x8 fp32 features
    p = CachedPredictor(tiny_sam, cache_bytes=2 * entry)
    imgs = [np.full((64, 64, 3), v, np.uint8) for v in (10, 20, 30)]
    for im in imgs:
        p.set_image(im)
    assert p.stats.cache_entries == 2 and p.stats.cache_bytes == 2 * entry
    p.set_image(imgs[2])  # most recent: hit
    assert calls[0] == 3
    p.set_image(imgs[0])  # evicted: encoder again
    assert calls[0] == 4
    p0 = CachedPredictor(tiny_sam, cache_bytes=0)
    p0.set_image(imgs[0])
    p0.set_image(imgs[0])
    assert p0.stats.hits == 0 and p0.stats.cache_entries == 0


def test_weights_changed_in_place_are_not_served_stale(tiny_sam, rgb_image):
    calls = count_encoder_calls(tiny_sam)
    p = CachedPredictor(tiny_sam)
    p.set_image(rgb_image)
    before = p.features.clone()
    with torch.no_grad():
        tiny_sam.image_encoder.neck[0].weight.mul_(2.0)
    p.set_image(rgb_image)
    assert calls[0] == 2
    assert not torch.equal(before, p.features)


def test_disk_cache_survives_a_new_process_and_rejects_other_models(tiny_sam, rgb_image, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        CachedPredictor(tiny_sam, cache_dir=tmp_path / "private").set_image(rgb_image)
    finally:
        os.umask(old)
    (cached,) = [f for f in (tmp_path / "private").rglob("*") if f.is_file()]
    assert oct(cached.stat().st_mode & 0o777) == "0o600"  # the user's images' embeddings: the user's
    p1 = CachedPredictor(tiny_sam, cache_dir=tmp_path / "emb")
    p1.set_image(rgb_image)
    files = list((tmp_path / "emb").glob("*.pt"))
    assert len(files) == 1 and not list((tmp_path / "emb").glob(".tmp-*"))

    # Same weights in a new model object (as after a restart): served from disk, no encoder.
    same = build_sam(TINY)
    same.load_state_dict(tiny_sam.state_dict())
    calls = count_encoder_calls(same)
    p2 = CachedPredictor(same, cache_dir=tmp_path / "emb")
    p2.set_image(rgb_image)
    assert calls[0] == 0 and p2.stats.disk_hits == 1
    assert torch.equal(p2.features, p1.features)

    # Other weights: never served the first model's embedding.
    torch.manual_seed(1)
    other = build_sam(TINY)
    calls = count_encoder_calls(other)
    CachedPredictor(other, cache_dir=tmp_path / "emb").set_image(rgb_image)
    assert calls[0] == 1

    # Same weights, other precision: a separate entry.
    bf16 = build_sam(TINY)
    bf16.load_state_dict(tiny_sam.state_dict())
    _apply_precision(bf16, "bf16")
    calls = count_encoder_calls(bf16)
    CachedPredictor(bf16, cache_dir=tmp_path / "emb").set_image(rgb_image)
    assert calls[0] == 1


def test_damaged_disk_entry_is_recomputed(tiny_sam, rgb_image, tmp_path):
    p1 = CachedPredictor(tiny_sam, cache_dir=tmp_path)
    p1.set_image(rgb_image)
    (entry,) = tmp_path.glob("*.pt")
    entry.write_bytes(b"not a torch file")
    calls = count_encoder_calls(tiny_sam)
    p2 = CachedPredictor(tiny_sam, cache_dir=tmp_path)
    p2.set_image(rgb_image)
    assert calls[0] == 1 and torch.equal(p2.features, p1.features)
    assert torch.load(entry, weights_only=True)["features"].shape == p1.features.shape


def test_set_image_from_a_worker_thread(tiny_sam, rgb_image):
    p = CachedPredictor(tiny_sam)
    t = threading.Thread(target=p.set_image, args=(rgb_image,))
    t.start()
    t.join(timeout=60)
    assert not t.is_alive() and p.is_image_set
    masks, _, _ = p.predict(box=np.array([30, 20, 80, 60]), multimask_output=False)
    assert masks.shape == (1, 90, 120)


def test_stats_report_device_and_precision(tiny_sam):
    p = CachedPredictor(tiny_sam)
    d = p.stats.as_dict()
    assert d["device"] == "cpu" and d["precision"] == "fp32" and d["hits"] == 0


# ---------------------------------------------------------------------- bad input


def test_predict_before_set_image(tiny_sam):
    with pytest.raises(RuntimeError, match="set_image"):
        CachedPredictor(tiny_sam).predict(box=np.array([0, 0, 10, 10]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(point_coords=np.array([[121.0, 10.0]]), point_labels=np.array([1])), "outside the 120x90"),
        (dict(point_coords=np.array([[10.0, -1.0]]), point_labels=np.array([1])), "outside"),
        (dict(point_coords=np.array([[np.nan, 1.0]]), point_labels=np.array([1])), "NaN"),
        (dict(point_coords=np.array([10.0, 10.0]), point_labels=np.array([1])), "Nx2"),
        (dict(point_coords=np.array([[10.0, 10.0]]), point_labels=np.array([1, 0])), "one label per point"),
        (dict(point_coords=np.array([[10.0, 10.0]]), point_labels=np.array([2])), "1 \\(positive\\) or 0"),
        (dict(point_coords=np.array([[10.0, 10.0]])), "point_labels must be supplied"),
        (dict(box=np.array([50, 20, 30, 60])), "XYXY"),
        (dict(box=np.array([0, 0, 130, 60])), "outside"),
        (dict(box=np.array([0, 0, 10])), "4 numbers"),
        (dict(mask_input=np.zeros((1, 10, 10))), "shape \\(1, 32, 32\\)"),
    ],
)
def test_bad_prompts_get_clear_errors(tiny_sam, rgb_image, kwargs, match):
    p = CachedPredictor(tiny_sam)
    p.set_image(rgb_image)
    with pytest.raises(ValueError, match=match):
        p.predict(**kwargs)
    # The image stays set: the user fixes the prompt and goes on.
    assert p.predict(box=np.array([30, 20, 80, 60]))[0].shape[1:] == (90, 120)


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((1, 1, 3), np.uint8), "at least 8"),
        (np.full((20, 20, 3), np.nan, np.float32), "NaN"),
        (np.full((20, 20, 3), 3.0, np.float32), "\\[0, 1\\]"),
        (np.zeros((20, 20, 3), np.int32) - 1, "\\[0, 255\\]"),
        (np.zeros((3, 20, 20), np.uint8), "transpose"),
        (np.zeros((20, 20, 5), np.uint8), "not an image"),
        (np.zeros((10001, 10001, 3), np.uint8), "100 MP"),
        ("no/such/file.png", "No image file"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_images_get_clear_errors(tiny_sam, image, match):
    p = CachedPredictor(tiny_sam)
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=match):
        p.set_image(image)
    assert not p.is_image_set and p.stats.misses == 0


def test_image_conversion_rules(tmp_path, rgb_image):
    gray = rgb_image[..., 0]
    assert np.array_equal(as_rgb_uint8(gray), np.repeat(gray[..., None], 3, axis=2))
    assert np.array_equal(as_rgb_uint8(gray[..., None]), as_rgb_uint8(gray))
    rgba = np.concatenate([rgb_image, np.full(rgb_image.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert np.array_equal(as_rgb_uint8(rgba), rgb_image)
    assert np.array_equal(as_rgb_uint8(rgb_image.astype(np.uint16) * 257), rgb_image)
    assert np.array_equal(as_rgb_uint8(rgb_image / 255.0), rgb_image)
    assert np.array_equal(as_rgb_uint8(np.eye(10, dtype=bool))[..., 0], np.eye(10, dtype=np.uint8) * 255)
    assert np.array_equal(as_rgb_uint8(Image.fromarray(rgb_image)), rgb_image)
    assert np.array_equal(as_rgb_uint8(Image.fromarray(rgba)), rgb_image)
    path = tmp_path / "im.png"
    Image.fromarray(rgb_image).save(path)
    assert np.array_equal(as_rgb_uint8(path), rgb_image)
    assert np.array_equal(as_rgb_uint8(str(path)), rgb_image)
    (tmp_path / "bad.png").write_bytes(b"<html>")
    with pytest.raises(ValueError, match="not an image"):
        as_rgb_uint8(tmp_path / "bad.png")


def test_converted_inputs_give_the_same_embedding(tiny_sam, rgb_image):
    calls = count_encoder_calls(tiny_sam)
    p = CachedPredictor(tiny_sam)
    p.set_image(rgb_image)
    p.set_image(rgb_image / 255.0)
    p.set_image(Image.fromarray(rgb_image))
    assert calls[0] == 1


def test_rejects_what_is_not_a_sam():
    with pytest.raises(TypeError, match="segment_anything Sam"):
        CachedPredictor(torch.nn.Linear(2, 2))


def _threads_inside_decoder(predictor, rgb_image):
    """torch's thread count while the mask decoder runs one click."""
    seen = []
    hook = predictor.model.mask_decoder.register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads())
    )
    try:
        predictor.set_image(rgb_image)
        predictor.predict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]))
    finally:
        hook.remove()
    return seen[-1]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_small_decoder_clicks_on_one_thread_and_restores_the_callers(tiny_sam, rgb_image, two_threads):
    from sam_widgets.fast import enable_fast

    assert CachedPredictor(tiny_sam).threads_for_click() is None  # stock code: the caller's threads
    p = CachedPredictor(enable_fast(tiny_sam))
    assert p.threads_for_click() == 1
    assert _threads_inside_decoder(p, rgb_image) == 1
    assert torch.get_num_threads() == two_threads


def test_large_decoder_and_explicit_click_threads(tiny_sam, rgb_image, two_threads, monkeypatch):
    from sam_widgets import predictor as predictor_module
    from sam_widgets.fast import enable_fast

    monkeypatch.setattr(predictor_module, "SMALL_DECODER_VALUES", 0)  # tiny_sam counts as large now
    enable_fast(tiny_sam)
    assert CachedPredictor(tiny_sam).threads_for_click() is None
    assert _threads_inside_decoder(CachedPredictor(tiny_sam), rgb_image) == two_threads
    assert _threads_inside_decoder(CachedPredictor(tiny_sam, click_threads=3), rgb_image) == 3
    assert torch.get_num_threads() == two_threads


def test_thread_count_is_restored_when_a_click_fails(tiny_sam, rgb_image, two_threads):
    from sam_widgets.fast import enable_fast

    p = CachedPredictor(enable_fast(tiny_sam))
    assert p.threads_for_click() == 1
    p.set_image(rgb_image)

    def boom(*_):
        raise RuntimeError("decoder failed")

    hook = p.model.mask_decoder.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="decoder failed"):
            p.predict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]))
    finally:
        hook.remove()
    assert torch.get_num_threads() == two_threads


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_bad_click_threads(tiny_sam, bad):
    with pytest.raises(ValueError, match="click_threads"):
        CachedPredictor(tiny_sam, click_threads=bad)
