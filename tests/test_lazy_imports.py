"""The default (click_unet) segment path must not import segment_anything / torchvision (1.5-3 s of start-up)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys
import numpy as np
from synthfm.inference.predictor import Predictor
p = Predictor.from_checkpoint("default", device="cpu")
img = np.zeros((64, 64), np.uint8); img[20:40, 20:40] = 200
p.set_image(img, preset="none")
p.predict(np.array([[30, 30]], np.float32), np.array([1]))
print(json.dumps({m: m in sys.modules for m in ("segment_anything", "torchvision", "torch._dynamo")}))
"""


def test_default_model_path_does_not_import_segment_anything():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {
        "segment_anything": False, "torchvision": False, "torch._dynamo": False}


def test_sam_heads_still_build():
    # the lazy imports inside the builders still give SAM's modules
    from synthfm.modeling import build_model

    net = build_model("tiny_cnn", image_size=64)
    assert type(net.mask_decoder).__name__ == "MaskDecoder"
    assert type(net.prompt_encoder).__name__ == "PromptEncoder"
