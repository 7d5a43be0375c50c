"""Run SAM's MaskDecoder with one prompt set per image embedding.

``MaskDecoder.predict_masks`` repeats *every* image embedding for *every* prompt set
(``repeat_interleave``), which is right for SamPredictor (one image, many prompts) but wrong for a
training batch (prompt set i belongs to image i).  This function performs the same computation with
the decoder's own submodules, pairing prompt set i with embedding i.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from segment_anything.modeling import MaskDecoder


def decode_per_embedding(
    mask_decoder: MaskDecoder,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
    multimask_output: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predict masks for B (embedding, prompt set) pairs.

    image_embeddings: (B, 256, h, w); image_pe: (1, 256, h, w);
    sparse_prompt_embeddings: (B, N, 256); dense_prompt_embeddings: (B, 256, h, w).
    Returns low-res mask logits (B, C, 4h, 4w) and IoU predictions (B, C), C = 3 if
    ``multimask_output`` else 1 (the same mask selection as ``MaskDecoder.forward``).
    """
    md = mask_decoder
    batch = image_embeddings.shape[0]
    if sparse_prompt_embeddings.shape[0] != batch or dense_prompt_embeddings.shape[0] != batch:
        raise ValueError(
            f"prompt batch ({sparse_prompt_embeddings.shape[0]}, {dense_prompt_embeddings.shape[0]}) "
            f"does not match the {batch} image embeddings"
        )
    output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(batch, -1, -1)
    tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

    src = image_embeddings + dense_prompt_embeddings
    pos_src = image_pe.expand(batch, -1, -1, -1)
    b, c, h, w = src.shape

    hs, src = md.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + md.num_mask_tokens), :]

    src = src.transpose(1, 2).reshape(b, c, h, w)
    upscaled = md.output_upscaling(src)
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1
    )
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
    iou_pred = md.iou_prediction_head(iou_token_out)

    selected = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, selected], iou_pred[:, selected]
