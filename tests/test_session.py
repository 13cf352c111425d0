"""Session: prompts -> masks, objects, images, undo/redo, export/import, errors that lose nothing.

The tiny SAM has random weights, so masks are arbitrary: tests check consistency (shapes, round
trips, undo equality, model calls), never quality.
"""

from __future__ import annotations

import json
import threading
import warnings

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam_widgets import CachedPredictor
from sam_widgets._annotation_files import _decode_rle
from sam_widgets._io import rle_encode as _encode_rle
from sam_widgets.session import (
    EVENTS,
    AnnotationFileError,
    ImageMismatchError,
    LabelError,
    Session,
    SessionObject,
    default_category,
)
from sam_widgets.viz import PALETTE

H, W = 90, 120  # rgb_image


class Spy:
    """A predictor wrapper that counts set_image and predict calls and keeps predict's arguments."""

    def __init__(self, inner):
        self.inner = inner
        self.set_image_calls = 0
        self.predict_calls: list[dict] = []

    def set_image(self, image, image_format="RGB"):
        self.set_image_calls += 1
        self.inner.set_image(image, image_format)

    def predict(self, **kwargs):
        self.predict_calls.append(kwargs)
        return self.inner.predict(**kwargs)

    def __getattr__(self, name):  # features, stats, ...
        return getattr(self.inner, name)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """The very same mask: equal, and the same memory (nothing was recomputed or copied)."""
    return np.shares_memory(a, b) and np.array_equal(a, b)


def count_encoder_calls(sam) -> list[int]:
    calls = [0]
    sam.image_encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """The tiny model gains nothing from threads (conftest's ``one_torch_thread``)."""


@pytest.fixture
def predictor(tiny_sam):
    return Spy(CachedPredictor(tiny_sam))


@pytest.fixture
def images(rgb_image):
    other = np.ascontiguousarray(rgb_image[:80, ::-1])  # another content and size: 120x80
    return [rgb_image, other]


@pytest.fixture
def session(images, predictor):
    return Session(images, predictor, names=["first", "second"])


def everything(s: Session):
    """All a session holds, comparable with ==: per image objects, active, history depth."""
    out = [s.current]
    for i in range(len(s)):
        slot = s._slots[i]
        out.append((slot.name, slot.state.objects, slot.state.active, len(slot.undo), len(slot.redo)))
    return out


# ---------------------------------------------------------------------- prompts -> masks


def test_one_point_gives_three_candidates_more_prompts_give_one(session, predictor):
    obj = session.add_point(60, 40)
    assert obj.label == "object 1" and session.active == obj
    assert obj.candidates.shape == (3, H, W) and obj.candidates.dtype == bool
    assert obj.scores.shape == (3,) and obj.chosen == int(np.argmax(obj.scores))
    assert obj.mask.shape == (H, W) and obj.mask.dtype == bool
    assert np.array_equal(obj.mask, obj.candidates[obj.chosen])
    assert obj.score == pytest.approx(float(obj.scores.max()))
    assert predictor.predict_calls[-1]["multimask_output"] is True
    assert session.click_ms is not None and session.click_ms >= 0

    obj = session.add_point(10, 10, positive=False)
    assert obj.points == ((60.0, 40.0), (10.0, 10.0)) and obj.point_labels == (1, 0)
    assert obj.candidates.shape == (1, H, W) and obj.chosen == 0
    call = predictor.predict_calls[-1]
    assert call["multimask_output"] is False and call["mask_input"] is None
    assert np.array_equal(call["point_coords"], [[60, 40], [10, 10]])
    assert np.array_equal(call["point_labels"], [1, 0])

    obj = session.remove_last_point()
    obj = session.set_box(80, 60, 30, 20)  # dragged up-left: corners normalised
    assert obj.box == (30.0, 20.0, 80.0, 60.0) and obj.candidates.shape == (1, H, W)
    assert predictor.predict_calls[-1]["multimask_output"] is False
    assert np.array_equal(predictor.predict_calls[-1]["box"], [30, 20, 80, 60])
    assert session.masks.keys() == {"object 1"}


