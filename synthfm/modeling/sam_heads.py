"""SAM's prompt encoder and mask decoder, built with SAM's hyper-parameters for any input size."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where the heads are built: importing segment_anything costs 1.5-3 s (torchvision)
    from segment_anything.modeling import MaskDecoder, PromptEncoder

from synthfm.modeling.sam_vit import EMBEDDING_CHANNELS, PATCH_SIZE


def build_prompt_encoder(image_size: int) -> PromptEncoder:
    """SAM's PromptEncoder for a square S x S model input (embedding grid S/16, mask input S/4)."""
    from segment_anything.modeling import PromptEncoder

    grid = image_size // PATCH_SIZE
    return PromptEncoder(
        embed_dim=EMBEDDING_CHANNELS,
        image_embedding_size=(grid, grid),
        input_image_size=(image_size, image_size),
        mask_in_chans=16,
    )


def build_mask_decoder() -> MaskDecoder:
    """SAM's MaskDecoder (two-way transformer depth 2, 8 heads, MLP 2048, 3 multimask outputs)."""
    from segment_anything.modeling import MaskDecoder, TwoWayTransformer

    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=EMBEDDING_CHANNELS, mlp_dim=2048, num_heads=8),
        transformer_dim=EMBEDDING_CHANNELS,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
