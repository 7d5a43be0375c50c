"""A faster SAM ViT image encoder with the same parameters (same state-dict keys) and outputs.

:class:`FastImageEncoderViT` loads exactly the state dict of segment_anything's
``ImageEncoderViT`` (``patch_embed.proj.*``, ``pos_embed``, ``blocks.i.{norm1,attn.qkv,attn.proj,
attn.rel_pos_h,attn.rel_pos_w,norm2,mlp.lin1,mlp.lin2}.*``, ``neck.{0,1,2,3}.*``) and reuses its
``PatchEmbed``, ``MLPBlock`` and ``LayerNorm2d`` modules.  What differs is the computation:

* attention runs through ``F.scaled_dot_product_attention`` with SAM's decomposed relative-position
  bias folded into the query/key (:mod:`synthfm.modeling.fast_attention`), so no (N, N) logits or
  bias tensor is materialised (4096 x 4096 per head in the global blocks at 1024 px);
* windowed blocks apply ``qkv`` before window partition and ``proj`` after un-partition, so these
  linears skip the padding tokens (64 -> 70 tokens a side at 1024 px: 20 % fewer FLOPs in them).
  Padding tokens still take part in attention exactly as in SAM, where the zero-padded normed
  tokens become ``qkv.bias``: the padded qkv rows are filled with that bias;
* ``compute_dtype=torch.bfloat16`` runs the blocks under autocast (the residual stream and the
  neck's LayerNorms stay fp32); the output is always float32;
* :func:`optimize_encoder` adds ``torch.compile`` (and CUDA graphs via ``mode="reduce-overhead"``).

Input (B, 3, S, S) normalised pixels; output (B, 256, S/16, S/16) float32, like SAM's encoder.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Optional

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.common import LayerNorm2d, MLPBlock
from segment_anything.modeling.image_encoder import PatchEmbed
from torch import nn

from synthfm.modeling.fast_attention import ATTENTION_MODES, attention_rel_pos
from synthfm.modeling.sam_vit import EMBEDDING_CHANNELS, PATCH_SIZE, SAM_IMAGE_SIZE, VIT_CONFIGS


class FastAttention(nn.Module):
    """SAM's ``Attention`` parameters (qkv, proj, rel_pos_h, rel_pos_w); the block calls its parts."""

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int], qkv_bias: bool = True,
                 use_rel_pos: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, self.head_dim))

    def attend(self, qkv: torch.Tensor, mode: str) -> torch.Tensor:
        """qkv: (B, h, w, 3 * dim) -> attention output before ``proj``: (B, h, w, dim)."""
        b, h, w, _ = qkv.shape
        q, k, v = qkv.reshape(b, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        rel_h = self.rel_pos_h if self.use_rel_pos else None
        rel_w = self.rel_pos_w if self.use_rel_pos else None
        out = attention_rel_pos(q, k, v, rel_h, rel_w, (h, w), mode)  # (B, heads, N, d)
        return out.permute(0, 2, 1, 3).reshape(b, h, w, -1)


def partition_windows(x: torch.Tensor, window: int, fill: Optional[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nWin, window, window, C), padding bottom/right with ``fill`` (C,) or 0."""
    b, h, w, c = x.shape
    hp, wp = -(-h // window) * window, -(-w // window) * window
    if (hp, wp) != (h, w):
        if fill is None:
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        else:
            padded = fill.to(x.dtype).expand(b, hp, wp, c).clone()
            padded[:, :h, :w] = x
            x = padded
    x = x.view(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window, window, c), (hp, wp)


def unpartition_windows(windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: (B * nWin, window, window, C) -> (B, H, W, C)."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1).transpose(2, 3).reshape(b, hp, wp, -1)
    return x[:, :h, :w]


class FastBlock(nn.Module):
    """SAM's ``Block`` (same parameters) with qkv/proj outside the window padding."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int, input_size: tuple[int, int],
                 qkv_bias: bool = True, use_rel_pos: bool = True, attention_mode: str = "augmented"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = FastAttention(dim, num_heads, attn_size, qkv_bias=qkv_bias, use_rel_pos=use_rel_pos)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size
        self.attention_mode = attention_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, dim) residual stream."""
        qkv = self.attn.qkv(self.norm1(x))
        if self.window_size > 0:
            hw = (x.shape[1], x.shape[2])
            windows, padded_hw = partition_windows(qkv, self.window_size, self.attn.qkv.bias)
            out = unpartition_windows(self.attn.attend(windows, self.attention_mode), self.window_size, padded_hw, hw)
        else:
            out = self.attn.attend(qkv, self.attention_mode)
        x = x + self.attn.proj(out)
        return x + self.mlp(self.norm2(x))


class FastImageEncoderViT(nn.Module):
    """Drop-in replacement for ``ImageEncoderViT`` (same constructor meaning, same state dict).

    compute_dtype: None = whatever the caller's autocast says; torch.bfloat16 / torch.float16 =
    run the transformer under autocast in that dtype.  attention_mode: see
    :mod:`synthfm.modeling.fast_attention`.  Input (B, 3, S, S); output (B, out_chans, S/16, S/16) float32.
    """

    def __init__(
        self,
        img_size: int = SAM_IMAGE_SIZE,
        patch_size: int = PATCH_SIZE,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = EMBEDDING_CHANNELS,
        qkv_bias: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (),
        compute_dtype: torch.dtype | None = None,
        attention_mode: str = "augmented",
    ):
        super().__init__()
        if attention_mode not in ATTENTION_MODES:
            raise ValueError(f"unknown attention mode {attention_mode!r} (known: {', '.join(ATTENTION_MODES)})")
        self.img_size = img_size
        self.compute_dtype = compute_dtype
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(kernel_size=(patch_size, patch_size), stride=(patch_size, patch_size),
                                      in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            FastBlock(embed_dim, num_heads, mlp_ratio, 0 if i in global_attn_indexes else window_size, (grid, grid),
                      qkv_bias=qkv_bias, use_rel_pos=use_rel_pos, attention_mode=attention_mode)
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    @property
    def attention_mode(self) -> str:
        return self.blocks[0].attention_mode if len(self.blocks) else "augmented"

    def set_attention_mode(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise ValueError(f"unknown attention mode {mode!r} (known: {', '.join(ATTENTION_MODES)})")
        for block in self.blocks:
            block.attention_mode = mode

    def _autocast(self, x: torch.Tensor):
        if self.compute_dtype is None or self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            # the residual stream stays fp32 under autocast (as in SAM: pos_embed is fp32)
            x = self.patch_embed(x) + self.pos_embed
            for block in self.blocks:
                x = block(x)
            x = self.neck[0](x.permute(0, 3, 1, 2))
            # LayerNorm2d does its own mean/var arithmetic, which autocast would leave in bf16
            x = self.neck[1](x.float())
            x = self.neck[2](x)
            x = self.neck[3](x.float())
        return x.float()

    @classmethod
    def from_stock(cls, stock: ImageEncoderViT, compute_dtype: torch.dtype | None = None,
                   attention_mode: str = "augmented") -> "FastImageEncoderViT":
        """A fast encoder sharing ``stock``'s parameter tensors (no copy); hyper-parameters read from it."""
        first = stock.blocks[0]
        embed_dim = stock.patch_embed.proj.out_channels
        windows = [b.window_size for b in stock.blocks]
        with torch.device("meta"):
            fast = cls(
                img_size=stock.img_size,
                patch_size=stock.patch_embed.proj.kernel_size[0],
                in_chans=stock.patch_embed.proj.in_channels,
                embed_dim=embed_dim,
                depth=len(stock.blocks),
                num_heads=first.attn.num_heads,
                mlp_ratio=first.mlp.lin1.out_features / embed_dim,
                out_chans=stock.neck[0].out_channels,
                qkv_bias=first.attn.qkv.bias is not None,
                use_rel_pos=first.attn.use_rel_pos,
                window_size=max(windows),
                global_attn_indexes=tuple(i for i, w in enumerate(windows) if w == 0),
                compute_dtype=compute_dtype,
                attention_mode=attention_mode,
            )
        if stock.pos_embed is None:
            raise ValueError("FastImageEncoderViT needs an encoder with absolute position embeddings")
        # keep_vars: the very Parameter objects are shared; assign resets their requires_grad, so restore it
        grads = {name: p.requires_grad for name, p in stock.named_parameters()}
        fast.load_state_dict(stock.state_dict(keep_vars=True), strict=True, assign=True)
        for name, p in fast.named_parameters():
            p.requires_grad_(grads[name])
        return fast


def build_fast_sam_vit(variant: str, image_size: int = SAM_IMAGE_SIZE, compute_dtype: torch.dtype | None = None,
                       attention_mode: str = "augmented", depth: int | None = None) -> FastImageEncoderViT:
    """The fast encoder for ``variant`` (vit_h / vit_l / vit_b), randomly initialised like SAM's.

    depth: keep only the first ``depth`` blocks (and the global indexes among them); for tests and
    smoke benchmarks.
    """
    cfg = VIT_CONFIGS[variant]
    n = cfg.depth if depth is None else int(depth)
    return FastImageEncoderViT(
        img_size=image_size, embed_dim=cfg.embed_dim, depth=n, num_heads=cfg.num_heads, mlp_ratio=4.0,
        window_size=cfg.window_size, global_attn_indexes=tuple(i for i in cfg.global_attn_indexes if i < n),
        compute_dtype=compute_dtype, attention_mode=attention_mode,
    )


def build_stock_sam_vit(variant: str, image_size: int = SAM_IMAGE_SIZE, depth: int | None = None) -> ImageEncoderViT:
    """segment_anything's ``ImageEncoderViT`` for ``variant`` with optionally fewer blocks (reference)."""
    cfg = VIT_CONFIGS[variant]
    n = cfg.depth if depth is None else int(depth)
    return ImageEncoderViT(
        img_size=image_size, patch_size=PATCH_SIZE, embed_dim=cfg.embed_dim, depth=n, num_heads=cfg.num_heads,
        mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=tuple(i for i in cfg.global_attn_indexes if i < n), window_size=cfg.window_size,
        out_chans=EMBEDDING_CHANNELS,
    )


def optimize_encoder(encoder: nn.Module, compile: bool = True, cuda_graphs: bool = False) -> nn.Module:
    """``torch.compile`` the encoder for inference (CUDA graphs with ``cuda_graphs``); returns the callable.

    Frozen-encoder use only: graphs replay static input shapes, so keep the batch size fixed.
    """
    if not compile:
        return encoder
    mode = "reduce-overhead" if cuda_graphs else "max-autotune-no-cudagraphs"
    return torch.compile(encoder, mode=mode, dynamic=False)
