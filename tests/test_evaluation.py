"""The click-simulation protocol and the statistics of sam_widgets.evaluation, on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from sam_widgets import evaluation as ev


def box_mask(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


# ----------------------------------------------------------------------------- IoU


def test_iou_of_hand_made_masks():
    a = box_mask((10, 10), 0, 4, 0, 4)  # 16 px
    b = box_mask((10, 10), 2, 6, 0, 4)  # 16 px, 8 shared
    assert ev.mask_iou(a, b) == pytest.approx(8 / 24)
    assert ev.mask_iou(a, a) == 1.0
    assert ev.mask_iou(a, box_mask((10, 10), 6, 9, 6, 9)) == 0.0
    assert (
        ev.mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    )  # nothing to find, nothing found
    assert ev.mask_iou(a, np.zeros((10, 10), bool)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        ev.mask_iou(a, np.zeros((10, 11), bool))


# ----------------------------------------------------------------------------- clicks


def test_center_point_is_farthest_from_the_boundary():
    assert ev.center_point(box_mask((20, 30), 5, 12, 10, 17)) == (13, 8)  # a 7x7 square's center
    # a 5x9 box: the middle row's pixels 2 from both ends tie (distance 3): the first one wins
    assert ev.center_point(box_mask((20, 30), 5, 10, 10, 19)) == (12, 7)
    # the image edge counts as boundary: a full image's center, not a corner
    assert ev.center_point(np.ones((7, 7), bool)) == (3, 3)
    # an L: a thin arm and a thick block; the click goes into the block
    m = box_mask((40, 40), 0, 40, 0, 3) | box_mask((40, 40), 20, 36, 10, 26)
    x, y = ev.center_point(m)
    assert 14 <= x <= 21 and 24 <= y <= 31
    with pytest.raises(ValueError, match="empty"):
        ev.center_point(np.zeros((4, 4), bool))


def test_corrective_click_is_positive_in_a_miss():
    gt = box_mask((40, 40), 5, 35, 5, 35)
    pred = gt & ~box_mask((40, 40), 10, 20, 20, 30)  # missed a 10x10 block
    (x, y), label = ev.corrective_click(pred, gt)
    assert label == 1 and 20 <= x < 30 and 10 <= y < 20 and gt[y, x] and not pred[y, x]


def test_corrective_click_is_negative_in_a_false_positive():
    gt = box_mask((40, 40), 5, 20, 5, 20)
    pred = gt | box_mask((40, 40), 25, 35, 25, 38)  # spilled onto a 10x13 block
    (x, y), label = ev.corrective_click(pred, gt)
    assert label == 0 and pred[y, x] and not gt[y, x] and 25 <= y < 35 and 25 <= x < 38


def test_corrective_click_takes_the_largest_error_region():
    gt = box_mask((60, 60), 0, 30, 0, 60)
    pred = gt.copy()
    pred[2:6, 2:6] = False  # small miss, 16 px
    pred[10:20, 40:55] = False  # large miss, 150 px
    pred |= box_mask((60, 60), 40, 48, 0, 8)  # false positive, 64 px
    (x, y), label = ev.corrective_click(pred, gt)
    assert label == 1 and 40 <= x < 55 and 10 <= y < 20
    # make the false positive the largest: the click turns negative, inside it
    pred |= box_mask((60, 60), 40, 60, 0, 30)
    (x, y), label = ev.corrective_click(pred, gt)
    assert label == 0 and y >= 40 and x < 30


def test_corrective_click_none_when_perfect_and_miss_wins_a_tie():
    gt = box_mask((20, 20), 4, 10, 4, 10)
    assert ev.corrective_click(gt.copy(), gt) is None
    pred = gt.copy()
    pred[4:6, 4:6] = False  # 4 px missed
    pred[15:17, 15:17] = True  # 4 px false positive
    assert ev.corrective_click(pred, gt)[1] == 1


def test_tight_box_is_inclusive_xyxy():
    assert ev.tight_box(box_mask((20, 30), 5, 10, 10, 19)).tolist() == [10, 5, 18, 9]
    with pytest.raises(ValueError):
        ev.tight_box(np.zeros((3, 3), bool))


# ----------------------------------------------------------------------------- the protocol


class ScriptedPredictor:
    """Answers predict() from a script and records every call: checks what the protocol sends."""

    def __init__(self, gt: np.ndarray) -> None:
        self.gt, self.calls = gt, []
        h, w = gt.shape
        self.first = np.stack([np.zeros((h, w), bool), gt, np.ones((h, w), bool)])
        self.first[1, 12:16, 12:16] = False  # the best-scored candidate misses a 4x4 hole

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        self.calls.append(dict(points=point_coords, labels=point_labels, box=box, mask_input=mask_input))
        n = len(self.calls)
        low = np.full((3, 8, 8), float(n))  # CxHxW logits, tagged with the call number
        if n == 1:
            return self.first, np.array([0.1, 0.9, 0.3]), low + np.arange(3)[:, None, None]
        if box is not None:
            return self.gt[None], np.array([0.7]), low[:1]
        return self.gt[None], np.array([0.95]), low[:1]  # the correction fixes it


def test_evaluate_object_follows_the_protocol():
    gt = box_mask((32, 32), 8, 24, 8, 24)
    p = ScriptedPredictor(gt)
    r = ev.evaluate_object(p, gt, n_clicks=3, keep_masks=True)
    first, second, box = p.calls
    assert first["points"].tolist() == [list(ev.center_point(gt))] and first["labels"].tolist() == [1]
    # kept the highest-scored candidate (index 1), whose IoU is 1 - 16/256
    assert r.score_1_click == 0.9 and r.iou_clicks[0] == pytest.approx(240 / 256)
    # the corrective click is positive, in the hole, and the kept candidate's logits come along
    assert second["labels"].tolist() == [1, 1]
    x, y = second["points"][1]
    assert 12 <= x < 16 and 12 <= y < 16
    assert second["mask_input"].shape == (1, 8, 8) and np.all(second["mask_input"] == 1 + 1)
    # perfect after 2 clicks: no third predict, the IoU stays
    assert r.iou_clicks == [pytest.approx(240 / 256), 1.0, 1.0]
    assert box["box"].tolist() == [8, 8, 23, 23] and r.iou_box == 1.0
    # predicted vs true pairs: 3 candidates, 1 correction, 1 box
    assert r.predicted == pytest.approx([0.1, 0.9, 0.3, 0.95, 0.7])
    assert r.true == pytest.approx([0.0, 240 / 256, 256 / 1024, 1.0, 1.0])
    assert set(r.masks) == {"1 click", "3 clicks", "box"} and r.clicks[1][2] == 1


def test_evaluate_samples_skips_small_objects_and_names_records():
    from sam_widgets.datasets import Sample

    gt = np.stack([box_mask((32, 32), 8, 24, 8, 24), box_mask((32, 32), 0, 2, 0, 2)])
    sample = Sample("s0", np.zeros((32, 32, 3), np.uint8), gt, ("big", "tiny"))
    p = ScriptedPredictor(gt[0])
    p.set_image = lambda image: None
    records, enc = ev.evaluate_samples(p, [sample], min_area=10, progress=False)
    (rec,) = records
    assert (rec["sample"], rec["object"], rec["label"], rec["area_px"]) == ("s0", 0, "big", 256)
    assert {"iou_1_click", "iou_2_clicks", "iou_3_clicks", "iou_box"} <= set(rec) and len(enc) == 1


# ----------------------------------------------------------------------------- statistics


def test_pearson_r():
    x, y = [1.0, 2.0, 3.0, 5.0], [2.0, 1.0, 4.0, 4.5]
    assert ev.pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert ev.pearson_r(x, [-v for v in x]) == pytest.approx(-1.0)
    assert ev.pearson_r([1.0, 1.0], [0.0, 1.0]) is None  # a constant: undefined, and no warning
    assert ev.pearson_r([1.0], [2.0]) is None


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    v = np.linspace(0, 1, 50)
    lo, hi = ev.bootstrap_ci(v)
    assert lo < v.mean() < hi and hi - lo < 0.3
    assert ev.bootstrap_ci(v) == (lo, hi)
    assert ev.bootstrap_ci([0.4]) == (0.4, 0.4) and ev.bootstrap_ci([]) is None


def test_summarize():
    recs = [
        dict(
            iou_1_click=0.2,
            iou_3_clicks=0.6,
            iou_box=0.5,
            predicted=[0.1, 0.9],
            true=[0.2, 0.8],
            click_ms=3.0,
        ),
        dict(iou_1_click=0.4, iou_3_clicks=0.8, iou_box=0.7, predicted=[0.5], true=[0.4], click_ms=5.0),
    ]
    s = ev.summarize(recs)
    assert s["objects"] == 2 and list(s["miou"]) == ["1_click", "3_clicks", "box"]
    assert s["miou"]["1_click"] == pytest.approx(0.3) and s["miou"]["box"] == pytest.approx(0.6)
    assert s["pearson_r"] == pytest.approx(np.corrcoef([0.1, 0.9, 0.5], [0.2, 0.8, 0.4])[0, 1])
    assert s["click_ms_median"] == 4.0 and s["ci95"]["3_clicks"][0] <= 0.7 <= s["ci95"]["3_clicks"][1]
    assert ev.summarize([])["miou"] == {} and ev.summarize([])["pearson_r"] is None


# ----------------------------------------------------------------------------- next_click (RITM)


def test_next_click_first_click_is_the_farthest_point_of_the_object():
    gt = box_mask((20, 30), 5, 12, 10, 17)  # a 7x7 square
    assert ev.next_click(np.zeros_like(gt), gt) == ((13, 8), True)
    # padded by 1 px: the image edge is boundary, so a full image's click is its center
    full = np.ones((9, 9), bool)
    assert ev.next_click(np.zeros_like(full), full) == ((4, 4), True)
    # 7 rows x 9 columns: columns 3-5 of the middle row tie at distance 4; the first one wins
    assert ev.next_click(np.zeros((7, 9), bool), np.ones((7, 9), bool)) == ((3, 3), True)
    # the same point as center_point, which the 1-click measure used before
    m = box_mask((40, 40), 0, 40, 0, 3) | box_mask((40, 40), 20, 36, 10, 26)
    assert ev.next_click(np.zeros_like(m), m)[0] == ev.center_point(m)


def test_next_click_sides_by_distance_not_by_area():
    gt = box_mask((40, 80), 2, 11, 2, 11)  # a 9x9 object
    pred = box_mask((40, 80), 30, 33, 10, 70)  # missed it all; a 3x60 false positive (180 px > 81 px)
    (x, y), positive = ev.next_click(pred, gt)
    # the miss is deeper (5 px from its boundary) than the thin strip (2 px): positive, at its center
    assert positive and (x, y) == (6, 6)
    # the old clicker went by area and clicked the strip: the two rules differ here
    assert ev.corrective_click(pred, gt)[1] == 0
    # make the false positive deeper: the click turns negative, at its deepest pixel
    pred = box_mask((40, 80), 20, 39, 20, 60)
    (x, y), positive = ev.next_click(pred, gt)
    assert not positive and pred[y, x] and not gt[y, x] and (x, y) == (29, 29)


def test_next_click_tie_is_negative_as_ritm():
    gt = box_mask((20, 40), 4, 9, 4, 9)  # 5x5 object, missed
    pred = box_mask((20, 40), 4, 9, 24, 29)  # 5x5 false positive elsewhere: equal depth 3
    assert ev.next_click(pred, gt)[1] is False


def test_next_click_excludes_clicked_pixels():
    gt = box_mask((20, 20), 5, 12, 5, 12)  # 7x7: center (8, 8) at distance 4
    empty = np.zeros_like(gt)
    first, _ = ev.next_click(empty, gt)
    assert first == (8, 8)
    second, positive = ev.next_click(empty, gt, clicked=[first])
    assert positive and second != first and gt[second[1], second[0]]
    # labels may ride along (x, y, label), and a bool mask works as well
    assert ev.next_click(empty, gt, clicked=[(8, 8, 1)])[0] == second
    done = np.zeros_like(gt)
    done[8, 8] = True
    assert ev.next_click(empty, gt, clicked=done)[0] == second
    # every wrong pixel clicked: nothing is left; a perfect mask: nothing to click
    assert ev.next_click(empty, gt, clicked=gt) is None
    assert ev.next_click(gt, gt) is None
    with pytest.raises(ValueError, match="shape"):
        ev.next_click(gt, gt[:, :5])


# ----------------------------------------------------------------------------- NoC


def test_noc_counts_clicks_and_caps_failures():
    curve = [0.5, 0.86, 0.88, 0.95]
    assert ev.noc(curve, 0.85) == 2 and ev.noc(curve, 0.9) == 4 and ev.noc(curve, 0.99) == 4
    assert ev.noc(curve, 0.99, max_clicks=20) == 20 and ev.noc([0.95], 0.9) == 1
    assert ev.noc(curve, 0.9, max_clicks=3) == 3  # reached only after the cap: a failure
    s = ev.noc_summary([curve, [0.9, 0.9, 0.9, 0.9]], max_clicks=4)
    assert s["noc"] == {"85": 1.5, "90": 2.5} and s["failures"] == {"85": 0.0, "90": 0.0}
    assert s["miou_at"]["1"] == pytest.approx(0.7) and "5" not in s["miou_at"]
    assert s["curve"] == pytest.approx([0.7, 0.88, 0.89, 0.925])
    with pytest.raises(ValueError, match="lengths"):
        ev.noc_summary([[0.1], [0.1, 0.2]])
    assert ev.noc_summary([])["noc"] == {}


class OraclePredictor:
    """Returns the ground truth, whatever the prompt."""

    def __init__(self, gt):
        self.gt, self.calls = gt, 0

    def set_image(self, image):
        pass

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        self.calls += 1
        n = 3 if multimask_output else 1
        return np.repeat(self.gt[None], n, 0), np.full(n, 0.9), np.zeros((n, 8, 8), np.float32)


class NothingPredictor(OraclePredictor):
    """Returns empty masks; records every set of points it is sent."""

    def __init__(self, gt):
        super().__init__(gt)
        self.points = []

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        self.points.append(point_coords)
        m, s, low = super().predict(point_coords, point_labels, box, mask_input, multimask_output)
        return np.zeros_like(m), s, low


def _objects():
    return [
        box_mask((48, 64), 4, 20, 6, 30),
        box_mask((48, 64), 25, 45, 40, 60),
        box_mask((48, 64), 10, 40, 10, 14) | box_mask((48, 64), 30, 40, 10, 35),
    ]


def test_an_oracle_reaches_every_threshold_in_one_click():
    curves = []
    for gt in _objects():
        p = OraclePredictor(gt)
        curve = ev.click_curve(p, np.zeros((48, 64, 3), np.uint8), gt, max_clicks=20)
        assert curve == [1.0] * 20 and p.calls == 1  # perfect: no corrective click is sent
        curves.append(curve)
    s = ev.noc_summary(curves)
    assert s["noc"] == {"85": 1.0, "90": 1.0} and s["failures"] == {"85": 0.0, "90": 0.0}
    assert s["miou_at"] == {"1": 1.0, "3": 1.0, "5": 1.0, "10": 1.0} and s["max_clicks"] == 20


def test_a_predictor_returning_nothing_fails_every_object():
    curves = []
    for gt in _objects():
        p = NothingPredictor(gt)
        curve = ev.click_curve(p, None, gt, max_clicks=20)
        assert curve == [0.0] * 20 and ev.noc(curve, 0.85) == 20
        # 20 predicts, each with one more positive click, never the same pixel twice
        assert len(p.points) == 20 and len(p.points[-1]) == 20
        assert len({tuple(q) for q in p.points[-1]}) == 20 and all(gt[y, x] for x, y in p.points[-1])
        curves.append(curve)
    s = ev.noc_summary(curves)
    assert s["noc"] == {"85": 20.0, "90": 20.0} and s["failures"] == {"85": 1.0, "90": 1.0}
    assert s["failed"] == {"85": 3, "90": 3} and s["noc_ci95"]["90"] == [20.0, 20.0]


def test_feed_logits_is_a_switch():
    gt = box_mask((32, 32), 8, 24, 8, 24)
    on, off = ScriptedPredictor(gt), ScriptedPredictor(gt)
    ev.click_curve(on, None, gt, max_clicks=2)
    ev.click_curve(off, None, gt, max_clicks=2, feed_logits=False)
    assert on.calls[1]["mask_input"] is not None and off.calls[1]["mask_input"] is None
    assert len(on.calls) == 2  # click_curve measures no box
