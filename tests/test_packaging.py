"""`pip install sam-widgets` as a user gets it: the wheel holds every file of the package (the bundled
micro weights and card included) and works from where it is installed, outside this repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def package_files() -> list[str]:
    """The package's files as the working tree holds them (by git's list when it is a checkout)."""
    try:
        # tracked or new (not ignored), as they are on disk: what the build copies
        cmd = ["git", "ls-files", "--cached", "--others", "--exclude-standard", "sam_widgets"]
        listed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
        out = [name for name in listed if (REPO / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        out = []
    if not out:  # an exported tree (sdist, archive): what is on disk
        out = [
            p.relative_to(REPO).as_posix()
            for p in (REPO / "sam_widgets").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of what the package is made of, so that setuptools' build/ and egg-info
    # stay out of the repository (a stale build/lib would go into later wheels).
    src = tmp_path_factory.mktemp("src")
    for name in package_files() + ["pyproject.toml", "README.md", "LICENSE"]:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: setuptools is in the environment already (torch requires it), and the
    # build needs no network.
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run([*cmd, "-w", str(out)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    (whl,) = out.glob("sam_widgets-*.whl")
    return whl


def test_the_wheel_holds_every_file_of_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in package_files() if f not in names]
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"
    assert "sam_widgets/micro/micro_sam.pt" in names and "sam_widgets/micro/MODEL_CARD.md" in names
    (licence,) = [n for n in names if ".dist-info/" in n and "LICENSE" in n]  # Apache-2.0 asks for it
    assert "Apache License" in zipfile.ZipFile(wheel).read(licence).decode()
    (entry,) = [n for n in names if n.endswith("entry_points.txt")]
    assert "sam-widgets = " in zipfile.ZipFile(wheel).read(entry).decode()


def test_the_installed_package_works_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sam_widgets, numpy as np\n"
        "from sam_widgets import CachedPredictor, SegmentWidget, load_sam\n"
        "from sam_widgets.micro.data import make_scene\n"
        "print(sam_widgets.__file__)\n"
        "image, truth = make_scene(3)\n"
        "w = SegmentWidget(image, CachedPredictor(load_sam('micro')), background=False)\n"
        "w.click(100, 100)\n"
        "print(sorted(w.masks))\n"
    )
    env = {
        "PYTHONPATH": str(site),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SAM_WIDGETS_OFFLINE": "1",
    }
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    first, masks = run.stdout.splitlines()[-2:]
    assert first.startswith(str(site)) and masks == "['object 1']"
    info = subprocess.run(
        [sys.executable, "-m", "sam_widgets", "info"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    assert f"bundled: {site}" in info.stdout
