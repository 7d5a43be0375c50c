"""The layout of a batch of prompted images, shared by the torch engine and the trainer.

:class:`synthfm.synth.gpu.GpuSynthGenerator.prompted_batch` makes one on the training device; the
trainer's :class:`synthfm.training.data.TrainBatch` is this layout plus device moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PromptedBatch:
    """B images x K prompt sets, prompt tensors flattened to M = B*K rows (row m is image m // K).

    images: (B, 1, S, S) float32 0..255 grey; masks: (M, S, S) uint8 {0,1}; point_coords (M, N, 2)
    float32 (x, y) pixels, point_labels (M, N) int64 1/0/-1 (padding), boxes (M, 4), is_box (M,)
    bool, n_clicks (M,) int64; indices: stream indices of the images.  mask_inputs (M, 1, S/4, S/4)
    float32 previous-mask logits and has_mask (M,) bool (True where given), or None when the batch
    has no mask prompts (the torch engine does not draw them).
    """

    indices: list[int]
    images: torch.Tensor
    masks: torch.Tensor
    point_coords: torch.Tensor
    point_labels: torch.Tensor
    boxes: torch.Tensor
    is_box: torch.Tensor
    n_clicks: torch.Tensor
    mask_inputs: torch.Tensor | None = None
    has_mask: torch.Tensor | None = None
