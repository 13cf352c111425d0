"""sam-widgets bench --noc: clicks-to-IoU in the table, summary.csv, per_object.csv and the JSON."""

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


def test_bench_noc_on_micro(tmp_path, capsys):
    out = tmp_path / "res"
    args = ["bench", "--models", "micro", "--samples", "1", "--no-timing", "--noc", "--max-clicks", "4"]
    assert main([*args, "--out", str(out), "--json", str(tmp_path / "b.json")]) == 0
    printed = capsys.readouterr().out
    assert "Clicks to IoU on synthetic, at most 4 clicks per object" in printed
    assert "NoC@85" in printed and "NoC@90" in printed and "a failure counts 4" in printed
    data = json.loads((out / "bench.json").read_text())
    assert data == json.loads((tmp_path / "b.json").read_text())
    assert data["settings"]["noc"] is True and data["settings"]["max_clicks"] == 4
    (r,) = data["results"]
    iou = r["iou"]
    n = iou["noc"]
    per = iou["per_object"]
    assert n["objects"] == iou["objects"] == len(per) > 0 and n["max_clicks"] == 4
    # every object's curve has 4 IoUs; NoC per object follows from it, and the means from those
    for o in per:
        curve = [o["iou_1_click"]] + [o[f"iou_{k}_clicks"] for k in range(2, 5)]
        assert o["noc_85"] == next((k for k, v in enumerate(curve, 1) if v >= 0.85), 4)
        assert o["noc_90"] == next((k for k, v in enumerate(curve, 1) if v >= 0.90), 4)
    for k in ("85", "90"):
        assert n["noc"][k] == pytest.approx(np.mean([o[f"noc_{k}"] for o in per]))
        lo, hi = n["noc_ci95"][k]
        assert 1 <= lo <= n["noc"][k] <= hi <= 4
        fails = [
            not any(o[f"iou_{c}_clicks" if c > 1 else "iou_1_click"] >= int(k) / 100 for c in range(1, 5))
            for o in per
        ]
        assert n["failures"][k] == pytest.approx(np.mean(fails)) and n["failed"][k] == sum(fails)
    assert set(n["miou_at"]) == {"1", "3"}  # 5 and 10 are beyond 4 clicks
    assert n["miou_at"]["3"] == pytest.approx(iou["miou"]["3_clicks"])

    (row,) = _csv(out / "summary.csv")
    assert list(row) == bench.SUMMARY_COLUMNS and set(bench.NOC_COLUMNS) <= set(row)
    assert float(row["noc_90"]) == pytest.approx(n["noc"]["90"]) and row["max_clicks"] == "4"
    assert float(row["noc_85_ci95_lo"]) == pytest.approx(n["noc_ci95"]["85"][0])
    assert float(row["failures_90"]) == pytest.approx(n["failures"]["90"]) and row["miou_at_5"] == ""
    objects = _csv(out / "per_object.csv")
    assert {"noc_85", "noc_90", "iou_4_clicks"} <= set(objects[0]) and len(objects) == len(per)


def test_bench_without_noc_leaves_the_noc_columns_empty(tmp_path):
    out = tmp_path / "res"
    assert main(["bench", "--models", "micro", "--samples", "1", "--no-timing", "--out", str(out)]) == 0
    (r,) = json.loads((out / "bench.json").read_text())["results"]
    assert r["iou"]["noc"] == {}
    (row,) = _csv(out / "summary.csv")
    assert all(row[c] == "" for c in bench.NOC_COLUMNS)


def test_bench_noc_argument_errors(capsys):
    assert main(["bench", "--models", "micro", "--noc", "--no-iou"]) == 1
    assert "drop --no-iou" in capsys.readouterr().err
    assert main(["bench", "--models", "micro", "--noc", "--max-clicks", "0"]) == 1
    assert "--max-clicks 0" in capsys.readouterr().err


def test_format_noc_table_without_noc():
    assert "no NoC" in bench.format_noc_table([{"iou": {"model": "vit_b", "noc": {}}}])


def test_notebook_04_parameters(monkeypatch):
    """Notebook 04's parameter cell reads the NoC cap and the photos from SAM_WIDGETS_NB_* (scripts/test)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "04_speed_vs_iou.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    for key in ("SAM_WIDGETS_NB_MAX_CLICKS", "SAM_WIDGETS_NB_PHOTOS"):
        monkeypatch.delenv(key, raising=False)
    ns: dict = {}
    exec(source, ns)
    assert ns["MAX_CLICKS"] == 20 and ns["PHOTOS"] is None
    monkeypatch.setenv("SAM_WIDGETS_NB_MAX_CLICKS", "5")
    monkeypatch.setenv("SAM_WIDGETS_NB_PHOTOS", "coins,horse")
    exec(source, ns)
    assert ns["MAX_CLICKS"] == 5 and ns["PHOTOS"] == ["coins", "horse"]
    script = (path.parents[1] / "scripts" / "test").read_text()
    assert "SAM_WIDGETS_NB_PHOTOS" in script
    # the quoted figures are described as what they are, and Meta's own figure is quoted beside them
    text = "".join("".join(c["source"]) for c in cells)
    assert "total time per mask" in text and "0.15 s on an NVIDIA A100" in text
    assert "<details>" in text  # the exercises' answers are collapsed
