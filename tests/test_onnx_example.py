"""examples/onnx_segment.py: the shipped model exported to ONNX, run with onnxruntime only (torch and synthfm
made unimportable), gives PyTorch's mask.

Tolerance: logits within 1e-3 (export's own verification tolerance, VERIFY_TOLERANCE) and at least 99.9% of
the pixels with the same mask value (a pixel whose logit is within 1e-3 of 0 may flip).
"""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "onnx_segment.py"

# Runs the example as a script with torch and synthfm blocked: `import torch` raises ImportError.
_NO_TORCH = """
import runpy, sys
for name in ("torch", "torchvision", "synthfm", "segment_anything"):
    sys.modules[name] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from synthfm.inference.onnx_export import export_onnx
    from synthfm.weights import load_model, model_spec

    out = tmp_path_factory.mktemp("onnx_example") / "onnx"
    net, _ = load_model(model_spec("default", None, None), device="cpu")
    report = export_onnx(net, out, verify=False)
    assert report["files"]["encoder"], "the shipped model's encoder must be exported"
    return out


def _image(path: Path) -> np.ndarray:
    # non-square and larger than the model input, so resizing (INTER_AREA) and bottom/right padding matter
    yy, xx = np.mgrid[:150, :220]
    img = np.full((150, 220), 40, np.uint8)
    img[(yy - 70) ** 2 / 35**2 + (xx - 120) ** 2 / 50**2 < 1] = 170
    img[10:40, 10:60] = 110
    img = (img + np.random.default_rng(0).normal(0, 6, img.shape)).clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return img


@pytest.mark.parametrize("prompt", [["--point", "120,70"], ["--point", "120,70", "--negative", "30,25"],
                                    ["--box", "65,30,175,110"]])
def test_example_matches_pytorch_without_torch(exported, tmp_path, prompt):
    from synthfm.inference.predictor import Predictor

    png = tmp_path / "scan.png"
    image = _image(png)
    out, logits_path = tmp_path / "mask.png", tmp_path / "logits.npy"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, "-c", _NO_TORCH, str(EXAMPLE), str(exported), str(png), *prompt,
                          "--out", str(out), "--logits", str(logits_path)],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    onnx_logits = np.load(logits_path)
    onnx_mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED) > 0

    predictor = Predictor.from_checkpoint("default", device="cpu")
    predictor.set_image(image, preset="auto")
    pairs = {"--point": [], "--negative": []}
    box = None
    for flag, value in zip(prompt[::2], prompt[1::2]):
        numbers = [float(v) for v in value.split(",")]
        if flag == "--box":
            box = np.array(numbers, np.float32)
        else:
            pairs[flag].append(numbers)
    coords = pairs["--point"] + pairs["--negative"]
    labels = [1] * len(pairs["--point"]) + [0] * len(pairs["--negative"])
    logits, _, _ = predictor.predict(np.array(coords, np.float32).reshape(-1, 2) if coords else None,
                                     np.array(labels) if coords else None, box=box, return_logits=True)
    torch_logits = logits[0]
    assert onnx_logits.shape == torch_logits.shape == image.shape
    assert np.abs(onnx_logits - torch_logits).max() < 1e-3
    agreement = float((onnx_mask == (torch_logits > 0)).mean())
    assert agreement >= 0.999
    assert 500 < onnx_mask.sum() < image.size // 2  # a real object, not an empty or full mask


def test_example_refuses_16_bit(exported, tmp_path):
    png = tmp_path / "ct16.png"
    cv2.imwrite(str(png), np.full((40, 40), 3000, np.uint16))
    run = subprocess.run([sys.executable, "-c", _NO_TORCH, str(EXAMPLE), str(exported), str(png), "--point", "5,5",
                          "--out", str(tmp_path / "m.png")], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "window it to 8 bits first" in run.stderr
    assert "Traceback" not in run.stderr
