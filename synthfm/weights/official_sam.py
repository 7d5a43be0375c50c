"""Official SAM checkpoints (``sam_vit_h_4b8939.pth`` etc.): verify, load, build models from them.

Files are read with ``torch.load(weights_only=True)`` (a pickle that tries to build anything other
than tensors is refused, so a planted file cannot run code), checked against the SHA-256 of the
official downloads, and matched key-for-key against the SAM architecture.

Checksum policy (see checkpoints/README.md):

* a file whose SHA-256 is one of the official files' is accepted for *that* encoder only
  (an official vit_h file given for vit_b is an error that says so);
* a file *named* like an official file (``sam_vit_b_01ec64.pth``) must have that file's SHA-256,
  otherwise it is a corrupt/truncated download and is refused;
* any other file (e.g. SAM fine-tuned weights such as MedSAM's) is accepted if its keys and shapes
  match the encoder exactly; its SHA-256 is recorded with models built from it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from synthfm.errors import CheckpointError, UserError
from synthfm.modeling import SynthFM, check_image_size, get_encoder_spec
from synthfm.modeling import build_model as build_synthfm
from synthfm.modeling.sam_vit import PATCH_SIZE, SAM_IMAGE_SIZE, VIT_CONFIGS

log = logging.getLogger(__name__)

SAM_DOWNLOAD_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"
MAX_LISTED_KEYS = 5


@dataclass(frozen=True)
class OfficialSamFile:
    """One official SAM release file.  The hex digits in the file name are the start of its MD5."""

    encoder: str
    filename: str
    sha256: str

    @property
    def url(self) -> str:
        return SAM_DOWNLOAD_BASE + self.filename


OFFICIAL_SAM_FILES: dict[str, OfficialSamFile] = {
    "vit_h": OfficialSamFile("vit_h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    "vit_l": OfficialSamFile("vit_l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "vit_b": OfficialSamFile("vit_b", "sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
}

_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, cached per process by (real path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _SHA256_CACHE[key] = h.hexdigest()
    return _SHA256_CACHE[key]


def check_official_encoder(encoder: str) -> None:
    """UserError unless ``encoder`` is one whose weights come from an official SAM file."""
    spec = get_encoder_spec(encoder)
    if not spec.official:
        official = ", ".join(OFFICIAL_SAM_FILES)
        raise UserError(f"encoder {encoder!r} has no official SAM weights (official SAM encoders: {official})")


def verify_sam_file(path: str | os.PathLike, encoder: str) -> str:
    """Apply the checksum policy (module docstring) to ``path`` for ``encoder``; return its SHA-256."""
    check_official_encoder(encoder)
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"SAM checkpoint not found: {p} (see checkpoints/README.md for the download URLs)")
    from synthfm.io.safe_inputs import check_regular_file

    check_regular_file(p, "SAM checkpoint", error=CheckpointError)
    sha = file_sha256(p)
    by_sha = {f.sha256: f for f in OFFICIAL_SAM_FILES.values()}
    by_name = {f.filename: f for f in OFFICIAL_SAM_FILES.values()}
    if sha in by_sha:
        official = by_sha[sha]
        if official.encoder != encoder:
            raise CheckpointError(
                f"{p} is the official {official.encoder} SAM checkpoint ({official.filename}), not {encoder}; "
                f"use encoder {official.encoder} or pass {OFFICIAL_SAM_FILES[encoder].filename}"
            )
        return sha
    if p.name in by_name:
        named = by_name[p.name]
        if named.encoder != encoder:
            raise CheckpointError(f"{p} is named like the official {named.encoder} SAM checkpoint, but the encoder is {encoder}")
        raise CheckpointError(
            f"{p} has SHA-256 {sha[:16]}..., but the official {named.filename} has {named.sha256[:16]}... "
            f"(a truncated or corrupt download?); download it again from {named.url}"
        )
    log.info("%s is not an official SAM file (SHA-256 %s); accepting it if its keys match %s", p, sha, encoder)
    return sha


def _torch_load_weights_only(p: Path) -> dict[str, torch.Tensor]:
    with open(p, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)):
        raise CheckpointError(f"{p} is not a PyTorch checkpoint (neither a torch.save zip nor a pickle; "
                              "a damaged download?)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only" not in text.lower() and "unsupported global" not in text.lower():
            raise CheckpointError(f"cannot read {p} as a PyTorch checkpoint: corrupt pickle data "
                                  f"({text.splitlines()[0][:100] if text else 'UnpicklingError'})") from None
        raise CheckpointError(
            f"refusing to load {p}: it holds Python objects other than tensors, which torch.load(weights_only=True) "
            f"does not run ({str(exc).splitlines()[0][:120]})"
        ) from None
    except Exception as exc:  # zip/pickle corruption surfaces as RuntimeError, EOFError, ...
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read {p} as a PyTorch checkpoint: {first}") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{p} is not a SAM state dict (expected a flat dict of tensors, got {type(obj).__name__})")
    return obj


def expected_sam_shapes(encoder: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official SAM state dict for ``encoder`` (1024 px), built on 'meta'."""
    with torch.device("meta"):
        model = build_synthfm(encoder, image_size=SAM_IMAGE_SIZE)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_sam_encoder(state: dict[str, torch.Tensor]) -> str | None:
    """The vit_* variant a SAM state dict was made for (from its patch-embedding width), or None."""
    w = state.get("image_encoder.patch_embed.proj.weight")
    if w is None:
        return None
    for name, cfg in VIT_CONFIGS.items():
        if w.shape[0] == cfg.embed_dim:
            return name
    return None


