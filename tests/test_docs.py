"""The documentation site: nbval keeps the executed notebooks, scripts/docs stages and builds them
offline, and a browser finds every figure on the built pages.

The browser check needs a built site: .ci/run builds it (scripts/docs --executed) and runs this file
with SAM_WIDGETS_DOCS_SITE=build/docs/html; elsewhere that test is skipped with the command to run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _load_stage():
    spec = importlib.util.spec_from_file_location("docs_stage", ROOT / "scripts" / "docs_stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(path: Path, *codes: str) -> Path:
    cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")]
    for code in codes:
        cells += [nbformat.v4.new_markdown_cell("A step."), nbformat.v4.new_code_cell(code)]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def test_nbval_keeps_each_passing_notebook_with_its_figures(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    shutil.copy2(ROOT / "notebooks" / "conftest.py", folder / "conftest.py")
    figure = "import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()"  # the kernel's inline backend
    _notebook(folder / "good.ipynb", "print('hello')", figure, "6 * 7", "6 * 8;")
    _notebook(folder / "bad.ipynb", "print('before')", "assert False, 'a failing assert'")
    out = tmp_path / "executed"
    out.mkdir()
    (out / "bad.ipynb").write_text("an older copy")  # removed: the site never shows a failed run
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["SAM_WIDGETS_NB_EXECUTED"] = str(out)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", str(folder), "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout[-2000:]
    assert not (out / "bad.ipynb").exists()
    nb = nbformat.read(out / "good.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    assert code[3].outputs == []  # a trailing ';' hides the result, as in Jupyter
    assert code[0].outputs[0]["text"] == "hello\n"
    assert any("image/png" in o.get("data", {}) for o in code[1].outputs)
    assert code[2].outputs[0]["data"]["text/plain"] == "42" and code[2].outputs[0]["execution_count"] == 3
    original = nbformat.read(folder / "good.ipynb", as_version=4)
    assert all(c.outputs == [] for c in original.cells if c.cell_type == "code")  # git's copy untouched


def _fake_repo(root: Path) -> None:
    (root / "notebooks").mkdir(parents=True)
    (root / "docs").mkdir()
    _notebook(root / "notebooks" / "01_a.ipynb", "1 + 1")
    (root / "docs" / "conf.py").write_text((ROOT / "docs" / "conf.py").read_text())
    (root / "docs" / "index.md").write_text("# site\n\n```{toctree}\nnotebooks/01_a\n```\n")
    (root / "docs" / "widget_objects.png").write_bytes((ROOT / "docs" / "widget_objects.png").read_bytes())


def test_staging_refuses_a_missing_or_stale_executed_notebook(tmp_path):
    stage = _load_stage()
    root, executed = tmp_path / "repo", tmp_path / "executed"
    _fake_repo(root)
    executed.mkdir()
    with pytest.raises(stage.StaleNotebookError, match="01_a.ipynb is missing.*scripts/docs"):
        stage.stage(executed, tmp_path / "site-src", root)
    _notebook(executed / "01_a.ipynb", "1 + 2")  # an older version of the notebook
    with pytest.raises(stage.StaleNotebookError, match="stale"):
        stage.stage(executed, tmp_path / "site-src", root)
    assert not (tmp_path / "site-src").exists()  # nothing half-staged
    shutil.copy2(root / "notebooks" / "01_a.ipynb", executed / "01_a.ipynb")
    staged = stage.stage(executed, tmp_path / "site-src", root)
    assert staged == [tmp_path / "site-src" / "notebooks" / "01_a.ipynb"]
    assert (tmp_path / "site-src" / "conf.py").is_file() and (
        tmp_path / "site-src" / "docs" / "widget_objects.png"
    ).is_file()


def test_every_notebook_is_in_the_site_index():
    index = (ROOT / "docs" / "index.md").read_text()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}\n" in index and f"(notebooks/{path.name})" in index


def test_the_site_builds_offline_with_its_figures(tmp_path):
    pytest.importorskip("myst_nb", reason="the [docs] extra: scripts/docs installs it")
    stage = _load_stage()
    root, executed = tmp_path / "repo", tmp_path / "executed"
    _fake_repo(root)
    executed.mkdir()
    nb = nbformat.read(root / "notebooks" / "01_a.ipynb", as_version=4)
    png = (ROOT / "docs" / "widget_objects.png").read_bytes()
    import base64

    nb.cells[2].outputs = [
        nbformat.v4.new_output(
            "display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "fig"}
        )
    ]
    nbformat.write(nb, executed / "01_a.ipynb")
    stage.stage(executed, tmp_path / "src", root)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")  # any fetch would fail
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-b",
            "html",
            "-W",
            "-q",
            str(tmp_path / "src"),
            str(tmp_path / "html"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    page = (tmp_path / "html" / "notebooks" / "01_a.html").read_text()
    assert "<img" in page and "_images/" in page


SITE = os.environ.get("SAM_WIDGETS_DOCS_SITE")
# Figures each built page must show at least (the notebooks draw more where models are available).
MIN_FIGURES = {"01_quickstart": 1, "02_architecture": 12, "03_three_checkpoints": 4, "05_train_micro": 3}


@pytest.mark.skipif(
    not SITE, reason="needs a built site: scripts/docs, then SAM_WIDGETS_DOCS_SITE=build/docs/html"
)
def test_built_site_shows_every_figure_in_chromium():
    from playwright.sync_api import sync_playwright

    from .browser_helpers import CHROMIUM, CHROMIUM_ARGS, INSTALL_HINT

    if not CHROMIUM.exists():
        pytest.fail(INSTALL_HINT)
    site = Path(SITE).resolve()
    assert (site / "index.html").is_file(), f"{site} has no index.html: run scripts/docs"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            outside: list[str] = []  # the site is offline: nothing may be fetched from a server

            def refuse(route):
                outside.append(route.request.url)
                route.abort()

            page.route("http*://**", refuse)
            page.goto((site / "index.html").as_uri())
            links = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
            for path in NOTEBOOKS:
                assert any(h and h.endswith(f"{path.stem}.html") for h in links), path.stem
            for path in NOTEBOOKS:
                page.goto((site / "notebooks" / f"{path.stem}.html").as_uri())
                page.wait_for_load_state("load")
                figures = page.eval_on_selector_all(
                    ".cell_output img",
                    "els => els.map(e => ({src: e.src, w: e.naturalWidth, h: e.naturalHeight}))",
                )
                pictures = page.eval_on_selector_all(  # figures and the pictures in the prose
                    "main img", "els => els.map(e => ({src: e.src, w: e.naturalWidth, h: e.naturalHeight}))"
                )
                broken = [f["src"] for f in pictures if not (f["w"] > 50 and f["h"] > 50)]
                assert not broken, f"{path.stem}: figures that did not load: {broken}"
                assert len(figures) >= MIN_FIGURES.get(path.stem, 0), (path.stem, len(figures))
                text = page.inner_text("main")
                assert "Traceback" not in text, path.stem
                answers = page.eval_on_selector_all("details", "els => els.map(e => e.open)")
                if path.stem != "04_speed_vs_iou":
                    assert answers and not any(answers), f"{path.stem}: exercise answers must start folded"
            assert not outside, f"the built site fetches from the network: {outside[:5]}"
        finally:
            browser.close()


def test_docs_figures_takes_the_tagged_cells_figure_from_the_executed_copy(tmp_path):
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "scripts" / "docs_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    import base64

    source = nbformat.read(_notebook(tmp_path / "a.ipynb", "1", "plot()"), as_version=4)
    source.cells[4].metadata["tags"] = ["figure-demo"]
    executed = nbformat.read(tmp_path / "a.ipynb", as_version=4)
    png = (ROOT / "docs" / "widget_objects.png").read_bytes()
    executed.cells[4].outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode()})
    ]
    assert figures.tagged_figures(source, executed) == {"demo": png}
    small = figures.small_png(png, max_width=300)
    assert len(small) < len(png) and small[:8] == b"\x89PNG\r\n\x1a\n"
    executed.cells[4].source = "plot(other)"  # a stale run: its figure is not this cell's
    with pytest.raises(ValueError, match="figure-demo has no figure"):
        figures.tagged_figures(source, executed)
