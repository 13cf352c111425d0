"""Notebooks: stored without outputs, a parameter cell CI sets through environment variables."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sam_widgets import architectures

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NB03 = ROOT / "notebooks" / "03_three_checkpoints.ipynb"


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _parameters(path: Path, env: dict[str, str], monkeypatch) -> dict:
    """Run a notebook's first code cell (its parameter cell) under ``env``; return its names."""
    for key in list(os.environ):
        if key.startswith("SAM_WIDGETS_NB_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cell = next(c for c in _cells(path) if c["cell_type"] == "code")
    namespace: dict = {}
    exec("".join(cell["source"]), namespace)
    return namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{path.name}: run `jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)}`"
            )


def test_notebook_03_parameters_default_to_everything(monkeypatch):
    p = _parameters(NB03, {}, monkeypatch)
    assert p["MODELS"] == ("vit_b", "vit_l", "vit_h", "mobile_sam", "micro")
    assert p["RANDOM_TIMING"] == (*architectures.OFFICIAL, "mobile_sam")
    # Issue 19: a warm-up, then a median of three timed encodings.
    assert (p["WARMUP"], p["REPEATS"], p["DEVICE"]) == (1, 3, "auto")


def test_notebook_03_parameters_from_the_environment(monkeypatch):
    env = {
        "SAM_WIDGETS_NB_MODELS": "vit_b,micro",
        "SAM_WIDGETS_NB_RANDOM_TIMING": "vit_b",
        "SAM_WIDGETS_NB_REPEATS": "3",
        "SAM_WIDGETS_NB_DEVICE": "cpu",
    }
    p = _parameters(NB03, env, monkeypatch)
    assert (p["MODELS"], p["RANDOM_TIMING"], p["REPEATS"], p["DEVICE"]) == (
        ("vit_b", "micro"),
        ("vit_b",),
        3,
        "cpu",
    )
    # Notebook 04 reads the same variable as a flag: its "1" and "0" mean all and none here.
    assert _parameters(NB03, {"SAM_WIDGETS_NB_RANDOM_TIMING": "0"}, monkeypatch)["RANDOM_TIMING"] == ()
    assert _parameters(NB03, {"SAM_WIDGETS_NB_RANDOM_TIMING": "1"}, monkeypatch)["RANDOM_TIMING"] == (
        *architectures.OFFICIAL,
        "mobile_sam",
    )


def test_notebook_03_has_prose_before_each_code_cell_and_never_downloads():
    cells = _cells(NB03)
    assert cells[0]["cell_type"] == "markdown"
    for before, cell in zip(cells, cells[1:], strict=False):
        if cell["cell_type"] == "code":
            assert before["cell_type"] == "markdown", "".join(cell["source"])[:80]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "download(" not in code  # it looks in the cache; fetching is the user's command


def _ci_env(**env: str) -> dict[str, str]:
    """The SAM_WIDGETS_NB_* values scripts/test exports, given the caller's environment ``env``."""
    exports = [
        line for line in (ROOT / "scripts" / "test").read_text().splitlines() if line.startswith("export ")
    ]
    assert exports, "scripts/test exports no notebook parameters"
    script = "\n".join([*exports, "env"])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAM_WIDGETS_NB_")}
    out = subprocess.run(
        ["bash", "-c", script], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if line.startswith("SAM_WIDGETS_NB_"))


def test_ci_times_only_vit_b_and_mobile_sam_with_random_weights_unless_told_otherwise():
    assert _ci_env()["SAM_WIDGETS_NB_RANDOM_TIMING"] == "vit_b,mobile_sam"
    assert _ci_env(SAM_WIDGETS_NB_RANDOM_TIMING="all")["SAM_WIDGETS_NB_RANDOM_TIMING"] == "all"


# ----------------------------------------------------------------------------- issue 19: teaching

OWNED = ["01_quickstart", "02_architecture", "03_three_checkpoints", "05_train_micro"]


def _nb(stem: str) -> Path:
    return ROOT / "notebooks" / f"{stem}.ipynb"


def _text(stem: str, kind: str) -> str:
    return "\n".join("".join(c["source"]) for c in _cells(_nb(stem)) if c["cell_type"] == kind)


@pytest.mark.parametrize("stem", OWNED)
def test_prose_before_each_code_cell_and_exercises_with_folded_answers(stem):
    cells = _cells(_nb(stem))
    assert cells[0]["cell_type"] == "markdown" and "You will learn" in "".join(cells[0]["source"])
    for before, cell in zip(cells, cells[1:], strict=False):
        if cell["cell_type"] == "code":
            assert before["cell_type"] == "markdown", (
                f"{stem}: no prose before {''.join(cell['source'])[:60]!r}"
            )
    md = _text(stem, "markdown")
    assert (
        md.count("**Exercise") + md.count("**1.") >= 1 and md.count("<details><summary>Answer</summary>") >= 2
    )
    assert md.count("<details>") == md.count("</details>")


def test_02_teaches_windows_with_whole_block_flops_and_memory_computed():
    code = _text("02_architecture", "code")
    # the ratio and the memory are computed in the notebook, and asserted there
    assert "anatomy.block_costs(name)" in code and 'costs["vit_b"]["ratio"] < 2' in code
    assert 'memory["vit_b"]["global_block"] == heads * 4096**2 * 4' in code
    assert "anatomy.trace_pipeline(" in code and "anatomy.receptive_field(" in code
    assert "anatomy.decoder_attention(" in code and "anatomy.click_position_match(" in code
    md = _text("02_architecture", "markdown")
    assert "costs 17.5x more" not in md + code and "Read structure, not meaning" in md
    assert "64x64 for micro" in md  # why micro's low-res masks are not 256x256
    assert "extent=(0, size" in code  # the Fourier plot's x axis is in pixels, not sample indexes


def test_03_says_each_checkpoint_has_its_own_decoder_and_what_is_timed():
    md = _text("03_three_checkpoints", "markdown")
    for wrong in ("They share the prompt encoder and the mask decoder", "differ only in the image encoder"):
        assert wrong not in md
    assert "its own weights" in md and "a decoder that never met" in _text("03_three_checkpoints", "code")
    assert "fast path" in md and "not* stock segment_anything" in md and "median" in md
    assert "warmup=WARMUP" in _text("03_three_checkpoints", "code")
    assert "What the GFLOP/s say" in md


def test_05_sets_threads_plots_the_iou_head_and_measures_a_step_against_an_encoding():
    code, md = _text("05_train_micro", "code"), _text("05_train_micro", "markdown")
    assert "torch.set_num_threads(THREADS)" in code and "threads=THREADS" in code
    assert '"iou_mse"' in code and "min_loss=MIN_LOSS" in code and "focal_weight=FOCAL_WEIGHT" in code
    assert "step_ms / encode_ms" in code
    assert "a fraction of one image encoding" not in md and "The IoU head learns last" not in md


def test_key_figures_are_committed_small_and_shown_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    names = []
    for path in NOTEBOOKS:
        for cell in _cells(path):
            names += [
                t.removeprefix("figure-") for t in cell["metadata"].get("tags", []) if t.startswith("figure-")
            ]
    assert {"quickstart", "pipeline", "windows", "decoder", "candidates"} <= set(names)
    for name in names:
        png = ROOT / "docs" / f"{name}.png"
        assert png.is_file(), f"run scripts/docs, then python scripts/docs_figures.py ({png} is missing)"
        assert png.stat().st_size < 200_000, f"{png} is large: scripts/docs_figures.py makes small PNGs"
        assert f"(docs/{name}.png)" in readme
