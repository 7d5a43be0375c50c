"""Tests for synthfm.weights.official_sam, using random state dicts with the official SAM key names.

No official SAM file exists here; the loading path is exercised with ``build_sam_vit_b()``-style
random models saved as ``.pth`` dicts, the checksum policy by patching the table of known digests.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch
from segment_anything import build_sam_vit_b
from segment_anything.modeling import ImageEncoderViT

from synthfm.weights import official_sam
from synthfm.errors import CheckpointError, UserError
from synthfm.modeling.sam_vit import VIT_CONFIGS, ViTConfig, build_sam_vit
from synthfm.weights.official_sam import (
    OFFICIAL_SAM_FILES,
    OfficialSamFile,
    adapt_encoder_state_dict,
    file_sha256,
    load_official_state_dict,
    sub_state_dict,
)

ATOL = 1e-5


def random_sam_vit_b_state() -> dict[str, torch.Tensor]:
    """A segment_anything vit_b state dict; position tables randomised (SAM inits them to zero)."""
    torch.manual_seed(0)
    state = build_sam_vit_b().state_dict()
    for key in state:
        if "rel_pos" in key or key.endswith("pos_embed"):
            state[key] = torch.randn_like(state[key]) * 0.1
    return state


@pytest.fixture(scope="module")
def vit_b_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("sam") / "my_sam_vit_b.pth"
    state = random_sam_vit_b_state()
    torch.save(state, path)
    return path, state


def _patch_official(monkeypatch, encoder: str, filename: str, sha: str) -> None:
    table = dict(OFFICIAL_SAM_FILES)
    table[encoder] = OfficialSamFile(encoder, filename, sha)
    monkeypatch.setattr(official_sam, "OFFICIAL_SAM_FILES", table)


# ----------------------------------------------------------------------------- table / hashing
def test_official_table():
    for encoder, f in OFFICIAL_SAM_FILES.items():
        assert f.encoder == encoder and f.filename.startswith(f"sam_{encoder}_") and f.filename.endswith(".pth")
        assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
        assert f.url == f"https://dl.fbaipublicfiles.com/segment_anything/{f.filename}"
    assert len({f.sha256 for f in OFFICIAL_SAM_FILES.values()}) == 3


def test_file_sha256(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"synthfm" * 1000)
    assert file_sha256(p) == hashlib.sha256(b"synthfm" * 1000).hexdigest()
    p.write_bytes(b"changed!")  # size changes -> cache key changes
    assert file_sha256(p) == hashlib.sha256(b"changed!").hexdigest()


# ----------------------------------------------------------------------------- checksum policy
def test_official_name_with_wrong_checksum_is_refused(tmp_path):
    p = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"a": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError) as info:
        load_official_state_dict(p, "vit_b")
    msg = str(info.value)
    assert "SHA-256" in msg and OFFICIAL_SAM_FILES["vit_b"].sha256[:16] in msg and OFFICIAL_SAM_FILES["vit_b"].url in msg


def test_official_name_of_other_encoder_is_refused(tmp_path):
    p = tmp_path / "sam_vit_h_4b8939.pth"
    torch.save({"a": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match="named like the official vit_h"):
        load_official_state_dict(p, "vit_b")


def test_known_official_file_for_other_encoder(tmp_path, monkeypatch):
    p = tmp_path / "renamed.pth"
    torch.save({"a": torch.zeros(2)}, p)
    _patch_official(monkeypatch, "vit_h", "sam_vit_h_4b8939.pth", file_sha256(p))
    with pytest.raises(CheckpointError, match="is the official vit_h SAM checkpoint.*not vit_b"):
        load_official_state_dict(p, "vit_b")


def test_official_checksum_match_is_accepted(vit_b_file, monkeypatch):
    path, state = vit_b_file
    _patch_official(monkeypatch, "vit_b", path.name, file_sha256(path))
    loaded = load_official_state_dict(path, "vit_b")
    assert loaded.keys() == state.keys()
    assert official_sam.encoder_source_record(path, "vit_b")["official"] is True


def test_non_official_encoder_is_user_error(vit_b_file):
    with pytest.raises(UserError, match="no official SAM weights"):
        load_official_state_dict(vit_b_file[0], "tiny_cnn")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_official_state_dict(tmp_path / "nope.pth", "vit_b")


# ----------------------------------------------------------------------------- weights_only
class _Planted:
    """Unpickling this would create a marker file (stands in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "code_ran"
    p = tmp_path / "evil.pth"
    payload = {"image_encoder.pos_embed": _Planted(marker)}
    if writer == "torch.save":
        torch.save(payload, p)
    else:
        with open(p, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_official_state_dict(p, "vit_b")
    assert not marker.exists()
    # sanity: a plain unpickle really would run it
    if writer == "pickle":
        with open(p, "rb") as fh:
            pickle.load(fh)
        assert marker.exists()


def test_not_a_state_dict(tmp_path):
    p = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], p)
    with pytest.raises(CheckpointError, match="not a SAM state dict"):
        load_official_state_dict(p, "vit_b")


