"""One mask from a click_unet's candidates (modeling/single_mask.py) and where the rule is set."""

import numpy as np
import pytest
import torch

from synthfm.errors import CheckpointError, UserError
from synthfm.modeling.click_unet import ClickUNet
from synthfm.modeling.single_mask import BLEND_TEMPERATURE, single_mask
from synthfm.weights.checkpoint import load_checkpoint, save_checkpoint


def _tiny():
    torch.manual_seed(0)
    return ClickUNet(image_size=64, widths=(4, 8, 16, 16), depths=(1, 1, 1), num_heads=2).eval()


def test_best_is_the_highest_scoring_candidate():
    logits = torch.randn(2, 3, 8, 8)
    iou = torch.tensor([[0.2, 0.9, 0.1], [0.5, 0.4, 0.6]])
    out, score = single_mask(logits, iou, "best")
    assert out.shape == (2, 1, 8, 8) and score.shape == (2, 1)
    assert torch.equal(out[0, 0], logits[0, 1]) and torch.equal(out[1, 0], logits[1, 2])
    assert torch.allclose(score[:, 0], torch.tensor([0.9, 0.6]))


def test_blend_is_a_convex_mix_that_follows_a_confident_head():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, 8, 8, generator=g) * 5
    iou = torch.rand(4, 3, generator=g)
    out, score = single_mask(logits, iou, "iou_blend")
    assert torch.all(out[:, 0] >= logits.amin(1) - 1e-5) and torch.all(out[:, 0] <= logits.amax(1) + 1e-5)
    assert torch.all(score[:, 0] >= iou.amin(1) - 1e-6) and torch.all(score[:, 0] <= iou.amax(1) + 1e-6)
    # equal candidates: the blend is that candidate
    same, s = single_mask(logits[:, :1].repeat(1, 3, 1, 1), torch.full((4, 3), 0.7), "iou_blend")
    assert torch.allclose(same, logits[:, :1], atol=1e-5) and torch.allclose(s, torch.full((4, 1), 0.7))
    # a head far more sure of one candidate than T: the blend is (nearly) the pick
    sure = torch.tensor([[0.05, 0.95, 0.1]]).repeat(4, 1)
    blended, _ = single_mask(logits, sure, "iou_blend")
    assert torch.allclose(blended[:, 0], logits[:, 1], atol=1e-2 * logits.abs().max().item())
    assert BLEND_TEMPERATURE == pytest.approx(0.1)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="iou_blend"):
        single_mask(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3), "median")


def test_decode_uses_the_models_rule():
    model = _tiny()
    emb = model.encode(torch.rand(1, 3, 64, 64))
    coords, labels = torch.tensor([[[30.0, 30.0]]]), torch.tensor([[1]])
    with torch.no_grad():
        all_logits, all_iou = model.forward_all(emb, coords, labels)
        for rule in ("best", "iou_blend"):
            model.single_mask_rule = rule
            logits, iou = model.decode(emb, point_coords=coords, point_labels=labels)
            ref_logits, ref_iou = single_mask(all_logits, all_iou, rule)
            assert torch.allclose(logits, ref_logits) and torch.allclose(iou, ref_iou)


def test_checkpoint_inference_metadata_sets_the_rule_for_inference_only(tmp_path):
    from synthfm.inference import Predictor
    from synthfm.modeling import build_model
    from synthfm.weights import load_model

    torch.manual_seed(0)
    net = build_model("click_unet", image_size=64)  # checkpoints rebuild the registry's model

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, net, metadata={"inference": {"single_mask": "iou_blend"}})
    net, _ = load_model(str(path))
    assert net.single_mask_rule == "iou_blend"
    assert load_checkpoint(path)[0].single_mask_rule == "best"  # training (--init, --resume) keeps the trainer's rule
    predictor = Predictor.from_checkpoint(str(path))
    assert predictor.single_mask == "iou_blend"
    predictor.single_mask = "best"
    assert predictor.model.single_mask_rule == "best"
    with pytest.raises(UserError, match="unknown single-mask rule"):
        predictor.single_mask = "median"
    # a single-mask prediction is the blend of the three candidates
    predictor.single_mask = "iou_blend"
    predictor.allow_untrained = True  # the test model has no trained_outputs record
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (50, 40), dtype=np.uint8))
    one, score, _ = predictor.predict(point_coords=np.array([[20.0, 25.0]]), point_labels=np.array([1]), return_logits=True)
    three, scores, _ = predictor.predict(point_coords=np.array([[20.0, 25.0]]), point_labels=np.array([1]),
                                         multimask_output=True, return_logits=True)
    w = np.exp(scores / BLEND_TEMPERATURE) / np.exp(scores / BLEND_TEMPERATURE).sum()
    assert np.allclose(one[0], np.tensordot(w, three, 1), atol=1e-4)
    assert np.isclose(score[0], float(w @ scores), atol=1e-5)

    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, net, metadata={"inference": {"single_mask": "median"}})
    with pytest.raises(CheckpointError, match="inference.single_mask"):
        load_model(str(bad))
