"""Tests for synthfm.weights.checkpoint: safetensors round trips, metadata, strict and clear failures."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

from synthfm import __version__
from synthfm.weights import official_sam
from synthfm.weights.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from synthfm.errors import CheckpointError, UserError
from synthfm.modeling import build_model
from synthfm.modeling.sam_vit import VIT_CONFIGS, ViTConfig

S = 64


def _outputs(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, S, S, generator=g) * 255
    coords = torch.rand(2, 2, 2, generator=g) * S
    labels = torch.tensor([[1, 0], [1, 1]])
    with torch.no_grad():
        emb = model.encode(images)
        logits, iou = model.decode(emb, coords, labels, multimask_output=True)
    return emb, logits, iou


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return build_model("tiny_cnn", image_size=S).eval()


def _rewrite(path: Path, out: Path, edit_tensors=None, edit_meta=None) -> None:
    """Copy a checkpoint with its tensors and/or metadata edited (as a tampered/foreign file)."""
    tensors = safetensors.torch.load_file(str(path))
    with safetensors.safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    safetensors.torch.save_file(tensors, str(out), metadata=meta)


# ----------------------------------------------------------------------------- round trips
def test_round_trip_fp32_is_exact(tiny, tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, tiny, metadata={"recipe": {"name": "synthfm", "p": [1, 2]}, "train_config": {"lr": 1e-4}})
    model, meta = load_checkpoint(p)
    assert not model.training
    assert model.encoder_name == "tiny_cnn" and model.image_size == S and model.encoder_frozen is False
    a, b = tiny.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for x, y in zip(_outputs(tiny), _outputs(model)):
        assert torch.equal(x, y)
    assert meta["recipe"] == {"name": "synthfm", "p": [1, 2]} and meta["train_config"] == {"lr": 1e-4}
    assert meta["encoder"] == "tiny_cnn" and meta["image_size"] == S and meta["synthfm_version"] == __version__
    assert meta["encoder_weights"] == "included" and meta["dtype"] == "float32"
    assert meta["pixel_mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert read_metadata(p) == meta
    # every stored metadata value is a JSON string
    with safetensors.safe_open(str(p), "pt") as fh:
        raw = fh.metadata()
    assert json.loads(raw["recipe"]) == meta["recipe"]


def test_round_trip_half(tiny, tmp_path):
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_checkpoint(full, tiny)
    save_checkpoint(half, tiny, half=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    model, meta = load_checkpoint(half)
    assert meta["dtype"] == "float16"
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, tiny.state_dict()[k].half().float())
    emb, logits, _ = _outputs(model)
    emb0, logits0, _ = _outputs(tiny)
    assert torch.allclose(emb, emb0, atol=0.05) and torch.allclose(logits, logits0, atol=0.05)


def test_shipped_size_budget(tmp_path):
    # the shipped default (a small encoder + SAM decoder) must fit in 16 MiB as fp16
    for encoder in ("tiny_cnn", "tiny_vit"):
        p = tmp_path / f"{encoder}.safetensors"
        save_checkpoint(p, build_model(encoder), half=True)
        assert p.stat().st_size <= 16 * 2**20


def test_pixel_normalisation_is_restored(tiny, tmp_path):
    tiny.pixel_mean.fill_(100.0)
    tiny.pixel_std.fill_(50.0)
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, tiny)
    model, _ = load_checkpoint(p)
    assert torch.equal(model.pixel_mean, torch.full((3,), 100.0)) and torch.equal(model.pixel_std, torch.full((3,), 50.0))


def test_frozen_small_encoder_round_trip(tmp_path):
    model = build_model("tiny_vit", image_size=S, freeze_encoder=True)
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, model)
    loaded, meta = load_checkpoint(p)
    assert meta["encoder_weights"] == "included" and loaded.encoder_frozen is True


def test_random_official_encoder_is_included(tmp_path, monkeypatch):
    # A vit_* encoder that did not come from a SAM file cannot be referenced: it is stored.
    monkeypatch.setitem(VIT_CONFIGS, "vit_b", ViTConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,)))
    torch.manual_seed(0)
    model = build_model("vit_b", image_size=S).eval()
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, model)
    loaded, meta = load_checkpoint(p)
    assert meta["encoder_weights"] == "included" and loaded.encoder_frozen is True
    for x, y in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(x, y)


# ----------------------------------------------------------------------------- external SAM encoder
def _cheap_sam_state(seed: int) -> dict[str, torch.Tensor]:
    """Official vit_b keys/shapes with non-trivial values stored in very little disk space."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.randn(shape[-1], generator=g) * 0.1).expand(shape) if shape else torch.randn((), generator=g)
        for k, shape in official_sam.expected_sam_shapes("vit_b").items()
    }


@pytest.fixture()
def sam_files(tmp_path):
    a, b = tmp_path / "sam_a.pth", tmp_path / "sam_b.pth"
    torch.save(_cheap_sam_state(1), a)
    torch.save(_cheap_sam_state(2), b)
    return a, b


