"""Registry of image encoders and ``build_model``.

Every encoder maps normalised pixels (B, 3, S, S) to SAM's image embedding (B, 256, S/16, S/16),
so SAM's prompt encoder and mask decoder work on top of any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping

import torch
from torch import nn

from synthfm.errors import UserError
from synthfm.modeling.sam_vit import PATCH_SIZE, SAM_IMAGE_SIZE, build_sam_vit
from synthfm.modeling.click_unet import build_click_unet, build_click_unet_deep
from synthfm.modeling.small_encoders import build_tiny_cnn, build_tiny_vit
from synthfm.modeling.synthfm_model import SynthFM

MIN_IMAGE_SIZE = 64


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one encoder.

    build: image_size -> nn.Module.  official: weights come from an official SAM file
    (frozen by default, and referenced rather than stored in our checkpoints).
    """

    name: str
    build: Callable[[int], nn.Module]
    default_image_size: int
    official: bool
    description: str
    whole_model: bool = False  # build returns the whole promptable model, not an encoder for SAM's heads

    @property
    def frozen_by_default(self) -> bool:
        return self.official


ENCODERS: dict[str, EncoderSpec] = {
    "vit_h": EncoderSpec("vit_h", partial(build_sam_vit, "vit_h"), SAM_IMAGE_SIZE, True, "SAM ViT-H (632M params), official weights"),
    "vit_l": EncoderSpec("vit_l", partial(build_sam_vit, "vit_l"), SAM_IMAGE_SIZE, True, "SAM ViT-L (307M params), official weights"),
    "vit_b": EncoderSpec("vit_b", partial(build_sam_vit, "vit_b"), SAM_IMAGE_SIZE, True, "SAM ViT-B (86M params), official weights"),
    "tiny_cnn": EncoderSpec("tiny_cnn", build_tiny_cnn, 256, False, "ConvNeXt-style conv net (~2.35M params), trained from scratch"),
    "tiny_vit": EncoderSpec("tiny_vit", build_tiny_vit, 256, False, "conv stages + 2 global attention blocks (~2.6M params), trained from scratch"),
    "click_unet": EncoderSpec("click_unet", build_click_unet, 256, False,
                              "early-fusion U-Net, prompts rasterised at S/4 (~1.1M params), trained from scratch",
                              whole_model=True),
    "click_unet_deep": EncoderSpec("click_unet_deep", build_click_unet_deep, 256, False,
                                   "click_unet with 5 more blocks (~1.8M params); grows from a click_unet checkpoint",
                                   whole_model=True),
}


def is_whole_model(encoder: str | None) -> bool:
    """True for the early-fusion families (click_unet*), whose build returns the whole model."""
    spec = ENCODERS.get(encoder or "")
    return bool(spec and spec.whole_model)


def get_encoder_spec(encoder: str) -> EncoderSpec:
    """The spec of ``encoder``; UserError listing the known names if unknown."""
    try:
        return ENCODERS[encoder]
    except KeyError:
        raise UserError(f"unknown encoder {encoder!r}; known encoders: {', '.join(ENCODERS)}") from None


def check_image_size(image_size: int) -> int:
    """Validate a model input size (a multiple of 16, at least 64); UserError otherwise."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE or image_size % PATCH_SIZE:
        raise UserError(f"image size must be an integer multiple of {PATCH_SIZE} and >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    return image_size


def build_encoder(encoder: str, image_size: int, state_dict: Mapping[str, torch.Tensor] | None = None,
                  fast: bool = False) -> nn.Module:
    """The image encoder ``encoder`` for S = image_size.

    Randomly initialised, or, with ``state_dict`` (keys relative to the encoder), built on the
    'meta' device and given those tensors without a copy (``load_state_dict(assign=True)``,
    strict), which skips the random initialisation of large encoders.
    fast: for vit_*, :class:`~synthfm.modeling.fast_vit.FastImageEncoderViT` (same state dict and
    outputs, SDPA attention); ignored by the small encoders.
    """
    spec = get_encoder_spec(encoder)
    build = spec.build
    if fast and spec.official:
        from synthfm.modeling.fast_vit import build_fast_sam_vit

        build = partial(build_fast_sam_vit, spec.name)
    if state_dict is None:
        return build(image_size)
    with torch.device("meta"):
        module = build(image_size)
    module.load_state_dict(state_dict, strict=True, assign=True)
    return module


def use_fast_encoder(model: SynthFM, compute_dtype: torch.dtype | None = None) -> SynthFM:
    """Swap a vit_* model's SAM encoder for the fast one, sharing its tensors (no copy); in place.

    Works on any loaded model (official SAM file, our checkpoint); small encoders are left alone.
    """
    from segment_anything.modeling import ImageEncoderViT

    from synthfm.modeling.fast_vit import FastImageEncoderViT

    if isinstance(model.image_encoder, ImageEncoderViT):
        fast = FastImageEncoderViT.from_stock(model.image_encoder, compute_dtype=compute_dtype)
        fast.train(model.image_encoder.training)
        model.image_encoder = fast
    return model


def build_model(
    encoder: str = "vit_h",
    image_size: int | None = None,
    freeze_encoder: bool | None = None,
    *,
    encoder_state_dict: Mapping[str, torch.Tensor] | None = None,
    fast_encoder: bool = False,
) -> SynthFM:
    """A SynthFM with freshly initialised prompt encoder and mask decoder.

    image_size None = the encoder's default (1024 for vit_*, 256 for the small encoders);
    freeze_encoder None = True for vit_*, False for small encoders.  The encoder is random unless
    ``encoder_state_dict`` (keys relative to ``image_encoder``) is given (see build_encoder).
    Files are read by synthfm.weights.checkpoint / synthfm.weights.official_sam, not here.
    fast_encoder: build vit_* encoders as FastImageEncoderViT (see build_encoder).
    Unknown encoder or bad image size -> UserError.
    """
    spec = get_encoder_spec(encoder)
    size = check_image_size(spec.default_image_size if image_size is None else image_size)
    frozen = spec.frozen_by_default if freeze_encoder is None else bool(freeze_encoder)
    if spec.whole_model:
        if frozen:
            raise UserError(f"{spec.name} is trained end to end; it has no separate encoder to freeze")
        model = spec.build(size)
        if encoder_state_dict is not None:
            model.load_state_dict(encoder_state_dict, strict=True)
        return model
    image_encoder = build_encoder(spec.name, size, encoder_state_dict, fast=fast_encoder)
    return SynthFM(encoder_name=spec.name, image_encoder=image_encoder, image_size=size, freeze_encoder=frozen)
