"""compare: checkpoints side by side; masks only from trained weights, the rest labelled."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch

from sam_widgets import anatomy, architectures, checkpoints, compare
from sam_widgets.architectures import build_sam
from sam_widgets.compare import ModelResult
from sam_widgets.prompts import Prompt

from .conftest import TINY

matplotlib.use("Agg")

PROMPTS = (
    Prompt("click", points=((60, 40),), labels=(1,)),
    Prompt("click + negative", points=((60, 40), (5, 5)), labels=(1, 0)),
    Prompt("box", box=(30, 20, 80, 60)),
)


@pytest.fixture
def tiny_official(monkeypatch):
    """vit_b, vit_l and vit_h built as TINY: the official code paths, in milliseconds."""
    for name in architectures.OFFICIAL:
        monkeypatch.setitem(architectures.CONFIGS, name, TINY)
    # TINY needs no RAM to speak of: the real models' needs must not skip them on a small machine.
    monkeypatch.setattr(compare, "available_ram_bytes", lambda: 64 * compare.GiB)


@pytest.fixture
def cached_tiny_vit_b(tiny_official, monkeypatch):
    """A TINY state dict in the isolated cache under vit_b's official name, with its sha256 pinned."""
    torch.manual_seed(0)
    state = build_sam(TINY).state_dict()
    info = checkpoints.REGISTRY["vit_b"]
    path = checkpoints.cache_dir() / info.filename
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    body = path.read_bytes()
    fake = checkpoints.CheckpointInfo(
        "vit_b", info.filename, info.url, hashlib.sha256(body).hexdigest(), len(body)
    )
    monkeypatch.setitem(checkpoints.REGISTRY, "vit_b", fake)
    return path


def _result(name: str, weights: str, **kw) -> ModelResult:
    return ModelResult(name, weights, kw.pop("note", ""), anatomy.describe(TINY), 1, **kw)


# ----------------------------------------------------------------------------- small pieces


def test_parse_models():
    assert compare.parse_models("vit_h, vit_b") == ("vit_b", "vit_h")  # official order
    assert compare.parse_models("all") == compare.parse_models("1") == architectures.OFFICIAL
    assert compare.parse_models("none") == compare.parse_models("0") == compare.parse_models("") == ()
    with pytest.raises(ValueError, match="unknown model.*vit_x"):
        compare.parse_models("vit_b,vit_x")
    # The notebooks share SAM_WIDGETS_NB_MODELS, micro included.
    assert compare.parse_models("micro,vit_h", compare.ALL_MODELS) == ("vit_h", "micro")


def test_prompt_arguments_and_checks():
    kw = PROMPTS[1].predict_kwargs()
    assert kw["point_coords"].shape == (2, 2) and kw["point_labels"].tolist() == [1, 0] and kw["box"] is None
    kw = PROMPTS[2].predict_kwargs()
    assert (
        kw["point_coords"] is None and kw["point_labels"] is None and kw["box"].tolist() == [30, 20, 80, 60]
    )
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        Prompt("bad", points=((1, 1), (2, 2)), labels=(1,))
    with pytest.raises(ValueError, match="neither points nor a box"):
        Prompt("empty")


def test_chelsea_prompts_lie_inside_chelsea():
    from skimage import data

    h, w = data.chelsea().shape[:2]
    for p in compare.CHELSEA_PROMPTS:
        assert all(0 <= x <= w and 0 <= y <= h for x, y in p.points)
        if p.box is not None:
            x0, y0, x1, y1 = p.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


def test_not_downloaded_is_one_line_with_the_command():
    line = compare.not_downloaded_line("vit_l")
    assert line == "vit_l: not downloaded here - `sam-widgets download vit_l` fetches it (1.2 GB)"
    assert compare.checkpoint_status("vit_h") == (None, compare.not_downloaded_line("vit_h"))


def test_a_corrupt_cached_file_is_reported_not_used():
    path = checkpoints.cache_dir() / checkpoints.REGISTRY["vit_b"].filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    found, line = compare.checkpoint_status("vit_b")
    assert found is None and "fails its sha256" in line and str(path) in line


