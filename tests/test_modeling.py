"""Tests for synthfm.modeling: registry, encoders, SynthFM.encode/decode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segment_anything import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l

from synthfm.errors import UserError
from synthfm.modeling import ENCODERS, SAM_PIXEL_MEAN, SAM_PIXEL_STD, SynthFM, build_model

ATOL = 1e-5


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def tiny() -> SynthFM:
    torch.manual_seed(0)
    return build_model("tiny_cnn", image_size=64).eval()


# ----------------------------------------------------------------------------- registry
def test_registry_names():
    assert {"vit_h", "vit_l", "vit_b", "tiny_cnn", "tiny_vit"} <= set(ENCODERS)


def test_unknown_encoder_lists_known_names():
    with pytest.raises(UserError) as info:
        build_model("vit_x")
    msg = str(info.value)
    assert "vit_x" in msg and all(name in msg for name in ENCODERS)


@pytest.mark.parametrize("size", [0, 50, 100, 32, 256.0, True])
def test_bad_image_size(size):
    with pytest.raises(UserError, match="multiple of 16"):
        build_model("tiny_cnn", image_size=size)


@pytest.mark.parametrize(
    "name, builder", [("vit_b", build_sam_vit_b), ("vit_l", build_sam_vit_l), ("vit_h", build_sam_vit_h)]
)
def test_vit_models_have_sams_exact_keys_and_shapes(name, builder):
    # On the meta device: key names and shapes for free, no 2.5 GB allocation for vit_h.
    with torch.device("meta"):
        ours = build_model(name)
        sam = builder()
    assert ours.image_size == 1024 and ours.embedding_size == 64
    assert ours.encoder_frozen is True
    assert _shapes(ours) == _shapes(sam)


def test_defaults_of_small_encoders():
    for name in ("tiny_cnn", "tiny_vit"):
        m = build_model(name)
        assert m.encoder_frozen is False
        assert m.image_size == ENCODERS[name].default_image_size
        assert m.embedding_size == m.image_size // 16
        n_enc = sum(p.numel() for p in m.image_encoder.parameters())
        assert n_enc < 4_000_000  # shipped-model budget: whole model <= 16 MiB in fp16
        assert torch.equal(m.pixel_mean, torch.tensor(SAM_PIXEL_MEAN))
        assert torch.equal(m.pixel_std, torch.tensor(SAM_PIXEL_STD))


def test_freeze_override():
    assert build_model("tiny_cnn", image_size=64, freeze_encoder=True).encoder_frozen is True
    assert build_model("vit_b", image_size=64, freeze_encoder=False).encoder_frozen is False


# ----------------------------------------------------------------------------- encode
@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_vit", "vit_b"])
def test_encode_shape(name):
    torch.manual_seed(0)
    m = build_model(name, image_size=64)
    emb = m.encode(torch.rand(2, 3, 64, 64) * 255)
    assert emb.shape == (2, 256, 4, 4) and emb.dtype == torch.float32
    assert torch.isfinite(emb).all()


def test_small_encoders_are_size_agnostic():
    torch.manual_seed(0)
    m = build_model("tiny_vit", image_size=128)
    assert m.encode(torch.rand(1, 3, 128, 128) * 255).shape == (1, 256, 8, 8)


def test_encode_rejects_wrong_shape(tiny):
    with pytest.raises(ValueError, match="images must be"):
        tiny.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="images must be"):
        tiny.encode(torch.rand(3, 64, 64))


def test_grey_input_equals_repeated_rgb(tiny):
    grey = torch.rand(2, 1, 64, 64) * 255
    assert torch.allclose(tiny.encode(grey), tiny.encode(grey.repeat(1, 3, 1, 1)), atol=ATOL)


def test_encode_normalises_and_zeroes_padding_like_sam():
    m = build_model("tiny_cnn", image_size=64)
    seen = []
    m.image_encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    content = torch.rand(2, 3, 40, 64) * 255
    padded = F.pad(content, (0, 0, 0, 24))  # zero-padded at the bottom in 0..255 units
    mean, std = m.pixel_mean.view(1, 3, 1, 1), m.pixel_std.view(1, 3, 1, 1)
    sam_style = F.pad((content - mean) / std, (0, 0, 0, 24))  # Sam.preprocess: normalise, then pad

    m.encode(padded, valid_hw=(40, 64))
    assert torch.allclose(seen[-1], sam_style, atol=ATOL)
    m.encode(padded, valid_hw=[(40, 64), (40, 64)])
    assert torch.allclose(seen[-1], sam_style, atol=ATOL)
    m.encode(padded)  # without valid_hw the padding is normalised like any pixel
    assert torch.allclose(seen[-1], (padded - mean) / std, atol=ATOL)
    with pytest.raises(ValueError, match="valid_hw"):
        m.encode(padded, valid_hw=[(40, 64)] * 3)


def test_frozen_encoder_no_grad_and_stays_eval():
    torch.manual_seed(0)
    m = build_model("tiny_cnn", image_size=64, freeze_encoder=True)
    m.train()
    assert m.training and not m.image_encoder.training
    assert all(not p.requires_grad for p in m.image_encoder.parameters())
    emb = m.encode(torch.rand(1, 3, 64, 64) * 255)
    assert not emb.requires_grad
    trainable = {id(p) for p in m.trainable_parameters()}
    expected = {id(p) for p in m.prompt_encoder.parameters()} | {id(p) for p in m.mask_decoder.parameters()}
    assert trainable == expected


def test_unfrozen_encoder_gets_gradients():
    torch.manual_seed(0)
    m = build_model("tiny_cnn", image_size=64).train()
    emb = m.encode(torch.rand(2, 3, 64, 64) * 255)
    logits, _ = m.decode(emb, torch.tensor([[[10.0, 20.0]], [[30.0, 31.0]]]), torch.tensor([[1], [1]]))
    logits.mean().backward()
    assert m.image_encoder.stem[0].weight.grad is not None
    assert m.mask_decoder.iou_prediction_head.layers[0].weight.grad is None  # loss ignores the IoU output
    assert m.mask_decoder.mask_tokens.weight.grad.abs().sum() > 0
    assert len(m.trainable_parameters()) == len(list(m.parameters()))


# ----------------------------------------------------------------------------- decode
def _sam_reference(m: SynthFM, emb1, coords=None, labels=None, boxes=None, masks=None, multimask=False):
    """SAM's own call sequence (Sam.forward / SamPredictor.predict_torch) for one image."""
    points = (coords, labels) if coords is not None else None
    sparse, dense = m.prompt_encoder(points=points, boxes=boxes, masks=masks)
    return m.mask_decoder(
        image_embeddings=emb1,
        image_pe=m.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("prompt", ["points", "box", "points+box", "points+mask", "mask", "none"])
def test_decode_single_image_equals_sam(tiny, prompt, multimask):
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(1, 256, 4, 4, generator=g)
    coords = torch.rand(1, 3, 2, generator=g) * 64
    labels = torch.tensor([[1, 0, 1]])
    boxes = torch.tensor([[5.0, 6.0, 40.0, 50.0]])
    masks = torch.randn(1, 1, 16, 16, generator=g)
    kw = {}
    if "points" in prompt:
        kw.update(coords=coords, labels=labels)
    if "box" in prompt:
        kw["boxes"] = boxes
    if "mask" in prompt:
        kw["masks"] = masks
    with torch.no_grad():
        ref_logits, ref_iou = _sam_reference(tiny, emb, multimask=multimask, **kw)
        logits, iou = tiny.decode(
            emb, kw.get("coords"), kw.get("labels"), kw.get("boxes"), kw.get("masks"), multimask_output=multimask
        )
    c = 3 if multimask else 1
    assert logits.shape == (1, c, 16, 16) and iou.shape == (1, c)
    assert torch.allclose(logits, ref_logits, atol=ATOL, rtol=0)
    assert torch.allclose(iou, ref_iou, atol=ATOL, rtol=0)


@pytest.mark.parametrize("multimask", [False, True])
def test_decode_batch_equals_separate_calls(tiny, multimask):
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(3, 256, 4, 4, generator=g)
    coords = torch.rand(3, 4, 2, generator=g) * 64
    labels = torch.tensor([[1, 0, -1, -1], [1, 1, 0, 0], [1, -1, -1, -1]])  # -1 = padding
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [10.0, 10.0, 60.0, 50.0], [0.0, 0.0, 63.0, 63.0]])
    masks = torch.randn(3, 1, 16, 16, generator=g)
    with torch.no_grad():
        batched = tiny.decode(emb, coords, labels, boxes, masks, multimask_output=multimask)
        for i in range(3):
            single = tiny.decode(
                emb[i : i + 1], coords[i : i + 1], labels[i : i + 1], boxes[i : i + 1], masks[i : i + 1], multimask
            )
            ref = _sam_reference(tiny, emb[i : i + 1], coords[i : i + 1], labels[i : i + 1], boxes[i : i + 1], masks[i : i + 1], multimask)
            for got, want, want_sam in zip(batched, single, ref):
                assert torch.allclose(got[i : i + 1], want, atol=ATOL, rtol=0)
                assert torch.allclose(got[i : i + 1], want_sam, atol=ATOL, rtol=0)
    # prompt set i really goes with embedding i: different embeddings -> different outputs
    assert not torch.allclose(batched[0][0], batched[0][1])