def test_masks_match_the_predictor(session, predictor, rgb_image):
    obj = session.add_point(60, 40)
    direct = CachedPredictor(predictor.inner.model)
    direct.set_image(rgb_image)
    masks, scores, _ = direct.predict(np.array([[60.0, 40.0]]), np.array([1]), multimask_output=True)
    assert np.array_equal(obj.candidates, masks) and np.array_equal(obj.scores, scores)


def test_stored_masks_are_read_only(session):
    obj = session.add_point(60, 40)
    with pytest.raises(ValueError, match="read-only"):
        obj.mask[0, 0] = True
    with pytest.raises(ValueError, match="read-only"):
        session.masks["object 1"][:] = False


def test_choose_picks_another_candidate_without_the_model(session, predictor):
    obj = session.add_point(60, 40)
    calls = len(predictor.predict_calls)
    other = (obj.chosen + 1) % 3
    chosen = session.choose(other)
    assert chosen.chosen == other and np.array_equal(session.masks["object 1"], obj.candidates[other])
    assert len(predictor.predict_calls) == calls


def test_remove_last_point_and_box(session):
    assert session.remove_last_point() is False and session.clear_box() is False
    session.add_point(60, 40)
    assert session.remove_last_point() is True
    assert session.active.mask is None and session.active.candidates is None
    assert session.masks == {}
    session.set_box(10, 10, 50, 50)
    session.add_point(30, 30)
    assert session.clear_box() is True
    assert session.active.box is None and session.active.candidates.shape == (3, H, W)


def test_refine_with_logits_passes_previous_low_res_logits(images, predictor):
    s = Session(images, predictor, refine_with_logits=True)
    first = s.add_point(60, 40)
    assert first.logits is not None and predictor.predict_calls[-1]["mask_input"] is None
    s.add_point(20, 20)
    mask_input = predictor.predict_calls[-1]["mask_input"]
    assert np.array_equal(mask_input, first.logits[first.chosen][None])


# ---------------------------------------------------------------------- objects


def test_objects_labels_colours_and_separate_masks(session):
    a = session.add_point(60, 40)
    b = session.add_object()
    assert b.label == "object 2" and session.active.label == "object 2"
    assert a.color == tuple(PALETTE[0]) and b.color == tuple(PALETTE[1])
    b = session.set_box(5, 5, 40, 30)
    assert session.object("object 1") == a  # untouched by b's prompts
    assert session.masks.keys() == {"object 1", "object 2"}
    assert same(session.masks["object 1"], a.mask) and same(session.masks["object 2"], b.mask)

    session.select("object 1")
    a2 = session.add_point(100, 80, positive=False)
    assert a2.label == "object 1" and len(a2.points) == 2 and session.object("object 2") == b

    session.rename("object 1", "car")
    assert session.labels == ["car", "object 2"] and session.active.label == "car"
    assert session.object("car").candidates is a2.candidates  # renaming runs no model
    session.delete("car")
    assert session.labels == ["object 2"] and session.active is None
    c = session.add_object("tree")
    assert c.color == tuple(PALETTE[0])  # the first free colour
    session.add_point(10, 10)  # goes to the active object, "tree"
    assert session.object("tree").points == ((10.0, 10.0),)
    session.clear()
    assert session.objects == () and session.masks == {} and session.active is None


def test_auto_labels_skip_taken_ones_and_colours_cycle(session):
    session.add_object("object 2")
    assert session.add_object().label == "object 3"
    for _ in range(len(PALETTE)):
        session.add_object()
    colours = [o.color for o in session.objects]
    assert colours[: len(PALETTE)] == [tuple(c) for c in PALETTE]


def test_select_none_makes_the_next_click_a_new_object(session):
    session.add_point(60, 40)
    session.select(None)
    session.add_point(20, 20)
    assert session.labels == ["object 1", "object 2"]


# ---------------------------------------------------------------------- undo / redo


