"""ClickUNet: an early-fusion promptable segmenter for CPU-sized budgets.

SAM's design (a heavy image embedding at S/16, prompts fused late by a light decoder) suits a
pretrained encoder.  Trained from scratch on a CPU it learns slowly: the 16 x 16 grid of a 256 px
input is too coarse for small organs, and the prompts never reach the layers that decide what
belongs to the object.  Interactive-segmentation networks (RITM, FocalClick, ScribblePrompt) put
the clicks in at the input instead.  This module splits that design so that the SAM-style API
(``encode`` once per image, ``decode`` per interaction) stays cheap:

* ``encode`` runs only the high-resolution stem, which does not depend on prompts:
  (B, 3, S, S) normalised pixels -> features at S/2 (w0 ch) and S/4 (w1 ch), packed into one
  "embedding" tensor (B, 4*w0 + w1, S/4, S/4) (the S/2 map is pixel-unshuffled), so callers can
  cache, repeat and index it like SAM's embedding;
* ``decode`` rasterises the prompts on the S/4 grid (positive / negative click Gaussians, the
  box, the previous mask's probability and a "mask given" plane), adds them to the S/4 image
  features and runs the whole U-Net (S/4 -> S/8 -> S/16 with global attention -> back up to S/2).
  Everything after the stem therefore sees the prompts.

Outputs follow SAM's decoder: ``num_masks`` (3) candidate masks as logits at S/2 and a predicted
IoU per mask.  With ``multimask_output=False`` one mask is made from them by
``single_mask_rule`` (the model is trained with a min-over-candidates loss, so there is no separate
single-mask token; :mod:`synthfm.modeling.single_mask`).  Coordinates are SAM's: (x, y) in model-input pixels, 0..S.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from synthfm.modeling.single_mask import check_rule, single_mask
from synthfm.modeling.small_encoders import AttentionBlock, ChannelLayerNorm, ConvNeXtBlock, _init_weights
from synthfm.modeling.synthfm_model import SAM_PIXEL_MEAN, SAM_PIXEL_STD, _zero_padding

PROMPT_CHANNELS = 5  # positive clicks, negative clicks, box, previous-mask probability, mask-given flag


def rasterise_prompts(
    side: int,
    stride: float,
    batch: int,
    device: torch.device,
    point_coords: torch.Tensor | None = None,
    point_labels: torch.Tensor | None = None,
    boxes: torch.Tensor | None = None,
    mask_inputs: torch.Tensor | None = None,
    click_sigma: float = 1.5,
    mask_given: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prompt maps (B, 5, side, side) float32 on a grid of cells ``stride`` model pixels wide.

    point_coords (B, N, 2) (x, y) model pixels, point_labels (B, N) 1/0/-1 (-1 = padding):
    channel 0/1 = max over positive/negative clicks of exp(-d^2 / (2 sigma^2)), d in cells.
    boxes (B, 4) (x0, y0, x1, y1): channel 2 = fraction of each cell inside the box.
    mask_inputs (B, 1, side, side) logits: channel 3 = sigmoid, channel 4 = 1 (else both 0);
    ``mask_given`` (B,) bool limits that to some rows (the others get 0 in both channels).
    """
    maps = torch.zeros(batch, PROMPT_CHANNELS, side, side, device=device)
    centres = (torch.arange(side, device=device, dtype=torch.float32) + 0.5) * stride
    if point_coords is not None:
        c = point_coords.to(device, torch.float32) / stride  # cells
        lab = point_labels.to(device)
        g = centres / stride
        dx2 = (g[None, None, :] - c[..., 0:1]) ** 2  # (B, N, side)
        dy2 = (g[None, None, :] - c[..., 1:2]) ** 2
        gauss = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2.0 * click_sigma**2))  # (B, N, side, side)
        for channel, value in ((0, 1), (1, 0)):
            sel = (lab == value).to(gauss.dtype)[..., None, None]
            maps[:, channel] = (gauss * sel).amax(dim=1) if c.shape[1] else 0.0
    if boxes is not None:
        b = boxes.to(device, torch.float32)
        lo, hi = centres - stride / 2, centres + stride / 2

        def cover(a0: torch.Tensor, a1: torch.Tensor) -> torch.Tensor:  # (B, side) fraction of cell in [a0, a1]
            return ((torch.minimum(hi, a1[:, None]) - torch.maximum(lo, a0[:, None])) / stride).clamp(0, 1)

        maps[:, 2] = cover(b[:, 1], b[:, 3])[:, :, None] * cover(b[:, 0], b[:, 2])[:, None, :]
    if mask_inputs is not None:
        given = torch.ones(batch, device=device) if mask_given is None else mask_given.to(device, torch.float32)
        maps[:, 3] = torch.sigmoid(mask_inputs[:, 0].to(device, torch.float32)) * given[:, None, None]
        maps[:, 4] = given[:, None, None]
    return maps


