"""ClickUNet exports to the same ONNX interface as SynthFM and matches PyTorch in onnxruntime."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("multimask,rule", [(False, "best"), (False, "iou_blend"), (True, "best")])
def test_click_unet_export_matches_pytorch(tmp_path, multimask, rule):
    from synthfm.inference.onnx_export import export_onnx
    from synthfm.modeling.click_unet import ClickUNet

    torch.manual_seed(0)
    model = ClickUNet(image_size=64, widths=(4, 8, 16, 16), depths=(1, 1, 1), num_heads=2).eval()
    model.single_mask_rule = rule  # the graph follows the model's single-mask rule
    report = export_onnx(model, tmp_path / "onnx", multimask=multimask)
    ver = report["verification"]
    assert ver["passed"] and ver["max_abs_diff"] < 1e-4
    assert "encoder" in ver  # the stem is exported too
    for case in ver["decoder"]["cases"]:
        assert case["mask_agreement"] > 0.999
        assert case["masks_shape"][1] == (3 if multimask else 1)
    assert report["files"]["decoder"]["inputs"][0] == "image_embeddings"