def test_undo_redo_of_every_action_restores_exact_masks_without_the_model(session, predictor):
    actions = [
        lambda s: s.add_point(60, 40),
        lambda s: s.choose((s.active.chosen + 1) % 3),
        lambda s: s.add_point(10, 10, positive=False),
        lambda s: s.set_box(20, 15, 90, 70),
        lambda s: s.clear_box(),
        lambda s: s.remove_last_point(),
        lambda s: s.add_object(),
        lambda s: s.set_box(0, 0, 40, 40),
        lambda s: s.rename("object 1", "car"),
        lambda s: s.delete("object 2"),
        lambda s: s.add_object("tree"),
        lambda s: s.clear(),
    ]
    states = [everything(session)[1]]
    for act in actions:
        act(session)
        states.append(everything(session)[1])
    for before, after in zip(states, states[1:], strict=False):
        assert before[1:3] != after[1:3]  # every action changed something
    calls = len(predictor.predict_calls)

    for expected in reversed(states[:-1]):
        assert session.undo() is True
        slot = session._slots[0]
        assert (slot.state.objects, slot.state.active) == expected[1:3]
    assert session.undo() is False and session.objects == ()
    for expected in states[1:]:
        assert session.redo() is True
        assert (session.objects, session._slots[0].state.active) == expected[1:3]
    assert session.redo() is False
    assert len(predictor.predict_calls) == calls

    # Not only equal: the very arrays of before, as nothing is recomputed.
    session.undo()  # clear
    candidates = {o.label: o.candidates for o in session.objects}
    session.redo()
    session.undo()
    assert all(session.object(k).candidates is v for k, v in candidates.items())


def test_a_new_action_clears_redo_and_history_is_per_image(session):
    session.add_point(60, 40)
    session.add_point(10, 10)
    session.undo()
    assert session.can_redo
    session.add_point(30, 30)
    assert not session.can_redo and session.redo() is False
    assert session.active.points == ((60.0, 40.0), (30.0, 30.0))

    session.next()
    assert not session.can_undo and session.undo() is False
    session.add_point(5, 5)
    session.undo()
    assert session.objects == ()
    session.previous()
    assert len(session.active.points) == 2  # image 0 untouched by image 1's undo


def test_history_is_bounded(images, predictor):
    s = Session(images, predictor, max_history=2)
    for label in "abcd":
        s.add_object(label)
    assert s.undo() and s.undo() and not s.undo()
    assert s.labels == ["a", "b"]


# ---------------------------------------------------------------------- images and encoding


def test_images_encode_lazily_once_and_keep_their_objects(tiny_sam, images):
    encoder = count_encoder_calls(tiny_sam)
    s = Session(images, CachedPredictor(tiny_sam))
    assert s.names == ["image_0", "image_1"] and len(s) == 2
    assert encoder[0] == 0 and not s.is_encoded
    s.next()
    s.previous()
    assert encoder[0] == 0  # switching encodes nothing

    s.ensure_encoded()  # what the widget's worker thread calls
    assert encoder[0] == 1 and s.is_encoded
    a = s.add_point(60, 40)
    assert encoder[0] == 1
    s.go(1)
    assert not s.is_encoded and s.objects == () and (s.width, s.height) == (120, 80)
    b = s.add_point(50, 30)
    assert encoder[0] == 2 and b.mask.shape == (80, 120)
    s.go(0)
    assert s.objects == (a,) and same(s.masks["object 1"], a.mask)
    s.add_point(20, 20)  # back on image 0: the cached embedding, no encoder
    s.go(1)
    s.add_point(10, 10)
    assert encoder[0] == 2
    assert s.next() is False and s.current == 1
    s.go(0)
    assert s.previous() is False


def test_encoding_in_a_worker_thread_while_clicking(tiny_sam, images):
    encoder = count_encoder_calls(tiny_sam)
    s = Session(images, CachedPredictor(tiny_sam))
    worker = threading.Thread(target=s.ensure_encoded)
    worker.start()
    obj = s.add_point(60, 40)  # waits for the encoding, or does it first: never twice
    worker.join()
    assert encoder[0] == 1 and obj.candidates.shape == (3, H, W)
    s.ensure_encoded(1)  # e.g. the widget encodes the next image ahead
    assert encoder[0] == 2 and s.current == 0
    with pytest.raises(IndexError, match="out of range"):
        s.ensure_encoded(5)


def test_session_re_sets_its_image_when_someone_else_used_the_predictor(tiny_sam, images):
    p = CachedPredictor(tiny_sam)
    s = Session(images[0], p)
    s.add_point(60, 40)
    p.set_image(images[1])  # e.g. another session sharing the predictor
    assert not s.is_encoded
    obj = s.add_point(20, 20)
    assert obj.mask.shape == (H, W) and s.is_encoded


