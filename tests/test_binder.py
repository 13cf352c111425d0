"""binder/: CPU torch pinned, postBuild installs the package and fetches and verifies vit_b.

mybinder.org cannot be reached from here: these tests read the files and run postBuild with ``pip``
and ``sam-widgets`` replaced by stubs that record how they were called.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def test_requirements_pin_the_cpu_build_of_torch():
    lines = [
        line.strip()
        for line in (BINDER / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    pins = dict(line.split("==") for line in lines if "==" in line)
    assert set(pins) == {"torch", "torchvision"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+\+cpu", v) for v in pins.values()), (
        pins
    )  # +cpu: never the CUDA wheel


def test_runtime_names_a_python_the_package_supports():
    version = (BINDER / "runtime.txt").read_text().strip()
    major, minor = map(int, re.fullmatch(r"python-(\d+)\.(\d+)", version).groups())
    assert (major, minor) >= (3, 10)  # pyproject: requires-python >= 3.10


@pytest.fixture
def stubs(tmp_path):
    """A bin folder whose pip and sam-widgets append their arguments and cwd to calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name in ("pip", "sam-widgets"):
        stub = bin_dir / name
        exit_var = "STUB_EXIT_" + name.replace("-", "_")
        stub.write_text(f'#!/bin/bash\necho "{name} $* @ $PWD" >> {log}\nexit ${{{exit_var}:-0}}\n')
        stub.chmod(0o755)
    return bin_dir, log


def _post_build(bin_dir: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BINDER / "postBuild")],
        cwd=cwd,
        env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
    )


def test_post_build_installs_the_package_then_fetches_and_verifies_vit_b(stubs, tmp_path):
    assert (BINDER / "postBuild").stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable"
    bin_dir, log = stubs
    done = _post_build(bin_dir, cwd=tmp_path)  # repo2docker's cwd is not ours to rely on
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == f"pip install --no-cache-dir -e . @ {ROOT}"
    # `sam-widgets download` checks the whole sha256 and exits non-zero on a mismatch (tests/test_cli.py).
    assert re.fullmatch(rf"sam-widgets download vit_b( --quiet)? @ {re.escape(str(ROOT))}", calls[1])


@pytest.mark.parametrize("failing", ["pip", "sam_widgets"])
def test_post_build_fails_the_build_when_a_step_fails(stubs, tmp_path, failing):
    bin_dir, log = stubs
    done = _post_build(bin_dir, cwd=tmp_path, **{f"STUB_EXIT_{failing}": "1"})
    assert done.returncode != 0
    assert not any(line.startswith("sam-widgets info") for line in log.read_text().splitlines())
