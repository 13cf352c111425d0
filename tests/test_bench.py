"""Measured IoU in the bench: micro end to end, files written, and never IoU from random weights."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from sam_widgets import bench
from sam_widgets.cli import main


def _csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_bench_iou_end_to_end_on_micro(tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(["bench", "--models", "micro", "--samples", "2", "--no-timing", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "IoU on synthetic: 2 images" in printed and "measured" in printed
    data = json.loads((out / "bench.json").read_text())
    m = data["machine"]
    assert m["processor"] and m["torch"] and "segment_anything" in m and "cpu_count" in m
    assert data["dataset"]["names"] == ["heldout-500000", "heldout-500001"]
    (r,) = data["results"]
    iou = r["iou"]
    assert (r["model"], r["weights"], iou["status"]) == ("micro", "pretrained", "measured")
    assert r["stock"] == {}  # --no-timing
    # every object of >= 100 pixels of the 2 scenes, each through 1 click, 3 clicks and box
    from sam_widgets.datasets import synthetic

    expected = sum(int((s.masks.reshape(len(s.masks), -1).sum(1) >= 100).sum()) for s in synthetic(2))
    assert iou["objects"] == expected == len(iou["per_object"]) > 0
    assert set(iou["miou"]) == {"1_click", "2_clicks", "3_clicks", "box"}
    for key, v in iou["miou"].items():
        per = [o[f"iou_{key}"] for o in iou["per_object"]]
        assert all(0.0 <= x <= 1.0 for x in per)
        assert v == pytest.approx(np.mean(per))
        lo, hi = iou["ci95"][key]
        assert 0.0 <= lo <= v <= hi <= 1.0
    assert -1.0 <= iou["pearson_r"] <= 1.0
    assert iou["encoder_ms"]["n"] == 2 and iou["encoder_ms"]["min"] > 0

    (row,) = _csv(out / "summary.csv")
    assert list(row) == bench.SUMMARY_COLUMNS
    assert row["model"] == "micro" and row["iou_status"] == "measured" and row["dataset"] == "synthetic"
    assert float(row["miou_1_click"]) == pytest.approx(iou["miou"]["1_click"])
    assert row["processor"] == m["processor"] and row["torch"] == m["torch"]
    objects = _csv(out / "per_object.csv")
    assert list(objects[0])[:5] == ["model", "sample", "object", "label", "area_px"]
    assert {"iou_1_click", "iou_2_clicks", "iou_3_clicks", "iou_box", "score_1_click"} <= set(objects[0])
    assert len(objects) == iou["objects"] and {o["sample"] for o in objects} <= set(data["dataset"]["names"])


def test_random_weights_give_timing_but_no_iou(tmp_path, capsys):
    out = tmp_path / "res"
    args = ["bench", "--models", "micro", "--weights", "random", "--samples", "2", "--repeats", "2"]
    assert main([*args, "--no-timing", "--out", str(out)]) == 0
    assert "random weights: no IoU" in capsys.readouterr().out
    (r,) = json.loads((out / "bench.json").read_text())["results"]
    iou = r["iou"]
    assert iou["status"] == bench.NO_IOU_RANDOM and iou["weights"] == "random"
    assert iou["miou"] == {} and iou["per_object"] == [] and iou["pearson_r"] is None
    assert iou["encoder_ms"]["n"] == 2  # timing is still measured
    (row,) = _csv(out / "summary.csv")
    assert (
        row["iou_status"] == "random weights: no IoU"
        and row["miou_1_click"] == ""
        and row["encoder_ms_median"]
    )
    assert _csv(out / "per_object.csv") == []


def test_evaluate_iou_refuses_unknown_weights(tiny_sam):
    from sam_widgets.datasets import synthetic

    samples = synthetic(1)
    with pytest.raises(ValueError, match="weights"):
        bench.evaluate_iou(tiny_sam, samples, progress=False)
    res = bench.evaluate_iou(tiny_sam, samples, weights="random", repeats=1, progress=False)
    assert res.status == bench.NO_IOU_RANDOM and res.miou == {} and res.encoder_ms["n"] == 1


def test_official_model_without_checkpoint_is_skipped_with_the_way_out(capsys):
    assert bench.resolve_weights("micro") == "pretrained"
    assert bench.resolve_weights("vit_b") is None  # offline, empty cache (conftest)
    assert bench.resolve_weights("vit_b", random_weights=True) == "random"
    assert bench.resolve_weights("vit_h", "pretrained") == "pretrained"
    assert main(["bench", "--models", "vit_b", "--no-timing", "--samples", "1"]) == 1
    captured = capsys.readouterr()
    assert "sam-widgets download vit_b" in captured.out and "--random-weights" in captured.out
    assert "nothing was measured" in captured.err


def test_bench_argument_errors(capsys):
    assert main(["bench", "--models", "vit_x"]) == 1  # "error: ...", exit status 1, no traceback
    assert capsys.readouterr().err.startswith("error: --models 'vit_x'")
    assert main(["bench", "--no-timing", "--no-iou"]) == 1
    assert "nothing to measure" in capsys.readouterr().err
    assert main(["bench", "--models", "micro", "--dataset", "imagenet", "--no-timing"]) == 1  # DatasetError


def test_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sam_widgets import load_sam
    from sam_widgets.datasets import synthetic

    measured = {
        "model": "micro",
        "weights": "pretrained",
        "status": "measured",
        "encoder_ms": {"median": 30.0, "min": 25.0, "max": 40.0, "n": 3},
        "miou": {"1_click": 0.5},
        "ci95": {"1_click": [0.4, 0.6]},
    }
    random = {
        "model": "vit_b",
        "weights": "random",
        "status": bench.NO_IOU_RANDOM,
        "encoder_ms": {"median": 15000.0, "min": 14000.0, "max": 16000.0, "n": 2},
        "miou": {},
    }
    ax = bench.plot_speed_vs_iou(
        [{"iou": measured}, {"iou": random}], machine={"processor": "CPU-X", "torch_threads": 2}
    )
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    texts = [t.get_text() for t in ax.texts]
    assert ax.get_xscale() == "log" and "CPU-X" in ax.get_title()
    assert any("quoted, not measured here" in t for t in labels) and any("micro" in t for t in labels)
    assert any("random weights" in t and "timing only" in t for t in texts)
    assert not any("vit_b" in t for t in labels)  # no IoU point for random weights
    plt.close("all")

    axes = bench.plot_examples(load_sam("micro", device="cpu"), synthetic(1), n=1)
    assert axes.shape == (1, 4) and all("IoU" in a.get_title() for a in axes[0, 1:])
    plt.close("all")


def test_bench_package_stays_above_datasets():
    """DESIGN.md's layers: bench takes loaded samples; the command line (cli) loads --dataset."""
    import subprocess
    import sys

    code = "import sys, sam_widgets.bench; print('sam_widgets.datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    usage = subprocess.run(
        [sys.executable, "-m", "sam_widgets.bench", "--help"], capture_output=True, text=True, check=True
    )
    assert usage.stdout.startswith("usage: python -m sam_widgets.bench") and "--dataset" in usage.stdout
