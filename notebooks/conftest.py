"""Keep what nbval ran: each notebook with its outputs, for the documentation site.

When ``SAM_WIDGETS_NB_EXECUTED`` names a folder, every notebook whose cells all passed under
``pytest --nbval-lax`` is written there with the outputs nbval received from the kernel (text,
figures as image/png, errors), execution counts 1, 2, ... ``scripts/docs`` builds the site from
that folder, so CI executes each notebook once: for the tests and for the pictures. A notebook
with a failed or skipped cell is not written (and an older copy of it is removed): the site never
shows a half-run notebook. The notebooks in git stay without outputs.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest

ENV = "SAM_WIDGETS_NB_EXECUTED"
_runs: dict[str, dict] = {}  # notebook path -> {"nb": the notebook, "outputs": {cell: outputs}, "ok": bool}


def _folder() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if _folder() is None or not hasattr(item, "test_outputs") or call.when not in ("setup", "call"):
        return
    report = outcome.get_result()
    run = _runs.setdefault(str(item.parent.fspath), {"nb": item.parent.nb, "outputs": {}, "ok": True})
    if report.failed or report.skipped:
        run["ok"] = False
    elif call.when == "call":
        run["outputs"][item.cell_num] = copy.deepcopy(item.test_outputs or [])


def pytest_runtest_teardown(item, nextitem):
    folder = _folder()
    if folder is None or not hasattr(item, "test_outputs"):
        return
    if nextitem is not None and getattr(nextitem, "parent", None) is item.parent:
        return  # more cells of this notebook to come
    key = str(item.parent.fspath)
    run = _runs.pop(key, None)
    target = folder / Path(key).name
    code = [c for c in run["nb"].cells if c.cell_type == "code"] if run else []
    if not run or not run["ok"] or len(run["outputs"]) != len(code):
        target.unlink(missing_ok=True)
        return
    nb = copy.deepcopy(run["nb"])
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        cell.outputs = run["outputs"][n]
        if cell.source.rstrip().endswith(";"):
            # Jupyter hides the result of a cell ending in ';'; under nbval (no input history) IPython
            # shows it, so a figure returned by the last line would appear twice on the site.
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "execute_result"]
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = n + 1
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".ipynb.tmp")
    nbformat.write(nb, str(tmp))
    tmp.replace(target)
