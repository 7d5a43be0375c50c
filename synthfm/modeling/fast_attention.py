"""SAM's attention with decomposed relative-position bias, through ``scaled_dot_product_attention``.

SAM's ``Attention`` adds ``rel_h[i, h_j] + rel_w[i, w_j]`` to the logits ``scale * q_i . k_j``,
where ``rel_h = q @ Rh`` (per query row) and ``rel_w = q @ Rw`` are built from the unscaled query
(``segment_anything/modeling/image_encoder.py``: ``add_decomposed_rel_pos``).  Materialising that
bias costs an (N, N) tensor per head (4096 x 4096 for a 1024 px global block).  Two exact ways
avoid it here:

* ``"augmented"`` (default): the bias is a dot product too, so it is folded into the query and
  key: ``q' = [scale q, rel_h, rel_w]``, ``k' = [k, onehot(h_j), onehot(w_j)]`` gives
  ``q'_i . k'_j = scale q_i . k_j + rel_h[i, h_j] + rel_w[i, w_j]`` exactly.  Head dim grows from
  d to d + h + w (80 + 64 + 64 = 208 for vit_h's global blocks, 80 + 28 = 108 in 14 px windows),
  still within the flash / memory-efficient kernels' limit (256), and nothing (N, N) is stored.
  ``v`` is zero-padded to the same width so the flash kernel is eligible; the output is sliced back.
* ``"bias"``: the bias is materialised once, in the compute dtype, and passed as ``attn_mask``
  (memory-efficient kernel); kept for comparison in the benchmark.

Shapes: q, k, v are (B, heads, N, d) with N = h * w tokens in row-major (h, w) order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import get_rel_pos

ATTENTION_MODES: tuple[str, ...] = ("augmented", "bias")
# Flash / memory-efficient kernels want head dims that are multiples of 8.
_ALIGN = 8


def decomposed_rel_terms(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rel_h (B, heads, N, h), rel_w (B, heads, N, w)): SAM's per-query relative-position terms.

    q: (B, heads, N, d) unscaled queries; rel_pos_h (2h-1, d), rel_pos_w (2w-1, d) the tables.
    """
    h, w = hw
    b, heads, n, d = q.shape
    rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)  # (h, h, d): [query row, key row]
    rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)  # (w, w, d)
    r_q = q.reshape(b, heads, h, w, d)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh).reshape(b, heads, n, h)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw).reshape(b, heads, n, w)
    return rel_h, rel_w


def _pad_last(x: torch.Tensor, width: int) -> torch.Tensor:
    return x if x.shape[-1] == width else F.pad(x, (0, width - x.shape[-1]))


def _key_position_onehots(hw: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(N, h + w): one-hot of each key's row, then of its column."""
    h, w = hw
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    onehot = torch.zeros(h * w, h + w, dtype=dtype, device=device)
    idx = torch.arange(h * w, device=device)
    onehot[idx, rows] = 1
    onehot[idx, h + cols] = 1
    return onehot


def attention_rel_pos(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor | None,
    rel_pos_w: torch.Tensor | None,
    hw: tuple[int, int],
    mode: str = "augmented",
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + decomposed rel-pos bias) v, as SAM computes it; (B, heads, N, d).

    q, k, v: (B, heads, N, d), same dtype.  rel_pos_h / rel_pos_w None: plain attention.
    """
    if mode not in ATTENTION_MODES:
        raise ValueError(f"unknown attention mode {mode!r} (known: {', '.join(ATTENTION_MODES)})")
    d = q.shape[-1]
    if rel_pos_h is None or rel_pos_w is None:
        return F.scaled_dot_product_attention(q, k, v)
    rel_h, rel_w = decomposed_rel_terms(q, rel_pos_h, rel_pos_w, hw)
    if mode == "bias":
        b, heads, n, _ = q.shape
        h, w = hw
        bias = (rel_h.reshape(b, heads, n, h, 1) + rel_w.reshape(b, heads, n, 1, w)).reshape(b, heads, n, n)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
    extra = hw[0] + hw[1]
    width = -(-(d + extra) // _ALIGN) * _ALIGN
    onehot = _key_position_onehots(hw, q.dtype, q.device).expand(*k.shape[:2], -1, -1)
    q_aug = _pad_last(torch.cat([q * (d**-0.5), rel_h.to(q.dtype), rel_w.to(q.dtype)], dim=-1), width)
    k_aug = _pad_last(torch.cat([k, onehot], dim=-1), width)
    out = F.scaled_dot_product_attention(q_aug, k_aug, _pad_last(v, width), scale=1.0)
    return out[..., :d]
