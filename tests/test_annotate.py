"""Batch annotation (sam_widgets.annotate): local and Ray runs, resume after a kill, bad inputs,
box prompts as the session's, the output formats. Micro on a dozen small images; Ray runs use a
local runtime of 2 CPUs and are shut down after each test."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam_widgets import formats
from sam_widgets.annotate import (
    OutputFolderError,
    PromptFileError,
    annotate,
    list_images,
    read_prompts,
)
from sam_widgets.annotate.output import RECORDS

HAS_RAY = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason="Ray is not installed: pip install 'sam-widgets[ray]' (CI installs it)"
)
# Ray's own deprecation notices, and its process handles at shutdown, are not ours to fail on.
ray_warnings = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:ray.*"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def ray_test(fn):
    """A test that needs Ray (skipped without it) and does not fail on Ray's own warnings."""
    for mark in reversed([needs_ray, *ray_warnings]):
        fn = mark(fn)
    return fn


# "everything" cheap and permissive enough for micro: 16 points, no filtering by score.
EVERY = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
EVERY_ARGS = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
COMMON = {"model": "micro", "precision": "fp32", "threads": 1, "everything": EVERY, "progress": False}
GOOD = 12
BAD = {"corrupt.jpg": "image", "tiny.png": "image"}


def _decode(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():  # pycocotools' __array__ and numpy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


@pytest.fixture(scope="module")
def scenes():
    from sam_widgets.datasets import synthetic

    return synthetic(GOOD, 96)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, scenes):
    """A dozen good PNGs (two in a subfolder) and two bad files: corrupt bytes, a 4x4 image."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    for i, s in enumerate(scenes):
        Image.fromarray(s.image).save(root / ("sub" if i >= 10 else ".") / f"scene{i:02d}.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    Image.new("RGB", (4, 4)).save(root / "tiny.png")
    (root / "notes.txt").write_text("not an image: ignored")
    return root


def _coco(out: Path) -> dict:
    data = json.loads((out / "annotations.json").read_text())
    data["info"].pop("date_created")
    return data


@pytest.fixture(scope="module")
def reference(tmp_path_factory, image_dir):
    """An uninterrupted local run: what every other run must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = annotate(image_dir, out, **COMMON)
    return out, summary, _coco(out)


def _assert_same_annotations(a: dict, b: dict) -> None:
    assert [im["file_name"] for im in a["images"]] == [im["file_name"] for im in b["images"]]
    assert a["images"] == b["images"]
    assert a["categories"] == b["categories"]
    assert len(a["annotations"]) == len(b["annotations"])
    for x, y in zip(a["annotations"], b["annotations"], strict=True):
        assert (x["id"], x["image_id"]) == (y["id"], y["image_id"])
        assert x["segmentation"] == y["segmentation"], f"annotation {x['id']} differs"
        assert x["score"] == pytest.approx(y["score"], abs=1e-5)


# ----------------------------------------------------------------------------- local


def test_listing_finds_images_recursively_and_ignores_other_files(image_dir):
    root, keys = list_images(image_dir)
    assert root == image_dir
    assert len(keys) == GOOD + len(BAD)
    assert "sub/scene10.png" in keys and "notes.txt" not in keys
    assert keys == sorted(keys)
    listing = image_dir.parent / "list.txt"
    listing.write_text(f"# two images\n{image_dir.name}/sub/scene10.png\n\n{image_dir / 'scene00.png'}\n")
    assert list_images(listing) == (image_dir, ["sub/scene10.png", "scene00.png"])
    assert list_images(image_dir / "tiny.png") == (image_dir, ["tiny.png"])


def test_local_run_writes_coco_and_manifest_and_skips_bad_images(reference, image_dir):
    out, summary, coco = reference
    assert (summary.done, summary.failed, summary.total) == (GOOD, len(BAD), GOOD + len(BAD))
    assert summary.runner == "local"
    # COCO: the good images only, ids in name order, every mask the image's size and not empty
    assert len(coco["images"]) == GOOD
    assert {im["file_name"] for im in coco["images"]} == {
        k for k in list_images(image_dir)[1] if k not in BAD
    }
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"]) > GOOD
    sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
    for a in coco["annotations"][:20]:
        m = _decode(a["segmentation"])
        assert m.shape == sizes[a["image_id"]] and m.sum() == a["area"] > 0
        assert a["category_id"] == 1 and 0 <= a["bbox"][0] < 96
    # the manifest: model, settings, versions, one status per image, the bad ones with the reason
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished"] is True
    assert manifest["identity"]["settings"]["model"] == "micro"
    assert manifest["identity"]["settings"]["everything"]["points_per_side"] == 4
    assert {"sam-widgets", "torch", "segment-anything"} <= set(manifest["versions"])
    assert manifest["counts"] == {"done": GOOD, "failed": len(BAD), "pending": 0}
    status = {i["file_name"]: i for i in manifest["images"]}
    # the reason is the image loader's error (sam_widgets._images: OSError or ValueError from PIL)
    assert status["corrupt.jpg"]["status"] == "failed"
    assert (
        status["corrupt.jpg"]["reason"].startswith("image: ") and "Error" in status["corrupt.jpg"]["reason"]
    )
    assert "4x4" in status["tiny.png"]["reason"]
    assert dict(summary.failures).keys() == BAD.keys()
    text = summary.format()
    assert "12 done, 2 failed" in text and "corrupt.jpg" in text and "images/s" in text


