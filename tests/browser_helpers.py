"""The browser tests' tools: a Jupyter server of their own, chromium, and the kernel seen from the page.

Nothing here is a test. ``JupyterServer`` starts ``jupyter lab`` on 127.0.0.1 with its config, data and
runtime folders in a temporary folder (the user's settings and kernels stay out; the venv's
labextensions, found through sys.prefix, stay in) and stops it and its kernels, always. With the
``notebook`` package installed the same process also serves Notebook 7 (/tree, /notebooks/<path>):
both front ends are JupyterLab components, so the page-side snippets below work in both, through
``window.jupyterapp`` (``expose_app_in_browser``, set for each). scripts/bench_browser.py uses them too.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: `playwright install` cannot download here
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
]
INSTALL_HINT = (
    "Install Debian's chromium: `apt-get update && apt-get install -y chromium` (as root); "
    "`playwright install` cannot download browsers here."
)

# JupyterLab user settings for a quiet, predictable page: no news or update pop-ups (no network
# here), and every cell kept in the DOM (no windowing), so the widget's canvas is always there.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


# Where each front end opens a notebook (Notebook 7 is the `notebook` package's server extension).
FRONT_ENDS = {"lab": "/lab/tree", "notebook": "/notebooks"}


class Deadline:
    """One time budget shared by every wait of a test, so that the whole test is bounded."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        """Seconds left (at most ``cap``); raises TimeoutError when none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the browser test ran out of its time budget")
        return left if cap is None else min(left, cap)

    def ms(self, cap: float | None = None) -> float:
        """``left`` in milliseconds, the unit of Playwright's timeouts."""
        return 1000 * self.left(cap)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """``jupyter lab`` serving ``root`` on 127.0.0.1 without token or password, isolated in ``home``:
    JupyterLab at ``url_for("lab", path)`` and, when the notebook package is installed, Notebook 7 at
    ``url_for("notebook", path)``.

    ``start`` returns when /api/status answers; ``stop`` ends the server's process group and every
    process it started (kernels run in sessions of their own), politely first, then by force.
    """

    def __init__(self, root: Path, home: Path, app: str = "lab", launcher: list[str] | None = None) -> None:
        """``launcher``: start the server through this command (e.g. ``scripts/quickstart``), run in
        ``root``, instead of ``python -m jupyterlab``; it then decides the served folder and whether
        root may run it (nothing here says ``allow_root``)."""
        self.root, self.home, self.app, self.launcher = Path(root), Path(home), app, launcher
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "jupyter.log"
        self.proc: subprocess.Popen | None = None

    def url_for(self, front_end: str, path: str) -> str:
        """The page of notebook ``path`` (relative to root) in ``front_end``: "lab" or "notebook"."""
        return f"{self.url}{FRONT_ENDS[front_end]}/{path}"

    def start(self, timeout: float) -> None:
        dirs = {name: self.home / name for name in ("config", "data", "runtime", "ipython")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for name, values in LAB_SETTINGS.items():
            path = dirs["config"] / "lab" / "user-settings" / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        env.pop("JUPYTER_CONFIG_PATH", None)
        if sys.prefix != sys.base_prefix:  # a venv over the system's packages (--system-site-packages):
            # Jupyter looks in the venv only; the front ends' extensions and the server extensions'
            # settings (jupyter-lsp, ...) are installed under the base prefix
            base = Path(sys.base_prefix)
            env["JUPYTER_PATH"] = os.pathsep.join(
                [str(base / "share" / "jupyter")] + [p for p in [env.get("JUPYTER_PATH")] if p]
            )
            env["JUPYTER_CONFIG_PATH"] = str(base / "etc" / "jupyter")
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            IPYTHONDIR=str(dirs["ipython"]),
            PYTHONUNBUFFERED="1",
        )
        if self.launcher is None:
            start = [sys.executable, "-m", {"lab": "jupyterlab", "notebook": "notebook"}[self.app]]
            start += ["--ServerApp.allow_root=True", f"--ServerApp.root_dir={self.root}"]  # CI runs as root
        else:
            start = list(self.launcher)
        cmd = [
            *start,
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",  # the port we picked or a clear failure
            "--IdentityProvider.token=",  # jupyter_server 2 names (ServerApp.token is deprecated)
            "--PasswordIdentityProvider.hashed_password=",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: commands, kernel
            "--JupyterNotebookApp.expose_app_in_browser=True",  # the same in Notebook 7's pages
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",  # the "pypi" manager would ask PyPI
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as one in stop()
            )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                what = " ".join(start)
                raise RuntimeError(f"{what} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"jupyter lab did not answer on {self.url} in {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            procs = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
        except ProcessLookupError:
            pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:  # kernels live in their own sessions: outside the server's group
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# ---------------------------------------------------------------------------- the page side

# The notebook panel showing `path` (not "the current widget": focus may move).
PANEL = """const panel = Array.from(window.jupyterapp.shell.widgets('main'))
  .find(w => w.context && w.context.path === path);"""

KERNEL_IDLE = f"""(path) => {{ if (!window.jupyterapp) return false; {PANEL}
  const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle'; }}"""

# The front-end extensions the page loads (JupyterLab's page config).
FEDERATED_EXTENSIONS = """() => JSON.parse(document.getElementById('jupyter-config-data').textContent)
  .federated_extensions.map(e => e.name)"""


def run_all_cells(page: Any, timeout_ms: float) -> None:
    """Run > Run All Cells, through the menu bar as a user would: the same menu in both front ends."""
    page.locator(".lm-MenuBar").get_by_role("menuitem", name="Run", exact=True).click(timeout=timeout_ms)
    menu = page.locator(".lm-Menu")
    menu.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=timeout_ms)


# True once every code cell has run, or a cell failed (run-all stops there); the kernel idle.
NOTEBOOK_DONE = f"""(path) => {{ {PANEL}
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const failed = cells.some(c => c.model.toJSON().outputs.some(o => o.output_type === 'error'));
  const ran = cells.every(c => c.model.executionCount !== null);
  return panel.sessionContext.session.kernel.status === 'idle' && (failed || ran); }}"""

NOTEBOOK_ERRORS = f"""(path) => {{ {PANEL}
  return panel.content.widgets.filter(c => c.model.type === 'code').flatMap(c =>
    c.model.toJSON().outputs.filter(o => o.output_type === 'error').map(o =>
      c.model.sharedModel.getSource().slice(0, 300) + '\\n-> ' + o.ename + ': ' + o.evalue)); }}"""

# Run code in the notebook's kernel (the one holding `w`); its stdout, or the error it raised.
_EXECUTE = f"""async ([path, code, ms]) => {{ {PANEL}
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({{code, store_history: false, stop_on_error: false}});
  let out = '', err = null;
  future.onIOPub = (msg) => {{
    const t = msg.header.msg_type;
    if (t === 'stream') out += msg.content.text;
    else if (t === 'error') err = msg.content.ename + ': ' + msg.content.evalue;
  }};
  const late = new Promise(resolve => setTimeout(() => resolve('late'), ms));
  if (await Promise.race([future.done.then(() => 'done'), late]) === 'late') {{
    future.dispose();
    return {{out, err: 'no reply from the kernel in ' + ms + ' ms'}};
  }}
  return {{out, err}}; }}"""

# The canvas' pixels as the user sees them (ipycanvas 0.14 composes a MultiCanvas' layers into
# this one <canvas>; the layers themselves live off-DOM), RGBA row-major, base64.
_CANVAS_RGBA = """(c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = ''; for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
  return {width: c.width, height: c.height, data: btoa(s)}; }"""

# Where the canvas' pixels are on the page: the border box, the border, the content size.
CANVAS_GEOMETRY = """(c) => { const r = c.getBoundingClientRect();
  return {left: r.left, top: r.top, clientLeft: c.clientLeft, clientTop: c.clientTop,
          cssWidth: c.clientWidth, cssHeight: c.clientHeight, width: c.width, height: c.height}; }"""


def kernel_exec(page: Any, path: str, code: str, timeout: float) -> str:
    """Run ``code`` in the kernel of notebook ``path`` open in ``page``; its stdout. Raises on error."""
    result = page.evaluate(_EXECUTE, [path, code, int(1000 * timeout)])
    if result["err"]:
        raise RuntimeError(f"kernel: {result['err']}\n{result['out']}")
    return result["out"]


def canvas_rgba(canvas: Any) -> np.ndarray:
    """HxWx4 uint8 pixels of a <canvas> element (a Playwright locator)."""
    got = canvas.evaluate(_CANVAS_RGBA)
    flat = np.frombuffer(base64.b64decode(got["data"]), np.uint8)
    return flat.reshape(got["height"], got["width"], 4)


def page_point(geometry: dict, x: float, y: float) -> tuple[float, float]:
    """Page coordinates (CSS pixels) of the centre of canvas pixel (x, y): inside the border,
    scaled by the shown size over the canvas size."""
    g = geometry
    sx, sy = g["cssWidth"] / g["width"], g["cssHeight"] / g["height"]
    return g["left"] + g["clientLeft"] + (x + 0.5) * sx, g["top"] + g["clientTop"] + (y + 0.5) * sy
