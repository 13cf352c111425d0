"""replay: a person's prompts, in the same order, on another model (sam_widgets.evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from sam_widgets import evaluation as ev
from sam_widgets.datasets import synthetic
from sam_widgets.predictor import CachedPredictor
from sam_widgets.session import Session


@pytest.fixture(scope="module")
def micro():
    from sam_widgets import load_sam

    return load_sam("micro", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def scenes():
    return synthetic(2)


def _work(session, scenes):
    """What a person might do: clicks (one negative), a box with a click, another image, a choice."""
    for index, s in enumerate(scenes):
        session.go(index)
        big = np.argsort(s.masks.reshape(len(s.masks), -1).sum(1))[::-1]
        gt = s.masks[big[0]]
        x, y = ev.center_point(gt)
        session.add_point(x, y)
        (cx, cy), pos = ev.next_click(session.active.mask, gt, [(x, y)])
        session.add_point(cx, cy, positive=pos)
        session.add_object()
        x0, y0, x1, y1 = ev.tight_box(s.masks[big[1]])
        session.set_box(x0, y0, x1 + 1, y1 + 1)
        session.add_point(*ev.center_point(s.masks[big[1]]))
        if index == 1:
            session.add_object()
            session.add_point(*ev.center_point(s.masks[big[2]]))
            session.choose(int(np.argsort(session.active.scores)[0]))  # not the best-scored one
    session.go(0)


def test_replay_of_a_saved_session_on_the_same_model_reproduces_its_masks(micro, scenes, tmp_path):
    images = [s.image for s in scenes]
    session = Session(images, CachedPredictor(micro), names=["a", "b"])
    _work(session, scenes)
    saved = {(i, o.label): o.mask for i in range(2) for o in session.objects_on(i)}
    session.save(tmp_path / "work")

    rows = ev.replay(tmp_path / "work", micro, images=images)
    assert len(rows) == len(saved) == 5
    for r in rows:
        original = saved[({"a": 0, "b": 1}[r["image"]], r["label"])]
        assert r["status"] == "replayed" and np.array_equal(r["mask"], original)  # exactly, fp32
        assert r["iou_models"] == 1.0 and r["iou_final"] == 1.0 and r["iou_per_step"][-1] == 1.0
        assert len(r["iou_per_step"]) == r["clicks"]
    # the person's choice of a candidate that was not the best-scored one is replayed as such
    (chosen,) = [r for r in rows if r["image"] == "b" and r["label"] == "object 3"]
    assert chosen["clicks"] == 1 and not chosen["box"]

    # the live session gives the same, and is left on the image it was on
    session.go(1)
    live = ev.replay(session, CachedPredictor(micro))
    assert session.current == 1
    assert all(np.array_equal(a["mask"], b["mask"]) for a, b in zip(rows, live, strict=True))
    table = ev.format_replay(rows)
    assert "IoU vs orig." in table and "object 3" in table


def test_replay_with_refined_logits_reproduces_a_refining_session(micro, scenes):
    session = Session(scenes[0].image, CachedPredictor(micro), refine_with_logits=True)
    s = scenes[0]
    gt = s.masks[int(np.argmax(s.masks.reshape(len(s.masks), -1).sum(1)))]
    clicks = [ev.center_point(gt)]
    session.add_point(*clicks[0])
    for _ in range(2):
        nxt = ev.next_click(session.active.mask, gt, clicks)
        if nxt is None:
            break
        (x, y), pos = nxt
        clicks.append((x, y))
        session.add_point(x, y, positive=pos)
    (r,) = ev.replay(session, micro)
    assert np.array_equal(r["mask"], session.active.mask) and r["clicks"] == len(clicks)


def test_replay_of_plain_prompts_on_another_model(micro, tiny_sam, scenes):
    s = scenes[0]
    gt = s.masks[0]
    prompts = [{"image": s.image, "points": [list(ev.center_point(gt))], "labels": [1], "mask": gt}]
    (same,) = ev.replay(prompts, micro)
    assert same["iou_models"] is None and 0.0 <= same["iou_final"] <= 1.0
    assert same["iou_per_step"] == [same["iou_final"]]
    (other,) = ev.replay(prompts, CachedPredictor(tiny_sam))  # a random tiny SAM: other masks
    assert other["status"] == "replayed" and other["mask"].shape == gt.shape
    (nothing,) = ev.replay([{"image": s.image, "points": []}], micro)
    assert nothing["status"] == "no prompts" and nothing["iou_final"] is None


def test_replay_errors_say_what_to_pass(micro, scenes, tmp_path):
    session = Session(scenes[0].image, CachedPredictor(micro), names=["a"])
    session.add_point(*ev.center_point(scenes[0].masks[0]))
    session.save(tmp_path / "w")
    with pytest.raises(ValueError, match="images="):
        ev.replay(tmp_path / "w", micro)
    with pytest.raises(FileNotFoundError, match="annotations.json"):
        ev.replay(tmp_path / "nothing", micro, images=[scenes[0].image])
    with pytest.raises(ValueError, match="'image'"):
        ev.replay([{"points": [[1, 2]]}], micro)
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        ev.replay([{"image": scenes[0].image, "points": [[1, 2], [3, 4]], "labels": [1]}], micro)
    # images from a folder, by the file names the session saved
    from PIL import Image

    Image.fromarray(scenes[0].image).save(tmp_path / "a.png")
    session = Session(tmp_path / "a.png", CachedPredictor(micro))
    session.add_point(*ev.center_point(scenes[0].masks[0]))
    session.save(tmp_path / "w2")
    (r,) = ev.replay(tmp_path / "w2", micro, images=tmp_path)
    assert np.array_equal(r["mask"], session.active.mask)