def test_a_finished_run_resumes_to_the_same_output_without_work(reference, image_dir, tmp_path):
    out, _, coco = reference
    again = annotate(image_dir, out, **COMMON)  # every image has a record: nothing to do
    assert (again.done, again.failed, again.skipped_before) == (0, 0, GOOD + len(BAD))
    assert _coco(out) == coco


def test_resume_refuses_other_settings_and_overwrite_starts_over(reference, image_dir, tmp_path):
    out, _, _ = reference
    with pytest.raises(OutputFolderError, match="points_per_side") as e:
        annotate(image_dir, out, **{**COMMON, "everything": {**EVERY, "points_per_side": 2}})
    assert "--overwrite" in str(e.value)
    single = tmp_path / "one"
    single.mkdir()
    Image.open(image_dir / "scene00.png").save(single / "scene00.png")
    fresh = tmp_path / "fresh"
    annotate(single, fresh, **COMMON)
    s = annotate(single, fresh, **{**COMMON, "everything": {**EVERY, "points_per_side": 2}}, resume=False)
    assert s.done == 1 and s.skipped_before == 0
    m = json.loads((fresh / "manifest.json").read_text())
    assert m["identity"]["settings"]["everything"]["points_per_side"] == 2


def test_out_that_is_not_ours_or_busy_is_refused(image_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(OutputFolderError, match="not the output of"):
        annotate(image_dir, other, **COMMON)
    assert (other / "thesis.tex").read_text() == "precious"
    from filelock import FileLock

    busy = tmp_path / "busy"
    busy.mkdir()
    with FileLock(str(busy / ".lock")), pytest.raises(OutputFolderError, match="another run"):
        annotate(image_dir, busy, **COMMON)
    with pytest.raises(OutputFolderError, match="not found"):
        annotate(tmp_path / "nowhere", tmp_path / "o", **COMMON)


def _records(out: Path) -> int:
    d = out / RECORDS
    return len(list(d.glob("*.json"))) if d.is_dir() else 0


def _kill_midway(cmd: list[str], out: Path, at: int, timeout: float = 300) -> None:
    """Start ``cmd`` in its own process group, wait for ``at`` records, SIGKILL the whole group."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=os.environ.copy()
    )
    t0 = time.monotonic()
    try:
        while _records(out) < at:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                pytest.fail("the run wrote too few records in time")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started (Ray's too)
        proc.wait()
        proc.stderr.close()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sam_widgets", "annotate", *args]


def test_a_run_holds_no_images_masks_in_memory(image_dir, tmp_path, monkeypatch):
    """The run keeps each image's brief, not its masks: with 2 MB of masks per image (24 MB in
    all) the run's Python memory peaks far below the total, and annotations.json is whole."""
    import tracemalloc

    import sam_widgets.annotate as annotate_module

    class BigMasks:  # the Annotator's interface, with a model's worth of masks and no model
        def __init__(self, settings):
            pass

        def annotate(self, key, image, prompts):
            h, w = image.shape[:2]
            seg = {"size": [h, w], "counts": key + "x" * 100_000}
            anns = [{"segmentation": seg, "area": 1, "bbox": [0, 0, 1, 1], "score": 0.5} for _ in range(20)]
            return {"file_name": key, "width": w, "height": h, "status": "done", "annotations": anns}

    monkeypatch.setattr(annotate_module, "Annotator", BigMasks)
    tracemalloc.start()
    try:
        s = annotate(image_dir, tmp_path / "out", **COMMON)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s.done == GOOD and s.annotations == 20 * GOOD  # 24 MB of masks went through
    assert peak < 10 * 2**20, f"the run held {peak / 2**20:.0f} MiB"
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [a["id"] for a in coco["annotations"]] == list(range(1, 20 * GOOD + 1))
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    assert all(a["segmentation"]["counts"].startswith(names[a["image_id"]]) for a in coco["annotations"])


