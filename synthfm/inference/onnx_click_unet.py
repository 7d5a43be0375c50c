"""ONNX graphs for ClickUNet with the same inputs and outputs as SynthFM's (see onnx_export).

``decoder.onnx`` takes SAM's prompt form (points with labels 1/0, the box as two points labelled
2 and 3, a padding point labelled -1, ``mask_input`` (1, 1, S/4, S/4) logits with
``has_mask_input``) and returns ``masks`` in the original frame, ``scores`` and ``low_res_logits``
-- here (1, C, S/2, S/2), ClickUNet's output grid.  ``encoder.onnx`` normalises, zeroes the padding
and runs the stem, giving the packed (1, C_emb, S/4, S/4) embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClickUNetDecoderGraph(nn.Module):
    """ClickUNet.decode in SAM's ONNX prompt form (module docstring)."""

    def __init__(self, model, multimask: bool = False) -> None:
        super().__init__()
        self.model = model
        self.image_size = int(model.image_size)
        self.multimask = bool(multimask)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        labels = point_labels
        corner0 = (labels == 2).to(point_coords.dtype).unsqueeze(-1)
        corner1 = (labels == 3).to(point_coords.dtype).unsqueeze(-1)
        # no box -> all-zero corners -> an empty box map, exactly like decode(boxes=None)
        boxes = torch.cat([(point_coords * corner0).sum(1), (point_coords * corner1).sum(1)], dim=1)
        click_labels = torch.where((labels == 0) | (labels == 1), labels, torch.full_like(labels, -1)).to(torch.int64)
        logits, iou = self.model.forward_all(image_embeddings, point_coords, click_labels, boxes=boxes,
                                             mask_inputs=mask_input, mask_given=has_mask_input > 0.5)
        if not self.multimask:
            best = torch.argmax(iou, dim=1)
            logits = torch.gather(logits, 1, best.view(-1, 1, 1, 1).expand(-1, 1, logits.shape[2], logits.shape[3]))
            iou = torch.gather(iou, 1, best.view(-1, 1))
        return _to_original(logits, orig_im_size, self.image_size), iou, logits


class ClickUNetEncoderGraph(nn.Module):
    """(1, 3, S, S) 0..255 and (h, w) -> the packed embedding of ClickUNet.encode(..., valid_hw)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.image_size = int(model.image_size)
        self.register_buffer("pixel_mean", model.pixel_mean.detach().clone().view(1, 3, 1, 1))
        self.register_buffer("pixel_std", model.pixel_std.detach().clone().view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor, input_size: torch.Tensor) -> torch.Tensor:
        x = (image - self.pixel_mean) / self.pixel_std
        positions = torch.arange(self.image_size, device=image.device)
        rows = (positions < input_size[0]).to(x.dtype).reshape(1, 1, -1, 1)
        cols = (positions < input_size[1]).to(x.dtype).reshape(1, 1, 1, -1)
        return self.model.stem(x * rows * cols)


def _to_original(low_res: torch.Tensor, orig_im_size: torch.Tensor, s: int) -> torch.Tensor:
    """SAM's post-processing: bilinear to S, crop the resized content, bilinear to (H, W)."""
    up = F.interpolate(low_res, size=(s, s), mode="bilinear", align_corners=False)
    size = orig_im_size.to(torch.float32)
    resized = torch.floor(size * (s / torch.max(size)) + 0.5).to(torch.int64)
    up = up[..., : resized[0], : resized[1]]
    hw = orig_im_size.to(torch.int64)
    return F.interpolate(up, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)