def test_truncated_pth(tmp_path, vit_b_file):
    p = tmp_path / "cut.pth"
    with open(vit_b_file[0], "rb") as fh:
        p.write_bytes(fh.read(100_000))
    with pytest.raises(CheckpointError, match="cannot read"):
        load_official_state_dict(p, "vit_b")


# ----------------------------------------------------------------------------- strict keys
def shape_only_state(encoder: str = "vit_b") -> dict[str, torch.Tensor]:
    """Official keys and shapes, each a stride-0 view of one zero: a few kB on disk."""
    return {k: torch.zeros(()).expand(shape) for k, shape in official_sam.expected_sam_shapes(encoder).items()}


def test_shape_only_state_loads(tmp_path):
    p = tmp_path / "ok.pth"
    torch.save(shape_only_state(), p)
    assert p.stat().st_size < 1_000_000
    assert len(load_official_state_dict(p, "vit_b")) == len(official_sam.expected_sam_shapes("vit_b"))


def test_missing_and_unexpected_keys(tmp_path):
    state = shape_only_state()
    del state["mask_decoder.iou_token.weight"]
    state["mask_decoder.extra.weight"] = torch.zeros(1)
    p = tmp_path / "bad.pth"
    torch.save(state, p)
    with pytest.raises(CheckpointError) as info:
        load_official_state_dict(p, "vit_b")
    msg = str(info.value)
    assert "1 missing keys: mask_decoder.iou_token.weight" in msg
    assert "1 unexpected keys: mask_decoder.extra.weight" in msg


def test_wrong_shape(tmp_path):
    state = shape_only_state()
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    p = tmp_path / "bad.pth"
    torch.save(state, p)
    with pytest.raises(CheckpointError, match=r"wrong shapes: mask_decoder.iou_token.weight \(1, 128\) != \(1, 256\)"):
        load_official_state_dict(p, "vit_b")


def test_wrong_encoder_is_named(tmp_path):
    # A vit_h-shaped patch embedding is enough to recognise the variant.
    p = tmp_path / "h.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1280, 3, 16, 16)}, p)
    with pytest.raises(CheckpointError, match="holds a SAM vit_h model, not vit_b; use encoder vit_h"):
        load_official_state_dict(p, "vit_b")


# ----------------------------------------------------------------------------- building models
def test_build_plain_sam_equals_segment_anything(vit_b_file):
    path, state = vit_b_file
    model = official_sam.build_model("vit_b", sam_checkpoint=path, load_sam_decoder=True)
    assert model.image_size == 1024 and model.encoder_frozen
    ours = model.state_dict()
    assert ours.keys() == state.keys()
    assert all(torch.equal(ours[k], state[k]) for k in state)
    assert model.encoder_source["sha256"] == file_sha256(path) and model.encoder_source["official"] is False

    sam = build_sam_vit_b()
    sam.load_state_dict(state)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(1, 256, 64, 64, generator=g)
    coords = torch.tensor([[[500.0, 400.0], [100.0, 900.0]]])
    labels = torch.tensor([[1, 0]])
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        ref = sam.mask_decoder(emb, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True)
        got = model.decode(emb, coords, labels, multimask_output=True)
    for a, b in zip(got, ref):
        assert torch.allclose(a, b, atol=ATOL, rtol=0)


