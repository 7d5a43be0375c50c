"""Outputs a checkpoint did not train are refused or marked (Predictor, segment, evaluation, ONNX)."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from synthfm.cli import cli
from synthfm.cli.support import run_click
from synthfm.training.config import config_to_dict, preset_config
from synthfm.training.early_fusion import trained_outputs
from synthfm.weights.outputs import OUTPUT_NAMES, UntrainedOutputError, trained_outputs_of

NONE_TRAINED = {"multimask": False, "iou_scores": False, "mask_input": False}
ALL_TRAINED = {"multimask": True, "iou_scores": True, "mask_input": True}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two copies of one random tiny_cnn at 64 px: one recording nothing trained, one everything."""
    from synthfm.modeling import build_model
    from synthfm.weights.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("outputs")
    torch.manual_seed(0)
    model = build_model("tiny_cnn", image_size=64)
    paths = {}
    for name, outputs in (("untrained", NONE_TRAINED), ("trained", ALL_TRAINED)):
        paths[name] = d / f"{name}.safetensors"
        save_checkpoint(paths[name], model, metadata={"trained_outputs": outputs})
    yy, xx = np.mgrid[:48, :64]
    paths["png"] = d / "disc.png"
    cv2.imwrite(str(paths["png"]), (((yy - 24) ** 2 + (xx - 30) ** 2 < 100) * 200 + 20).astype(np.uint8))
    return paths


@pytest.mark.parametrize("encoder", ["click_unet", "tiny_cnn"])
@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("iou", [0.0, 1.0])
@pytest.mark.parametrize("mask_fraction", [0.0, 0.3])
def test_older_checkpoints_use_the_training_rule(encoder, multimask, iou, mask_fraction):
    config = dataclasses.replace(preset_config("tiny"), encoder=encoder, multimask=multimask,
                                 iou_loss_weight=iou, mask_fraction=mask_fraction)
    inferred = trained_outputs_of({"format": "synthfm", "encoder": encoder, "train_config": config_to_dict(config)})
    assert inferred.source == "train_config"
    assert inferred.as_dict() == trained_outputs(config)


def test_missing_keys_count_as_not_trained():
    old = trained_outputs_of({"format": "synthfm", "encoder": "vit_b", "train_config": {"encoder": "vit_b"}})
    assert old.as_dict() == NONE_TRAINED and old.untrained() == list(OUTPUT_NAMES)
    assert trained_outputs_of({"format": "synthfm", "encoder": "tiny_cnn"}).source == "unknown"
    assert trained_outputs_of({"format": "official_sam"}).as_dict() == ALL_TRAINED
    partial = trained_outputs_of({"trained_outputs": {"iou_scores": True}})
    assert partial.as_dict() == {"multimask": False, "iou_scores": True, "mask_input": False}
    assert "not trained: multimask, mask_input" in partial.describe()


def test_predictor_refuses_and_marks_untrained_outputs(checkpoints):
    from synthfm.inference.predictor import Predictor

    image = cv2.imread(str(checkpoints["png"]), cv2.IMREAD_UNCHANGED)
    click = (np.array([[30.0, 24.0]]), np.array([1]))
    untrained = Predictor.from_checkpoint(checkpoints["untrained"])
    untrained.set_image(image, preset="none")
    with pytest.raises(UntrainedOutputError, match="multimask"):
        untrained.predict(*click, multimask_output=True)
    masks, scores, low = untrained.predict(*click)
    assert masks.shape == (1, 48, 64) and np.isnan(scores).all()
    with pytest.raises(UntrainedOutputError, match="mask_input"):
        untrained.predict(*click, mask_input=low)

    raw = Predictor.from_checkpoint(checkpoints["untrained"], allow_untrained=True)
    trained = Predictor.from_checkpoint(checkpoints["trained"])
    results = []
    for p in (raw, trained):
        p.set_image(image, preset="none")
        m3, s3, low3 = p.predict(*click, multimask_output=True)
        assert m3.shape == (3, 48, 64) and np.isfinite(s3).all()
        p.predict(*click, mask_input=low3[:1])
        results.append(s3)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)  # same weights: only the marking differs
    m1, _, _ = trained.predict(*click)
    np.testing.assert_array_equal(m1, masks)


def _one_error_line(capsys, argv) -> str:
    code = run_click(cli, argv, prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("synthfm: error:"), err
    return err[0]


def test_segment_refuses_untrained_options_and_marks_the_score(checkpoints, tmp_path, capsys):
    base = ["segment", str(checkpoints["png"]), "--point", "30,24", "--model", str(checkpoints["untrained"]),
            "--out", str(tmp_path / "m.png")]
    assert "--multimask needs the 3-candidate" in _one_error_line(capsys, base + ["--multimask"])
    assert not (tmp_path / "m.png").exists()
    assert run_click(cli, base, prog_name="synthfm") == 0
    assert "score n/a (IoU head not trained)" in capsys.readouterr().out
    assert run_click(cli, base + ["--multimask", "--allow-untrained", "--overwrite"], prog_name="synthfm") == 0
    assert "mask " in capsys.readouterr().out
    trained = base[:5] + [str(checkpoints["trained"]), "--out", str(tmp_path / "t.png"), "--multimask"]
    assert run_click(cli, trained, prog_name="synthfm") == 0
    assert "scores" in capsys.readouterr().out


def test_segment_refuses_stop_score_without_a_trained_iou_head(checkpoints, tmp_path, capsys):
    import SimpleITK as sitk

    vol = tmp_path / "v.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 20, 20), np.int16)), str(vol))
    line = _one_error_line(capsys, ["segment", str(vol), "--slice", "1", "--point", "5,5", "--propagate",
                                    "--stop-score", "0.5", "--model", str(checkpoints["untrained"]),
                                    "--out", str(tmp_path / "o.nii.gz")])
    assert "--stop-score needs the predicted-IoU scores" in line


def test_evaluation_methods_say_what_was_trained(checkpoints):
    from synthfm.evaluation.methods import build_methods, method_settings

    untrained, trained = build_methods([str(checkpoints["untrained"]), str(checkpoints["trained"])])
    assert not untrained.multimask_single_click and trained.multimask_single_click
    settings = method_settings(untrained)
    assert settings["trained_outputs"] == {**NONE_TRAINED, "source": "recorded"}


def test_onnx_export_refuses_untrained_multimask_and_records_outputs(checkpoints, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from synthfm.inference.onnx_export import TRAINED_OUTPUTS_KEY

    out = tmp_path / "onnx"
    argv = ["export-onnx", "--model", str(checkpoints["untrained"]), "--out", str(out), "--no-encoder", "--no-verify"]
    assert "--multimask needs" in _one_error_line(capsys, argv + ["--multimask"])
    assert run_click(cli, argv, prog_name="synthfm") == 0
    assert "did not train multimask, iou_scores, mask_input" in capsys.readouterr().err
    report = json.loads((out / "export.json").read_text())
    assert report["trained_outputs"] == {**NONE_TRAINED, "source": "recorded"}
    meta = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert json.loads(meta.custom_metadata_map[TRAINED_OUTPUTS_KEY]) == report["trained_outputs"]
