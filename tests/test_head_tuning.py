"""The IoU head's ranking loss, --train-only iou_head, and --init default into a grown model."""

from __future__ import annotations

import pytest
import torch

from synthfm.errors import UserError
from synthfm.training.config import preset_config, validate_config
from synthfm.training.losses import iou_ranking_loss
from synthfm.weights.checkpoint import load_checkpoint, read_metadata


def _candidates():
    """Three candidate masks of one 8x8 target: exact, half, empty; true IoUs 1, 0.5, 0."""
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    logits = torch.full((1, 3, 8, 8), -5.0)
    logits[0, 0, 2:6, 2:6] = 5
    logits[0, 1, 2:6, 2:4] = 5
    return logits, target


def test_ranking_loss_prefers_scores_that_rank_the_best_candidate_first():
    logits, target = _candidates()
    right = torch.tensor([[0.9, 0.5, 0.1]])
    wrong = torch.tensor([[0.1, 0.5, 0.9]])
    assert iou_ranking_loss(right, logits, target) < iou_ranking_loss(wrong, logits, target) - 1.0
    scores = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)
    iou_ranking_loss(scores, logits, target).backward()
    g = scores.grad[0]
    assert g[0] < 0 < g[2]  # descent raises the best candidate's score and lowers the worst's


def test_ranking_loss_is_indifferent_between_equal_candidates():
    logits, target = _candidates()
    logits = logits[:, :1].expand(1, 3, 8, 8)  # three copies of the exact mask
    a = iou_ranking_loss(torch.tensor([[0.9, 0.2, 0.2]]), logits, target)
    b = iou_ranking_loss(torch.tensor([[0.2, 0.2, 0.9]]), logits, target)
    assert torch.isclose(a, b, atol=1e-6)


@pytest.fixture(scope="module")
def click_unet_checkpoint(tmp_path_factory):
    from synthfm.modeling import build_model
    from synthfm.weights.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("click_unet") / "click.safetensors"
    torch.manual_seed(0)
    save_checkpoint(path, build_model("click_unet", image_size=64))
    return path


def _config(tmp_path, init, **kw):
    return preset_config("tiny", encoder="click_unet", init=str(init), out=str(tmp_path / "run"), val_images=0,
                         epochs=1, images_per_epoch=4, batch_size=2, iou_loss_weight=1.0, **kw)


def test_train_only_iou_head_changes_the_head_and_nothing_else(tmp_path, click_unet_checkpoint):
    from synthfm.training.loop import train

    cfg = _config(tmp_path, click_unet_checkpoint, train_only="iou_head", iou_rank_weight=1.0)
    train(cfg, progress=False)
    before, _ = load_checkpoint(click_unet_checkpoint)
    after, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    a, b = before.state_dict(), after.state_dict()
    changed = {k.split(".")[0] for k in a if not torch.equal(a[k], b[k])}
    assert changed == {"iou_head"}
    assert meta["train_config"]["train_only"] == "iou_head"


def test_train_only_needs_an_init_and_a_head_loss(tmp_path, click_unet_checkpoint):
    with pytest.raises(UserError, match="--init"):
        validate_config(preset_config("tiny", encoder="click_unet", train_only="iou_head", iou_loss_weight=1.0))
    with pytest.raises(UserError, match="iou-rank-weight"):
        validate_config(preset_config("tiny", encoder="click_unet", train_only="iou_head",
                                      init=str(click_unet_checkpoint)))
    with pytest.raises(UserError, match="train-only"):
        validate_config(preset_config("tiny", train_only="decoder"))


def test_init_default_grows_the_shipped_model_into_the_deep_variant(tmp_path):
    # "default" is the shipped file, not a path in the working directory
    from synthfm.training.loop import train

    cfg = preset_config("tiny", encoder="click_unet_deep", init="default", out=str(tmp_path / "run"),
                        val_images=0, epochs=1, images_per_epoch=2, batch_size=2, prompts_per_image=1)
    train(cfg, progress=False)
    meta = read_metadata(tmp_path / "run" / "last.safetensors")
    assert meta["encoder"] == "click_unet_deep" and meta["init"]["name"] == "default"


def test_first_mask_weight_adds_candidate_zeros_own_loss():
    import torch.nn.functional as F

    from disc_batch import one_disc_batch
    from synthfm.modeling import build_model
    from synthfm.training.config import TrainConfig
    from synthfm.training.losses import bce_loss_per_item, soft_dice_loss
    from synthfm.training.step import compute_loss

    torch.manual_seed(0)
    model = build_model("click_unet", image_size=64).eval()
    batch = one_disc_batch()
    with torch.no_grad():
        base, mask_base = compute_loss(model, batch, TrainConfig(bce_weight=1.0))
        weighted, mask_weighted = compute_loss(model, batch, TrainConfig(bce_weight=1.0, first_mask_weight=0.5))
        logits, _ = model.forward_all(model.encode(batch.images), batch.point_coords, batch.point_labels)
        full = F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)
        target = batch.masks[:, None]
        first = (soft_dice_loss(full, target) + bce_loss_per_item(full, target))[:, 0].mean()
    assert torch.isclose(weighted - base, 0.5 * first, atol=1e-5)
    assert torch.equal(mask_base, mask_weighted)  # the logged mask loss stays the min over candidates


def test_first_mask_and_rank_weights_are_refused_for_late_fusion():
    with pytest.raises(UserError, match="first-mask-weight.*click_unet"):
        validate_config(preset_config("tiny", encoder="tiny_cnn", first_mask_weight=1.0))
    validate_config(preset_config("tiny", encoder="click_unet", first_mask_weight=1.0))
