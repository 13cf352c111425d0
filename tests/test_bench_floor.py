"""bench.floor: the machine's GEMM rate, encoder FLOPs, and the fraction of the floor reached."""

from __future__ import annotations

import pytest
import torch

from sam_widgets.bench import floor
from sam_widgets.bench.timing import ModelResult


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
