"""bench.floor: the machine's GEMM rate, encoder FLOPs, and the fraction of the floor reached."""

from __future__ import annotations

import pytest
import torch

from sam_widgets.bench import floor
from sam_widgets.bench.timing import BenchResult as ModelResult


def test_gemm_rate_measures_each_shape():
    out = floor.gemm_rate(torch.float32, shapes=((64, 32, 48), (32, 32, 32)), repeats=2)
    assert set(out["by_shape"]) == {"64x32x48", "32x32x32"}
    assert out["gflops"] == max(out["by_shape"].values()) > 0


def test_floor_has_bf16_exactly_where_the_cpu_has_bf16_instructions(monkeypatch):
    monkeypatch.setattr(floor, "SHAPES", ((32, 32, 32),))
    monkeypatch.setattr(floor.gemm_rate, "__defaults__", ("cpu", ((32, 32, 32),), 1))
    for has in (False, True):
        floor._floor_cached.cache_clear()
        monkeypatch.setattr(floor, "_has_cpu_bf16", lambda has=has: has)
        assert ("bf16" in floor.gemm_floor("cpu")) is has
    floor._floor_cached.cache_clear()


@pytest.mark.parametrize(("name", "gflop"), [("vit_b", 972.08), ("mobile_sam", 77.54), ("micro", 0.95)])
def test_encoder_gflop(name, gflop):
    assert floor.encoder_gflop(name) == pytest.approx(gflop, abs=0.01)


def test_floor_report_and_its_lines(monkeypatch):
    fake = {
        "device": "cpu",
        "threads": 2,
        "fp32": {"gflops": 100.0, "by_shape": {}},
        "bf16": {"gflops": 400.0, "by_shape": {}},
    }
    monkeypatch.setattr(floor, "gemm_floor", lambda device: fake)
    rep = floor.floor_report("vit_b", torch.device("cpu"), {"stock": 19441.5, "ours": 4860.4}, "bf16")
    assert rep["floor_gflops"] == {"fp32": 100.0, "bf16": 400.0}
    assert rep["ours"]["gflops"] == pytest.approx(972.077 / 4.8604, rel=1e-4)
    assert rep["ours"]["fraction"] == pytest.approx(rep["ours"]["gflops"] / 400)
    assert rep["stock"]["fraction"] == pytest.approx(972.077 / 19.4415 / 400, rel=1e-4)
    assert rep["ours"]["floor_ms"] == pytest.approx(972.077 / 400 * 1000, rel=1e-4)
    # A precision the machine has no floor for is judged against fp32.
    assert (
        floor.floor_report("vit_b", torch.device("cpu"), {"ours": 1000.0}, "fp16")["ours"]["precision"]
        == "fp32"
    )
    r = ModelResult("vit_b", "random", "cpu", "bf16-fast", (768, 1024), floor=rep)
    text = floor.format_floor([r])
    assert "vit_b: encoder 972.1 GFLOP" in text and "bf16 400" in text
    assert "ours  bf16    200.0 GFLOP/s =  50.0% of the bf16 floor (floor time 2430 ms)" in text


def _timed(model: str, stock: dict, ours: dict, floor_rep=None) -> ModelResult:
    r = ModelResult(model, "random", "cpu", "bf16-fast", (768, 1024), floor=floor_rep)
    r.stock = {k: {"median": v} for k, v in stock.items()}
    r.ours = {k: {"median": v} for k, v in ours.items()}
    return r


def test_format_targets_judges_issue_17s_targets_from_one_run():
    side = {"precision": "bf16", "gflops": 344.0, "floor_ms": 2430.0}
    rep = {
        "encoder_gflop": 972.1,
        "floor_gflops": {"bf16": 400.0},
        "threads": 2,
        "stock": {**side, "fraction": 0.3},
        "ours": {**side, "fraction": 0.86},
    }
    vit_b = _timed(
        "vit_b",
        {"click_ms": 80.0, "set_image_ms": 8000.0},
        {"click_ms": 28.0, "view_ms": 20.0, "set_image_ms": 1000.0},
        rep,
    )
    mobile = _timed(
        "mobile_sam",
        {"click_ms": 80.0, "set_image_ms": 900.0},
        {"click_ms": 30.0, "view_ms": 20.0, "set_image_ms": 101.0},
    )
    lines = floor.format_targets([mobile, vit_b])
    assert lines[0].startswith("targets")
    assert "4.00x faster than stock (>= 4x): met" in lines[1]
    assert "86% of the bf16 floor (>= 85%): met" in lines[2]
    assert "set_image 0.101 of vit_b's (<= 0.10): NOT met" in lines[3]
    assert "mobile_sam click 30.0 ms, vit_b's 28.0 ms (no slower): NOT met" in lines[4]
    assert floor.format_targets([mobile]) == []  # nothing to judge without vit_b
    assert "targets" in floor.format_floor([mobile, vit_b])
