"""Brush and eraser: strokes are part of an object's history, kept over later clicks, saved,
loaded and exported; ``strokes.apply_strokes`` paints what it says at any region and scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sam_widgets import CachedPredictor
from sam_widgets._io import rle_decode
from sam_widgets.session import Session, Stroke, StrokeError
from sam_widgets.strokes import apply_strokes, stroke_of

H, W = 90, 120


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def session(rgb_image, tiny_sam):
    return Session(rgb_image, CachedPredictor(tiny_sam), names=["scene"])


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r**2


# ---------------------------------------------------------------------- apply_strokes


def test_a_dab_paints_a_disc_and_the_eraser_takes_it_out():
    empty = np.zeros((H, W), bool)
    dab = stroke_of([(40, 30)], 10)
    painted = apply_strokes(empty, [dab])
    assert not empty.any()  # the input is not changed
    expected = disc(40, 30, 10)
    assert np.array_equal(painted, expected)  # pixel centres within the radius
    erased = apply_strokes(painted, [dab, stroke_of([(40, 30)], 4, "erase")])
    assert not erased[28:32, 38:42].any() and erased[30, 47]


def test_a_line_stroke_covers_the_segment_between_its_points():
    out = apply_strokes(np.zeros((H, W), bool), [stroke_of([(10, 50), (100, 50)], 3)])
    assert out[50, 10:100].all() and out[47:53, 55].all()
    assert not out[40].any() and not out[60].any()


def test_strokes_apply_at_a_region_and_scale_as_at_full_size():
    strokes = [stroke_of([(20, 20), (90, 70)], 6), stroke_of([(60, 45)], 5, "erase")]
    full = apply_strokes(np.zeros((H, W), bool), strokes)
    # The region x 40..100, y 30..90 at 2 pixels per image pixel.
    part = apply_strokes(np.zeros((120, 120), bool), strokes, region=(40.0, 30.0), scale=2.0)
    down = part.reshape(60, 2, 60, 2).mean(axis=(1, 3)) > 0.5
    assert (down != full[30:90, 40:100]).mean() < 0.03


@pytest.mark.parametrize(
    "points, radius, mode, words",
    [
        ([], 3, "add", "at least one point"),
        ([(1, 2, 3)], 3, "add", "(x, y)"),
        ([(1, float("nan"))], 3, "add", "finite"),
        ([(1, 2)], 0, "add", "positive"),
        ([(1, 2)], "big", "add", "number"),
        ([(1, 2)], 3, "paint", "'add' (brush) or 'erase'"),
    ],
)
def test_bad_strokes_say_what_is_wrong(points, radius, mode, words):
    with pytest.raises(StrokeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        stroke_of(points, radius, mode)


# ---------------------------------------------------------------------- in the session


def test_strokes_are_undo_steps_and_redo_brings_them_back(session):
    obj = session.add_point(50, 40)
    predicted = obj.mask.copy()
    session.paint([(5, 5), (25, 5)], 3)
    assert session.active.mask[5, 15]
    assert len(session.active.strokes) == 1 and session.active.strokes[0].mode == "add"
    session.paint([(55, 40)], 6, erase=True)
    assert not session.active.mask[40, 55]
    assert session.undo() and len(session.active.strokes) == 1
    assert session.active.mask[5, 15]
    assert session.undo() and session.active.strokes == ()
    assert np.array_equal(session.active.mask, predicted)
    assert session.redo() and session.redo()
    assert [k.mode for k in session.active.strokes] == ["add", "erase"]
    assert not session.active.mask[40, 55] and session.active.mask[5, 15]


def test_a_later_click_keeps_every_stroke(session):
    session.add_point(50, 40)
    session.paint([(3, 80), (20, 80)], 4)  # far from the red block: SAM would not give it
    session.paint([(50, 40)], 5, erase=True)  # a hole where the click was
    obj = session.add_point(60, 45, positive=True)  # alt+click: a second point on the same object
    assert len(obj.points) == 2 and len(obj.strokes) == 2
    assert obj.mask[80, 3:20].all()  # painted stays in
    assert not obj.mask[38:42, 48:52].any()  # erased stays out
    assert not obj.candidates[obj.chosen][80, 3:20].all()  # ... over a new prediction
    session.remove_last_point()
    assert session.active.mask[80, 10] and not session.active.mask[40, 50]


def test_the_brush_on_no_object_starts_one_and_the_eraser_explains(session):
    with pytest.raises(ValueError, match="Nothing to erase"):
        session.paint([(10, 10)], 5, erase=True)
    assert session.objects == () and not session.can_undo
    obj = session.paint([(30, 30), (60, 30)], 5)
    assert obj.label == "object 1" and obj.points == () and obj.score is None
    assert obj.mask[30, 30:60].all() and obj.mask.sum() < 600
    assert session.masks.keys() == {"object 1"}
    # Prompts added later segment it; the painted pixels stay.
    obj = session.add_point(50, 40)
    assert obj.mask[30, 30:60].all() and obj.score is not None
    # Removing every prompt leaves the strokes on an empty mask, not nothing.
    session.remove_last_point()
    assert session.active.mask[30, 45] and session.active.mask.sum() < 600


def test_a_bad_stroke_changes_nothing(session):
    session.add_point(50, 40)
    before = session.active
    with pytest.raises(StrokeError):
        session.paint([(10, 10)], -1)
    assert session.active is before


def test_strokes_survive_save_and_load_and_the_png_holds_them(tmp_path, session, rgb_image, tiny_sam):
    session.add_point(50, 40)
    session.paint([(3, 80), (20, 80)], 4)
    session.paint([(50, 40)], 5, erase=True)
    session.add_object("painted")
    session.paint([(100, 10)], 6)
    path = session.save(tmp_path / "out")
    saved = json.loads(path.read_text())["sam_widgets"]["images"][0]["objects"]
    assert saved[0]["strokes"][1] == {"mode": "erase", "radius": 5.0, "points": [[50.0, 40.0]]}
    png = np.asarray(Image.open(tmp_path / "out" / "scene__object_1.png")) > 0
    assert np.array_equal(png, session.objects[0].mask)

    restored = Session.from_folder(tmp_path / "out", rgb_image, CachedPredictor(tiny_sam), names=["scene"])
    assert restored.objects == session.objects
    for a, b in zip(restored.objects, session.objects, strict=True):
        assert np.array_equal(a.mask, b.mask) and a.strokes == b.strokes
    assert restored.object("painted").score is None
    # A later click on the restored object still keeps its strokes.
    restored.select("object 1")
    assert restored.add_point(60, 45).mask[80, 10]


def test_a_damaged_stroke_in_a_saved_folder_is_refused(tmp_path, session, rgb_image, tiny_sam):
    from sam_widgets.session import AnnotationFileError

    session.add_point(50, 40)
    session.paint([(3, 80)], 4)
    path = session.save(tmp_path)
    data = json.loads(path.read_text())
    data["sam_widgets"]["images"][0]["objects"][0]["strokes"][0]["radius"] = -2
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationFileError, match="bad stroke"):
        Session.from_folder(tmp_path, rgb_image, CachedPredictor(tiny_sam), names=["scene"])


def test_to_coco_and_export_include_the_strokes(tmp_path, session):
    session.add_point(50, 40)
    session.paint([(3, 80), (20, 80)], 4)
    mask = session.active.mask
    coco = session.to_coco()
    assert np.array_equal(rle_decode(coco["annotations"][0]["segmentation"]), mask)
    session.export(tmp_path / "cut", format="cutouts")
    (cutout,) = sorted((tmp_path / "cut").rglob("*.png"))
    alpha = np.asarray(Image.open(cutout))[..., 3]  # cropped to the mask's bounding box
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert np.array_equal(alpha > 0, mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    assert mask[80, 3:20].all()


def test_stroke_is_a_plain_value():
    a = Stroke("add", 2.0, ((1.0, 2.0),))
    assert a == stroke_of([[1, 2]], 2) and Stroke.from_json(a.to_json()) == a and hash(a)
