"""``--init``: start a run from the weights of a checkpoint (the shipped default or a path)."""

from __future__ import annotations

import torch

from synthfm.errors import UserError
from synthfm.modeling.registry import is_whole_model
from synthfm.training.config import TrainConfig


def load_init(model, config: TrainConfig) -> None:
    """Copy the weights of checkpoint ``config.init`` (``"default"`` = the shipped model, or a path)
    into ``model`` (strict; UserError on mismatch).  A click_unet checkpoint grows into a deeper
    early-fusion model (synthfm.training.grow) with its function unchanged."""
    from synthfm.weights.checkpoint import load_checkpoint, read_metadata
    from synthfm.weights.source import resolve_model

    path = resolve_model(config.init)
    meta = read_metadata(path)
    grows = meta["encoder"] != config.encoder and is_whole_model(meta["encoder"]) and is_whole_model(config.encoder)
    if meta["encoder"] != config.encoder and not grows:
        raise UserError(f"--init {path} is a {meta['encoder']} model, this run trains {config.encoder}")
    source, _ = load_checkpoint(path, sam_checkpoint=config.sam_checkpoint)
    if grows:  # a click_unet into a deeper click_unet_*: same function, more blocks to train
        from synthfm.training.grow import grow_click_unet

        grow_click_unet(source, model)
        return
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as exc:
        raise UserError(f"--init {path} does not fit this run's model: {str(exc).splitlines()[0][:200]}") from None


def freeze_all_but(model, part: str) -> None:
    """Freeze every parameter of ``model`` outside its sub-module ``part`` (e.g. ``"iou_head"``).

    UserError when the model has no such part (e.g. ``iou_head`` of a SAM-decoder model, whose
    IoU head sits inside the mask decoder).
    """
    head = getattr(model, part, None)
    if not isinstance(head, torch.nn.Module):
        raise UserError(f"--train-only {part}: a {getattr(model, 'encoder_name', type(model).__name__)} model has no {part}")
    keep = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
