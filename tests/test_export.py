"""Session.export: every format read back by its own reader or checked against its spec.

COCO (RLE and polygons) through pycocotools, YOLO labels re-read and rasterised, labelme JSON read
by the rules of labelme's own ``LabelFile.load`` (labelme itself pulls PyQt5 and onnxruntime: too
heavy to install for a test), cut-outs' alpha against the mask; the class field; the folder rules.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sam_widgets import export as export_module
from sam_widgets.session import (
    EXPORT_FORMATS,
    ExportError,
    ExportFolderError,
    LabelError,
    MissingMaskError,
    Session,
    default_category,
)

H, W = 90, 120


class NoModel:
    """Export needs no model: objects come from ``add_mask``."""

    def set_image(self, *a, **k):  # pragma: no cover - never called
        raise AssertionError("no model run expected")

    predict = set_image


def disc(cx: float, cy: float, r: float, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def rect(x0: int, y0: int, x1: int, y1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


RING = disc(90, 60, 20) & ~disc(90, 60, 8)  # a hole: filled by polygon formats (documented)
TWO_PARTS = rect(5, 70, 20, 85) | rect(30, 70, 45, 85)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def session() -> Session:
    """Two array images: 'first' with cat 1, cat 2 (a ring), a two-part 'dog'; 'second' one box."""
    s = Session([rgb(0), rgb(1, 80, W)], NoModel(), names=["first", "second"])
    s.add_mask(disc(30, 30, 15), label="cat 1")
    s.add_mask(RING, label="cat 2")
    s.add_mask(TWO_PARTS, label="rex")
    s.set_category("rex", "dog")
    s.go(1)
    s.add_mask(rect(10, 10, 60, 50, 80, W), label="object 1")
    s.go(0)
    return s


def expected(session: Session) -> list[tuple[str, str, str, np.ndarray]]:
    """(image, label, class, mask) of every object, in export order."""
    return [
        (name, o.label, o.category_name, o.mask)
        for i, name in enumerate(session.names)
        for o in session.objects_on(i)
    ]


def read(path: Path) -> tuple[str, np.ndarray]:
    """(PIL mode, pixels) of an image file, the file closed."""
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


def listing(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def load_coco(path: Path) -> COCO:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return COCO(str(path))


def coco_masks(coco: COCO) -> dict[tuple[str, str], np.ndarray]:
    out = {}
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann["image_id"])[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            out[(Path(image["file_name"]).stem, ann["label"])] = coco.annToMask(ann).astype(bool)
    return out


def fill(polys: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """Union of polygons (Nx2 pixel coordinates, a pixel's corners at integers) rasterised by
    pycocotools (COCO's polygon rule), independent of the exporter."""
    if not polys:
        return np.zeros((h, w), bool)
    rles = mask_utils.frPyObjects([np.asarray(p, float).reshape(-1).tolist() for p in polys], h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


# ---------------------------------------------------------------------- COCO


def test_coco_rle_is_exact_and_points_at_written_images(session, tmp_path):
    out = session.export(tmp_path / "coco", format="coco")
    coco = load_coco(out / "annotations.json")
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"cat", "dog", "object"}
    masks = coco_masks(coco)
    for name, label, cls, mask in expected(session):
        assert np.array_equal(masks[(name, label)], mask)  # RLE: every pixel
        ann = next(
            a
            for a in coco.dataset["annotations"]
            if a["label"] == label
            and a["image_id"] == coco.dataset["images"][session.names.index(name)]["id"]
        )
        assert coco.loadCats(ann["category_id"])[0]["name"] == cls
    for i, image in enumerate(coco.dataset["images"]):
        assert image["file_name"] == f"images/{session.names[i]}.png"
        pixels = read(out / image["file_name"])[1]
        session.go(i)
        assert np.array_equal(pixels, session.image)
        assert (image["width"], image["height"]) == (session.width, session.height)


def test_coco_polygons_rasterise_back_to_the_masks(session, tmp_path):
    from scipy import ndimage

    out = session.export(tmp_path / "poly", format="coco-polygons")
    coco = load_coco(out / "annotations.json")
    masks = coco_masks(coco)
    for a in coco.dataset["annotations"]:
        assert isinstance(a["segmentation"], list) and all(len(p) >= 6 for p in a["segmentation"])
    for name, label, _, mask in expected(session):
        filled = ndimage.binary_fill_holes(mask)  # holes are filled: COCO polygons have none
        assert iou(masks[(name, label)], filled) >= 0.9, label
    dog = next(a for a in coco.dataset["annotations"] if a["label"] == "rex")
    assert len(dog["segmentation"]) == 2  # one polygon per part
    ring = next(a for a in coco.dataset["annotations"] if a["label"] == "cat 2")
    assert ring["area"] == int(RING.sum())  # area from the exact mask, hole excluded


# ---------------------------------------------------------------------- YOLO


def test_yolo_labels_reread_and_rasterised(session, tmp_path):
    from scipy import ndimage

    out = session.export(tmp_path / "yolo", format="yolo")
    data = yaml.safe_load((out / "data.yaml").read_text())
    names = data["names"]
    assert names == {0: "cat", 1: "dog", 2: "object"} and data["nc"] == 3
    assert (out / data["train"]).is_dir()
    for i, name in enumerate(session.names):
        session.go(i)
        image = out / "images" / f"{name}.png"
        assert np.array_equal(read(image)[1], session.image)
        per_class: dict[int, list[np.ndarray]] = {}
        for line in (out / "labels" / f"{name}.txt").read_text().splitlines():
            cls, *coords = line.split()
            xy = np.array(coords, dtype=float).reshape(-1, 2)
            assert len(xy) >= 3 and (xy >= 0).all() and (xy <= 1).all()
            per_class.setdefault(int(cls), []).append(xy * [session.width, session.height])
        for c, cls_name in names.items():
            want = np.zeros((session.height, session.width), bool)
            for o in session.objects:
                if o.category_name == cls_name:
                    want |= ndimage.binary_fill_holes(o.mask)
            got = fill(per_class.get(c, []), session.height, session.width)
            assert (not want.any() and not got.any()) or iou(got, want) >= 0.9, (name, cls_name)


# ---------------------------------------------------------------------- labelme


def read_labelme(path: Path) -> dict:
    """labelme's ``LabelFile.load`` rules (labelme/_label_file.py), applied without Qt."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("version", "imageData", "imagePath", "shapes", "flags", "imageHeight", "imageWidth"):
        assert key in data, key
    assert data["imageData"] is None  # then labelme reads imagePath relative to the JSON
    with Image.open(path.parent / data["imagePath"]) as image:
        assert image.size == (data["imageWidth"], data["imageHeight"])
    for s in data["shapes"]:
        assert isinstance(s["label"], str) and s["shape_type"] == "polygon"
        assert s["points"] and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)
            for p in s["points"]
        )
        assert isinstance(s["flags"], dict) and isinstance(s["description"], str)
        assert s["group_id"] is None or isinstance(s["group_id"], int)
        assert s["mask"] is None
    return data


def test_labelme_json_reread(session, tmp_path):
    from scipy import ndimage

    out = session.export(tmp_path / "lm", format="labelme")
    for i, name in enumerate(session.names):
        session.go(i)
        data = read_labelme(out / f"{name}.json")
        assert data["imagePath"] == f"{name}.png"
        by_object: dict[int, list] = {}
        for s in data["shapes"]:
            by_object.setdefault(s["group_id"], []).append(s)
        assert len(by_object) == len(session.objects)
        for o in session.objects:
            shapes = next(v for v in by_object.values() if v[0]["description"] == o.label)
            assert {s["label"] for s in shapes} == {o.category_name}
            got = fill([np.array(s["points"]) for s in shapes], session.height, session.width)
            assert iou(got, ndimage.binary_fill_holes(o.mask)) >= 0.9, o.label


# ---------------------------------------------------------------------- cut-outs


def test_cutouts_alpha_equals_the_mask(session, tmp_path):
    out = session.export(tmp_path / "cut", format="cutouts")
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == sorted(["first__cat_1.png", "first__cat_2.png", "first__rex.png", "second__object_1.png"])
    for i, name in enumerate(session.names):
        session.go(i)
        for o in session.objects:
            mode, rgba = read(out / f"{name}__{o.label.replace(' ', '_')}.png")
            assert mode == "RGBA"
            ys, xs = np.nonzero(o.mask)
            box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            assert np.array_equal(rgba[..., 3] == 255, o.mask[box])
            assert set(np.unique(rgba[..., 3])) <= {0, 255}
            inside = o.mask[box]
            assert np.array_equal(rgba[..., :3][inside], session.image[box][inside])


# ---------------------------------------------------------------------- images from files


def test_image_files_are_copied_byte_for_byte(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(rgb(3)).save(path, quality=90)
    s = Session([path], NoModel())
    s.add_mask(disc(40, 40, 10), label="coin 1")
    out = s.export(tmp_path / "out", format="coco")
    coco = json.loads((out / "annotations.json").read_text())
    assert coco["images"][0]["file_name"] == "images/photo.jpg"
    assert (out / "images" / "photo.jpg").read_bytes() == path.read_bytes()
    assert coco["categories"][0]["name"] == "coin"


def test_exif_rotated_file_is_written_as_the_pixels_the_masks_belong_to(tmp_path):
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    Image.fromarray(rgb(4, 60, 100)).save(path, exif=exif, quality=95)
    s = Session([path], NoModel())
    assert (s.width, s.height) == (60, 100)
    s.add_mask(rect(5, 5, 30, 50, 100, 60), label="thing")
    out = s.export(tmp_path / "out", format="yolo")
    written = read(out / "images" / "turned.png")[1]
    assert np.array_equal(written, s.image)


# ---------------------------------------------------------------------- classes


def test_default_class_rule():
    assert default_category("cat 2") == "cat"
    assert default_category("cat_12") == "cat"
    assert default_category("traffic light-3") == "traffic light"
    assert default_category("object 1") == "object"
    assert default_category("R2D2") == "R2D2"
    assert default_category("7") == "7"
    assert default_category("dog") == "dog"


def test_class_field_round_trips_through_save_and_load(session, tmp_path):
    assert session.object("cat 1").category is None and session.object("cat 1").category_name == "cat"
    assert session.object("rex").category == "dog"
    session.set_category("cat 2", "  lion ")
    assert session.object("cat 2").category_name == "lion"
    session.save(tmp_path / "work")
    saved = json.loads((tmp_path / "work" / "annotations.json").read_text())
    assert {c["name"] for c in saved["categories"]} == {"cat", "lion", "dog", "object"}
    fresh = Session([rgb(0), rgb(1, 80, W)], NoModel(), names=["first", "second"])
    fresh.load(tmp_path / "work")
    assert [(o.label, o.category) for o in fresh.objects] == [
        ("cat 1", None),
        ("cat 2", "lion"),
        ("rex", "dog"),
    ]
    assert fresh.annotations[0]["objects"][2]["category"] == "dog"


def test_set_category_is_an_undo_step_and_checked(session):
    session.set_category("cat 1", "tiger")
    assert session.object("cat 1").category == "tiger"
    session.undo()
    assert session.object("cat 1").category is None
    session.redo()
    session.set_category("cat 1", None)  # back to the rule
    assert session.object("cat 1").category_name == "cat"
    with pytest.raises(LabelError, match="non-empty string"):
        session.set_category("cat 1", " ")
    with pytest.raises(LabelError, match="known labels"):
        session.set_category("nobody", "x")
    events = []
    session.on_change(events.append)
    session.set_category("cat 1", "puma")
    assert "objects" in events  # a view showing classes redraws its list


def test_folders_saved_before_classes_load(session, tmp_path):
    session.save(tmp_path / "old")
    path = tmp_path / "old" / "annotations.json"
    data = json.loads(path.read_text())
    for image in data["sam_widgets"]["images"]:
        for o in image["objects"]:
            del o["category"]
    path.write_text(json.dumps(data))
    fresh = Session([rgb(0), rgb(1, 80, W)], NoModel(), names=["first", "second"])
    fresh.load(tmp_path / "old")
    assert [o.category for o in fresh.objects] == [None, None, None]


# ---------------------------------------------------------------------- bad input, folder rules


def test_unknown_format_lists_the_valid_ones_and_writes_nothing(session, tmp_path):
    with pytest.raises(ExportError, match="use one of: coco, coco-polygons, yolo, labelme, cutouts"):
        session.export(tmp_path / "x", format="voc")
    assert not (tmp_path / "x").exists()
    assert EXPORT_FORMATS == ("coco", "coco-polygons", "yolo", "labelme", "cutouts")


def test_object_without_mask_is_named_and_nothing_written(session, tmp_path):
    session.add_object("empty one")
    with pytest.raises(MissingMaskError, match="'empty one' on image 'first'.*skip_unmasked=True"):
        session.export(tmp_path / "x", format="yolo")
    assert not (tmp_path / "x").exists()
    out = session.export(tmp_path / "x", format="coco", skip_unmasked=True)
    labels = {a["label"] for a in json.loads((out / "annotations.json").read_text())["annotations"]}
    assert "empty one" not in labels and len(labels) == 4


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_folder_with_a_users_files_is_refused(session, tmp_path, fmt):
    folder = tmp_path / "mine"
    (folder / "images").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "images" / "first.png").write_bytes(b"my own picture")
    before = listing(folder)
    with pytest.raises(ExportFolderError, match="notes.txt.*overwrite=True"):
        session.export(folder, format=fmt)
    assert listing(folder) == before
    # overwrite=True adds the export beside them; no file of the user's is replaced.
    session.export(folder, format=fmt, overwrite=True)
    after = listing(folder)
    assert {k: after[k] for k in before} == before
    if fmt in ("coco", "yolo"):
        assert "images/first-2.png" in after


def test_users_file_with_a_fixed_name_is_never_replaced(session, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "data.yaml").write_text("mine: true\n")
    with pytest.raises(ExportFolderError, match="data.yaml"):
        session.export(folder, format="yolo", overwrite=True)
    assert listing(folder) == {"data.yaml": b"mine: true\n"}


def test_export_again_replaces_its_own_files_only(session, tmp_path):
    folder = tmp_path / "out"
    session.export(folder, format="yolo")
    session.delete("cat 2")
    session.export(folder, format="yolo")  # our own files: no overwrite needed
    assert "images/first-2.png" not in listing(folder)
    session.export(folder, format="cutouts")  # another format: the yolo files go
    names = set(listing(folder))
    assert names == {
        "first__cat_1.png",
        "first__rex.png",
        "second__object_1.png",
        export_module.MANIFEST,
    }
    assert not (folder / "images").exists() and not (folder / "labels").exists()
    (folder / "first__rex.png").write_bytes(b"edited by the user")
    with pytest.raises(ExportFolderError, match="first__rex.png"):
        session.export(folder, format="cutouts")


def test_a_failing_write_leaves_nothing(session, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    calls = []

    def broken(array):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(array)

    real = export_module._png
    monkeypatch.setattr(export_module, "_png", broken)
    with pytest.raises(ExportFolderError, match="No space left.*nothing in the folder changed"):
        session.export(folder, format="cutouts")
    assert list(folder.iterdir()) == []
    calls.clear()
    with pytest.raises(ExportFolderError, match="No space left"):
        session.export(tmp_path / "new", format="cutouts")
    assert not (tmp_path / "new").exists()  # a folder it made for a failed export is gone


def test_files_get_the_users_umask(session, tmp_path):
    old = os.umask(0o027)
    try:
        out = session.export(tmp_path / "out", format="coco")
    finally:
        os.umask(old)
    for p in [out / "annotations.json", out / "images" / "first.png", out / export_module.MANIFEST]:
        assert p.stat().st_mode & 0o777 == 0o640, p
    assert (out / "images").stat().st_mode & 0o777 == 0o750


def test_widget_export_delegates_to_the_session(tmp_path):
    from sam_widgets.widget import SegmentWidget

    w = SegmentWidget(rgb(0), NoModel(), background=False)
    w.session.add_mask(disc(30, 30, 15), label="cat 1")
    out = w.export(tmp_path / "w", format="yolo")
    assert (out / "labels" / "image_0.txt").read_text().startswith("0 ")
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "cat"}
    with pytest.raises(ExportError, match="use one of"):
        w.export(tmp_path / "v", format="VOC")