def test_a_killed_local_run_resumes_without_duplicates_or_losses(reference, image_dir, tmp_path):
    _, _, coco = reference
    out = tmp_path / "out"
    args = [str(image_dir), "--out", str(out), "--model", "micro", "--precision", "fp32", "--threads", "1"]
    _kill_midway(_cli(*args, *EVERY_ARGS), out, at=3)
    killed_at = _records(out)
    assert 3 <= killed_at < GOOD + len(BAD), "the kill came after the run had finished"
    r = subprocess.run(_cli(*args, *EVERY_ARGS), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert _records(out) == GOOD + len(BAD)
    _assert_same_annotations(_coco(out), coco)
    # the progress bar (images/s, ETA) on stderr, the summary on stdout
    assert "img/s" in r.stderr and "annotate" in r.stderr
    assert f"already in {out} (resumed)" in r.stdout
    assert "images/s" in r.stdout and "2 images failed and were skipped" in r.stdout
    assert "corrupt.jpg: image: " in r.stdout and "tiny.png: image: ValueError" in r.stdout


class FastAnnotator:
    """The Annotator's interface without a model: one fixed mask per image, at once; ``stop_at``:
    the image at which it raises KeyboardInterrupt (Ctrl-C in the middle of a run)."""

    stop_at: str | None = None

    def __init__(self, settings):
        pass

    def annotate(self, key, image, prompts):
        if key == self.stop_at:
            raise KeyboardInterrupt
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        mask[2:6, 2:6] = True
        seg, area, bbox = formats.segmentation(mask)
        ann = {"segmentation": seg, "area": area, "bbox": bbox, "iscrowd": 0, "category_id": 1, "score": 0.5}
        return {"file_name": key, "width": w, "height": h, "status": "done", "annotations": [ann]}


def _folder(image_dir: Path, dest: Path, *names: str) -> Path:
    dest.mkdir(exist_ok=True)
    for name in names:
        Image.open(image_dir / name).save(dest / Path(name).name)
    return dest


def _ids(out: Path) -> dict[str, int]:
    coco = json.loads((out / "annotations.json").read_text())
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    assert {a["image_id"] for a in coco["annotations"]} <= set(ids.values())
    return ids


def test_image_ids_stay_when_images_are_added_and_the_run_resumed(image_dir, tmp_path, monkeypatch):
    import sam_widgets.annotate as annotate_module

    monkeypatch.setattr(annotate_module, "Annotator", FastAnnotator)
    folder = _folder(image_dir, tmp_path / "images", "scene01.png", "scene03.png")
    out = tmp_path / "out"
    annotate(folder, out, **COMMON)
    assert _ids(out) == {"scene01.png": 1, "scene03.png": 2}
    _folder(image_dir, folder, "scene00.png", "scene02.png")  # sort before and between the others
    s = annotate(folder, out, **COMMON)
    assert s.done == 2 and s.skipped_before == 2
    assert _ids(out) == {"scene00.png": 3, "scene01.png": 1, "scene02.png": 4, "scene03.png": 2}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {i["file_name"]: i["id"] for i in manifest["images"]} == _ids(out)
    # a manifest of the version before ids: its images keep the ids its annotations.json gave them
    for entry in manifest["images"]:
        del entry["id"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    _folder(image_dir, folder, "scene04.png")
    annotate(folder, out, **COMMON)
    assert _ids(out) == {
        "scene00.png": 1,
        "scene01.png": 2,
        "scene02.png": 3,
        "scene03.png": 4,
        "scene04.png": 5,
    }


def test_coco_image_ids_of_the_prompts_or_image_ids_file_are_kept(image_dir, tmp_path, monkeypatch):
    import sam_widgets.annotate as annotate_module

    monkeypatch.setattr(annotate_module, "Annotator", FastAnnotator)
    folder = _folder(image_dir, tmp_path / "images", "scene00.png", "scene01.png", "scene02.png")
    coco_in = {
        "images": [{"id": 10 + i, "file_name": f"scene{i:02d}.png"} for i in range(3)],
        "annotations": [{"image_id": 11, "bbox": [10, 10, 30, 30], "category_id": 1}],
        "categories": [{"id": 1, "name": "shape"}],
    }
    (tmp_path / "dets.json").write_text(json.dumps(coco_in))
    annotate(folder, tmp_path / "out", **COMMON, prompts=tmp_path / "dets.json")
    assert _ids(tmp_path / "out") == {"scene00.png": 10, "scene01.png": 11, "scene02.png": 12}
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [a["image_id"] for a in coco["annotations"]] == [10, 11, 12]  # one mask an image (FastAnnotator)
    # --image-ids alone ("everything"): the ids it gives, new ones for the rest, none shared
    (tmp_path / "instances.json").write_text(
        json.dumps({"images": [{"id": 2, "file_name": "val/scene02.png"}, {"id": "x", "file_name": "a.png"}]})
    )
    annotate(folder, tmp_path / "every", **COMMON, image_ids=tmp_path / "instances.json")
    assert _ids(tmp_path / "every") == {"scene00.png": 3, "scene01.png": 4, "scene02.png": 2}
    # one id for two images, or two ids for one, is an error that names the file
    (tmp_path / "twice.json").write_text(
        json.dumps({"images": [{"id": 7, "file_name": "scene00.png"}, {"id": 7, "file_name": "scene01.png"}]})
    )
    with pytest.raises(PromptFileError, match=r"twice.json: image id 7 is given to 'scene00.png' and to"):
        annotate(folder, tmp_path / "nothing", **COMMON, image_ids=tmp_path / "twice.json")
    assert not (tmp_path / "nothing").exists()
    # the --image-ids file is part of what a resume checks: another one would move detections
    # (a bare list's integer ids) to other images
    again = annotate(folder, tmp_path / "every", **COMMON, image_ids=tmp_path / "instances.json")
    assert again.skipped_before == 3
    (tmp_path / "other.json").write_text(json.dumps({"images": [{"id": 2, "file_name": "scene01.png"}]}))
    with pytest.raises(OutputFolderError, match=r"image_ids: [0-9a-f]{12} -> [0-9a-f]{12}"):
        annotate(folder, tmp_path / "every", **COMMON, image_ids=tmp_path / "other.json")
    # a folder of an earlier version, whose manifest did not record it: resumes
    manifest = tmp_path / "every" / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["identity"]["image_ids"]
    manifest.write_text(json.dumps(data))
    old = annotate(folder, tmp_path / "every", **COMMON, image_ids=tmp_path / "instances.json")
    assert old.skipped_before == 3


def test_output_files_get_the_users_umask(image_dir, tmp_path, monkeypatch):
    import sam_widgets.annotate as annotate_module
    from sam_widgets._io import atomic_write

    monkeypatch.setattr(annotate_module, "Annotator", FastAnnotator)
    folder = _folder(image_dir, tmp_path / "images", "scene00.png")
    old = os.umask(0o022)
    try:
        annotate(folder, tmp_path / "out", **COMMON)
        os.umask(0o027)
        atomic_write(tmp_path / "other.json", b"{}")
    finally:
        os.umask(old)
    files = [tmp_path / "out" / "annotations.json", tmp_path / "out" / "manifest.json"]
    files += list((tmp_path / "out" / RECORDS).glob("*.json"))
    assert len(files) == 3
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o644" for f in files}
    assert oct((tmp_path / "other.json").stat().st_mode & 0o777) == "0o640"
    assert not list((tmp_path / "out").rglob(".tmp-*"))


def test_summary_words_and_rates():
    from sam_widgets.annotate import Summary

    def text(ran, seconds, first_s, **kw):
        return Summary(ran, ran, 0, 0, ran, seconds, "local", Path("out"), first_s=first_s, **kw).format()

    one = text(1, 2.0, 2.0)
    assert one.startswith("annotated 1 of 1 image in 2.0 s (0.50 images/s; local): 1 done, 0 failed")
    assert "1 mask in" in one and "first image" not in one
    three = text(3, 4.0, 2.0)  # two after the first: no rate of its own
    assert "(0.75 images/s; the first image, with the model load, took 2.0 s; local)" in three
    ten = text(10, 11.0, 2.0)
    assert "the first image, with the model load, took 2.0 s, the others 1.00 images/s; local" in ten
    assert "loaded the model" not in ten
    few = Summary(3, 1, 1, 1, 1, 3.0, "local", Path("out"), [("bad.png", "image: broken")], 1, 1.0).format()
    assert "1 image failed and was skipped" in few and "1 prompt skipped" in few
    assert "annotated 2 of 3 images" in few and ", 1 already in out (resumed)" in few
    nothing = Summary(2, 0, 0, 2, 4, 0.0, "local", Path("out")).format()
    assert nothing.startswith("annotated 0 of 2 images (local): 0 done, 0 failed, 2 already in out")
    assert "images/s" not in nothing


def test_files_that_are_not_images_are_counted_in_the_summary(reference):
    _, summary, _ = reference
    assert summary.ignored == ["notes.txt"]
    assert "ignored 1 file in IMAGES whose suffix is not an image type (e.g. notes.txt;" in summary.format()


def test_ctrl_c_says_how_far_the_run_got_and_how_to_resume(image_dir, tmp_path, monkeypatch, capsys):
    import sam_widgets.annotate as annotate_module
    from sam_widgets.cli import main

    class StopsAtScene02(FastAnnotator):
        stop_at = "scene02.png"

    monkeypatch.setattr(annotate_module, "Annotator", StopsAtScene02)
    out = tmp_path / "out"
    args = ["annotate", str(image_dir), "--out", str(out), "--model", "micro", "-q"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"interrupted: 3 of 14 images annotated in {out} so far (3 in this run)" in err
    assert "annotations.json is written when a run finishes: run the same command again to resume" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 2, "failed": 1, "pending": GOOD + len(BAD) - 3}
    assert not (out / "annotations.json").exists() and not list(out.rglob(".tmp-*"))
    monkeypatch.setattr(annotate_module, "Annotator", FastAnnotator)
    assert main(args) == 0
    assert "3 already in" in capsys.readouterr().out


def test_a_settings_mismatch_names_only_what_differs(image_dir, tmp_path, monkeypatch):
    import sam_widgets.annotate as annotate_module

    monkeypatch.setattr(annotate_module, "Annotator", FastAnnotator)
    folder = _folder(image_dir, tmp_path / "images", "scene00.png")
    annotate(folder, tmp_path / "out", **COMMON)
    with pytest.raises(OutputFolderError) as e:
        annotate(folder, tmp_path / "out", **{**COMMON, "everything": {**EVERY, "points_per_side": 2}})
    message = str(e.value)
    assert "(there -> now: everything.points_per_side: 4 -> 2)" in message
    assert "pred_iou_thresh" not in message and "model" not in message
    assert "pass --overwrite to start over" in message
    with pytest.raises(OutputFolderError) as e:
        annotate(folder, tmp_path / "out", **COMMON, format="polygons", min_score=0.5)
    assert "(there -> now: format: 'rle' -> 'polygons')" in str(e.value)


# ----------------------------------------------------------------------------- prompts


def _detections(scenes, keys: dict[int, str]) -> tuple[list[dict], list[tuple[str, tuple]]]:
    from sam_widgets.evaluation import tight_box

    dets, boxes = [], []
    for i, s in enumerate(scenes[:3]):
        for m in s.masks:
            x0, y0, x1, y1 = (float(v) for v in tight_box(m))
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                dets.append(
                    {"image_id": i + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "category_id": 3, "score": 0.9}
                )
                boxes.append((keys[i], (x0, y0, x1, y1)))
    return dets, boxes


def test_box_prompts_reproduce_the_session_masks(scenes, image_dir, tmp_path):
    from sam_widgets.models import load_sam
    from sam_widgets.predictor import CachedPredictor
    from sam_widgets.session import Session

    keys = {i: f"scene{i:02d}.png" for i in range(3)}
    dets, boxes = _detections(scenes, keys)
    dets.append({"image_id": 1, "bbox": [500, 500, 20, 20], "category_id": 3, "score": 0.9})  # outside
    x0, y0, x1, y1 = next(b for k, b in boxes if k == keys[1])
    dets.append(
        {"image_id": 2, "bbox": [x0, y0, 200, y1 - y0], "category_id": 3, "score": 0.9}
    )  # reaches out
    dets.append({"image_id": 3, "bbox": [5, 5, 20, 20], "category_id": 3, "score": 0.1})  # below --min-score
    coco_in = {
        "images": [{"id": i + 1, "file_name": k, "width": 96, "height": 96} for i, k in keys.items()],
        "annotations": dets,
        "categories": [{"id": 3, "name": "shape"}],
    }
    (tmp_path / "dets.json").write_text(json.dumps(coco_in))
    out = tmp_path / "out"
    s = annotate(image_dir, out, **COMMON, prompts=tmp_path / "dets.json", min_score=0.5)
    assert s.skipped_prompts == 1
    coco = _coco(out)
    assert coco["categories"] == [{"id": 3, "name": "shape", "supercategory": "object"}]
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    anns = [a for a in coco["annotations"] if a["image_id"] in {ids[k] for k in keys.values()}]
    assert len(anns) == len(boxes) + 1  # the box reaching out is clipped, not dropped
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = {i["file_name"]: i.get("skipped_prompts") for i in manifest["images"]}
    assert "outside the 96x96 image" in skipped["scene00.png"][0]["reason"]
    # the widget's path: a Session on the same model, one set_box per object
    sam = load_sam("micro", precision="fp32")
    predictor = CachedPredictor(sam)
    by_key: dict[str, list] = {}
    for key, box in boxes:
        by_key.setdefault(key, []).append(box)
    for key, key_boxes in by_key.items():
        session = Session(image_dir / key, predictor)
        for box in key_boxes:
            session.add_object()
            obj = session.set_box(*box)
            (ann,) = [a for a in anns if a["image_id"] == ids[key] and a["prompt"]["box"] == list(box)]
            assert ann["category_id"] == 3 and ann["detector_score"] == 0.9
            np.testing.assert_array_equal(_decode(ann["segmentation"]), obj.mask)
            assert ann["score"] == pytest.approx(obj.score, abs=1e-6)
    clipped = [a for a in coco["annotations"] if a["prompt"]["box"] == [x0, y0, 96.0, y1]]
    assert len(clipped) == 1 and clipped[0]["image_id"] == ids[keys[1]]


def test_detections_list_needs_the_image_ids_or_file_names(scenes, image_dir, tmp_path):
    keys = [f"scene{i:02d}.png" for i in range(3)]
    dets, _ = _detections(scenes, dict(enumerate(keys)))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    _, all_keys = list_images(image_dir)
    with pytest.raises(PromptFileError, match="--image-ids"):
        read_prompts(tmp_path / "dets.json", all_keys)
    (tmp_path / "instances.json").write_text(
        json.dumps({"images": [{"id": i + 1, "file_name": k} for i, k in enumerate(keys)]})
    )
    ps = read_prompts(tmp_path / "dets.json", all_keys, image_ids=tmp_path / "instances.json")
    assert sum(len(v) for v in ps.by_image.values()) == len(dets)
    by_name = [{**d, "image_id": keys[d["image_id"] - 1].replace(".png", ".jpg")} for d in dets]  # by stem
    (tmp_path / "named.json").write_text(json.dumps(by_name))
    assert read_prompts(tmp_path / "named.json", all_keys).by_image.keys() == ps.by_image.keys()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PromptFileError, match="not readable JSON"):
        read_prompts(tmp_path / "bad.json", all_keys)
    (tmp_path / "nobox.json").write_text(json.dumps([{"image_id": "scene00.png", "category_id": 1}]))
    with pytest.raises(PromptFileError, match="neither 'bbox' nor 'points'"):
        read_prompts(tmp_path / "nobox.json", all_keys)


def test_yolo_labels_folder(image_dir, tmp_path):
    labels = tmp_path / "labels"
    (labels / "sub").mkdir(parents=True)
    (labels / "classes.txt").write_text("circle\nsquare\n")
    (labels / "scene00.txt").write_text("1 0.5 0.25 0.5 0.25\n0 0.5 0.5 0.2 0.2 0.3\n")
    (labels / "sub" / "scene10.txt").write_text("0 0.1 0.1 0.3 0.1 0.3 0.3\n")  # a segment
    (labels / "unknown.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    _, keys = list_images(image_dir)
    ps = read_prompts(labels, keys, min_score=0.5)
    assert ps.categories[:2] == [
        {"id": 1, "name": "circle", "supercategory": "object"},
        {"id": 2, "name": "square", "supercategory": "object"},
    ]
    assert ps.unmatched == ["unknown"]
    (p,) = ps.by_image["scene00.png"]  # the 0.3-confidence line is below min_score
    from sam_widgets.annotate.prompts import check_prompt

    checked, _ = check_prompt(p, 96, 96)
    assert checked.box == pytest.approx((24.0, 12.0, 72.0, 36.0)) and checked.category_id == 2
    (seg,) = ps.by_image["sub/scene10.png"]
    assert check_prompt(seg, 100, 100)[0].box == pytest.approx((10.0, 10.0, 30.0, 30.0))
    (labels / "scene01.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(PromptFileError, match=r"scene01.txt:1"):
        read_prompts(labels, keys)


def test_yolo_pixels_and_unknown_classes_and_negative_coco_sizes_are_refused(image_dir, tmp_path):
    _, keys = list_images(image_dir)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("circle\nsquare\n")
    (labels / "scene00.txt").write_text("1 0.5 0.5 0.2 0.2\n0 10 20 100 200\n")  # pixels on line 2
    with pytest.raises(PromptFileError) as e:
        read_prompts(labels, keys)
    assert "scene00.txt:2: '0 10 20 100 200' is not a YOLO label ('class cx cy w h [conf]', " in str(e.value)
    assert "normalised to [0, 1]): 10 is outside [0, 1] (pixels?" in str(e.value)
    (labels / "scene00.txt").write_text("0 0.1 0.1 0.3 0.1 1.5 0.3\n")  # a segment
    with pytest.raises(PromptFileError, match=r"scene00.txt:1: .* 1.5 is outside \[0, 1\]"):
        read_prompts(labels, keys)
    (labels / "scene00.txt").write_text("5 0.5 0.5 0.2 0.2\n")
    with pytest.raises(PromptFileError) as e:
        read_prompts(labels, keys)
    assert f"scene00.txt:1: class 5, but {labels / 'classes.txt'} names 2 classes (0 to 1)" in str(e.value)
    (labels / "classes.txt").unlink()  # data.yaml's names may skip numbers
    (tmp_path / "data.yaml").write_text("names: {0: circle, 5: star}\n")
    ps = read_prompts(labels, keys)
    assert [c["name"] for c in ps.categories] == ["circle", "1", "2", "3", "4", "star"]
    (labels / "scene00.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    with pytest.raises(PromptFileError, match=r"class 3, but .*data.yaml names 2 classes \(0, 5\)"):
        read_prompts(labels, keys)
    dets = [
        {"image_id": "scene00.png", "bbox": [10, 10, 20, 30], "category_id": 1},
        {"image_id": "scene00.png", "bbox": [100, 100, -20, 30], "category_id": 1},
    ]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    with pytest.raises(PromptFileError) as e:
        annotate(image_dir, tmp_path / "out", **COMMON, prompts=tmp_path / "dets.json")
    assert "dets.json, detection 1 is not a detection (bbox [100, 100, -20, 30] has a negative width" in str(
        e.value
    )
    assert "[x, y, width, height] with width, height >= 0" in str(e.value)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_points_prompts_follow_the_session_rule(image_dir, tmp_path):
    dets = [
        {"image_id": "scene00.png", "points": [[40, 40]], "category_id": 1},
        {"image_id": "scene00.png", "points": [[40, 40], [10, 10]], "point_labels": [1, 0], "category_id": 1},
        {"image_id": "scene00.png", "points": [[400, 40]], "category_id": 1},
    ]
    (tmp_path / "points.json").write_text(json.dumps(dets))
    one = tmp_path / "one"
    one.mkdir()
    Image.open(image_dir / "scene00.png").save(one / "scene00.png")
    s = annotate(one, tmp_path / "out", **COMMON, prompts=tmp_path / "points.json")
    assert s.done == 1 and s.skipped_prompts == 1
    anns = _coco(tmp_path / "out")["annotations"]
    assert [a["prompt"]["points"] for a in anns] == [[[40.0, 40.0]], [[40.0, 40.0], [10.0, 10.0]]]


# ----------------------------------------------------------------------------- formats


def test_rle_is_exact_and_polygons_fill_holes_one_per_part():
    m = np.zeros((40, 50), bool)
    m[5:20, 10:30] = True
    m[8:12, 15:20] = False  # a hole
    m[30:35, 40:48] = True  # a second part
    rle, area, bbox = formats.segmentation(m)
    np.testing.assert_array_equal(_decode(rle), m)
    assert area == m.sum() and bbox == [10.0, 5.0, 38.0, 30.0]
    polys, parea, pbbox = formats.segmentation(m, "polygons")
    assert (parea, pbbox) == (area, bbox)  # from the exact mask either way
    assert len(polys) == 2 and all(len(p) % 2 == 0 and len(p) >= 6 for p in polys)
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        back = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, 40, 50))).astype(bool)
    filled = m.copy()
    filled[8:12, 15:20] = True
    np.testing.assert_array_equal(back, filled)
    assert formats.mask_to_polygons(np.zeros((5, 5))) == []
    with pytest.raises(ValueError, match="2-D"):
        formats.mask_to_rle(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="rle, polygons"):
        formats.segmentation(m, "png")


def test_polygon_output_through_the_cli(image_dir, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    Image.open(image_dir / "scene01.png").save(one / "scene01.png")
    out = tmp_path / "out"
    from sam_widgets.cli import main

    assert (
        main(
            [
                "annotate",
                str(one),
                "--out",
                str(out),
                "--model",
                "micro",
                "--format",
                "polygons",
                "-q",
                *EVERY_ARGS,
            ]
        )
        == 0
    )
    anns = _coco(out)["annotations"]
    assert anns and all(isinstance(a["segmentation"], list) for a in anns)


# ----------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray runtime (2 CPUs) for the Ray tests of this module; its GCS address.

    Runs started inside the test process use it (``connect`` leaves a runtime it did not start
    alone); the CLI runs in subprocesses join it with ``--ray ADDRESS``, as on a real cluster.
    """
    if not HAS_RAY:
        pytest.skip("Ray is not installed: pip install 'sam-widgets[ray]' (CI installs it)")
    import ray

    from sam_widgets.annotate import ray_runner

    failed = None
    try:
        if os.environ.get("RAY_ADDRESS"):  # a runtime started beforehand (`ray start --head --num-cpus 2`)
            ray.init(address=os.environ["RAY_ADDRESS"], include_dashboard=False, log_to_driver=False)
        else:
            ray_runner.start_local(num_cpus=2, attempts=2)  # a skip costs ~2 min on a saturated machine
    except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception when its node cannot start
        failed = str(e)
    if failed is not None:
        # The failed node's process handles are freed here, not at the end of the session, where
        # pytest would report their ResourceWarnings as errors (the processes are dying anyway).
        _collect_quietly()
        pytest.skip(
            f"Ray's local runtime could not start on this machine ({failed}); see ray-project/ray#65983"
        )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        _collect_quietly()


def _collect_quietly() -> None:
    import gc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@ray_test
def test_ray_run_gives_the_local_annotations(reference, image_dir, tmp_path, ray_cluster):
    _, _, coco = reference
    out = tmp_path / "out"
    s = annotate(image_dir, out, **COMMON, ray="local")
    assert s.runner == "Ray, 2 workers x 1 CPU"
    assert (s.done, s.failed) == (GOOD, len(BAD))
    _assert_same_annotations(_coco(out), coco)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ray"]["workers"] == 2 and manifest["counts"]["failed"] == len(BAD)
    import ray

    assert ray.is_initialized()  # a runtime it did not start is left running


@ray_test
def test_a_killed_ray_run_resumes_without_duplicates_or_losses(reference, image_dir, tmp_path, ray_cluster):
    _, _, coco = reference
    out = tmp_path / "out"
    args = [str(image_dir), "--out", str(out), "--model", "micro", "--precision", "fp32", *EVERY_ARGS]
    ray_args = ["--ray", ray_cluster, "--threads", "1"]
    _kill_midway(_cli(*args, *ray_args), out, at=3)
    assert 3 <= _records(out) < GOOD + len(BAD), "the kill came after the run had finished"
    r = subprocess.run(_cli(*args, *ray_args), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _records(out) == GOOD + len(BAD)
    _assert_same_annotations(_coco(out), coco)
    assert "Ray, 2 workers" in r.stdout and "(resumed)" in r.stdout


@ray_test
def test_bench_ray_merges_per_image_iou_into_the_same_tables(tmp_path, capsys, ray_cluster):
    from sam_widgets.cli import main

    common = ["bench", "--models", "micro", "--no-timing", "--samples", "3", "--precision", "fp32"]
    assert main([*common, "--json", str(tmp_path / "local.json")]) == 0
    assert main([*common, "--ray", ray_cluster, "--json", str(tmp_path / "ray.json")]) == 0
    local = json.loads((tmp_path / "local.json").read_text())["results"][0]["iou"]
    on_ray = json.loads((tmp_path / "ray.json").read_text())
    iou = on_ray["results"][0]["iou"]
    assert on_ray["settings"]["ray"]["workers"] == 2
    assert iou["objects"] == local["objects"] > 0 and iou["status"] == "measured"
    assert [(o["sample"], o["object"]) for o in iou["per_object"]] == [
        (o["sample"], o["object"]) for o in local["per_object"]
    ]
    for k, v in local["miou"].items():
        assert iou["miou"][k] == pytest.approx(v, abs=0.02)
    assert "IoU on synthetic" in capsys.readouterr().out


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory, scenes):
    """Four of the scenes as a COCO dataset on disk (PNG images, compressed RLE masks)."""
    from pycocotools import mask as mask_utils

    root = tmp_path_factory.mktemp("coco")
    (root / "images").mkdir()
    images, anns = [], []
    for i, s in enumerate(scenes[:4]):
        Image.fromarray(s.image).save(root / "images" / f"s{i}.png")
        h, w = s.image.shape[:2]
        images.append({"id": i + 1, "file_name": f"s{i}.png", "height": h, "width": w})
        for m in s.masks:
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            seg = {"size": [h, w], "counts": rle["counts"].decode()}
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "segmentation": seg}
            )
    ann = root / "instances.json"
    ann.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "shape"}]})
    )
    return f"coco:{ann}:{root / 'images'}"


@needs_ray
@ray_warnings[0]
@ray_warnings[1]
@ray_warnings[2]
def test_bench_ray_noc_equals_local_and_streams_the_images(
    tmp_path, capsys, ray_cluster, coco_set, monkeypatch
):
    """bench --ray --noc: the same NoC, per object and summarised, as the local run, with the
    images loaded by the actors only: in this process, loading a sample or the set fails."""
    import torch

    from sam_widgets import datasets
    from sam_widgets.cli import main

    common = ["bench", "--models", "micro", "--no-timing", "--precision", "fp32", "--dataset", coco_set]
    common += ["--samples", "4", "--noc", "--max-clicks", "4"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the actors' arithmetic (1 CPU each): equal results, not just close
    try:
        assert main([*common, "--json", str(tmp_path / "local.json")]) == 0
    finally:
        torch.set_num_threads(threads)

    def refuse(*a, **k):
        raise AssertionError("bench --ray loaded images in the driver")

    monkeypatch.setattr(datasets.SampleRef, "load", refuse)
    monkeypatch.setattr(datasets, "load_coco", refuse)
    monkeypatch.setattr(datasets, "load", refuse)
    assert main([*common, "--ray", ray_cluster, "--json", str(tmp_path / "ray.json")]) == 0
    printed = capsys.readouterr().out
    assert "NoC@85" in printed and "a failure counts 4" in printed
    local = json.loads((tmp_path / "local.json").read_text())
    on_ray = json.loads((tmp_path / "ray.json").read_text())
    assert on_ray["dataset"] == local["dataset"] and on_ray["dataset"]["samples"] == 4
    assert on_ray["settings"]["noc"] is True and on_ray["settings"]["max_clicks"] == 4
    li, ri = local["results"][0]["iou"], on_ray["results"][0]["iou"]
    key = ("sample", "object", "noc_85", "noc_90", "iou_1_click", "iou_4_clicks")
    assert [tuple(o[k] for k in key) for o in ri["per_object"]] == [
        tuple(o[k] for k in key) for o in li["per_object"]
    ]
    assert ri["noc"]["objects"] == li["noc"]["objects"] > 0
    assert ri["noc"]["noc"] == li["noc"]["noc"] and ri["noc"]["failed"] == li["noc"]["failed"]
    assert ri["noc"]["miou_at"] == li["noc"]["miou_at"]


def test_the_ray_actors_work_as_the_local_runner_without_a_runtime(reference, image_dir, scenes):
    """The callable classes Ray Data runs, called directly on batches as Ray passes them (numpy
    columns): the same records as the local runner, bad images recorded. Runs where Ray cannot."""
    from sam_widgets.annotate.ray_runner import _AnnotateActor, _IoUActor
    from sam_widgets.annotate.worker import Settings

    out, _, _ = reference
    settings = Settings(model="micro", precision="fp32", threads=1, everything={**EVERY})
    actor = _AnnotateActor(settings.as_dict(), str(image_dir))
    keys = ["corrupt.jpg", "scene03.png", "sub/scene10.png"]
    batch = {"key": np.array(keys, dtype=object), "prompts": np.array(["", "", ""], dtype=object)}
    records = [json.loads(r) for r in actor(batch)["record"]]
    from sam_widgets.annotate.output import record_name

    for key, rec in zip(keys, records, strict=True):
        local = json.loads((out / RECORDS / record_name(key)).read_text())
        assert rec["status"] == local["status"] and rec.get("reason") == local.get("reason")
        assert [a["segmentation"] for a in rec["annotations"]] == [
            a["segmentation"] for a in local["annotations"]
        ]
    # bench --ray's actor: one image's IoU records, as evaluate_samples gives them locally
    import pickle

    from sam_widgets.evaluation import evaluate_samples
    from sam_widgets.models import load_sam
    from sam_widgets.predictor import CachedPredictor

    iou = _IoUActor("micro", "pretrained", "cpu", "fp32", 1, 3, 100, noc=True)
    got = json.loads(
        iou({"index": np.array([0]), "sample": np.array([pickle.dumps(scenes[0])], dtype=object)})["result"][
            0
        ]
    )
    want, _ = evaluate_samples(
        CachedPredictor(load_sam("micro", precision="fp32")), [scenes[0]], progress=False
    )
    assert [r["iou_box"] for r in got["records"]] == pytest.approx([r["iou_box"] for r in want], abs=1e-4)
    assert got["device"] == "cpu" and len(got["encoder_ms"]) == 1
    assert got["records"][0]["noc_85"] in range(1, 4) and got["name"] == scenes[0].name
    # a sample named by reference is loaded by the actor; one that cannot be is an error record
    from sam_widgets.datasets import SampleRef

    refs = [
        SampleRef("heldout-500000", "synthetic", index=0),
        SampleRef("gone.png", "coco", path=str(image_dir / "gone.png"), height=9, width=9, annotations="[]"),
    ]
    batch = {"index": np.array([0, 1]), "sample": np.array([pickle.dumps(r) for r in refs], dtype=object)}
    ok, bad = (json.loads(r) for r in iou(batch)["result"])
    assert ok["name"] == "heldout-500000" and ok["masks"] > 0 and ok["records"]
    assert bad["error"].startswith("DatasetFileNotFoundError") and "gone.png" in bad["error"]


def test_ray_missing_is_a_clear_error(monkeypatch, image_dir, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **k)

    from sam_widgets.annotate.ray_runner import RayMissingError

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RayMissingError, match=r"pip install 'sam-widgets\[ray\]'"):
        annotate(image_dir, tmp_path / "out", **COMMON, ray="local")


def test_auto_model_is_resolved_by_load_sams_rule_before_the_run():
    from sam_widgets.annotate import _resolve_model

    assert _resolve_model("auto", None) == "micro"  # offline, nothing cached (the tests' cache)
    assert _resolve_model("vit_h", "10.0.0.1:6379") == "vit_h"


def test_auto_model_on_a_cluster_must_be_named(image_dir, tmp_path):
    with pytest.raises(OutputFolderError, match="name the model"):
        annotate(image_dir, tmp_path / "out", model="auto", ray="10.0.0.1:6379", progress=False)
