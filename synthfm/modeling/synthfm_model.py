"""The SynthFM model: an image encoder + SAM's prompt encoder + SAM's mask decoder.

Its state-dict keys follow SAM's (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``),
so an official SAM file loads into a ``vit_*`` SynthFM unchanged.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch import nn

from synthfm.modeling.batched_decoder import decode_per_embedding
from synthfm.modeling.sam_heads import build_mask_decoder, build_prompt_encoder
from synthfm.modeling.sam_vit import EMBEDDING_CHANNELS, PATCH_SIZE

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


class SynthFM(nn.Module):
    """Promptable segmentation model.

    Attributes: ``encoder_name``, ``image_size`` (S), ``embedding_size`` (S/16), ``image_encoder``,
    ``prompt_encoder`` (segment_anything PromptEncoder), ``mask_decoder`` (segment_anything
    MaskDecoder), buffers ``pixel_mean``/``pixel_std`` (3,) in 0..255 units, ``encoder_frozen``.
    ``encoder_source`` is None or a dict describing where external encoder weights came from
    (set by :mod:`synthfm.weights.official_sam`; stored in checkpoint metadata).
    """

    def __init__(
        self,
        encoder_name: str,
        image_encoder: nn.Module,
        image_size: int,
        freeze_encoder: bool,
        pixel_mean: Sequence[float] = SAM_PIXEL_MEAN,
        pixel_std: Sequence[float] = SAM_PIXEL_STD,
    ) -> None:
        super().__init__()
        if image_size % PATCH_SIZE:
            raise ValueError(f"image_size must be a multiple of {PATCH_SIZE}, got {image_size}")
        self.encoder_name = encoder_name
        self.image_size = int(image_size)
        self.embedding_size = self.image_size // PATCH_SIZE
        self.image_encoder = image_encoder
        self.prompt_encoder = build_prompt_encoder(self.image_size)
        self.mask_decoder = build_mask_decoder()
        # Not persistent (as in SAM): checkpoints carry them in their metadata.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32), persistent=False)
        self.encoder_source: dict | None = None
        self.encoder_frozen = False
        self.set_encoder_frozen(freeze_encoder)

    # ------------------------------------------------------------------ freezing
    def set_encoder_frozen(self, frozen: bool) -> None:
        """Freeze (no grad, always eval mode) or unfreeze the image encoder."""
        self.encoder_frozen = bool(frozen)
        self.image_encoder.requires_grad_(not frozen)
        if frozen:
            self.image_encoder.eval()
        else:
            self.image_encoder.train(self.training)

    def train(self, mode: bool = True) -> "SynthFM":
        super().train(mode)
        if self.encoder_frozen:
            self.image_encoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters with requires_grad (prompt encoder + mask decoder, + encoder if not frozen)."""
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ forward parts
    def encode(self, images: torch.Tensor, valid_hw: Sequence[int] | Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """Image embeddings (B, 256, S/16, S/16) from model inputs.

        images: (B, 3, S, S) (or (B, 1, S, S), grey, repeated to 3 channels) float32 in 0..255,
        already resized (longest side S) and zero-padded at the bottom/right to S x S.
        Normalised with pixel_mean/std here.  ``valid_hw`` (optional): the (h, w) of the resized
        content, one pair for the batch or one per image; when given, padding is set to 0 *after*
        normalisation, exactly as SAM's ``Sam.preprocess`` does (without it the padding holds
        (0 - mean) / std).  Under no_grad and in eval mode when the encoder is frozen.
        """
        images = self._check_images(images)
        x = (images - self.pixel_mean.view(1, 3, 1, 1)) / self.pixel_std.view(1, 3, 1, 1)
        if valid_hw is not None:
            x = _zero_padding(x, valid_hw)
        if self.encoder_frozen:
            with torch.no_grad():
                return self.image_encoder(x)
        return self.image_encoder(x)

    def decode(
        self,
        embeddings: torch.Tensor,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits for B (embedding, prompt set) pairs; prompt set i goes with embedding i.

        embeddings: (B, 256, S/16, S/16).  point_coords: (B, N, 2) float, (x, y) in model-input
        pixels (0..S); point_labels: (B, N) int (1 positive, 0 negative, -1 padding);
        boxes: (B, 4) float (x0, y0, x1, y1) model-input pixels; mask_inputs: (B, 1, S/4, S/4)
        logits (e.g. a previous low_res_logits).  Any prompt may be omitted.
        Returns (low_res_logits (B, C, S/4, S/4), iou_predictions (B, C)), C = 3 if
        ``multimask_output`` else 1.  To give K prompt sets of one image, repeat its embedding
        K times.
        """
        batch = embeddings.shape[0]
        expected = (EMBEDDING_CHANNELS, self.embedding_size, self.embedding_size)
        if embeddings.ndim != 4 or tuple(embeddings.shape[1:]) != expected:
            raise ValueError(f"embeddings must be (B, {expected[0]}, {expected[1]}, {expected[2]}), got {tuple(embeddings.shape)}")
        points = None
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if point_coords is not None:
            if point_coords.ndim != 3 or point_coords.shape[-1] != 2 or point_labels.shape != point_coords.shape[:2]:
                raise ValueError(
                    f"point_coords must be (B, N, 2) and point_labels (B, N); got {tuple(point_coords.shape)} "
                    f"and {tuple(point_labels.shape)}"
                )
            points = (point_coords.to(embeddings.device, torch.float32), point_labels.to(embeddings.device))
        if boxes is not None:
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"boxes must be (B, 4), got {tuple(boxes.shape)}")
            boxes = boxes.to(embeddings.device, torch.float32)
        if mask_inputs is not None:
            side = 4 * self.embedding_size
            if mask_inputs.ndim != 4 or tuple(mask_inputs.shape[1:]) != (1, side, side):
                raise ValueError(f"mask_inputs must be (B, 1, {side}, {side}), got {tuple(mask_inputs.shape)}")
            mask_inputs = mask_inputs.to(embeddings.device, embeddings.dtype)
        for name, t in (("point_coords", point_coords), ("boxes", boxes), ("mask_inputs", mask_inputs)):
            if t is not None and t.shape[0] != batch:
                raise ValueError(f"{name} has batch {t.shape[0]} but there are {batch} embeddings")

        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        # Without any prompt the prompt encoder returns a batch of 1.
        sparse = sparse.expand(batch, -1, -1)
        dense = dense.expand(batch, -1, -1, -1)
        return decode_per_embedding(
            self.mask_decoder,
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if images.ndim != 4 or images.shape[1] not in (1, 3) or tuple(images.shape[2:]) != (s, s):
            raise ValueError(f"images must be (B, 3, {s}, {s}) (or 1 channel), got {tuple(images.shape)}")
        images = images.to(self.pixel_mean.device, torch.float32)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return images

    def extra_repr(self) -> str:
        return f"encoder={self.encoder_name!r}, image_size={self.image_size}, encoder_frozen={self.encoder_frozen}"


def _zero_padding(x: torch.Tensor, valid_hw) -> torch.Tensor:
    """Zero everything outside the top-left (h, w) content of each image of x (B, C, S, S)."""
    if len(valid_hw) == 2 and all(isinstance(v, numbers.Integral) for v in valid_hw):
        pairs = [tuple(valid_hw)] * x.shape[0]
    else:
        pairs = [tuple(v) for v in valid_hw]
    if len(pairs) != x.shape[0]:
        raise ValueError(f"valid_hw has {len(pairs)} entries for a batch of {x.shape[0]}")
    keep = torch.zeros(x.shape[0], 1, x.shape[2], x.shape[3], dtype=torch.bool, device=x.device)
    for i, (h, w) in enumerate(pairs):
        keep[i, :, : int(h), : int(w)] = True
    return x * keep
