"""Stage the documentation site's sources: Sphinx's conf.py and index.md, executed notebooks, PNGs.

    python scripts/docs_stage.py EXECUTED_DIR STAGE_DIR

EXECUTED_DIR holds the notebooks as nbval ran them (notebooks/conftest.py writes them when
SAM_WIDGETS_NB_EXECUTED is set). Each must be there and match the notebook in git cell for cell
(same sources): a missing one failed under nbval, a different one is stale, and either stops the
build with the command that fixes it. STAGE_DIR is replaced: conf.py and index.md from docs/, the
executed notebooks in notebooks/, docs/*.png in docs/ (the notebooks show ../docs/widget_objects.png).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
# repository pages the site includes (index.md lists them)
PAGES = ["binder/README.md", "docs/choosing_a_model.md"]


class StaleNotebookError(RuntimeError):
    """An executed notebook is missing or does not match the notebook in git."""


def _sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def stage(executed: Path, stage_dir: Path, root: Path = ROOT) -> list[Path]:
    """Fill ``stage_dir`` for Sphinx; returns the staged notebooks. Raises StaleNotebookError."""
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    problems = []
    for nb_path in notebooks:
        done = executed / nb_path.name
        if not done.is_file():
            problems.append(f"{done} is missing (the notebook failed or was not run under nbval)")
        elif _sources(nbformat.read(done, as_version=4)) != _sources(nbformat.read(nb_path, as_version=4)):
            problems.append(f"{done} is stale: its cells differ from {nb_path.relative_to(root)}")
    if problems:
        raise StaleNotebookError(
            "; ".join(problems) + ". Run `scripts/docs` without --executed: it executes the notebooks first."
        )
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    (stage_dir / "notebooks").mkdir(parents=True)
    (stage_dir / "docs").mkdir()
    for name in ("conf.py", "index.md"):
        shutil.copy2(root / "docs" / name, stage_dir / name)
    for png in (root / "docs").glob("*.png"):
        shutil.copy2(png, stage_dir / "docs" / png.name)
    for page in PAGES:  # pages the notebooks link to (../binder/README.md), at the same relative place
        if (root / page).is_file():
            (stage_dir / page).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / page, stage_dir / page)
    staged = []
    for nb_path in notebooks:
        nb = nbformat.read(executed / nb_path.name, as_version=4)
        # The notebooks in git carry no language_info (outputs stripped); the site's code needs a lexer.
        nb.metadata.setdefault("language_info", {"name": "python", "pygments_lexer": "ipython3"})
        staged.append(stage_dir / "notebooks" / nb_path.name)
        nbformat.write(nb, staged[-1])
    return staged


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        for path in stage(Path(sys.argv[1]), Path(sys.argv[2])):
            print(f"staged {path}")
    except StaleNotebookError as e:
        sys.exit(f"scripts/docs: {e}")