def describe_key_mismatch(
    got: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]
) -> str | None:
    """One line naming missing, unexpected and wrongly shaped keys; None if all match."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shape = sorted(k for k in set(got) & set(expected) if tuple(got[k]) != tuple(expected[k]))
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shape)):
        if keys:
            shown = ", ".join(
                f"{k} {tuple(got[k])} != {tuple(expected[k])}" if label == "wrong shapes" else k
                for k in keys[:MAX_LISTED_KEYS]
            )
            more = f" (+{len(keys) - MAX_LISTED_KEYS} more)" if len(keys) > MAX_LISTED_KEYS else ""
            parts.append(f"{len(keys)} {label}: {shown}{more}")
    return "; ".join(parts) or None


def load_official_state_dict(path: str | os.PathLike, encoder: str) -> dict[str, torch.Tensor]:
    """The full SAM state dict (image_encoder.*, prompt_encoder.*, mask_decoder.*) from ``path``.

    Verified (checksum policy above), read with weights_only=True, and checked strictly against
    the ``encoder`` architecture at 1024 px.  Tensors are float32 on the CPU.
    Raises CheckpointError naming what does not match.
    """
    p = Path(path)
    verify_sam_file(p, encoder)
    state = _torch_load_weights_only(p)
    expected = expected_sam_shapes(encoder)
    problem = describe_key_mismatch({k: tuple(v.shape) for k, v in state.items()}, expected)
    if problem:
        guess = guess_sam_encoder(state)
        if guess is not None and guess != encoder:
            raise CheckpointError(f"{p} holds a SAM {guess} model, not {encoder}; use encoder {guess}")
        raise CheckpointError(f"{p} does not match the SAM {encoder} architecture: {problem}")
    # contiguous(): a no-op for real files; materialises views so the weights can be trained
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def sub_state_dict(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries of ``state`` under ``prefix`` (e.g. "image_encoder."), with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def adapt_encoder_state_dict(encoder_state: dict[str, torch.Tensor], encoder: str, image_size: int) -> dict[str, torch.Tensor]:
    """Resize a 1024 px SAM ViT encoder state dict (keys relative to the encoder) to ``image_size``.

    The absolute position embedding (1, 64, 64, C) is resized bicubically to (1, S/16, S/16, C);
    the relative position tables of the global-attention blocks ((2*64-1, head_dim)) are resized
    linearly to (2*S/16-1, head_dim), the interpolation SAM itself applies at run time.  Windowed
    blocks (14 x 14 windows) are unchanged.  Identity at 1024 px.
    """
    check_image_size(image_size)
    if image_size == SAM_IMAGE_SIZE:
        return dict(encoder_state)
    grid = image_size // PATCH_SIZE
    out = dict(encoder_state)
    pos = encoder_state["pos_embed"]
    out["pos_embed"] = F.interpolate(
        pos.permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic", align_corners=False
    ).permute(0, 2, 3, 1).contiguous()
    for i in VIT_CONFIGS[encoder].global_attn_indexes:
        for axis in ("h", "w"):
            key = f"blocks.{i}.attn.rel_pos_{axis}"
            table = encoder_state[key]  # (L, head_dim)
            resized = F.interpolate(table.t().unsqueeze(0), size=2 * grid - 1, mode="linear", align_corners=False)
            out[key] = resized.squeeze(0).t().contiguous()
    return out


def build_model(
    encoder: str,
    sam_checkpoint: str | os.PathLike,
    load_sam_decoder: bool = True,
    image_size: int | None = None,
    freeze_encoder: bool | None = None,
) -> SynthFM:
    """A SynthFM whose image encoder comes from an official SAM file.

    load_sam_decoder=True also loads SAM's prompt encoder and mask decoder, i.e. plain SAM (the
    baseline); False leaves them freshly initialised (to train a decoder on the frozen encoder).
    image_size None = 1024; other sizes resize the position embeddings (adapt_encoder_state_dict).
    The model records where its encoder came from in ``model.encoder_source``.
    """
    state = load_official_state_dict(sam_checkpoint, encoder)
    size = SAM_IMAGE_SIZE if image_size is None else check_image_size(image_size)
    encoder_state = adapt_encoder_state_dict(sub_state_dict(state, "image_encoder."), encoder, size)
    model = build_synthfm(encoder, image_size=size, freeze_encoder=freeze_encoder, encoder_state_dict=encoder_state)
    if load_sam_decoder:
        model.prompt_encoder.load_state_dict(sub_state_dict(state, "prompt_encoder."), strict=True)
        model.mask_decoder.load_state_dict(sub_state_dict(state, "mask_decoder."), strict=True)
    model.encoder_source = encoder_source_record(sam_checkpoint, encoder)
    return model


def encoder_source_record(sam_checkpoint: str | os.PathLike, encoder: str) -> dict:
    """What checkpoint metadata records about an external SAM encoder file."""
    p = Path(sam_checkpoint)
    sha = file_sha256(p)
    official = OFFICIAL_SAM_FILES[encoder]
    return {
        "kind": "sam",
        "encoder": encoder,
        "file": p.name,
        "sha256": sha,
        "official": sha == official.sha256,
        "official_filename": official.filename,
    }
