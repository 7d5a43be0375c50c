"""--synth-device: batches from the torch engine on the training device (here the CPU)."""

from __future__ import annotations

import pytest
import torch

from synthfm.errors import UserError
from synthfm.synth.recipe import default_recipe
from synthfm.training.config import preset_config
from synthfm.training.device_batches import device_batches, previous_mask_logits, validate_device_synthesis
from synthfm.training.loop import train

from resume_check import assert_stop_resume_exact


def _cfg(out, **kw):
    base = dict(encoder="click_unet", size=64, gen_size=96, batch_size=3, prompts_per_image=2, epochs=2,
                images_per_epoch=6, val_images=0, mask_fraction=0.5, iou_loss_weight=1.0, bce_weight=1.0,
                box_fraction=0.3, synth_device="cpu", device="cpu", checkpoint_every=0, out=str(out))
    base.update(kw)
    return preset_config("tiny", **base)


def test_batches_have_the_trainer_layout_and_resume_where_they_stopped(tmp_path):
    cfg = _cfg(tmp_path / "unused")
    stream = device_batches(default_recipe(), cfg, 64, torch.device("cpu"), 0, 0, 1)
    (b0, n0), (b1, n1) = next(stream), next(stream)
    m = b0.masks.shape[0]
    assert b0.images.shape[1:] == (1, 64, 64) and b0.masks.shape[1:] == (64, 64)
    assert m == 2 * b0.images.shape[0] and n0 == 3 and n1 == 6
    assert b0.mask_inputs.shape == (m, 1, 16, 16) and b0.has_mask.dtype == torch.bool
    assert torch.all(b0.mask_inputs[~b0.has_mask] == 0)
    # clicks were scaled with the images: every positive click lies on (or next to) its target
    for row in range(m):
        for (x, y), lab in zip(b0.point_coords[row].tolist(), b0.point_labels[row].tolist()):
            if lab == 1:
                yy, xx = min(63, round(y)), min(63, round(x))
                assert b0.masks[row, max(0, yy - 1):yy + 2, max(0, xx - 1):xx + 2].any()
    # the stream restarted at index 3 gives the second batch again
    again, _ = next(device_batches(default_recipe(), cfg, 64, torch.device("cpu"), 3, 0, 1))
    assert torch.equal(again.images, b1.images) and torch.equal(again.point_coords, b1.point_coords)


def test_previous_mask_logits_are_perturbed_targets():
    masks = torch.zeros(4, 64, 64, dtype=torch.uint8)
    masks[:, 16:48, 20:44] = 1
    logits = previous_mask_logits(masks, torch.Generator().manual_seed(0), 16)
    assert logits.shape == (4, 1, 16, 16)
    assert torch.all(logits.abs() >= 2.0) and torch.all(logits.abs() <= 8.0)
    target = (torch.nn.functional.adaptive_avg_pool2d(masks[:, None].float(), 16) > 0.5)
    agree = ((logits > 0) == target).float().mean(dim=(1, 2, 3))
    assert torch.all(agree > 0.6)  # near the target, not equal to it for every row
    assert not torch.all(agree == 1.0)


def test_stop_and_resume_on_the_torch_engine_is_exact(tmp_path):
    assert_stop_resume_exact(_cfg, tmp_path, stop_after_steps=1)


def test_refusals_are_one_line_and_touch_nothing(tmp_path):
    with pytest.raises(UserError, match="training device"):
        validate_device_synthesis(_cfg(tmp_path, synth_device="cuda"), torch.device("cpu"))
    with pytest.raises(UserError, match="zoom"):
        validate_device_synthesis(_cfg(tmp_path, zoom_fraction=0.3), torch.device("cpu"))
    with pytest.raises(UserError, match="synth-device"):
        validate_device_synthesis(_cfg(tmp_path, synth_device="not a device"), torch.device("cpu"))
    out = tmp_path / "run"
    with pytest.raises(UserError):
        train(_cfg(out, zoom_fraction=0.3), progress=False)
    assert not out.exists()
