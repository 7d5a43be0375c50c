"""Small image encoders trained from scratch, producing SAM's image embedding (256 ch at S/16).

Both are fully convolutional (no absolute position embedding), so they run at any input size that
is a multiple of 16.  Normalisation is per-pixel LayerNorm over channels (as ConvNeXt and SAM's
neck): it uses neither batch statistics (train/eval agree for any batch size) nor statistics over
the whole image (zero padding of a non-square input does not change what the object pixels see).

* ``TinyCNN``: patchify stem (4x4, stride 4), three ConvNeXt-style stages at S/4, S/8, S/16,
  and SAM's neck (1x1 conv -> LayerNorm2d -> 3x3 conv -> LayerNorm2d) to 256 channels.
* ``TinyViT``: the same conv stages, but the last stage ends with multi-head self-attention
  blocks over the S/16 grid (global context, which the decoder otherwise only gets from its own
  two-way attention).  Position information comes from a depthwise-conv position encoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthfm.modeling.sam_vit import EMBEDDING_CHANNELS


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor (same maths as SAM's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise k x k conv -> LayerNorm -> MLP (expand x4, GELU) -> residual; (B,C,H,W) -> same."""

    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # channels-last so LayerNorm/Linear act per pixel
        y = self.fc2(self.act(self.fc1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class AttentionBlock(nn.Module):
    """Pre-norm transformer block over all positions of a (B,C,H,W) map, with conv position encoding."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(self.norm1(t)).reshape(b, h * w, 3, self.num_heads, c // self.num_heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        t = t + self.proj(a.transpose(1, 2).reshape(b, h * w, c))
        t = t + self.fc2(self.act(self.fc1(self.norm2(t))))
        return t.transpose(1, 2).reshape(b, c, h, w)


def sam_neck(in_channels: int) -> nn.Sequential:
    """SAM's encoder neck: 1x1 conv -> LayerNorm2d -> 3x3 conv -> LayerNorm2d, to 256 channels."""
    from segment_anything.modeling.common import LayerNorm2d  # lazy: the click_unet path never imports it

    return nn.Sequential(
        nn.Conv2d(in_channels, EMBEDDING_CHANNELS, kernel_size=1, bias=False),
        LayerNorm2d(EMBEDDING_CHANNELS),
        nn.Conv2d(EMBEDDING_CHANNELS, EMBEDDING_CHANNELS, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(EMBEDDING_CHANNELS),
    )


class TinyCNN(nn.Module):
    """Conv encoder: (B, 3, S, S) normalised pixels -> (B, 256, S/16, S/16); S a multiple of 16.

    widths/depths: channels and number of ConvNeXt blocks of the stages at S/4, S/8, S/16.
    ``attention_blocks`` > 0 replaces that many of the last stage's conv blocks by global
    self-attention blocks (this is how TinyViT is built).
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (32, 96, 192),
        depths: tuple[int, int, int] = (1, 1, 5),
        kernel_size: int = 7,
        attention_blocks: int = 0,
        num_heads: int = 6,
    ) -> None:
        super().__init__()
        if attention_blocks > depths[-1]:
            raise ValueError("attention_blocks cannot exceed the depth of the last stage")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], kernel_size=4, stride=4), ChannelLayerNorm(widths[0], eps=1e-6))
        stages = []
        for i, (width, depth) in enumerate(zip(widths, depths)):
            layers: list[nn.Module] = []
            if i > 0:
                layers += [ChannelLayerNorm(widths[i - 1], eps=1e-6), nn.Conv2d(widths[i - 1], width, kernel_size=2, stride=2)]
            n_attn = attention_blocks if i == len(widths) - 1 else 0
            layers += [ConvNeXtBlock(width, kernel_size) for _ in range(depth - n_attn)]
            layers += [AttentionBlock(width, num_heads) for _ in range(n_attn)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.neck = sam_neck(widths[-1])
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of 16")
        return self.neck(self.stages(self.stem(x)))


def _init_weights(module: nn.Module) -> None:
    # Truncated-normal linear/conv weights as in ConvNeXt/ViT training from scratch.
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_tiny_cnn(image_size: int) -> TinyCNN:
    """The default small conv encoder (~2.35M parameters); size-agnostic, ``image_size`` unused.

    Most blocks sit at S/16, where the embedding is formed; the S/4 and S/8 stages are kept thin
    because at high resolution they dominate the cost of training on a CPU.
    """
    return TinyCNN()


def build_tiny_vit(image_size: int) -> TinyCNN:
    """TinyCNN with the last 2 of its 5 S/16 blocks as global attention (~2.6M parameters)."""
    return TinyCNN(attention_blocks=2, num_heads=6)
