"""SAM's ViT image encoders (vit_h / vit_l / vit_b) built from segment_anything's own modules.

The hyper-parameters are the official ones (``segment_anything/build_sam.py``); only the input
size may differ from SAM's 1024 px, in which case the absolute position embedding grid and the
global-attention relative position tables are sized for ``image_size // 16`` (official weights are
resized to fit by :func:`synthfm.weights.official_sam.adapt_encoder_state_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # segment_anything (and torchvision with it) is imported only when a ViT is built
    from segment_anything.modeling import ImageEncoderViT

PATCH_SIZE = 16
EMBEDDING_CHANNELS = 256  # SAM's prompt embedding dim; every encoder's output channels
SAM_IMAGE_SIZE = 1024


@dataclass(frozen=True)
class ViTConfig:
    """Official SAM ViT hyper-parameters."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14


VIT_CONFIGS: dict[str, ViTConfig] = {
    "vit_h": ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
    "vit_l": ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_b": ViTConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
}


def build_sam_vit(variant: str, image_size: int = SAM_IMAGE_SIZE) -> ImageEncoderViT:
    """SAM's ``ImageEncoderViT`` for ``variant`` in VIT_CONFIGS, randomly initialised.

    Input (B, 3, S, S) normalised pixels, S = image_size; output (B, 256, S/16, S/16).
    """
    from segment_anything.modeling import ImageEncoderViT

    cfg = VIT_CONFIGS[variant]
    return ImageEncoderViT(
        img_size=image_size,
        patch_size=PATCH_SIZE,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=cfg.global_attn_indexes,
        window_size=cfg.window_size,
        out_chans=EMBEDDING_CHANNELS,
    )
