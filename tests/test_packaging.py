"""The wheel carries the package data (default model, named recipes) and works away from the repo."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DATA = {
    "synthfm/weights/data/synthfm_default.safetensors",
    "synthfm/synth/recipes/synthfm.yaml",
    "synthfm/synth/recipes/shape_only.yaml",
    "synthfm/synth/recipes/boundary_only.yaml",
    "synthfm/viewer/napari.yaml",  # the napari plugin's npe2 manifest
}


def _build_wheel(tmp_path: Path) -> Path:
    # build from a copy, so the build does not write build/ or egg-info into the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "synthfm", src / "synthfm", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = out.glob("synthfm-*.whl")
    return wheel


def test_wheel_ships_the_default_model_and_recipes_and_they_are_found_when_installed(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert PACKAGE_DATA <= names, sorted(PACKAGE_DATA - names)
    assert "synthfm/cli/__main__.py" in names and "synthfm/synth/gpu/generator.py" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "synthfm = synthfm.viewer:napari.yaml" in zipfile.ZipFile(wheel).read(entry_points).decode()
    shipped = zipfile.ZipFile(wheel).getinfo("synthfm/weights/data/synthfm_default.safetensors").file_size
    assert shipped == (REPO / "synthfm" / "weights" / "data" / "synthfm_default.safetensors").stat().st_size

    # "installed" = the wheel unpacked on sys.path, run from a folder outside the repository
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import synthfm, pathlib; "
        "from synthfm.synth.recipe import available_recipes, load_recipe; "
        "from synthfm.weights import resolve_model; "
        "assert pathlib.Path(synthfm.__file__).is_relative_to(pathlib.Path(r'%s')), synthfm.__file__; "
        "assert {'synthfm', 'shape_only', 'boundary_only'} <= set(available_recipes()); "
        "load_recipe('synthfm'); print(resolve_model('default'))" % site
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).is_relative_to(site)