def test_decode_repeated_embedding_for_several_prompt_sets(tiny):
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(1, 256, 4, 4, generator=g)
    coords = torch.rand(2, 1, 2, generator=g) * 64
    labels = torch.ones(2, 1, dtype=torch.int64)
    with torch.no_grad():
        logits, _ = tiny.decode(emb.expand(2, -1, -1, -1), coords, labels)
        # SAM's own decoder does exactly this for one image with several prompt sets
        ref, _ = _sam_reference(tiny, emb, coords, labels)
    assert torch.allclose(logits, ref, atol=ATOL, rtol=0)


def test_decode_without_prompts_uses_embedding_batch(tiny):
    with torch.no_grad():
        logits, iou = tiny.decode(torch.randn(2, 256, 4, 4))
    assert logits.shape == (2, 1, 16, 16) and iou.shape == (2, 1)


def test_decode_rejects_inconsistent_inputs(tiny):
    emb = torch.randn(2, 256, 4, 4)
    with pytest.raises(ValueError, match="embeddings must be"):
        tiny.decode(torch.randn(2, 256, 8, 8))
    with pytest.raises(ValueError, match="batch"):
        tiny.decode(emb, torch.zeros(3, 1, 2), torch.ones(3, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="together"):
        tiny.decode(emb, torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match="mask_inputs"):
        tiny.decode(emb, mask_inputs=torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="boxes"):
        tiny.decode(emb, boxes=torch.zeros(2, 2, 2))


def test_decode_accepts_int32_labels_and_float64_coords(tiny):
    # simulate_clicks gives int32 labels; numpy coordinates are often float64
    emb = torch.randn(2, 256, 4, 4, generator=torch.Generator().manual_seed(4))
    coords = torch.rand(2, 3, 2, generator=torch.Generator().manual_seed(5)) * 64
    labels = torch.tensor([[1, 0, -1], [1, 1, 0]])
    with torch.no_grad():
        a, _ = tiny.decode(emb, coords, labels)
        b, _ = tiny.decode(emb, coords.double(), labels.int())
    assert torch.equal(a, b)
