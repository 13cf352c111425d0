"""Copy the notebooks' key figures into docs/ as small PNGs, for the README's notebook table.

    python scripts/docs_figures.py [EXECUTED_DIR]   (default build/executed-notebooks)

A code cell tagged ``figure-NAME`` (cell metadata "tags") gives docs/NAME.png: its first image
output in the executed copy (scripts/test or scripts/docs writes them), scaled to at most 900
pixels wide and saved as an optimised palette PNG, so that a reader of the repository sees the
pictures without running anything. Re-run after changing such a figure and commit the PNGs.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import nbformat
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MAX_WIDTH = 900


def figure_tags(nb: nbformat.NotebookNode) -> list[str]:
    """The NAMEs of the cells tagged ``figure-NAME``, in order."""
    tags = [t for c in nb.cells for t in c.get("metadata", {}).get("tags", [])]
    return [t.removeprefix("figure-") for t in tags if t.startswith("figure-")]


def tagged_figures(source: nbformat.NotebookNode, executed: nbformat.NotebookNode) -> dict[str, bytes]:
    """NAME -> PNG bytes: the first image of each cell of ``source`` tagged ``figure-NAME``, taken
    from the same code cell of ``executed`` (tags are read from the source, so retagging needs no
    new run)."""
    ran = [c for c in executed.cells if c.cell_type == "code"]
    out = {}
    for n, cell in enumerate(c for c in source.cells if c.cell_type == "code"):
        for tag in cell.get("metadata", {}).get("tags", []):
            if not tag.startswith("figure-"):
                continue
            outputs = ran[n].get("outputs", []) if n < len(ran) and ran[n].source == cell.source else []
            pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
            if not pngs:
                raise ValueError(f"the cell tagged {tag} has no figure in the executed copy: run it again")
            out[tag.removeprefix("figure-")] = base64.b64decode(pngs[0])
    return out


def small_png(data: bytes, max_width: int = MAX_WIDTH) -> bytes:
    """``data`` scaled to at most ``max_width`` pixels wide, as an optimised 256-colour PNG."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    buf = io.BytesIO()
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def main(executed: Path, docs: Path = ROOT / "docs") -> list[Path]:
    written = []
    for source in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if not figure_tags(nbformat.read(source, as_version=4)):  # nothing to copy
            continue
        done = executed / source.name
        if not done.is_file():
            print(f"skipped {source.name}: {done} is missing (run scripts/docs or scripts/test first)")
            continue
        source_nb, done_nb = nbformat.read(source, as_version=4), nbformat.read(done, as_version=4)
        for name, png in tagged_figures(source_nb, done_nb).items():
            path = docs / f"{name}.png"
            path.write_bytes(small_png(png))
            written.append(path)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / "executed-notebooks")):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size / 1024:.0f} KB")