def _blocks(dim: int, depth: int, kernel_size: int = 7, attention: int = 0, num_heads: int = 4) -> nn.Sequential:
    layers: list[nn.Module] = [ConvNeXtBlock(dim, kernel_size) for _ in range(depth - attention)]
    layers += [AttentionBlock(dim, num_heads) for _ in range(attention)]
    return nn.Sequential(*layers)


class _Down(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(ChannelLayerNorm(cin, eps=1e-6), nn.Conv2d(cin, cout, kernel_size=2, stride=2))


class _Up(nn.Module):
    """Bilinear x2, 1x1 conv to the skip's width, add the skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(cin, eps=1e-6)
        self.proj = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.proj(self.norm(x)), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return x + skip


class ClickUNet(nn.Module):
    """Early-fusion promptable U-Net (see the module docstring).

    image_size S: a multiple of 16 (the network is fully convolutional and runs at any multiple of
    16; S only fixes the prompt grid scale, which is in cells, not pixels).  widths (w0, w1, w2, w3)
    at S/2, S/4, S/8, S/16; depths: ConvNeXt blocks at S/4, S/8, S/16 on the way down (the last
    ``attention_blocks`` of S/16 are global self-attention); up_depths: blocks at S/8 and S/4 on
    the way up (then one light block at S/2).  name: the registry name (``encoder_name``).
    """

    def __init__(
        self,
        image_size: int = 256,
        widths: Sequence[int] = (24, 40, 80, 160),
        depths: Sequence[int] = (1, 2, 3),
        attention_blocks: int = 1,
        up_depths: Sequence[int] = (1, 1),
        num_heads: int = 4,
        num_masks: int = 3,
        click_sigma: float = 1.5,
        pixel_mean: Sequence[float] = SAM_PIXEL_MEAN,
        pixel_std: Sequence[float] = SAM_PIXEL_STD,
        name: str = "click_unet",
    ) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
        w0, w1, w2, w3 = (int(w) for w in widths)
        self.encoder_name = str(name)  # the registry name, stored in checkpoints
        self.image_size = int(image_size)
        self.low_res_size = self.image_size // 2
        self.mask_input_size = self.image_size // 4
        self.embedding_size = self.image_size // 4
        self.num_masks = int(num_masks)
        self.click_sigma = float(click_sigma)
        # how decode(multimask_output=False) makes one mask (modeling/single_mask.py); not a weight:
        # weights.load_model sets it from the checkpoint's `inference.single_mask`
        self.single_mask_rule = "best"
        self.widths = (w0, w1, w2, w3)
        self.embedding_channels = 4 * w0 + w1
        self.encoder_frozen = False
        self.encoder_source = None
        self.stem2 = nn.Sequential(
            nn.Conv2d(3, w0, 3, stride=2, padding=1), ChannelLayerNorm(w0, eps=1e-6), nn.GELU(),
            nn.Conv2d(w0, w0, 3, padding=1), nn.GELU(),
        )
        self.stem4 = nn.Sequential(
            nn.Conv2d(w0, w1, 3, stride=2, padding=1), ChannelLayerNorm(w1, eps=1e-6), ConvNeXtBlock(w1, 7),
        )
        self.image_proj = nn.Conv2d(w1, w1, 1)
        self.prompt_proj = nn.Sequential(
            nn.Conv2d(PROMPT_CHANNELS, w1, 3, padding=1), nn.GELU(), nn.Conv2d(w1, w1, 3, padding=1),
        )
        self.enc4 = _blocks(w1, depths[0])
        self.down8 = _Down(w1, w2)
        self.enc8 = _blocks(w2, depths[1])
        self.down16 = _Down(w2, w3)
        self.enc16 = _blocks(w3, depths[2], attention=attention_blocks, num_heads=num_heads)
        self.up8 = _Up(w3, w2)
        self.dec8 = _blocks(w2, up_depths[0])
        self.up4 = _Up(w2, w1)
        self.dec4 = _blocks(w1, up_depths[1])
        self.up2 = _Up(w1, w0)
        self.dec2 = ConvNeXtBlock(w0, kernel_size=5, mlp_ratio=2)
        self.mask_head = nn.Sequential(ChannelLayerNorm(w0, eps=1e-6), nn.Conv2d(w0, self.num_masks, 1))
        self.iou_head = nn.Sequential(
            nn.Linear(w3 + w1 * self.num_masks, 128), nn.GELU(), nn.Linear(128, self.num_masks),
        )
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32), persistent=False)
        self.apply(_init_weights)

    # SynthFM-compatible helpers used by the trainer and checkpoint code
    def set_encoder_frozen(self, frozen: bool) -> None:
        if frozen:
            raise ValueError("click_unet is trained end to end; its stem cannot be frozen")

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1 or 3, S, S) 0..255 -> normalised (B, 3, S, S)."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images.float() - self.pixel_mean[None, :, None, None]) / self.pixel_std[None, :, None, None]

    def encode(self, images: torch.Tensor, valid_hw: Sequence[int] | Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """Packed stem features (B, 4*w0 + w1, S/4, S/4) of (B, 1|3, S, S) images in 0..255.

        ``valid_hw``: the (h, w) (one pair, or one per image) of the real image inside a
        bottom/right zero-padded input; the padding is set to 0 after normalisation, as in SAM.
        """
        x = self.preprocess(images)
        if valid_hw is not None:
            x = _zero_padding(x, valid_hw)
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of 16")
        return self.stem(x)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Packed features (B, 4*w0 + w1, S/4, S/4) of normalised, zero-padded (B, 3, S, S) pixels."""
        f2 = self.stem2(x)
        f4 = self.stem4(f2)
        return torch.cat([F.pixel_unshuffle(f2, 2), f4], dim=1)

    def decode(
        self,
        embeddings: torch.Tensor,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits for B (embedding, prompt set) pairs (SynthFM.decode's contract).

        embeddings: (B, C, S/4, S/4) from :meth:`encode` (repeat rows for several prompt sets of one
        image).  point_coords (B, N, 2) model pixels, point_labels (B, N) 1/0/-1; boxes (B, 4);
        mask_inputs (B, 1, S/4, S/4) or (B, 1, S/2, S/2) logits (e.g. a previous low-res output,
        which is average-pooled to S/4).  Returns (logits (B, C', S/2, S/2), iou (B, C')) with
        C' = num_masks if ``multimask_output`` else 1, made by ``self.single_mask_rule``
        (``"best"``: the candidate with the highest predicted IoU; ``"iou_blend"``: their
        IoU-weighted consensus; :mod:`synthfm.modeling.single_mask`).
        """
        logits, iou = self.forward_all(embeddings, point_coords, point_labels, boxes, mask_inputs)
        if multimask_output:
            return logits, iou
        return single_mask(logits, iou, check_rule(self.single_mask_rule))

    def forward_all(self, embeddings, point_coords=None, point_labels=None, boxes=None, mask_inputs=None,
                    mask_given=None):
        """All candidates: (logits (B, num_masks, S/2, S/2), predicted IoU (B, num_masks) in [0, 1]).

        Arguments as :meth:`decode`; ``mask_given`` (B,) bool marks the rows whose mask input is real.
        """
        w0 = self.widths[0]
        if embeddings.ndim != 4 or embeddings.shape[1] != self.embedding_channels:
            raise ValueError(f"embeddings must be (B, {self.embedding_channels}, H, W), got {tuple(embeddings.shape)}")
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        batch, _, side, side_w = embeddings.shape
        if mask_inputs is not None and tuple(mask_inputs.shape[1:]) == (1, 2 * side, 2 * side_w):
            mask_inputs = F.avg_pool2d(mask_inputs, 2)
        if mask_inputs is not None and tuple(mask_inputs.shape[1:]) != (1, side, side_w):
            raise ValueError(f"mask_inputs must be (B, 1, {side}, {side_w}), got {tuple(mask_inputs.shape)}")
        # one S/4 cell is 4 input pixels at any input size
        prompts = rasterise_prompts(side, 4.0, batch, embeddings.device, point_coords, point_labels,
                                    boxes, mask_inputs, self.click_sigma, mask_given)
        f2 = F.pixel_shuffle(embeddings[:, : 4 * w0], 2)
        f4 = embeddings[:, 4 * w0:]
        x4 = self.enc4(self.image_proj(f4) + self.prompt_proj(prompts))
        x8 = self.enc8(self.down8(x4))
        x16 = self.enc16(self.down16(x8))
        y8 = self.dec8(self.up8(x16, x8))
        y4 = self.dec4(self.up4(y8, x4))
        y2 = self.dec2(self.up2(y4, f2))
        logits = self.mask_head(y2)
        # IoU head: global context + the S/4 features pooled under each candidate mask
        weights = torch.sigmoid(F.avg_pool2d(logits.detach(), 2))  # (B, M, S/4, S/4)
        pooled = torch.einsum("bchw,bmhw->bmc", y4, weights) / (weights.sum(dim=(2, 3))[..., None] + 1.0)
        feats = torch.cat([x16.mean(dim=(2, 3)), pooled.flatten(1)], dim=1)
        iou = torch.sigmoid(self.iou_head(feats))
        return logits, iou


def build_click_unet(image_size: int = 256) -> ClickUNet:
    """The default ClickUNet (~1.7M parameters)."""
    return ClickUNet(image_size=image_size)


def build_click_unet_deep(image_size: int = 256) -> ClickUNet:
    """A deeper ClickUNet (~1.8M parameters, about 1.3x the compute of the default): two more
    blocks at S/16 (one of them attention), one more at S/4, S/8 and S/8 on the way up.  Same
    widths, so a click_unet checkpoint grows into it without changing its function
    (synthfm.training.grow)."""
    return ClickUNet(image_size=image_size, depths=(2, 3, 5), attention_blocks=2, up_depths=(2, 1),
                     name="click_unet_deep")