def test_images_from_paths_and_pil(tmp_path, rgb_image, predictor):
    Image.fromarray(rgb_image).save(tmp_path / "cat.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(rgb_image[:, ::-1]).save(tmp_path / "sub" / "cat.png")
    with Image.open(tmp_path / "cat.png") as pil:
        pil.load()
        s = Session([tmp_path / "cat.png", str(tmp_path / "sub" / "cat.png"), pil, rgb_image], predictor)
    assert s.names == ["cat", "cat_2", "cat_3", "image_3"]
    assert s._slots[1]._pixels is None  # a path is checked at open, kept only while current
    assert np.array_equal(s.image, rgb_image)
    s.next()
    assert s._slots[0]._pixels is None and np.array_equal(s.image, rgb_image[:, ::-1])
    assert Session(tmp_path / "cat.png", predictor).names == ["cat"]


def test_go_checks_the_index(session):
    for bad in (2, -1):
        with pytest.raises(IndexError, match="out of range"):
            session.go(bad)
    with pytest.raises(TypeError):
        session.go(1.5)


# ---------------------------------------------------------------------- events


def test_events_say_what_changed(session):
    seen: list[str] = []
    session.on_change(seen.append)
    session.add_point(60, 40)
    assert seen == ["objects", "active", "prompts", "mask", "history"]
    seen.clear()
    session.add_point(10, 10)
    assert seen == ["prompts", "mask", "history"]
    seen.clear()
    session.add_object()
    assert seen == ["objects", "active", "history"]
    seen.clear()
    session.select("object 1")
    assert seen == ["active"]
    seen.clear()
    session.undo()  # the add_object
    assert seen == ["objects", "history"]
    seen.clear()
    session.next()
    assert seen == ["image"]
    assert set(seen) <= set(EVENTS)
    session.on_change(seen.append, remove=True)
    seen.clear()
    session.previous()
    assert seen == []  # no more events after remove


def test_a_failing_callback_does_not_starve_the_others(session):
    seen = []

    def broken(event):
        raise RuntimeError("view bug")

    session.on_change(broken)
    session.on_change(seen.append)
    with pytest.raises(RuntimeError, match="view bug"):
        session.add_object()
    assert "objects" in seen and session.labels == ["object 1"]


# ---------------------------------------------------------------------- export / import


def work(s: Session) -> None:
    """Two objects on image 0 (one with a non-default candidate), one on image 1, one empty."""
    s.add_point(60, 40)
    s.choose((s.active.chosen + 1) % 3)
    s.add_object("a/b c")  # a label that is not a safe file name
    s.set_box(10, 10, 60, 50)
    s.add_point(30, 30, positive=False)
    s.add_object("empty")
    s.next()
    s.add_point(50, 30)


def test_save_load_round_trip_runs_no_model(tmp_path, session, images, tiny_sam):
    work(session)
    path = session.save(tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "annotations.json",
        "first__a_b_c.png",
        "first__object_1.png",
        "second__object_1.png",
    ]
    png = np.asarray(Image.open(tmp_path / "out" / "first__object_1.png"))
    assert np.array_equal(png > 0, session.objects_on(0)[0].mask)
    data = json.loads(path.read_text())
    json.dumps(data)

    encoder = count_encoder_calls(tiny_sam)
    fresh = Spy(CachedPredictor(tiny_sam))
    restored = Session.from_folder(tmp_path / "out", images, fresh, names=["first", "second"])
    assert fresh.predict_calls == [] and fresh.set_image_calls == 0 and encoder[0] == 0
    for i in range(2):
        assert restored.objects_on(i) == session.objects_on(i)
        assert restored._slots[i].state.active == session._slots[i].state.active
    assert restored.objects_on(0)[0].chosen != int(np.argmax(restored.objects_on(0)[0].scores))
    assert not restored.can_undo  # a fresh session starts from the saved work

    # The work goes on: a click on a restored object uses its saved prompts.
    restored.select("a/b c")
    obj = restored.add_point(100, 80)
    assert len(obj.points) == 2 and obj.box == (10.0, 10.0, 60.0, 50.0)


def test_load_into_a_session_is_one_undo_step(tmp_path, session, images, predictor):
    work(session)
    session.save(tmp_path)
    other = Session(images, predictor, names=["first", "second"])
    other.add_object("mine")
    other.load(tmp_path)
    assert other.labels == ["object 1", "a/b c", "empty"]
    assert other.undo() and other.labels == ["mine"]


def test_coco_rle_decodes_to_the_same_masks(session):
    work(session)
    coco = session.to_coco()
    json.dumps(coco)
    assert [im["file_name"] for im in coco["images"]] == ["first", "second"]
    assert [(im["width"], im["height"]) for im in coco["images"]] == [(W, H), (W, 80)]
    expected = [
        (i + 1, o.label, o.mask)
        for i in range(2)
        for o in session.objects_on(i)
        if o.mask is not None and o.mask.any()
    ]
    assert len(coco["annotations"]) == len(expected) >= 1
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    for ann, (image_id, label, mask) in zip(coco["annotations"], expected, strict=True):
        with warnings.catch_warnings():  # pycocotools' __array__ predates numpy 2's copy keyword
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            decoded = mask_utils.decode(ann["segmentation"]).astype(bool)
        assert np.array_equal(decoded, mask)
        assert ann["image_id"] == image_id and ann["label"] == label
        assert cats[ann["category_id"]] == default_category(label)  # "object 2" -> "object"
        assert ann["area"] == int(mask.sum()) and ann["iscrowd"] == 0
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    # A category function groups labels ("object 1" on both images -> one category).
    coco = session.to_coco(category=lambda label: label.split()[0])
    assert len({a["category_id"] for a in coco["annotations"]}) == len(coco["categories"])


def test_rle_decoder_inverts_pycocotools_encoding():
    rng = np.random.default_rng(0)
    masks = [np.zeros((7, 5), bool), np.ones((7, 5), bool), rng.random((64, 48)) < 0.5]
    for _ in range(50):
        h, w = rng.integers(8, 70, 2)
        m = np.zeros((h, w), bool)
        m[rng.integers(0, h) :, rng.integers(0, w) :] = True
        masks.append(m ^ (rng.random((h, w)) < 0.05))
    for m in masks:
        rle = _encode_rle(m)
        assert isinstance(rle["counts"], str)
        assert np.array_equal(_decode_rle(rle, m.shape[1], m.shape[0]), m)
    with pytest.raises(ValueError, match="size"):
        _decode_rle(_encode_rle(masks[0]), 7, 5)


def test_saving_again_removes_masks_of_deleted_objects_only(tmp_path, session):
    work(session)
    (tmp_path / "notes.png").write_bytes(b"mine")
    session.save(tmp_path)
    session.go(0)
    session.delete("a/b c")
    session.save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["annotations.json", "first__object_1.png", "notes.png", "second__object_1.png"]


def test_load_for_other_images_changes_nothing(tmp_path, session, images, predictor):
    work(session)
    session.save(tmp_path)
    other = Session(images, predictor)  # names image_0, image_1
    other.add_point(60, 40)
    before = everything(other)
    with pytest.raises(ImageMismatchError, match="saved for images"):
        other.load(tmp_path)
    assert everything(other) == before

    resized = Session([images[0][:, :100], images[1]], predictor, names=["first", "second"])
    with pytest.raises(ImageMismatchError, match="100x90"):
        resized.load(tmp_path)
    assert resized.objects_on(0) == () and resized.objects_on(1) == ()


def test_load_damaged_or_missing_files_changes_nothing(tmp_path, session, images, predictor):
    work(session)
    path = session.save(tmp_path)
    data = json.loads(path.read_text())
    data["sam_widgets"]["images"][0]["objects"][0]["chosen"] = 7
    path.write_text(json.dumps(data))
    other = Session(images, predictor, names=["first", "second"])
    with pytest.raises(AnnotationFileError, match="damaged"):
        other.load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(AnnotationFileError, match="not readable JSON"):
        other.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="annotations.json"):
        other.load(tmp_path / "nowhere")
    assert everything(other) == everything(Session(images, predictor, names=["first", "second"]))


