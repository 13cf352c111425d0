"""Batch "everything" and the widget's Everything share their settings and their memory bound;
a model that cannot load stops `annotate` before its output folder exists."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sam_widgets.annotate import annotate
from sam_widgets.annotate.worker import Settings, everything_defaults
from sam_widgets.session import (
    EVERYTHING_BATCH_BYTES,
    MICRO_PROPOSE_DEFAULTS,
    PROPOSE_DEFAULTS,
    Session,
    points_per_batch,
)

QUIET = {"precision": "fp32", "threads": 1, "progress": False}


@pytest.fixture(scope="module")
def scene():
    from sam_widgets.micro.data import make_scene

    return make_scene(3, 256)[0]


def test_everything_defaults_are_the_widgets_for_the_model():
    assert Settings(model="micro").everything == {**MICRO_PROPOSE_DEFAULTS, "points_per_batch": 64}
    assert Settings(model="vit_b").everything == {**PROPOSE_DEFAULTS, "points_per_batch": 64}
    mine = Settings(model="vit_h", everything={"pred_iou_thresh": 0.5}).everything
    assert mine == {**PROPOSE_DEFAULTS, "pred_iou_thresh": 0.5, "points_per_batch": 64}
    assert everything_defaults("mobile_sam")["points_per_side"] == PROPOSE_DEFAULTS["points_per_side"]


def test_annotate_everything_finds_what_the_widgets_everything_finds(scene, tmp_path):
    from sam_widgets import CachedPredictor, load_sam

    Image.fromarray(scene).save(tmp_path / "scene.png")
    out = tmp_path / "out"
    annotate(tmp_path / "scene.png", out, model="micro", **QUIET)
    coco = json.loads((out / "annotations.json").read_text())
    found = sorted(a["area"] for a in coco["annotations"])
    settings = json.loads((out / "manifest.json").read_text())["identity"]["settings"]["everything"]
    assert settings == MICRO_PROPOSE_DEFAULTS  # recorded as used (points per call changes no mask)

    session = Session(scene, CachedPredictor(load_sam("micro", precision="fp32")))
    proposals = session.propose()
    assert found and found == sorted(p.area for p in proposals)


def test_points_per_batch_bounds_the_full_size_logits():
    assert points_per_batch(768, 1024) == 64  # an ordinary photo: segment_anything's batch
    assert points_per_batch(768, 1024, 16) == 16  # a smaller wish stands
    large = points_per_batch(2000, 3000)
    assert 1 <= large < 64 and large * 12 * 2000 * 3000 <= EVERYTHING_BATCH_BYTES
    assert points_per_batch(30000, 30000) == 1  # never none


class _Seen(Exception):
    pass


def _catch_batch(monkeypatch) -> list[int]:
    """segment_anything's generate() replaced by one that notes its points_per_batch and stops."""
    from segment_anything import SamAutomaticMaskGenerator

    seen: list[int] = []

    def generate(self, image):
        seen.append(self.points_per_batch)
        return []

    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", generate)
    return seen


def test_the_widgets_everything_and_annotate_cut_the_batch_on_a_large_image(tiny_sam, monkeypatch):
    from sam_widgets import CachedPredictor
    from sam_widgets.annotate.worker import Annotator

    seen = _catch_batch(monkeypatch)
    big = np.zeros((2000, 3000, 3), np.uint8)
    Session(big, CachedPredictor(tiny_sam)).propose()
    Session(big[:300, :400].copy(), CachedPredictor(tiny_sam)).propose()
    annotator = Annotator(Settings(model="micro", precision="fp32", threads=1))
    annotator.annotate("big.png", big)
    annotator.annotate("small.png", big[:300, :400])
    assert seen == [points_per_batch(2000, 3000)] + [64] + [points_per_batch(2000, 3000)] + [64]


def test_a_changed_points_per_batch_resumes(scene, tmp_path):
    Image.fromarray(scene).save(tmp_path / "scene.png")
    out = tmp_path / "out"
    every = {"points_per_side": 4}
    annotate(tmp_path / "scene.png", out, model="micro", everything=every, **QUIET)
    again = annotate(
        tmp_path / "scene.png", out, model="micro", everything={**every, "points_per_batch": 8}, **QUIET
    )
    assert again.skipped_before == 1 and again.done == 0
    # a folder of an earlier version, whose manifest recorded the points per call: resumes too
    manifest = out / "manifest.json"
    data = json.loads(manifest.read_text())
    data["identity"]["settings"]["everything"]["points_per_batch"] = 64
    manifest.write_text(json.dumps(data))
    old = annotate(tmp_path / "scene.png", out, model="micro", everything=every, **QUIET)
    assert old.skipped_before == 1 and old.done == 0


def test_an_unknown_or_unavailable_model_leaves_no_output_folder(scene, tmp_path, capsys):
    from sam_widgets.checkpoints import OfflineError
    from sam_widgets.cli import main

    Image.fromarray(scene).save(tmp_path / "scene.png")
    out = tmp_path / "labels"
    with pytest.raises(ValueError, match="Unknown model 'vit_x'"):
        annotate(tmp_path / "scene.png", out, model="vit_x", **QUIET)
    assert not out.exists()
    with pytest.raises(OfflineError, match="not in the cache"):  # the tests run offline, cache empty
        annotate(tmp_path / "scene.png", out, model="vit_b", **QUIET)
    assert not out.exists()
    assert main(["annotate", str(tmp_path / "scene.png"), "--out", str(out), "--model", "vit_x", "-q"]) == 1
    assert "error: Unknown model 'vit_x'" in capsys.readouterr().err
    assert not out.exists()
    # the corrected command then runs (nothing was left to refuse it)
    assert main(["annotate", str(tmp_path / "scene.png"), "--out", str(out), "--model", "micro", "-q"]) == 0
    assert (out / "annotations.json").is_file()