def test_build_without_sam_decoder(vit_b_file):
    path, state = vit_b_file
    model = official_sam.build_model("vit_b", sam_checkpoint=path, load_sam_decoder=False, image_size=256)
    assert not torch.equal(model.mask_decoder.iou_token.weight, state["mask_decoder.iou_token.weight"])
    assert torch.equal(model.image_encoder.patch_embed.proj.weight, state["image_encoder.patch_embed.proj.weight"])
    assert {id(p) for p in model.trainable_parameters()} == {
        id(p) for p in list(model.prompt_encoder.parameters()) + list(model.mask_decoder.parameters())
    }


def test_adapt_is_identity_at_1024(vit_b_file):
    enc = sub_state_dict(vit_b_file[1], "image_encoder.")
    out = adapt_encoder_state_dict(enc, "vit_b", 1024)
    assert all(torch.equal(out[k], enc[k]) for k in enc)


def test_adapt_preserves_constant_and_linear_position_embeddings():
    enc = {"pos_embed": torch.ones(1, 64, 64, 4) * 3.0}
    ramp = torch.linspace(-1, 1, 127)[:, None].repeat(1, 8)
    for i in VIT_CONFIGS["vit_b"].global_attn_indexes:
        enc[f"blocks.{i}.attn.rel_pos_h"] = ramp.clone()
        enc[f"blocks.{i}.attn.rel_pos_w"] = ramp.clone()
    out = adapt_encoder_state_dict(enc, "vit_b", 256)
    assert out["pos_embed"].shape == (1, 16, 16, 4) and torch.allclose(out["pos_embed"], torch.tensor(3.0))
    table = out["blocks.2.attn.rel_pos_h"]
    assert table.shape == (31, 8)
    steps = table[1:, 0] - table[:-1, 0]
    assert torch.allclose(steps, steps.mean(), atol=1e-5) and steps.mean() > 0  # still a ramp
    assert "blocks.0.attn.rel_pos_h" not in out  # windowed blocks untouched


def test_adapted_encoder_equals_sams_runtime_interpolation(monkeypatch):
    """At 256 px our resized global rel-pos tables give exactly what SAM computes when it
    interpolates the 1024 px tables on the fly (segment_anything get_rel_pos).
    A reduced vit_b (3 blocks, width 64, global attention in block 1) keeps it fast."""
    monkeypatch.setitem(VIT_CONFIGS, "vit_b", ViTConfig(embed_dim=64, depth=3, num_heads=2, global_attn_indexes=(1,)))
    torch.manual_seed(0)
    enc = {k: torch.randn_like(v) * 0.1 for k, v in build_sam_vit("vit_b", 1024).state_dict().items()}
    adapted = adapt_encoder_state_dict(enc, "vit_b", 256)
    ours: ImageEncoderViT = build_sam_vit("vit_b", 256)
    ours.load_state_dict(adapted)
    runtime: ImageEncoderViT = build_sam_vit("vit_b", 256)
    runtime_state = dict(adapted)
    for i in VIT_CONFIGS["vit_b"].global_attn_indexes:
        for axis in ("h", "w"):
            key = f"blocks.{i}.attn.rel_pos_{axis}"
            runtime_state[key] = enc[key]  # 127-long tables: SAM resizes them at run time
            setattr(runtime.blocks[i].attn, f"rel_pos_{axis}", torch.nn.Parameter(enc[key].clone()))
    runtime.load_state_dict(runtime_state)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), runtime(x), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_encoder_at_1024_equals_segment_anything(vit_b_file):
    path, state = vit_b_file
    model = official_sam.build_model("vit_b", sam_checkpoint=path)
    sam = build_sam_vit_b()
    sam.load_state_dict(state)
    img = torch.rand(3, 700, 1024) * 255
    with torch.no_grad():
        ref = sam.image_encoder(sam.preprocess(img)[None])
        padded = torch.nn.functional.pad(img, (0, 0, 0, 324))[None]
        got = model.encode(padded, valid_hw=(700, 1024))
    assert torch.allclose(got, ref, atol=1e-4, rtol=0)