# ---------------------------------------------------------------------- bad input loses nothing


BAD = [
    (lambda s: s.add_point(-1, 10), ValueError, "outside the 120x90 image"),
    (lambda s: s.add_point(121, 10), ValueError, "outside"),
    (lambda s: s.add_point(10, 90.5), ValueError, "outside"),
    (lambda s: s.add_point(float("nan"), 10), ValueError, "outside"),
    (lambda s: s.set_box(10, 10, 11, 60), ValueError, "at least 2 pixels"),
    (lambda s: s.set_box(10, 10, 10, 10), ValueError, "at least 2 pixels"),
    (lambda s: s.set_box(-5, 10, 50, 60), ValueError, "reaches outside"),
    (lambda s: s.select("nobody"), LabelError, "known labels: 'object 1', 'b'"),
    (lambda s: s.rename("nobody", "x"), LabelError, "No object labelled 'nobody'"),
    (lambda s: s.delete("nobody"), LabelError, "known labels"),
    (lambda s: s.object("nobody"), LabelError, "known labels"),
    (lambda s: s.add_object("b"), LabelError, "already has an object labelled 'b'"),
    (lambda s: s.rename("object 1", "b"), LabelError, "already has"),
    (lambda s: s.rename("object 1", "  "), LabelError, "non-empty string"),
    (lambda s: s.add_object(3), LabelError, "non-empty string"),
    (lambda s: s.choose(3), IndexError, "has 1"),
]


