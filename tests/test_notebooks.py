"""The notebooks run top to bottom (tiny settings) and are committed without outputs."""

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_synthetic_data.ipynb", "02_segment_with_clicks.ipynb", "03_evaluate.ipynb"]


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", ""))
        out.extend(str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(out)


def test_notebooks_are_committed_without_outputs():
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs before committing"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, monkeypatch):
    if name.startswith("03") and not (NOTEBOOKS.parent.parent / "shared" / "data").is_dir():
        pytest.skip("03_evaluate needs ../shared/data")
    monkeypatch.setenv("SYNTHFM_NB_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    elapsed = time.perf_counter() - start
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.get("output_type") != "error" for c in code for o in c.outputs)
    text = "\n".join(_text(c) for c in code)
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    if name.startswith("01"):
        assert "shipped recipes:" in text and "synthfm" in text and images >= 3
    elif name.startswith("02"):
        assert "Dice" in text and "intensity window" in text and images >= 1
    else:
        assert "methods:" in text and images >= 1
    print(f"{name}: {elapsed:.1f} s")
