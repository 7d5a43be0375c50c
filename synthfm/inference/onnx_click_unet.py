"""ONNX graphs for ClickUNet with the same inputs and outputs as SynthFM's (see onnx_export).

``decoder.onnx`` takes SAM's prompt form (points with labels 1/0, the box as two points labelled
2 and 3, a padding point labelled -1, ``mask_input`` (1, 1, S/4, S/4) logits with
``has_mask_input``) and returns ``masks`` in the original frame, ``scores`` and ``low_res_logits``
-- here (1, C, S/2, S/2), ClickUNet's output grid.  ``encoder.onnx`` normalises, zeroes the padding
and runs the stem (onnx_export.EncoderGraph around :class:`ClickUNetStem`), giving the packed
(1, C_emb, S/4, S/4) embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from synthfm.inference.onnx_export import logits_to_original_graph
from synthfm.modeling.single_mask import check_rule, single_mask


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
        if not self.multimask:  # the same rule as ClickUNet.decode
            logits, iou = single_mask(logits, iou, check_rule(self.model.single_mask_rule))
        return logits_to_original_graph(logits, orig_im_size, self.image_size), iou, logits


class ClickUNetStem(nn.Module):
    """ClickUNet's stem as a module, for onnx_export.EncoderGraph (which normalises and zeroes the padding)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.stem(x)