@pytest.mark.parametrize(("act", "error", "match"), BAD)
def test_bad_input_gets_a_clear_error_and_loses_nothing(session, predictor, act, error, match):
    session.add_point(60, 40)
    session.add_object("b")
    session.set_box(10, 10, 50, 50)
    session.add_point(20, 20)
    session.undo()  # something to redo, too
    before, calls = everything(session), len(predictor.predict_calls)
    with pytest.raises(error, match=match):
        act(session)
    assert everything(session) == before and len(predictor.predict_calls) == calls


def test_unknown_label_is_a_value_error(session):
    with pytest.raises(ValueError, match="known labels: none"):
        session.select("x")


def test_choose_before_any_prompt(session):
    with pytest.raises(ValueError, match="add a point or a box first"):
        session.choose(0)


def test_a_failing_predictor_loses_nothing(session, predictor):
    session.add_point(60, 40)
    before = everything(session)

    def broken(**kwargs):
        raise RuntimeError("GPU on fire")

    predictor.predict = broken
    with pytest.raises(RuntimeError, match="GPU on fire"):
        session.add_point(10, 10)
    assert everything(session) == before


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([], ValueError, "at least one image"),
        ([np.zeros((3, 90, 120), np.uint8)], ValueError, r"Image 0: Image shape \(3, 90, 120\)"),
        ([np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 2), np.uint8)], ValueError, "Image 1: .*shape"),
        ([np.zeros((20, 20), np.float64) + 3], ValueError, r"Image 0: .*\[0, 1\]"),
        (["/nonexistent/cat.png"], FileNotFoundError, "No image file"),
        ([object()], TypeError, "Image 0: Expected an image"),
    ],
)
def test_bad_images_get_clear_errors(predictor, images, error, match):
    with pytest.raises(error, match=match):
        Session(images, predictor)


def test_bad_names(rgb_image, predictor):
    with pytest.raises(ValueError, match="one name per image"):
        Session([rgb_image], predictor, names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        Session([rgb_image, rgb_image], predictor, names=["a", "a"])


def test_repr(session):
    session.add_point(60, 40)
    assert repr(session) == "Session(2 images, current 0 'first', 1 object)"
    assert repr(session.active).startswith("SessionObject('object 1', 1 point, candidate ")
    assert isinstance(session.active, SessionObject)


def test_add_mask_adopts_a_mask_as_an_undoable_object(tiny_sam, rgb_image):
    from sam_widgets import CachedPredictor, Session

    s = Session(rgb_image, CachedPredictor(tiny_sam))
    mask = np.zeros((90, 120), bool)
    mask[10:20, 30:50] = True
    obj = s.add_mask(mask, score=0.9, label="block")
    assert s.active.label == "block" and np.array_equal(s.masks["block"], mask)
    assert obj.score == pytest.approx(0.9) and not obj.has_prompts
    mask[:] = False  # the session keeps its own copy
    assert s.masks["block"].sum() == 200
    with pytest.raises(ValueError, match="does not fit"):
        s.add_mask(np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="empty"):
        s.add_mask(np.zeros((90, 120), bool))
    assert s.labels == ["block"]
    assert s.undo() and s.objects == ()
