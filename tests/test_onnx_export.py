"""ONNX export: graphs match PyTorch in onnxruntime (any number of points), report, CLI contract."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from synthfm.weights.checkpoint import save_checkpoint  # noqa: E402
from synthfm.cli import cli  # noqa: E402
from synthfm.cli.support import run_click  # noqa: E402
from synthfm.errors import UserError  # noqa: E402
from synthfm.modeling import build_model  # noqa: E402
from synthfm.inference.onnx_export import export_onnx, image_inputs, prompt_inputs  # noqa: E402
from synthfm.inference.predictor import Predictor  # noqa: E402

TOL = 1e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = build_model("tiny_cnn", image_size=64).eval()
    report = export_onnx(model, d / "out")
    return model, d / "out", report


def test_report_records_files_and_a_passing_verification(exported):
    _, out, report = exported
    on_disk = json.loads((out / "export.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert set(p.name for p in out.iterdir()) == {"decoder.onnx", "encoder.onnx", "export.json"}
    assert report["files"]["decoder"]["inputs"] == ["image_embeddings", "point_coords", "point_labels", "mask_input",
                                                    "has_mask_input", "orig_im_size"]
    ver = report["verification"]
    assert ver["passed"] and ver["max_abs_diff"] <= TOL
    assert {c["num_points"] for c in ver["decoder"]["cases"]} >= {2, 3, 5}  # dynamic number of points
    assert all(c["mask_agreement"] > 0.999 for c in ver["decoder"]["cases"])
    assert ver["encoder"]["max_abs_diff"] <= TOL


def test_graph_inputs_and_dynamic_axes(exported):
    _, out, _ = exported
    sess = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    assert shapes["image_embeddings"] == [1, 256, 4, 4]
    assert isinstance(shapes["point_coords"][1], str) and shapes["point_coords"][2] == 2
    assert shapes["mask_input"] == [1, 1, 16, 16]
    assert [o.name for o in sess.get_outputs()] == ["masks", "scores", "low_res_logits"]


@pytest.mark.parametrize("n_clicks", [1, 7])
def test_end_to_end_matches_the_predictor(exported, n_clicks):
    """encoder.onnx + decoder.onnx on a real-size image == Predictor.predict (same clicks)."""
    model, out, _ = exported
    rng = np.random.default_rng(n_clicks)
    image = (rng.random((50, 90)) * 255).astype(np.uint8)
    image[10:40, 20:60] = 200
    coords = np.column_stack([rng.uniform(0, 89, n_clicks), rng.uniform(0, 49, n_clicks)]).astype(np.float32)
    labels = (np.arange(n_clicks) % 3 != 2).astype(np.int64)
    predictor = Predictor(model)
    predictor.set_image(image, preset="none")
    ref_masks, ref_scores, ref_low = predictor.predict(coords, labels, return_logits=True)

    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    img, hw = image_inputs(image, 64)
    (emb,) = enc.run(None, {"image": img, "input_size": hw})
    np.testing.assert_allclose(emb, predictor.get_image_embedding().numpy(), atol=TOL)
    pc, pl = prompt_inputs(coords, labels, None, image.shape, 64)
    assert pc.shape == (1, n_clicks + 1, 2) and pl[0, -1] == -1
    masks, scores, low = dec.run(None, {"image_embeddings": emb, "point_coords": pc, "point_labels": pl,
                                        "mask_input": np.zeros((1, 1, 16, 16), np.float32),
                                        "has_mask_input": np.zeros(1, np.float32),
                                        "orig_im_size": np.array(image.shape, np.float32)})
    assert masks.shape == (1, 1, 50, 90)
    np.testing.assert_allclose(low[0], ref_low, atol=TOL)
    np.testing.assert_allclose(scores[0], ref_scores, atol=TOL)
    np.testing.assert_allclose(masks[0], ref_masks, atol=TOL)


def test_multimask_and_tiny_vit_encoder(tmp_path):
    torch.manual_seed(1)
    model = build_model("tiny_vit", image_size=64).eval()
    report = export_onnx(model, tmp_path / "vit", multimask=True)
    ver = report["verification"]
    assert ver["passed"], ver
    assert all(c["masks_shape"][1] == 3 for c in ver["decoder"]["cases"])


def test_decoder_only_and_no_clobbering(exported, tmp_path):
    model, _, _ = exported
    out = tmp_path / "dec"
    export_onnx(model, out, include_encoder=False, verify=False)
    assert (out / "decoder.onnx").is_file() and not (out / "encoder.onnx").exists()
    before = (out / "decoder.onnx").read_bytes()
    with pytest.raises(UserError, match="--overwrite"):
        export_onnx(model, out)
    assert (out / "decoder.onnx").read_bytes() == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        export_onnx(model, tmp_path / "file")


def test_cli_exports_a_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, build_model("tiny_cnn", image_size=64), metadata={"train_config": {"steps": 1}})
    result = CliRunner().invoke(cli, ["export-onnx", "--model", str(ckpt), "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert "decoder.onnx, encoder.onnx" in result.output and "max abs difference" in result.output
    report = json.loads((tmp_path / "x" / "export.json").read_text())
    assert report["source"] == {"checkpoint": "tiny.safetensors", "train_config": {"steps": 1}}
    # second run without --overwrite: one error line, exit 2
    code = run_click(cli, ["export-onnx", "--model", str(ckpt), "--out", str(tmp_path / "x")], prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]
    code = run_click(cli, ["export-onnx", "--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "y")],
                     prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not found" in err[0]