def test_external_encoder_is_referenced_not_stored(tmp_path, sam_files):
    sam_a, sam_b = sam_files
    model = official_sam.build_model("vit_b", sam_checkpoint=sam_a, load_sam_decoder=False, image_size=S).eval()
    p = tmp_path / "decoder_only.safetensors"
    save_checkpoint(p, model, metadata={"recipe": "synthfm"})
    with safetensors.safe_open(str(p), "pt") as fh:
        assert not any(k.startswith("image_encoder.") for k in fh.keys())
    meta = read_metadata(p)
    assert meta["encoder_weights"] == "external" and meta["encoder_frozen"] is True
    assert meta["encoder_source"]["sha256"] == official_sam.file_sha256(sam_a)
    assert meta["encoder_source"]["official_filename"] == "sam_vit_b_01ec64.pth"

    with pytest.raises(CheckpointError, match="--sam-checkpoint") as info:
        load_checkpoint(p)
    assert "sam_vit_b_01ec64.pth" in str(info.value)
    with pytest.raises(CheckpointError, match="was trained on the encoder of sam_a.pth"):
        load_checkpoint(p, sam_checkpoint=sam_b)

    loaded, _ = load_checkpoint(p, sam_checkpoint=sam_a)
    assert loaded.encoder_frozen and loaded.encoder_source == model.encoder_source
    for x, y in zip(_outputs(model), _outputs(loaded)):
        assert torch.allclose(x, y, atol=1e-5, rtol=0)
    # saving the reloaded model references the same file again
    p2 = tmp_path / "again.safetensors"
    save_checkpoint(p2, loaded)
    assert read_metadata(p2)["encoder_source"] == meta["encoder_source"]


def test_external_encoder_wrong_sam_variant(tmp_path, sam_files):
    model = official_sam.build_model("vit_b", sam_checkpoint=sam_files[0], load_sam_decoder=False, image_size=S)
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, model)
    vit_h_like = tmp_path / "h.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1280, 3, 16, 16)}, vit_h_like)
    with pytest.raises(CheckpointError):  # sha differs from the recorded one
        load_checkpoint(p, sam_checkpoint=vit_h_like)

    def forget_sha(meta):
        source = json.loads(meta["encoder_source"])
        source.pop("sha256")
        meta["encoder_source"] = json.dumps(source)

    anonymous = tmp_path / "anon.safetensors"
    _rewrite(p, anonymous, edit_meta=forget_sha)
    with pytest.raises(CheckpointError, match="holds a SAM vit_h model, not vit_b"):
        load_checkpoint(anonymous, sam_checkpoint=vit_h_like)


# ----------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tiny, tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, tiny)
    data = p.read_bytes()
    for cut in (len(data) - 1000, 100, 4):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|not a safetensors"):
            load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="truncated"):
        (tmp_path / "c.safetensors").write_bytes(data[:-1])
        load_checkpoint(tmp_path / "c.safetensors")


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_posing_as_safetensors(tiny, tmp_path, writer):
    import pickle

    p = tmp_path / "m.safetensors"
    if writer == "torch.save":
        torch.save(tiny.state_dict(), p)
    else:
        p.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="PyTorch pickle/zip file, not a safetensors"):
        load_checkpoint(p)


def test_garbage_file(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(b"hello world, definitely not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(p)
    p.write_bytes(struct.pack("<Q", 5) + b"{nope" + b"\0" * 20)
    with pytest.raises(CheckpointError, match="no valid header"):
        load_checkpoint(p)


def test_header_length_starting_like_a_pickle_is_not_misread(tmp_path):
    # A genuine safetensors file whose header length has low bytes 0x80 0x02 (as a pickle starts).
    meta = {"format": json.dumps("synthfm"), "pad": ""}
    for pad in range(0, 70000):
        meta["pad"] = "x" * pad
        data = safetensors.torch.save({"w": torch.zeros(1)}, metadata=meta)
        if data[:2] == b"\x80\x02":
            break
    p = tmp_path / "m.safetensors"
    p.write_bytes(data)
    with pytest.raises(CheckpointError, match="lacks the checkpoint metadata key|format version"):
        read_metadata(p)  # parsed as safetensors: fails on content, not as a "pickle"


def test_foreign_safetensors(tmp_path):
    p = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(CheckpointError, match="not a synthfm checkpoint"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="not a synthfm checkpoint"):
        read_metadata(p)


def test_missing_and_unexpected_keys(tiny, tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, tiny)

    def damage(t):
        del t["mask_decoder.iou_token.weight"]
        t["mask_decoder.bonus"] = torch.zeros(1)

    bad = tmp_path / "bad.safetensors"
    _rewrite(p, bad, edit_tensors=damage)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    msg = str(info.value)
    assert "missing keys: mask_decoder.iou_token.weight" in msg and "unexpected keys: mask_decoder.bonus" in msg


def test_wrong_encoder_in_metadata(tiny, tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, tiny)
    bad = tmp_path / "bad.safetensors"
    _rewrite(p, bad, edit_meta=lambda m: m.update(encoder=json.dumps("tiny_vit")))
    with pytest.raises(CheckpointError, match="does not match a tiny_vit model"):
        load_checkpoint(bad)
    _rewrite(p, bad, edit_meta=lambda m: m.update(encoder=json.dumps("resnet9000")))
    with pytest.raises(CheckpointError, match="unknown to synthfm.*known: vit_h"):
        load_checkpoint(bad)
    _rewrite(p, bad, edit_meta=lambda m: m.update(image_size=json.dumps(100)))
    with pytest.raises(CheckpointError, match="invalid image_size 100"):
        load_checkpoint(bad)
    # conv encoders have no size-dependent weights: the same weights serve another input size
    _rewrite(p, bad, edit_meta=lambda m: m.update(image_size=json.dumps(128)))
    assert load_checkpoint(bad)[0].image_size == 128


def test_newer_format_is_refused(tiny, tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, tiny)
    bad = tmp_path / "bad.safetensors"
    _rewrite(p, bad, edit_meta=lambda m: m.update(format_version="99"))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(bad)


# ----------------------------------------------------------------------------- writing safely
def test_reserved_and_unserialisable_metadata(tiny, tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, tiny)
    before = p.read_bytes()
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(p, tiny, metadata={"encoder": "x"})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(p, tiny, metadata={"recipe": object()})
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["m.safetensors"]  # no temp files left


def test_unwritable_destination(tiny, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        save_checkpoint(tmp_path / "no" / "m.safetensors", tiny)
