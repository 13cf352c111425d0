"""Tests for sam_widgets.micro: shipped weights, quality through SamPredictor, data, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_widgets import micro
from sam_widgets.architectures import CONFIGS
from sam_widgets.evaluation import center_point
from sam_widgets.micro import WEIGHTS_PATH, build_micro
from sam_widgets.micro.data import HELDOUT_SEED_START, TRAIN_SEED_START, heldout_set, make_scene
from sam_widgets.viz import mask_iou as iou

# Held-out objects for the quality tests, (scene index, object index) into heldout_set(8).
# Candidates by geometry: visible area >= 900 px of the 256x256 scene and >= 0.5 of its bounding
# box (19 objects). micro is undertrained (held-out 1-click mIoU 0.80, see MODEL_CARD.md); these
# are the candidates the shipped weights segment with IoU >= 0.87 (19 of 19 for a click, 18 for a
# box): regression guards of the weights and of the inference path, not a quality claim.
# `python scripts/micro_test_cases.py [weights]` applies this rule and prints the lists.
CLICK_CASES = [(0, 3), (0, 6), (1, 1), (1, 3), (2, 0), (2, 1), (3, 1), (3, 3), (3, 4), (4, 0), (4, 2)]
CLICK_CASES += [(5, 1), (5, 5), (6, 1), (6, 2), (7, 0), (7, 1), (7, 2), (7, 3)]
BOX_CASES = [(0, 6), (1, 1), (1, 3), (2, 0), (2, 1), (3, 1), (3, 3), (3, 4), (4, 0), (4, 2)]
BOX_CASES += [(5, 1), (5, 5), (6, 1), (6, 2), (7, 0), (7, 1), (7, 2), (7, 3)]
# (scene, object to keep, touching object behind it to remove with a negative click): of the 6
# pairs of touching objects (of 22) for which the shipped weights pass the script's rule (box
# around both leaves out <= 0.2 of the one behind, a negative click at its center >= 0.3 more,
# and keeps >= 0.75 of the other), the one farthest from the test's thresholds (smallest margin
# 0.151, the next 0.107).
NEG_CASE = (2, 0, 3)
# Ambiguity: (scene index into ambiguity_set(16), part index) of clicks on a part of a nested
# object. Candidates (the script's rule): the ambiguity protocol's click at the center of a part
# of >= 400 px whose whole is >= 2x its area (no one mask can match both); cases: those where the
# weights' three candidates include one with IoU >= 0.80 (issue 12's ambiguity bar) to the part
# and one >= 0.80 to the whole: 7 of 18 candidates.
AMBIGUITY_CASES = [(0, 2), (6, 3), (7, 8), (9, 1), (12, 2), (13, 6), (15, 5)]


@pytest.fixture(scope="module")
def scenes():
    return heldout_set(8)


@pytest.fixture(scope="module")
def predictor():
    import torch
    from segment_anything import SamPredictor

    torch.set_num_threads(2)
    return SamPredictor(build_micro())


def test_weights_ship_small_and_load_offline_with_weights_only():
    import torch

    assert WEIGHTS_PATH.is_file()
    assert WEIGHTS_PATH.stat().st_size <= 20 * 2**20
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    sam = build_micro()
    assert not sam.training
    assert sam.image_encoder.img_size == CONFIGS["micro"].img_size


def test_random_init_has_the_shipped_architecture():
    import torch

    shipped = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    fresh = build_micro(weights=False).state_dict()
    assert {k: tuple(v.shape) for k, v in fresh.items()} == {k: tuple(v.shape) for k, v in shipped.items()}
    assert sum(v.numel() for v in fresh.values()) == sum(v.numel() for v in shipped.values())


def test_missing_weights_say_how_to_train(tmp_path, monkeypatch):
    monkeypatch.setattr(micro, "WEIGHTS_PATH", tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="sam_widgets.micro.train"):
        build_micro()


def test_heldout_scenes_are_deterministic_and_distinct():
    (a_img, a_masks), (b_img, b_masks) = heldout_set(2)
    c_img, c_masks = make_scene(HELDOUT_SEED_START)
    assert np.array_equal(a_img, c_img) and np.array_equal(a_masks, c_masks)
    assert not np.array_equal(a_img, b_img)
    assert a_img.dtype == np.uint8 and a_img.shape == (256, 256, 3)
    assert a_masks.dtype == bool and a_masks.shape[1:] == (256, 256)
    assert HELDOUT_SEED_START + 10**5 <= TRAIN_SEED_START


def test_validation_scenes_are_their_own_set():
    from sam_widgets.micro.data import VALIDATION_SEED_START, validation_set

    (v_img, v_masks), _ = validation_set(2)
    again, _ = validation_set(2)
    assert np.array_equal(v_img, again[0]) and np.array_equal(v_masks, again[1])
    assert not np.array_equal(v_img, heldout_set(1)[0][0])
    assert VALIDATION_SEED_START + 10**5 <= HELDOUT_SEED_START  # disjoint from held-out and training
    with pytest.raises(ValueError, match="1..100000"):
        validation_set(0)
    from sam_widgets.micro.evaluate import evaluate

    with pytest.raises(ValueError, match="split must be 'heldout' or 'validation'"):
        evaluate(None, scenes=1, split="test")  # refused before any model work


def test_scene_masks_are_visible_parts_and_disjoint():
    img, masks = make_scene(TRAIN_SEED_START + 7, size=(200, 256))
    assert img.shape == (200, 256, 3) and masks.shape[1:] == (200, 256)
    assert masks.sum(0).max() <= 1  # an occluded pixel belongs to the object in front only
    assert (masks.reshape(len(masks), -1).sum(1) >= 48).all()


@pytest.mark.parametrize("case", CLICK_CASES)
def test_one_click_inside_an_object_segments_it(scenes, predictor, case):
    image, masks = scenes[case[0]]
    gt = masks[case[1]]
    predictor.set_image(image)
    m, s, _ = predictor.predict(np.array([center_point(gt)]), np.array([1]), multimask_output=True)
    assert m.shape == (3, 256, 256)
    assert iou(m[int(np.argmax(s))], gt) >= 0.85


@pytest.mark.parametrize("case", BOX_CASES)
def test_box_prompt_segments_the_object(scenes, predictor, case):
    image, masks = scenes[case[0]]
    gt = masks[case[1]]
    ys, xs = np.nonzero(gt)
    predictor.set_image(image)
    m, _, _ = predictor.predict(
        box=np.array([xs.min(), ys.min(), xs.max(), ys.max()]), multimask_output=False
    )
    assert iou(m[0], gt) >= 0.85


def test_negative_click_removes_an_object_from_a_box(scenes, predictor):
    image, masks = scenes[NEG_CASE[0]]
    keep, drop = masks[NEG_CASE[1]], masks[NEG_CASE[2]]
    both = keep | drop
    ys, xs = np.nonzero(both)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
    predictor.set_image(image)
    before, _, _ = predictor.predict(box=box, multimask_output=False)
    after, _, _ = predictor.predict(
        np.array([center_point(drop)]), np.array([0]), box=box, multimask_output=False
    )
    removed_before = 1 - (before[0] & drop).sum() / drop.sum()
    removed_after = 1 - (after[0] & drop).sum() / drop.sum()
    assert removed_before <= 0.2  # the box alone takes both objects (0.04 left out when written)
    # the negative click takes part of the object behind out (0.55 of it when written) and keeps
    # most of the one in front (0.90 when written): the label reaches the decoder and acts where it
    # was placed
    assert removed_after >= removed_before + 0.3
    assert (after[0] & keep).sum() / keep.sum() >= 0.7


def test_non_square_image_runs_end_to_end(predictor):
    image, masks = make_scene(HELDOUT_SEED_START + 99, size=(180, 256))
    predictor.set_image(image)
    gt = masks[np.argmax(masks.reshape(len(masks), -1).sum(1))]
    m, s, low = predictor.predict(np.array([center_point(gt)]), np.array([1]))
    assert m.shape == (3, 180, 256) and s.shape == (3,)
    assert low.shape == (3, 64, 64)  # 4x the 16x16 embedding


def test_automatic_mask_generator_runs(scenes):
    from segment_anything import SamAutomaticMaskGenerator

    # micro's scores sit below SAM's default filters (0.88 IoU, 0.95 stability): with those it
    # returns nothing (MODEL_CARD.md), so this checks the code path with the filters off.
    gen = SamAutomaticMaskGenerator(
        build_micro(), points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    out = gen.generate(scenes[2][0])
    assert out and all(o["segmentation"].shape == (256, 256) for o in out)
    best = max(iou(o["segmentation"], scenes[2][1][1]) for o in out)
    assert best >= 0.8


@pytest.mark.slow
def test_a_short_training_run_lowers_the_loss(tmp_path):
    from sam_widgets.micro.train import train

    rows = train(
        steps=20,
        out=tmp_path / "m.pt",
        seed=1,
        batch=2,
        objects=3,
        rounds=2,
        lr=1e-3,
        warmup=3,
        threads=2,
        save_every=10,
        progress=False,
        nested=0.5,
        snapshots=True,
    )
    loss = [r["loss"] for r in rows]
    assert np.mean(loss[-5:]) < np.mean(loss[:5])
    assert (tmp_path / "m.pt").is_file() and (tmp_path / "m.csv").is_file()
    assert (tmp_path / "m_s10.pt").is_file() and (tmp_path / "m_s20.pt").is_file()


def test_training_refuses_a_nested_fraction_outside_0_1(tmp_path):
    from sam_widgets.micro.train import main

    with pytest.raises(ValueError, match="nested is a fraction of scenes, 0..1"):
        main(["--steps", "1", "--out", str(tmp_path / "m.pt"), "--nested", "1.5"])
    assert not (tmp_path / "m.pt").exists()


def test_prefetched_batches_are_the_batches_made_in_process():
    from sam_widgets.micro.train import BatchStream

    inline = BatchStream(seed=4, batch=2, img_size=64, steps=3, prefetch=False)
    worker = BatchStream(seed=4, batch=2, img_size=64, steps=3, prefetch=True)
    try:
        for step in range(3):
            for (img_a, m_a), (img_b, m_b) in zip(inline.get(step), worker.get(step), strict=True):
                assert torch.equal(img_a, img_b) and torch.equal(m_a, m_b)
    finally:
        worker.close()


@pytest.mark.slow
def test_decoder_training_keeps_the_encoder_and_lowers_the_loss():
    from sam_widgets.micro import build_micro
    from sam_widgets.micro.train import reset_decoder, train_decoder

    sam = build_micro()
    encoder = {k: v.clone() for k, v in sam.image_encoder.state_dict().items()}
    shipped_decoder = {k: v.clone() for k, v in sam.mask_decoder.state_dict().items()}
    reset_decoder(sam, seed=0)
    fresh = {k: v.clone() for k, v in sam.mask_decoder.state_dict().items()}
    assert any(not torch.equal(fresh[k], shipped_decoder[k]) for k in fresh)
    rows = train_decoder(sam, scenes=8, minutes=30, steps=16, focal_weight=2.0, progress=False, lr=2e-3)
    assert len(rows) == 16 and not sam.training
    assert all(torch.equal(v, encoder[k]) for k, v in sam.image_encoder.state_dict().items())
    assert any(not torch.equal(v, fresh[k]) for k, v in sam.mask_decoder.state_dict().items())
    loss = [r["loss"] for r in rows]
    assert np.mean(loss[-4:]) < np.mean(loss[:4])


def test_lowres_ceiling_tells_drawable_masks_from_undrawable():
    from sam_widgets.micro.evaluate import lowres_ceiling

    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 128) ** 2 + (xx - 100) ** 2 < 40**2
    checker = ((yy // 2 + xx // 2) % 2 == 0) & (yy < 128) & (xx < 128)  # 2 px cells: finer than 64x64
    disc_iou, checker_iou = lowres_ceiling([disc, checker])
    assert disc_iou >= 0.98
    assert checker_iou < 0.6
    with pytest.raises(ValueError, match="256x256"):
        lowres_ceiling([np.ones((10, 10), bool)])


def test_evaluate_command_reports_every_size_bin(tmp_path, capsys):
    import json

    from sam_widgets.micro.evaluate import SIZE_BINS, main

    out = tmp_path / "eval.json"
    main(["--scenes", "3", "--threads", "1", "--out", str(out), "--ambiguity-scenes", "0"])
    res = json.loads(out.read_text())
    assert res["split"] == "heldout"
    bins = res["miou_by_size_px"]
    assert len(bins) == len(SIZE_BINS)
    assert sum(b["objects"] for b in bins.values()) == res["objects"] > 0
    for key in ("miou_1_click", "miou_3_clicks", "miou_box"):
        assert 0.0 <= res[key] <= 1.0
    # the overall mIoU is the object-weighted mean of the bins
    mean = sum(b["objects"] * b["1_click"] for b in bins.values() if b["objects"]) / res["objects"]
    assert mean == pytest.approx(res["miou_1_click"])
    lo, hi = res["ci95"]["1_click"]
    assert lo <= res["miou_1_click"] <= hi
    assert "mIoU, 1 click" in capsys.readouterr().out
    main(
        ["--scenes", "2", "--threads", "1", "--out", str(out), "--split", "validation", "--ceiling"]
        + ["--ambiguity-scenes", "0"]
    )
    val = json.loads(out.read_text())
    assert val["split"] == "validation" and val["miou_1_click"] != res["miou_1_click"]
    assert 0.9 <= val["lowres_ceiling"] <= 1.0  # scenes' objects are drawable through 64x64 logits
    assert "validation objects" in capsys.readouterr().out


def test_learning_curve_script_fits_and_extrapolates(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "micro_learning_curve.py"
    spec = importlib.util.spec_from_file_location("micro_learning_curve", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # points on miou = 0.1 + 0.05 * log2(steps): the bar 0.9 lies at 2**16 steps
    stages = [
        {"name": str(s), "steps": s} | dict.fromkeys(script.SETTINGS, 0.1 + 0.05 * np.log2(s))
        for s in (2**10, 2**12, 2**13)
    ]
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"bar": dict.fromkeys(script.SETTINGS, 0.9), "stages": stages}))
    needed = script.main(record, tmp_path / "curve.png")
    assert needed["1_click"] == pytest.approx(2**16, rel=1e-6)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert script.steps_to_reach(0.5, 0.0, 0.9) == float("inf")  # a flat curve never gets there
    assert "recent" not in needed  # no recent_from_steps: the one fit
    # a kink: 0.05 a doubling up to 2**13, then 0.02; the recent fit puts the bar where 0.02 does
    later = [
        {"name": "k", "steps": s} | dict.fromkeys(script.SETTINGS, 0.75 + 0.02 * (np.log2(s) - 13))
        for s in (2**14, 2**15)
    ]
    record.write_text(
        json.dumps(
            {"bar": dict.fromkeys(script.SETTINGS, 0.9), "recent_from_steps": 2**13, "stages": stages + later}
        )
    )
    needed = script.main(record, tmp_path / "curve.png")
    assert needed["recent"]["box"] == pytest.approx(2 ** (13 + 0.15 / 0.02), rel=1e-6)
    assert needed["box"] < needed["recent"]["box"]  # the whole trend promises more than the recent
    # the shipped record is well formed: every stage has every setting, steps rise
    shipped = json.loads((path.parents[1] / "docs" / "micro_training_record.json").read_text())
    steps = [s["steps"] for s in shipped["stages"]]
    assert steps == sorted(steps) and all(set(script.SETTINGS) <= set(s) for s in shipped["stages"])
    assert shipped["recent_from_steps"] in steps  # the recent fit starts at a measured stage


def test_min_loss_assignment_trains_the_best_candidate_only():
    # Notebook 05's exercise: without min-loss assignment a single click trains all three
    # candidates on the one target, so the loss of the same step can only be higher.
    from sam_widgets.micro import build_micro
    from sam_widgets.micro.train import make_batch, step_loss

    sam = build_micro()
    batch = make_batch(0, 0, 2, sam.image_encoder.img_size, np.random.default_rng(0))
    losses = {}
    for min_loss in (True, False):
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            losses[min_loss], _ = step_loss(
                sam, batch, gen, objects=3, rounds=1, loss_size=64, min_loss=min_loss
            )
    assert losses[True] < losses[False]


# ----------------------------------------------------------------------------- ambiguity


def test_nested_scenes_keep_every_level_inside_its_parent():
    from sam_widgets.micro.data import LEVELS, NestedScene, make_nested_scene

    seen = set()
    for seed in range(TRAIN_SEED_START, TRAIN_SEED_START + 12):
        sc = make_nested_scene(seed)
        assert isinstance(sc, NestedScene)
        again = make_nested_scene(seed)
        assert np.array_equal(sc.image, again.image) and np.array_equal(sc.masks, again.masks)
        n = len(sc.masks)
        assert sc.image.shape == (256, 256, 3) and sc.image.dtype == np.uint8
        assert sc.masks.shape == (n, 256, 256) and sc.parent.shape == (n,) and len(sc.level) == n
        assert set(sc.level) <= set(LEVELS)
        area = sc.masks.reshape(n, -1).sum(1)
        assert (area >= 48).all()
        for i, p in enumerate(sc.parent):
            if p >= 0:
                assert not (sc.masks[i] & ~sc.masks[p]).any()  # a part lies inside its whole
                assert area[i] <= 0.85 * area[p]  # and is a distinct level
                assert LEVELS.index(sc.level[i]) < LEVELS.index(sc.level[p])
        for p in set(sc.parent.tolist()):  # siblings (and top-level masks) do not overlap
            assert sc.masks[sc.parent == p].sum(0).max() <= 1
        seen |= {sc.level[i] + ">" + sc.level[p] for i, p in enumerate(sc.parent) if p >= 0}
        ys, xs = np.nonzero(sc.masks[np.argmin(area)])
        chain = sc.chain(xs[0], ys[0])  # finest first, each inside the next
        assert chain[0] == np.argmin(area) and list(area[chain]) == sorted(area[chain])
    assert {"part>object", "object>group"} <= seen  # parts of objects, members of groups
    wide = make_nested_scene(TRAIN_SEED_START + 3, size=(180, 256))
    assert wide.image.shape == (180, 256, 3) and wide.masks.shape[1:] == (180, 256)


def test_ambiguity_sets_are_fixed_and_apart_from_training():
    from sam_widgets.micro.data import (
        AMBIGUITY_SEED_START,
        AMBIGUITY_VALIDATION_SEED_START,
        VALIDATION_SEED_START,
        ambiguity_set,
        make_nested_scene,
    )

    starts = sorted(
        [VALIDATION_SEED_START, HELDOUT_SEED_START, AMBIGUITY_SEED_START, AMBIGUITY_VALIDATION_SEED_START]
    )
    assert all(a + 10**5 <= b for a, b in zip(starts, starts[1:], strict=False))  # 10**5 each
    assert starts[-1] + 10**5 <= TRAIN_SEED_START
    (held,) = ambiguity_set(1)
    (val,) = ambiguity_set(1, split="validation")
    assert np.array_equal(held.masks, make_nested_scene(AMBIGUITY_SEED_START).masks)
    assert not np.array_equal(held.image, val.image)
    with pytest.raises(ValueError, match="split must be 'heldout' or 'validation'"):
        ambiguity_set(1, split="train")
    with pytest.raises(ValueError, match="1..100000"):
        ambiguity_set(0)


def test_assign_outputs_is_the_min_total_loss_matching():
    import itertools

    from sam_widgets.micro.train import assign_outputs

    # greedy (each target its cheapest output, in order) would give target 0 output 0 and then
    # target 1 output 1 (total 0.1 + 5); the best matching is 0 -> 1, 1 -> 0 (total 0.2 + 0.3)
    cost = torch.tensor([[[0.1, 0.3, 9.0], [0.2, 5.0, 9.0], [4.0, 6.0, 9.0]]])  # (1, outputs, targets)
    valid = torch.tensor([[True, True, False]])
    a = assign_outputs(cost, valid)
    assert a[0, :2].tolist() == [1, 0] and sorted(a[0].tolist()) == [0, 1, 2]
    # one valid target: its cheapest output, whatever the others cost (SAM's min over outputs)
    assert assign_outputs(cost, torch.tensor([[True, False, False]]))[0, 0] == 0
    only_last = cost.clone()
    only_last[0, 2, 2] = 1.0
    assert assign_outputs(only_last, torch.tensor([[False, False, True]]))[0, 2] == 2
    # against brute force on random costs
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(64, 3, 3, generator=g)
    valid = torch.rand(64, 3, generator=g) < 0.7
    valid[:, 0] = True
    a = assign_outputs(cost, valid)
    for c, v, row in zip(cost, valid, a, strict=True):
        best = min(sum(c[p[t], t] for t in range(3) if v[t]) for p in itertools.permutations(range(3)))
        assert sum(c[row[t], t] for t in range(3) if v[t]) == pytest.approx(float(best))
        assert len(set(row.tolist())) == 3
    with pytest.raises(ValueError, match="at most 3 targets"):
        assign_outputs(torch.zeros(1, 3, 4), torch.ones(1, 4, dtype=torch.bool))


def _nested_masks():
    yy, xx = np.mgrid[:64, :64]
    big = (yy - 32) ** 2 + (xx - 24) ** 2 < 18**2
    small = (yy - 32) ** 2 + (xx - 24) ** 2 < 6**2
    group = big | ((yy - 32) ** 2 + (xx - 46) ** 2 < 8**2)
    other = (yy < 6) & (xx > 50)
    return torch.from_numpy(np.stack([other, big, small, group]))  # 0 alone, 2 < 1 < 3


def test_click_levels_are_the_masks_under_the_click():
    from sam_widgets.micro.train import click_levels

    masks = _nested_masks()
    xy = torch.tensor([[24.0, 32.0], [24.0, 32.0], [30.0, 20.0], [55.0, 2.0]])
    levels, valid = click_levels(masks, torch.tensor([2, 3, 1, 0]), xy)
    # picked first, then the other masks under the click, smallest first
    assert levels[0].tolist() == [2, 1, 3] and valid[0].all()
    assert levels[1].tolist() == [3, 2, 1] and valid[1].all()
    assert levels[2, :2].tolist() == [1, 3] and valid[2].tolist() == [True, True, False]
    assert levels[3, 0] == 0 and valid[3].tolist() == [True, False, False]  # unambiguous


def test_ambiguity_loss_trains_each_level_on_its_own_output():
    from sam_widgets.micro.train import ambiguity_loss

    masks = _nested_masks().float()
    targets = masks[[2, 1, 3]][None]  # a click in the small disk: part, object, group
    valid = torch.tensor([[True, True, False]])  # the group left out here
    # output 0 draws the object, output 2 the part, output 1 nothing useful
    logits = torch.stack([masks[1], torch.zeros(64, 64) - 0.5, masks[2]])[None] * 20 - 10
    logits.requires_grad_(True)
    iou_pred = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)
    out = ambiguity_loss(logits, iou_pred, targets, valid, focal_weight=20.0)
    assert out["output"].tolist() == [2]  # the part (target 0) goes to output 2
    assert out["iou_first"].item() == pytest.approx(1.0)
    assert out["mask"].item() < 0.05  # both levels drawn exactly by some output
    (out["mask"] + out["iou"]).sum().backward()
    assert logits.grad[0, 1].abs().sum() == 0  # the unmatched output gets no mask loss
    assert logits.grad[0, 0].abs().sum() > 0 and logits.grad[0, 2].abs().sum() > 0
    # IoU targets: 1 for the two matched outputs, the unmatched one's best IoU (0 here)
    assert iou_pred.grad[0].tolist() == pytest.approx([2 * (0.5 - 1) / 3, 2 * 0.5 / 3, 2 * (0.5 - 1) / 3])


def test_step_loss_runs_on_nested_scenes_with_gradients():
    from sam_widgets.micro.train import make_batch, step_loss

    sam = build_micro(weights=False).train()
    batch = make_batch(0, 0, 2, 256, np.random.default_rng(0), nested=1.0)
    assert any(m.sum(0).max() > 1 for _, m in batch)  # levels overlap: parts inside objects
    loss, st = step_loss(sam, batch, torch.Generator().manual_seed(0), objects=4, rounds=2)
    loss.backward()
    assert torch.isfinite(loss) and set(st) == {"iou_r0", "iou_last", "iou_mse"}
    assert sam.mask_decoder.output_hypernetworks_mlps[2].layers[0].weight.grad is not None


class _OraclePredictor:
    """Returns, for a click, the masks of the levels under it (finest first), scored top for the
    finest: what a perfect ambiguity-aware model that always means the part would do."""

    def set_image(self, image):
        from sam_widgets.micro.data import ambiguity_set

        self.scene = next(s for s in ambiguity_set(3) if np.array_equal(s.image, image))

    def predict(self, point_coords, point_labels, multimask_output=True):
        x, y = point_coords[0]
        chain = self.scene.chain(int(x), int(y))
        cand = [self.scene.masks[j] for j in chain[:3]]
        cand += [np.zeros_like(cand[0])] * (3 - len(cand))
        return np.stack(cand), np.array([0.9, 0.5, 0.1]), None


def test_ambiguity_evaluation_scores_a_perfect_model_perfectly():
    from sam_widgets.micro.data import ambiguity_set
    from sam_widgets.micro.evaluate import ambiguity_queries, evaluate_ambiguity

    res = evaluate_ambiguity(_OraclePredictor(), scenes=3, split="heldout")
    assert res["clicks"] == sum(len(ambiguity_queries(s)) for s in ambiguity_set(3)) > 0
    for level, v in res["best_of_3"].items():
        assert v is None or v == pytest.approx(1.0), level
    # scoring the finest level first is right for clicks on parts, not for clicks on wholes
    assert res["top_is_meant"]["part"] == pytest.approx(1.0)
    assert res["top_is_meant"]["all"] < 1.0
    for q in ambiguity_queries(ambiguity_set(1)[0]):
        assert len(q["chain"]) >= 2 and q["clicked"] in q["meant"] and set(q["meant"]) <= set(q["chain"])


def test_evaluate_command_reports_the_ambiguity_set(tmp_path, capsys):
    import json

    from sam_widgets.micro.evaluate import main

    out = tmp_path / "eval.json"
    main(
        [
            "--scenes",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
            "--ambiguity-scenes",
            "2",
            "--split",
            "validation",
        ]
    )
    amb = json.loads(out.read_text())["ambiguity"]
    assert amb["split"] == "validation" and amb["scenes"] == 2 and amb["clicks"] > 0
    assert all(v is None or 0.0 <= v <= 1.0 for v in amb["best_of_3"].values())
    assert "best-of-3 IoU, part" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--scenes", "1", "--out", str(out), "--ambiguity-scenes", "-1"])
    assert "--ambiguity-scenes must be >= 0" in capsys.readouterr().err


def test_nested_example_gives_a_click_on_a_part_of_a_whole():
    from sam_widgets.micro.data import nested_example

    scene, (x, y), chain = nested_example(1)
    assert len(chain) >= 2 and scene.level[chain[0]] == "part" and scene.level[chain[1]] != "part"
    assert all(scene.masks[j][y, x] for j in chain)
    assert scene.masks[chain[1]].sum() >= 2 * scene.masks[chain[0]].sum() >= 800
    assert nested_example(1)[1] == (x, y)  # deterministic
    with pytest.raises(ValueError, match="i must be >= 0"):
        nested_example(-1)


@pytest.fixture(scope="module")
def nested_scenes():
    from sam_widgets.micro.data import ambiguity_set

    return ambiguity_set(16)


@pytest.mark.parametrize("case", AMBIGUITY_CASES)
def test_a_click_on_a_part_offers_the_part_and_the_whole(nested_scenes, predictor, case):
    scene = nested_scenes[case[0]]
    part = scene.masks[case[1]]
    whole = scene.masks[scene.parent[case[1]]]
    predictor.set_image(scene.image)
    m, _, _ = predictor.predict(np.array([center_point(part)]), np.array([1]), multimask_output=True)
    to_part = [iou(c, part) for c in m]
    to_whole = [iou(c, whole) for c in m]
    assert max(to_part) >= 0.78 and max(to_whole) >= 0.78
    assert int(np.argmax(to_part)) != int(np.argmax(to_whole))  # two different candidates
