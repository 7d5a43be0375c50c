"""Growing a click_unet into a deeper one keeps its function, and refuses what cannot grow."""

import pytest
import torch

from synthfm.errors import UserError
from synthfm.modeling.click_unet import ClickUNet
from synthfm.training.grow import grow_click_unet

WIDTHS = (8, 16, 16, 32)


def _prompts(batch: int):
    g = torch.Generator().manual_seed(3)
    coords = torch.rand(batch, 3, 2, generator=g) * 64
    labels = torch.tensor([[1, 0, 1]] * batch)
    masks = torch.randn(batch, 1, 16, 16, generator=g)
    return coords, labels, masks


def _perturbed(model: ClickUNet, seed: int) -> ClickUNet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))  # every block's branch non-zero, as after training
    return model.eval()


def test_grown_model_computes_the_same_masks_and_scores():
    torch.manual_seed(0)
    small = _perturbed(ClickUNet(64, widths=WIDTHS, depths=(1, 1, 2), attention_blocks=1, num_heads=2), 1)
    big = ClickUNet(64, widths=WIDTHS, depths=(2, 2, 4), attention_blocks=2, up_depths=(2, 1), num_heads=2,
                    name="click_unet_deep")
    grow_click_unet(small, big.eval())
    images = torch.rand(2, 1, 64, 64) * 255
    coords, labels, masks = _prompts(2)
    with torch.no_grad():
        a = small.forward_all(small.encode(images), coords, labels, None, masks)
        b = big.forward_all(big.encode(images), coords, labels, None, masks)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-6)
    # the new blocks are not frozen: one gradient step moves the grown model's output
    big.train()
    out = big.forward_all(big.encode(images), coords, labels, None, masks)[0].sum()
    out.backward()
    new_fc2 = big.enc16[2].fc2.weight
    assert new_fc2.grad is not None and new_fc2.grad.abs().sum() > 0


def test_cannot_shrink_or_change_widths():
    small = ClickUNet(64, widths=WIDTHS, depths=(1, 1, 2), attention_blocks=1, num_heads=2)
    big = ClickUNet(64, widths=WIDTHS, depths=(2, 2, 4), attention_blocks=2, num_heads=2)
    with pytest.raises(UserError, match="stage"):
        grow_click_unet(big, small)
    other = ClickUNet(64, widths=(8, 16, 32, 32), depths=(2, 2, 4), num_heads=2)
    with pytest.raises(UserError, match="widths"):
        grow_click_unet(small, other)


def test_deep_variant_is_registered_as_a_whole_model():
    from synthfm.modeling.registry import ENCODERS, build_model, is_whole_model

    assert is_whole_model("click_unet_deep") and is_whole_model("click_unet") and not is_whole_model("tiny_cnn")
    model = build_model("click_unet_deep", 64)
    assert model.encoder_name == "click_unet_deep" and ENCODERS["click_unet_deep"].whole_model
