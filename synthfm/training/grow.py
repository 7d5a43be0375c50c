"""Function-preserving growth of a ClickUNet into a deeper one (Net2Net-style "deepen").

A trained click_unet has learnt most of what it can: each further cosine cycle of the shipped
default gained less (+0.068, then +0.018 synthetic Dice).  Training a deeper network from scratch
would throw away hours of CPU.  Instead the trained weights are copied into the deeper network and
every block that the small one does not have starts as the identity: its residual branch ends in a
zero layer, so the grown model computes exactly the same masks and scores as the one it came from
(tests/test_grow.py) and training only adds to it.

Mapping rule, per stage (``enc4``, ``enc8``, ``enc16``, ``dec8``, ``dec4``): the k-th ConvNeXt block
of the source goes to the k-th ConvNeXt block of the target, the k-th attention block to the k-th
attention block; the target's extra blocks of each kind come after the matched ones of that kind.
Every other tensor (stem, prompt projection, down/up samplers, heads) must match by name and shape.
"""

from __future__ import annotations

import torch
from torch import nn

from synthfm.errors import UserError
from synthfm.modeling.click_unet import ClickUNet
from synthfm.modeling.small_encoders import AttentionBlock, ConvNeXtBlock

STAGES = ("enc4", "enc8", "enc16", "dec8", "dec4")


def _zero_residual(block: nn.Module) -> None:
    """Make a ConvNeXt or attention block the identity by zeroing the layers that end its branches."""
    if isinstance(block, ConvNeXtBlock):
        ends = [block.fc2]
    elif isinstance(block, AttentionBlock):
        ends = [block.pos, block.proj, block.fc2]  # x + pos(x), t + proj(attn), t + fc2(mlp)
    else:
        raise TypeError(f"cannot make {type(block).__name__} an identity block")
    for layer in ends:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


@torch.no_grad()
def grow_click_unet(source: ClickUNet, target: ClickUNet) -> ClickUNet:
    """Copy ``source``'s weights into the deeper ``target`` (in place; returns it).

    Both must have the same widths, prompt settings and number of masks, and ``target`` at least
    as many blocks of each kind in every stage.  UserError otherwise (a checkpoint that cannot grow
    into the run's model is the user's mistake, not a bug).
    """
    if tuple(source.widths) != tuple(target.widths) or source.num_masks != target.num_masks:
        raise UserError(f"cannot grow a {source.encoder_name} with widths {source.widths} into a "
                        f"{target.encoder_name} with widths {target.widths}")
    done: set[str] = set()
    for stage in STAGES:
        src_stage, tgt_stage = getattr(source, stage), getattr(target, stage)
        for kind in (ConvNeXtBlock, AttentionBlock):
            src_blocks = [b for b in src_stage if isinstance(b, kind)]
            tgt_blocks = [b for b in tgt_stage if isinstance(b, kind)]
            if len(src_blocks) > len(tgt_blocks):
                raise UserError(f"cannot grow {source.encoder_name} into {target.encoder_name}: stage {stage} has "
                                f"{len(src_blocks)} {kind.__name__}s, the target only {len(tgt_blocks)}")
            for src_block, tgt_block in zip(src_blocks, tgt_blocks):
                tgt_block.load_state_dict(src_block.state_dict(), strict=True)
            for extra in tgt_blocks[len(src_blocks):]:
                _zero_residual(extra)
        done.add(stage)
    rest_src = {k: v for k, v in source.state_dict().items() if k.split(".", 1)[0] not in done}
    rest_tgt = {k: v for k, v in target.state_dict().items() if k.split(".", 1)[0] not in done}
    if set(rest_src) != set(rest_tgt) or any(rest_src[k].shape != rest_tgt[k].shape for k in rest_src):
        raise UserError(f"cannot grow {source.encoder_name} into {target.encoder_name}: their stems or heads differ")
    for key, value in rest_src.items():
        rest_tgt[key].copy_(value)
    return target
