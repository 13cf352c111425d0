"""Session under threads and over long work: nothing lost, nothing crossed, memory bounded.

Each test failed before its fix (points lost from threads, a mask committed to the wrong image,
full-resolution masks piling up in the undo history).
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import numpy as np
import pytest

from sam_widgets.session import MAX_HISTORY_BYTES, Session

from .conftest import FakePredictor


def test_points_from_many_threads_are_all_kept(rgb_image):
    s = Session(rgb_image, FakePredictor(delay=0.0005))
    errors = []

    def click(k: int) -> None:
        try:
            for i in range(10):
                s.add_point(1 + k * 10 + i, 1 + i)
        except Exception as e:  # pragma: no cover - the failure is what we report
            errors.append(e)

    threads = [threading.Thread(target=click, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(s.objects) == 1  # the first click made one object; all others went into it
    assert len(s.active.points) == 80
    assert len(s._slots[0].undo) == 80


def test_a_click_in_flight_commits_to_the_image_it_started_on(rgb_image):
    other = np.ascontiguousarray(rgb_image[:80, ::-1])  # another size: 120x80
    predictor = FakePredictor()
    predictor.release = threading.Event()
    s = Session([rgb_image, other], predictor, names=["a", "b"])
    s.ensure_encoded()
    clicker = threading.Thread(target=s.add_point, args=(60, 40))
    clicker.start()
    assert predictor.entered.wait(10)
    mover = threading.Thread(target=s.go, args=(1,))
    mover.start()
    time.sleep(0.05)  # go(1) is now waiting for the click (or, before the fix, done)
    predictor.release.set()
    clicker.join(10)
    mover.join(10)
    assert s.current == 1
    assert s.objects_on(1) == ()
    (obj,) = s.objects_on(0)
    assert obj.points == ((60.0, 40.0),) and obj.mask.shape == rgb_image.shape[:2]


def _allocated() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_undo_history_of_a_large_image_is_compact_and_clear_frees_it():
    h, w = 2000, 2000  # 4 MP: 3 candidates of 4 MB per click at full resolution
    image = np.zeros((h, w, 3), np.uint8)
    s = Session(image, FakePredictor())
    s.ensure_encoded()
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        start = _allocated()
        for i in range(20):
            s.add_point(100 + 80 * i, 100 + 80 * i, positive=i % 3 != 2)
        grew = _allocated() - start  # was 20 steps x 12 MB = 240 MB
        s.clear()
        after_clear = _allocated() - start
    finally:
        tracemalloc.stop()
    assert len(s._slots[0].undo) == 21
    assert grew < 20 * 2**20, f"{grew / 2**20:.0f} MiB retained by 20 clicks"
    assert after_clear < 2 * 2**20, f"{after_clear / 2**20:.1f} MiB retained after clear()"
    assert s.history_bytes < 2**20
    assert s.undo() and len(s.active.points) == 20  # and the work comes back
    assert s.active.mask.shape == (h, w) and s.active.mask.any()


def test_history_is_capped_in_bytes_across_images(rgb_image):
    other = np.ascontiguousarray(rgb_image[:80, ::-1])
    s = Session([rgb_image, other], FakePredictor(), max_history_bytes=20_000)
    assert Session(rgb_image, FakePredictor()).max_history_bytes == MAX_HISTORY_BYTES
    for i in range(30):
        s.add_point(10 + i, 10 + i)
    s.go(1)
    for i in range(30):
        s.add_point(10 + i, 10 + i)
    assert s.history_bytes <= 20_000
    first, second = (len(slot.undo) for slot in s._slots)
    assert 0 < second < 30 and first < 30
    assert first <= second  # image 0's steps are older: they went first
    with pytest.raises(ValueError, match="max_history_bytes"):
        Session(rgb_image, FakePredictor(), max_history_bytes=-1)


def test_a_folder_of_many_images_opens_without_decoding_them(tmp_path, monkeypatch, rgb_image):
    from PIL import Image

    import sam_widgets.session as session_module

    paths = []
    for i in range(40):
        path = tmp_path / f"photo{i:02d}.png"
        Image.fromarray(np.roll(rgb_image, i, axis=1)).save(path)
        paths.append(path)
    decoded = []
    real = session_module.as_rgb_uint8
    monkeypatch.setattr(session_module, "as_rgb_uint8", lambda item: decoded.append(item) or real(item))
    s = Session(paths, FakePredictor())
    assert decoded == [paths[0]]  # only the image shown first
    assert len(s) == 40 and (s.width, s.height) == (120, 90) and s.names[39] == "photo39"
    s.go(7)
    assert decoded == [paths[0]]  # going there decodes nothing yet
    assert np.array_equal(s.image, np.roll(rgb_image, 7, axis=1)) and decoded[-1] == paths[7]
    s.add_point(10, 10)
    s.save(tmp_path / "work")  # the sha256 of the images shown (or with work): no decoding
    assert decoded == [paths[0], paths[7]]
    decoded.clear()
    restored = Session.from_folder(tmp_path / "work", paths, FakePredictor())
    assert len(decoded) <= 2  # the first image, and the one the saved work is on (its sha256)
    assert len(restored.objects_on(7)) == 1


def test_a_file_replaced_before_it_is_first_shown_is_the_one_worked_on(tmp_path, rgb_image):
    from PIL import Image

    first, second = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(rgb_image).save(first)
    Image.fromarray(rgb_image[::-1]).save(second)
    s = Session([first, second], FakePredictor())
    Image.fromarray(rgb_image[:, ::-1]).save(second)  # same size, other pixels, never shown yet
    s.go(1)
    assert np.array_equal(s.image, rgb_image[:, ::-1])
    s.go(0)
    Image.fromarray(rgb_image).save(second)  # changed after it was shown: refused, naming it
    s.go(1)
    with pytest.raises(ValueError, match="b.png changed since the session opened it"):
        _ = s.image


def test_a_truncated_file_that_is_not_first_fails_when_shown_naming_it(tmp_path, rgb_image):
    from PIL import Image

    good, cut = tmp_path / "good.png", tmp_path / "cut.png"
    Image.fromarray(rgb_image).save(good)
    Image.fromarray(rgb_image).save(cut)
    cut.write_bytes(cut.read_bytes()[:200])
    s = Session([good, cut], FakePredictor())  # the header is whole: it opens
    s.go(1)
    with pytest.raises(ValueError, match="cut.png.*truncated or corrupt"):
        _ = s.image
    notes = tmp_path / "notes.png"
    notes.write_text("hello")
    with pytest.raises(ValueError, match="Image 1: .*notes.png.*not an image"):
        Session([good, notes], FakePredictor())  # not an image at all: at open