def test_available_ram_reads_the_container_limit(tmp_path, monkeypatch):
    import psutil

    machine = 64 * compare.GiB

    class VM:
        available = machine

    monkeypatch.setattr(psutil, "virtual_memory", lambda: VM)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text(f"{2 * compare.GiB}\n")
    (v2 / "memory.current").write_text(f"{compare.GiB // 2}\n")
    assert compare.available_ram_bytes(v2) == int(1.5 * compare.GiB)  # mybinder.org-like
    (v2 / "memory.max").write_text("max\n")
    assert compare.available_ram_bytes(v2) == machine
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("123\n")
    assert compare.available_ram_bytes(tmp_path / "v1") == machine
    (v1 / "memory.limit_in_bytes").write_text(f"{compare.GiB}\n")
    assert compare.available_ram_bytes(tmp_path / "v1") == compare.GiB - 123
    assert compare.available_ram_bytes(tmp_path / "nothing") == machine


@pytest.mark.parametrize(
    "setup, added, whole",
    [
        ("from sam_widgets.measure import PeakRSS; m = PeakRSS()", "m.bytes", "m.peak_rss_bytes"),
        ("from sam_widgets._memory import PeakRSS; m = PeakRSS(trim=True)", "m.bytes", "m.peak_rss_bytes"),
        # bench's meter on a CPU device: the same sampler, with the heap trimmed first
        (
            "import torch; from sam_widgets.measure import PeakMemory; m = PeakMemory(torch.device('cpu'))",
            "m.peak_bytes",
            "m.peak_rss_bytes",
        ),
    ],
)
def test_peak_rss_sees_an_allocation(setup, added, whole):
    # In a fresh process: memory that earlier tests' objects or threads free during the block
    # would lower the RSS and hide the allocation.
    code = (
        f"import numpy as np, psutil; {setup}\n"
        "with m:\n"
        "    block = np.ones(64 * 1024**2, np.uint8)  # 64 MiB, touched\n"
        "    rss_inside = psutil.Process().memory_info().rss\n"
        f"print({added}, {whole}, rss_inside)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    added_b, whole_b, rss_inside = (int(v) for v in out.stdout.split())
    assert added_b >= 48 * 1024**2
    # The whole process's peak, not only what the block added (up to 1 MiB of slack: psutil's own
    # reading inside the block can hold pages freed before the exit's sample; a CI run under load
    # saw 4 KiB less).
    assert whole_b >= rss_inside - 2**20 and whole_b >= added_b + 8 * 1024**2
    assert whole_b >= added_b


def test_model_result_refuses_masks_from_random_weights():
    masks = {"click": np.zeros((3, 4, 4), bool)}
    with pytest.raises(ValueError, match="not results"):
        _result("vit_h", "random", masks=masks)
    with pytest.raises(ValueError, match="not results"):
        _result("vit_h", "none", scores={"click": np.zeros(3)})
    with pytest.raises(ValueError, match="use 'pretrained'"):
        _result("vit_h", "trained")
    with pytest.raises(ValueError, match="no masks"):
        _result("vit_h", "random", note="timing only").best("click")


# ----------------------------------------------------------------------------- running


def test_run_model_needs_to_know_the_weights(tiny_sam, rgb_image):
    with pytest.raises(ValueError, match="pass weights="):
        compare.run_model(tiny_sam, rgb_image, PROMPTS)
    r = compare.run_model(tiny_sam, rgb_image, PROMPTS, weights="random", repeats=2)
    assert r.weights == "random" and not r.masks and not r.scores and not r.has_masks
    assert len(r.encode_ms) == 2 and len(r.click_ms) == 2 * len(PROMPTS)
    assert all(t > 0 for t in r.encode_ms + r.click_ms)


def test_downloaded_path_gives_masks_scores_and_times(cached_tiny_vit_b, rgb_image):
    lines: list[str] = []
    results = compare.compare(
        rgb_image,
        PROMPTS,
        ["vit_b", "vit_l"],
        random_timing=[],
        repeats=2,
        device="cpu",
        log=lines.append,
    )
    vit_b, vit_l = results
    assert compare.checkpoint_status("vit_b")[0] == cached_tiny_vit_b
    assert vit_b.weights == "pretrained" and vit_b.has_masks and "sha256 verified" in vit_b.note
    for p in PROMPTS:
        assert vit_b.masks[p.name].shape == (3, 90, 120) and vit_b.masks[p.name].dtype == bool
        assert vit_b.scores[p.name].shape == (3,)
        mask, score = vit_b.best(p.name)
        assert score == vit_b.scores[p.name].max() and mask.shape == (90, 120)
    assert len(vit_b.encode_ms) == 2 and len(vit_b.click_ms) == 2 * len(PROMPTS)
    assert vit_b.encode_added_bytes is not None and vit_b.weights_bytes > 0
    # vit_l is not cached and not asked for random timing: architecture only, nothing run.
    assert vit_l.weights == "none" and not vit_l.encode_ms and not vit_l.has_masks
    assert vit_l.note == compare.not_downloaded_line("vit_l")
    assert (
        lines[0].startswith("vit_b: trained weights: encode")
        and lines[1] == "vit_l: not run (architecture only)"
    )


def test_not_downloaded_path_times_random_weights_and_keeps_no_mask(tiny_official, rgb_image):
    results = compare.compare(rgb_image, PROMPTS, ["vit_h"], random_timing=["vit_h"], device="cpu", log=None)
    (vit_h,) = results
    assert vit_h.weights == "random" and vit_h.masks == {} and vit_h.scores == {}
    assert len(vit_h.encode_ms) == 1 and len(vit_h.click_ms) == len(PROMPTS)
    assert compare.not_downloaded_line("vit_h") in vit_h.note and compare.RANDOM_LABEL in vit_h.note


def test_a_model_that_does_not_fit_in_ram_is_not_run(tiny_official, rgb_image, monkeypatch):
    monkeypatch.setattr(compare, "available_ram_bytes", lambda: compare.GiB)
    (vit_l,) = compare.compare(rgb_image, PROMPTS, ["vit_l"], device="cpu", log=None)
    assert vit_l.weights == "none" and not vit_l.encode_ms
    assert (
        f"needs ~{compare.ENCODE_PEAK_RAM['vit_l'] / 2**30:.1f} GiB of RAM, 1.0 GiB free" in vit_l.note
        and "not downloaded" in vit_l.note
    )
    (vit_l,) = compare.compare(rgb_image, PROMPTS, ["vit_l"], device="cpu", check_memory=False, log=None)
    assert vit_l.weights == "random"


def test_micro_alongside_gives_real_masks():
    from sam_widgets.micro.data import make_scene
    from sam_widgets.viz import mask_iou

    scene, truth = make_scene(3)
    target = int(np.argmax(truth.reshape(len(truth), -1).sum(1)))
    ys, xs = np.nonzero(truth[target])
    prompt = Prompt("box", box=(xs.min(), ys.min(), xs.max(), ys.max()))
    (micro,) = compare.compare(scene, [prompt], ["micro"], device="cpu", log=None)
    assert micro.name == "micro" and micro.weights == "pretrained"
    assert mask_iou(micro.best("box")[0], truth[target]) > 0.5


# ----------------------------------------------------------------------------- tables and figures


def _pretrained(name: str, seed: int) -> ModelResult:
    rng = np.random.default_rng(seed)
    masks = {p.name: rng.random((3, 90, 120)) > 0.5 for p in PROMPTS}
    scores = {p.name: rng.random(3) for p in PROMPTS}
    return _result(name, "pretrained", masks=masks, scores=scores, encode_ms=[1500.0], click_ms=[70.0, 80.0])


def test_table_and_agreement():
    a, b = _pretrained("vit_b", 0), _pretrained("vit_h", 1)
    none = _result("vit_l", "none", note=compare.not_downloaded_line("vit_l"))
    text = compare.table([a, none, b])
    rows = text.splitlines()
    assert len(rows) == 5 and "1.50 s" in rows[2] and "75 ms" in rows[2]
    assert rows[3].split()[:2] == ["vit_l", "none"] and rows[3].rstrip().endswith("-")
    agree = compare.agreement([a, none, b], "click")
    assert list(agree) == [("vit_b", "vit_h")] and 0 <= agree["vit_b", "vit_h"] <= 1
    assert compare.agreement([a], "click") == {}


def test_mask_figure_shows_masks_only_for_trained_weights(rgb_image):
    import matplotlib.pyplot as plt

    results = [
        _pretrained("vit_b", 0),
        _result("vit_l", "random", note=compare.not_downloaded_line("vit_l"), encode_ms=[9.0]),
        _result("vit_h", "none", note=compare.not_downloaded_line("vit_h")),
    ]
    fig = compare.plot_masks(results, rgb_image, PROMPTS)
    axes = np.array(fig.axes).reshape(len(PROMPTS), 3)
    for row in axes:
        trained, random, absent = row
        assert "predicted IoU" in trained.get_title()
        random_text = " ".join(t.get_text() for t in random.texts)
        assert "not downloaded" in random_text and "timing only" in random_text and "no masks" in random_text
        assert "not downloaded" in " ".join(t.get_text() for t in absent.texts)
        for ax in (random, absent):  # the faded photo only: no overlay drawn
            assert len(ax.images) == 1 and ax.images[0].get_alpha() == 0.25
            assert np.array_equal(ax.images[0].get_array(), rgb_image)
    plt.close(fig)

    fig = compare.plot_candidates(results, rgb_image, PROMPTS[0])
    assert len(fig.axes) == 3 and all("vit_b: candidate" in ax.get_title() for ax in fig.axes)
    plt.close(fig)
    assert compare.plot_candidates(results[1:], rgb_image, PROMPTS[0]) is None


def test_encode_time_chart_hatches_random_weights():
    import matplotlib.pyplot as plt

    results = [
        _pretrained("vit_b", 0),
        _result("vit_h", "random", encode_ms=[60000.0]),
        _result("vit_l", "none"),
    ]
    fig = compare.plot_encode_times(results)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert [b.get_hatch() for b in bars] == [None, "//"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["vit_b", "vit_h"]  # vit_l: no timing, no bar
    assert any("random weights: timing only" in t.get_text() for t in ax.texts)
    plt.close(fig)


def test_architecture_of_the_official_models_needs_no_weights():
    b, h = compare.architecture("vit_b"), compare.architecture("vit_h")
    assert round(b.encoder_params / 1e6, 1) == 89.7 and round(h.encoder_params / 1e6, 1) == 637.0  # DESIGN.md
    assert b.prompt_decoder_params == h.prompt_decoder_params == 4_064_560  # shared by all three
    assert (b.anatomy.embed_dim, h.anatomy.depth) == (768, 32)


def test_a_downloaded_model_that_does_not_fit_says_so_in_its_panel(cached_tiny_vit_b, rgb_image, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(compare, "available_ram_bytes", lambda: compare.GiB)
    (vit_b,) = compare.compare(rgb_image, PROMPTS[:1], ["vit_b"], device="cpu", log=None)
    assert (
        vit_b.weights == "none"
        and "sha256 verified" in vit_b.note
        and f"needs ~{compare.ENCODE_PEAK_RAM['vit_b'] / 2**30:.1f} GiB" in vit_b.note
    )
    fig = compare.plot_masks([vit_b], rgb_image, PROMPTS[:1])
    assert "too little RAM" in " ".join(t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)


def test_compare_warms_up_untimed_then_times_each_repeat(tiny_official, rgb_image, monkeypatch):
    # Issue 19: timings warm up first and take a median over repeats; warm-ups are not timed.
    from sam_widgets.predictor import CachedPredictor

    calls = []
    real = CachedPredictor.set_image
    monkeypatch.setattr(
        CachedPredictor, "set_image", lambda self, *a, **k: (calls.append(1), real(self, *a, **k))[1]
    )
    (vit_h,) = compare.compare(
        rgb_image,
        PROMPTS[:1],
        ["vit_h"],
        random_timing=["vit_h"],
        repeats=3,
        warmup=2,
        device="cpu",
        log=None,
    )
    assert len(calls) == 2 + 3 and len(vit_h.encode_ms) == 3
    assert vit_h.encode_median_ms == sorted(vit_h.encode_ms)[1]


def test_run_model_names_the_path_once(tiny_sam, rgb_image):
    """The precision label already says "-fast": the result must not add " fast" again."""
    from sam_widgets.fast import enable_fast

    stock = compare.run_model(tiny_sam, rgb_image, PROMPTS[:1], weights="random")
    assert stock.precision == "fp32"
    fast = compare.run_model(enable_fast(tiny_sam), rgb_image, PROMPTS[:1], weights="random")
    assert fast.precision == "fp32-fast"
