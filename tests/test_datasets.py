"""Evaluation data: held-out scenes, scikit-image samples, and the COCO loader on a tiny dataset."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from sam_widgets import datasets
from sam_widgets.datasets import DatasetError, DatasetFileNotFoundError, Sample
from sam_widgets.micro.data import heldout_set


def test_synthetic_is_the_heldout_set():
    samples = datasets.synthetic(2)
    ref = heldout_set(2)
    assert [s.name for s in samples] == ["heldout-500000", "heldout-500001"]
    for s, (image, masks) in zip(samples, ref, strict=True):
        assert np.array_equal(s.image, image) and np.array_equal(s.masks, masks)
        assert s.image.dtype == np.uint8 and s.masks.dtype == bool and len(s.labels) == len(s.masks)


def test_sample_checks_its_shapes():
    img = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="NxHxW"):
        Sample("x", img, np.zeros((1, 5, 4), bool), ("a",))
    with pytest.raises(ValueError, match="labels"):
        Sample("x", img, np.zeros((2, 4, 5), bool), ("a",))


def test_skimage_samples_are_deterministic_and_reasonable():
    a, b = datasets.skimage_samples(), datasets.skimage_samples()
    assert [s.name for s in a] == list(datasets.SKIMAGE_SAMPLES)
    for s, t in zip(a, b, strict=True):
        assert np.array_equal(s.image, t.image) and np.array_equal(s.masks, t.masks)
        assert s.image.dtype == np.uint8 and s.image.shape[2] == 3 and s.masks.shape[1:] == s.image.shape[:2]
        areas = s.masks.reshape(len(s.masks), -1).sum(1)
        assert len(s.masks) >= 1 and areas.min() >= 400  # no specks
        assert areas.max() < 0.5 * s.masks[0].size  # no background taken for an object
        # objects are separate: no pixel belongs to two of them
        assert s.masks.sum(0).max() == 1
    by_name = {s.name: s for s in a}
    assert 20 <= len(by_name["coins"].masks) <= 26 and set(by_name["coins"].labels) == {"coin"}
    assert len(by_name["hubble_deep_field"].masks) >= 5
    with pytest.raises(ValueError, match="unknown"):
        datasets.skimage_samples(["lena"])


# ----------------------------------------------------------------------------- COCO


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.T.ravel().astype(np.int8)  # column-major, runs start with zeros
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


@pytest.fixture
def coco(tmp_path):
    """Two images: a polygon on a.png; compressed RLE, uncompressed RLE and a crowd on b.png."""
    h, w = 12, 16
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "empty.png"):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_dir / name)
    disc = np.hypot(*np.mgrid[0:h, 0:w] - np.array([6, 5])[:, None, None]) < 4
    ring = np.zeros((h, w), bool)
    ring[1:5, 10:15] = True
    ring[2:4, 11:14] = False
    ann = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": h, "width": w},
            {"id": 2, "file_name": "b.png", "height": h, "width": w},
            {"id": 3, "file_name": "empty.png", "height": h, "width": w},  # no objects: skipped
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 7,
                "iscrowd": 0,
                "segmentation": [[2, 3, 10, 3, 10, 8, 2, 8]],
            },
            {"id": 11, "image_id": 2, "category_id": 8, "iscrowd": 0, "segmentation": _rle(disc)},
            {
                "id": 12,
                "image_id": 2,
                "category_id": 7,
                "iscrowd": 0,
                "segmentation": _uncompressed_rle(ring),
            },
            {"id": 13, "image_id": 2, "category_id": 7, "iscrowd": 1, "segmentation": _rle(~disc)},
        ],
        "categories": [{"id": 7, "name": "box"}, {"id": 8, "name": "disc"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(ann))
    return path, img_dir, {"disc": disc, "ring": ring}


def test_coco_polygons_rle_and_crowds(coco):
    path, img_dir, truth = coco
    samples = datasets.load_coco(path, img_dir, progress=False)
    assert [s.name for s in samples] == ["a.png", "b.png"]
    a, b = samples
    rect = np.zeros((12, 16), bool)
    rect[3:8, 2:10] = True
    assert a.labels == ("box",) and np.array_equal(a.masks[0], rect)
    assert np.array_equal(a.image, np.asarray(Image.open(img_dir / "a.png")))
    # the crowd annotation is skipped; the RLE masks come back exactly
    assert b.labels == ("disc", "box") and len(b.masks) == 2
    assert np.array_equal(b.masks[0], truth["disc"]) and np.array_equal(b.masks[1], truth["ring"])
    assert len(datasets.load_coco(path, img_dir, limit=1, progress=False)) == 1
    # by name, as the bench command line takes it
    assert [s.name for s in datasets.load(f"coco:{path}:{img_dir}", progress=False)] == ["a.png", "b.png"]


def test_coco_missing_image_says_where_it_looked(coco):
    path, img_dir, _ = coco
    (img_dir / "b.png").unlink()
    with pytest.raises(DatasetFileNotFoundError, match=r"'b.png' \(id 2\).*image_dir"):
        datasets.load_coco(path, img_dir, progress=False)
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for generic handlers
        datasets.load_coco(path, img_dir, progress=False)


def test_coco_bad_files(coco, tmp_path):
    path, img_dir, _ = coco
    with pytest.raises(DatasetFileNotFoundError, match="annotation file"):
        datasets.load_coco(tmp_path / "nope.json", img_dir, progress=False)
    with pytest.raises(DatasetFileNotFoundError, match="image folder"):
        datasets.load_coco(path, tmp_path / "nope", progress=False)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DatasetError, match="not valid JSON"):
        datasets.load_coco(bad, img_dir, progress=False)
    bad.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not COCO"):
        datasets.load_coco(bad, img_dir, progress=False)
    # annotations of other (or resized) images
    ann = json.loads(path.read_text())
    ann["images"][0]["width"] = 32
    bad.write_text(json.dumps(ann))
    with pytest.raises(DatasetError, match="16x12 pixels but .* says 32x12"):
        datasets.load_coco(bad, img_dir, progress=False)


def test_load_by_name():
    assert [s.name for s in datasets.load("synthetic", limit=2)] == ["heldout-500000", "heldout-500001"]
    assert len(datasets.load("skimage", limit=1)) == 1
    with pytest.raises(DatasetError, match="coco:<annotation.json>:<image_dir>"):
        datasets.load("coco:only.json")
    with pytest.raises(DatasetError, match="unknown dataset"):
        datasets.load("imagenet")


def test_refs_name_the_samples_load_gives_without_loading_them(coco):
    """datasets.refs: small picklable references that load to the same samples as load()."""
    import pickle

    path, img_dir, _ = coco
    for spec, limit in (("synthetic", 2), ("skimage", 1), (f"coco:{path}:{img_dir}", None)):
        refs = datasets.refs(spec, limit=limit)
        loaded = [s for s in (r.load() for r in refs) if s is not None]
        want = datasets.load(spec, limit=limit, progress=False)
        assert [s.name for s in loaded] == [s.name for s in want]
        for a, b in zip(loaded, want, strict=True):
            assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
            assert a.labels == b.labels
        assert all(len(pickle.dumps(r)) < 4096 for r in refs)  # names, not pixels
    with pytest.raises(datasets.DatasetFileNotFoundError):
        datasets.refs(f"coco:{path}:{img_dir / 'nope'}")
    with pytest.raises(datasets.DatasetError, match="unknown dataset"):
        datasets.refs("imagenet")
