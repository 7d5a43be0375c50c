"""FastImageEncoderViT: same state dict and outputs as segment_anything's ImageEncoderViT."""

from __future__ import annotations

import shutil
from functools import partial

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT

from synthfm.modeling import build_encoder, build_model
from synthfm.modeling.fast_attention import attention_rel_pos
from synthfm.modeling.fast_vit import FastImageEncoderViT, build_fast_sam_vit, optimize_encoder
from synthfm.modeling.registry import use_fast_encoder

FP32_TOL = 1e-3
BF16_TOL = 2e-2


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def tiny_stock(img_size: int = 128, window: int = 5, global_idx=(1,), depth: int = 3, seed: int = 0) -> ImageEncoderViT:
    """A small stock encoder with random (non-zero) position tables, so the rel-pos path matters."""
    torch.manual_seed(seed)
    enc = ImageEncoderViT(
        img_size=img_size, embed_dim=64, depth=depth, num_heads=4, mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=global_idx, window_size=window, out_chans=32,
    ).eval()
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                p.normal_(0.0, 0.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)  # non-zero qkv bias: padded window tokens must carry it
    return enc


def fresh_fast_from_state_dict(stock: ImageEncoderViT, **kw) -> FastImageEncoderViT:
    windows = [b.window_size for b in stock.blocks]
    fast = FastImageEncoderViT(
        img_size=stock.img_size, embed_dim=64, depth=len(stock.blocks), num_heads=4, window_size=max(windows),
        global_attn_indexes=tuple(i for i, w in enumerate(windows) if w == 0), out_chans=32, **kw,
    )
    fast.load_state_dict(stock.state_dict(), strict=True)
    return fast.eval()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", ["augmented", "bias"])
@pytest.mark.parametrize("img_size,window", [(128, 5), (96, 3), (64, 4)])
def test_fp32_matches_stock(batch, mode, img_size, window):
    # 128/16 = 8 tokens with window 5 pads to 10 (padding path); 96 -> 6 with window 3 (no padding)
    stock = tiny_stock(img_size, window)
    fast = fresh_fast_from_state_dict(stock, attention_mode=mode)
    x = torch.randn(batch, 3, img_size, img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = stock(x)
        out = fast(x)
    assert out.shape == ref.shape == (batch, 32, img_size // 16, img_size // 16)
    assert out.dtype == torch.float32
    assert rel_err(out, ref) <= FP32_TOL


@pytest.mark.parametrize("batch", [1, 3])
def test_bf16_autocast_matches_stock_fp32(batch):
    stock = tiny_stock()
    fast = fresh_fast_from_state_dict(stock, compute_dtype=torch.bfloat16)
    x = torch.randn(batch, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = stock(x)
        out = fast(x)
    assert out.dtype == torch.float32
    err = rel_err(out, ref)
    assert 0 < err <= BF16_TOL  # > 0: it really ran in bf16


def test_batch_items_independent():
    """Each image's embedding is the same alone or in a batch (no cross-talk through windows)."""
    stock = tiny_stock()
    fast = FastImageEncoderViT.from_stock(stock).eval()
    x = torch.randn(3, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        together = fast(x)
        alone = fast(x[1:2])
    assert rel_err(together[1:2], alone) <= 1e-5


def test_from_stock_shares_tensors_and_grad_flags():
    stock = tiny_stock()
    stock.requires_grad_(False)
    fast = FastImageEncoderViT.from_stock(stock)
    sp, fp = dict(stock.named_parameters()), dict(fast.named_parameters())
    assert sp.keys() == fp.keys()
    assert all(sp[k].data_ptr() == fp[k].data_ptr() for k in sp)
    assert not any(p.requires_grad for p in fp.values())
    assert set(fast.state_dict()) == set(stock.state_dict())


def test_attention_matches_materialised_formula():
    """attention_rel_pos == softmax(scale q k^T + rel_h + rel_w) v with SAM's tables, both modes."""
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    g = torch.Generator().manual_seed(4)
    b, heads, h, w, d = 2, 3, 4, 5, 8
    q, k, v = (torch.randn(b, heads, h * w, d, generator=g) for _ in range(3))
    rh, rw = torch.randn(2 * h - 1, d, generator=g), torch.randn(2 * w - 1, d, generator=g)
    qf, kf, vf = (t.reshape(b * heads, h * w, d) for t in (q, k, v))
    logits = add_decomposed_rel_pos((qf * d**-0.5) @ kf.transpose(1, 2), qf, rh, rw, (h, w), (h, w))
    ref = (logits.softmax(-1) @ vf).reshape(b, heads, h * w, d)
    for mode in ("augmented", "bias"):
        assert rel_err(attention_rel_pos(q, k, v, rh, rw, (h, w), mode), ref) <= 1e-5
    with pytest.raises(ValueError, match="unknown attention mode"):
        attention_rel_pos(q, k, v, rh, rw, (h, w), "nope")


def test_registry_fast_option_same_keys_and_swap():
    slow = build_encoder("vit_b", 64)
    fast = build_encoder("vit_b", 64, fast=True)
    assert isinstance(fast, FastImageEncoderViT)
    assert {k: v.shape for k, v in slow.state_dict().items()} == {k: v.shape for k, v in fast.state_dict().items()}
    model = build_model("vit_b", image_size=64)
    x = torch.rand(1, 1, 64, 64) * 255
    model.eval()
    with torch.no_grad():
        ref = model.encode(x)
        use_fast_encoder(model)
        out = model.encode(x)
    assert isinstance(model.image_encoder, FastImageEncoderViT)
    assert not any(p.requires_grad for p in model.image_encoder.parameters())  # still frozen
    assert rel_err(out, ref) <= FP32_TOL


def test_reduced_depth_builder_keeps_global_indexes():
    enc = build_fast_sam_vit("vit_b", 64, depth=4)
    assert len(enc.blocks) == 4
    assert [b.window_size for b in enc.blocks] == [14, 14, 0, 14]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="torch.compile needs a C compiler")
def test_compiled_matches_eager():
    stock = tiny_stock(64, 2, depth=2)
    fast = FastImageEncoderViT.from_stock(stock).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = fast(x)
        out = optimize_encoder(fast)(x)
    assert rel_err(out, ref) <= 1e-4
