"""Session.save and load keep every annotation: all-or-nothing saves, other sessions' folders and
users' files left alone, images identified by content. Each test failed before its fix."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from sam_widgets import _annotation_files
from sam_widgets.errors import AnnotationFileError, ImageMismatchError
from sam_widgets.session import Session

from . import conftest

#: Small masks: candidate k is a square 3 + 2k pixels either way of the last point.
FakePredictor = functools.partial(conftest.FakePredictor, size=3, step=2)


@pytest.fixture
def images(rgb_image):
    return [rgb_image, np.ascontiguousarray(rgb_image[:80, ::-1])]


def _session(images, names=("first", "second")):
    return Session(images, FakePredictor(), names=list(names))


def _work(s: Session) -> Session:
    s.add_point(60, 40)
    s.add_object("b")
    s.add_point(20, 20)
    s.next()
    s.add_point(50, 30)
    s.go(0)
    return s


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_long_label_is_saved_under_a_short_name_and_loads_back(tmp_path, images):
    s = _work(_session(images))
    long = "a very long label " * 17  # 306 characters: over any file system's 255 bytes
    s.rename("b", long)
    s.save(tmp_path)
    assert all(len(p.name.encode()) <= 130 for p in tmp_path.iterdir())
    restored = Session.from_folder(tmp_path, images, FakePredictor(), names=["first", "second"])
    assert restored.objects_on(0) == s.objects_on(0)


def test_a_save_that_fails_half_way_changes_nothing(tmp_path, images, monkeypatch):
    s = _work(_session(images))
    s.save(tmp_path)
    before = _snapshot(tmp_path)
    s.add_object("c")
    s.add_point(70, 70)
    real, calls = _annotation_files._png_bytes, []

    def fail_on_last(mask):
        calls.append(1)
        if len(calls) == 4:  # the new "c" was written before, in the old code
            raise OSError(28, "No space left on device")
        return real(mask)

    monkeypatch.setattr(_annotation_files, "_png_bytes", fail_on_last)
    with pytest.raises(OSError):
        s.save(tmp_path)
    assert _snapshot(tmp_path) == before  # no new PNG beside the old annotations.json, no temp file


def test_saving_into_another_sessions_folder_is_refused(tmp_path, images, rgb_image):
    a = _work(_session(images))
    a.save(tmp_path)
    before = _snapshot(tmp_path)
    b = _session([rgb_image], names=["other"])
    b.add_point(30, 30)
    with pytest.raises(ImageMismatchError, match="another folder, or pass overwrite=True"):
        b.save(tmp_path)
    assert _snapshot(tmp_path) == before
    # Same names and sizes, other pixels: also another session's folder.
    c = _session([255 - images[0], images[1]])
    c.add_point(30, 30)
    with pytest.raises(ImageMismatchError, match="sha256"):
        c.save(tmp_path)
    assert _snapshot(tmp_path) == before
    # Asked for: replaced, and the other's mask PNGs (written by us) go.
    b.save(tmp_path, overwrite=True)
    assert sorted(_snapshot(tmp_path)) == ["annotations.json", "other__object_1.png"]


def test_a_folder_with_a_foreign_annotations_json_is_refused(tmp_path, images):
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [], "annotations": []}))
    s = _work(_session(images))
    with pytest.raises(AnnotationFileError, match="overwrite=True"):
        s.save(tmp_path)
    assert sorted(_snapshot(tmp_path)) == ["annotations.json"]
    s.save(tmp_path, overwrite=True)
    assert "first__object_1.png" in _snapshot(tmp_path)


def test_a_users_file_with_a_mask_name_is_never_overwritten(tmp_path, images):
    (tmp_path / "first__object_1.png").write_bytes(b"my own picture")
    s = _work(_session(images))
    s.save(tmp_path)
    assert (tmp_path / "first__object_1.png").read_bytes() == b"my own picture"
    data = json.loads((tmp_path / "annotations.json").read_text())
    png = data["sam_widgets"]["images"][0]["objects"][0]["png"]
    assert png != "first__object_1.png" and (tmp_path / png).is_file()
    s.delete("object 1")
    s.save(tmp_path)  # the mask PNG we wrote goes, the user's file stays
    assert not (tmp_path / png).exists()
    assert (tmp_path / "first__object_1.png").read_bytes() == b"my own picture"


def test_a_png_listed_by_hand_is_not_deleted(tmp_path, images):
    s = _work(_session(images))
    path = s.save(tmp_path)
    (tmp_path / "holiday.png").write_bytes(b"not a mask of ours")
    data = json.loads(path.read_text())
    data["sam_widgets"]["images"][0]["objects"][0]["png"] = "holiday.png"  # a hand edit
    data["sam_widgets"]["images"][0]["objects"][0].pop("png_sha256", None)
    path.write_text(json.dumps(data))
    s.save(tmp_path)
    assert (tmp_path / "holiday.png").read_bytes() == b"not a mask of ours"


def test_load_refuses_another_image_with_the_same_name_and_size(tmp_path, images):
    _work(_session(images)).save(tmp_path)
    other = _session([255 - images[0], images[1]])
    with pytest.raises(ImageMismatchError, match="sha256"):
        other.load(tmp_path)
    assert other.objects_on(0) == () and other.objects_on(1) == ()


def test_a_folder_saved_before_hashes_were_recorded_is_saved_over_in_place(tmp_path, images):
    s = _work(_session(images))
    path = s.save(tmp_path)
    data = json.loads(path.read_text())
    for image in data["sam_widgets"]["images"]:  # as an earlier version wrote it
        image.pop("sha256")
        for o in image["objects"]:
            o.pop("png_sha256")
    path.write_text(json.dumps(data))
    names = sorted(_snapshot(tmp_path))
    s.delete("b")
    s.save(tmp_path)
    assert sorted(_snapshot(tmp_path)) == [n for n in names if n != "first__b.png"]
