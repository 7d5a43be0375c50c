"""SynthFM checkpoints: safetensors weights + JSON metadata, written atomically, loaded strictly.

Layout: the model's state dict (SAM key names: image_encoder.*, prompt_encoder.*, mask_decoder.*)
in a ``.safetensors`` file whose string metadata holds, JSON-encoded:

* ``format`` ("synthfm"), ``format_version``, ``synthfm_version``;
* ``encoder``, ``image_size``, ``pixel_mean``, ``pixel_std`` (input normalisation, 0..255 units),
  ``encoder_frozen``, ``dtype`` ("float32" or "float16");
* ``encoder_weights``: "included", or "external" for a frozen official SAM ViT encoder, which is
  referenced (``encoder_source``: file name and SHA-256) rather than stored; loading it needs the
  SAM file (``sam_checkpoint``), whose SHA-256 must be the recorded one;
* any caller keys (e.g. ``recipe``, ``train_config``).
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from synthfm import __version__
from synthfm.io.atomic import atomic_write_bytes, check_writable_output
from synthfm.errors import CheckpointError, UserError
from synthfm.modeling import ENCODERS, SynthFM, build_model
from synthfm.weights.official_sam import (
    adapt_encoder_state_dict,
    describe_key_mismatch,
    encoder_source_record,
    load_official_state_dict,
    sub_state_dict,
)

FORMAT_NAME = "synthfm"
FORMAT_VERSION = 1
RESERVED_KEYS = (
    "format",
    "format_version",
    "synthfm_version",
    "encoder",
    "image_size",
    "pixel_mean",
    "pixel_std",
    "encoder_frozen",
    "encoder_weights",
    "encoder_source",
    "dtype",
)
ENCODER_PREFIX = "image_encoder."
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


def _encoder_is_external(model: SynthFM) -> bool:
    spec = ENCODERS[model.encoder_name]
    return spec.official and model.encoder_frozen and model.encoder_source is not None


def save_checkpoint(path: str | os.PathLike, model: SynthFM, metadata: dict | None = None, half: bool = False) -> None:
    """Write ``model`` to ``path`` (.safetensors), atomically.

    metadata: extra JSON-serialisable values (e.g. ``recipe``, ``train_config``); each is stored
    JSON-encoded.  half=True stores floating tensors as float16 (loaded back as float32).
    A frozen official vit_* encoder loaded from a SAM file is not stored, only referenced.
    """
    p = check_writable_output(path)
    extra = dict(metadata or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by the checkpoint format")
    external = _encoder_is_external(model)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if external and key.startswith(ENCODER_PREFIX):
            continue
        t = value.detach().to("cpu")
        if half and t.is_floating_point():
            t = t.half()
        tensors[key] = t.contiguous().clone()
    header: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "synthfm_version": __version__,
        "encoder": model.encoder_name,
        "image_size": model.image_size,
        "pixel_mean": [round(float(v), 6) for v in model.pixel_mean.tolist()],
        "pixel_std": [round(float(v), 6) for v in model.pixel_std.tolist()],
        "encoder_frozen": bool(model.encoder_frozen),
        "encoder_weights": "external" if external else "included",
        "encoder_source": model.encoder_source,
        "dtype": "float16" if half else "float32",
    }
    header.update(extra)
    try:
        encoded = {k: json.dumps(v) for k, v in header.items()}
    except TypeError as exc:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {exc}") from None
    atomic_write_bytes(p, safetensors.torch.save(tensors, metadata=encoded))


def _looks_like_pickle(head: bytes) -> bool:
    # torch.save's zip container, or a raw pickle (PROTO opcode 0x80 + protocol 2..5)
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _read_header(path: str | os.PathLike) -> tuple[Path, dict]:
    """Validate the safetensors framing of ``path`` and return its parsed JSON header."""
    from synthfm.io.safe_inputs import check_regular_file

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise CheckpointError(f"checkpoint not found: {p}")
    size = check_regular_file(p, "checkpoint", error=CheckpointError).st_size
    header = None
    with open(p, "rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        if 2 <= n <= _MAX_HEADER_BYTES and 8 + n <= size:
            raw = fh.read(n)
            if raw[:1] == b"{":
                try:
                    header = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    header = None
    if not isinstance(header, dict):
        # Only now look at magic bytes: a valid header length may begin with any byte.
        if _looks_like_pickle(head):
            raise CheckpointError(
                f"{p} is a PyTorch pickle/zip file, not a safetensors checkpoint "
                "(an official SAM .pth file goes to --sam-checkpoint, not --model)"
            )
        if 2 <= n <= _MAX_HEADER_BYTES and 8 + n > size:
            raise CheckpointError(f"{p} is truncated ({size} bytes, its header alone needs {8 + n})")
        raise CheckpointError(f"{p} is not a safetensors checkpoint (no valid header)")
    try:
        data_end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise CheckpointError(f"{p} is not a safetensors checkpoint (malformed tensor table)") from None
    if 8 + n + data_end > size:
        raise CheckpointError(f"{p} is truncated ({size} bytes, expected {8 + n + data_end})")
    return p, header


def _decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, json.JSONDecodeError):
            out[k] = v
    return out


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a synthfm checkpoint, values JSON-decoded; CheckpointError if not one."""
    p, header = _read_header(path)
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict):
        raise CheckpointError(f"{p} has a malformed metadata table (not a mapping)")
    meta = _decode_metadata(raw)
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{p} is a safetensors file but not a synthfm checkpoint (no 'format: synthfm' metadata)")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{p} has checkpoint format version {version!r}; this synthfm reads up to {FORMAT_VERSION}")
    for key in ("encoder", "image_size", "encoder_weights"):
        if key not in meta:
            raise CheckpointError(f"{p} lacks the checkpoint metadata key {key!r}")
    _check_metadata_types(p, meta)
    return meta


MAX_IMAGE_SIZE = 4096


def _check_metadata_types(p: Path, meta: dict) -> None:
    """One line for metadata of the wrong JSON type (a list as encoder, a string as image_size, ...)."""
    def bad(key: str) -> CheckpointError:
        return CheckpointError(f"{p} has an invalid {key} {str(meta.get(key))[:60]!r} in its metadata")

    if not isinstance(meta["encoder"], str):
        raise bad("encoder")
    size = meta["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= MAX_IMAGE_SIZE:
        raise CheckpointError(f"{p} has an invalid image_size {str(size)[:40]!r} (an integer from 16 to {MAX_IMAGE_SIZE})")
    if meta["encoder_weights"] not in ("external", "included"):
        raise bad("encoder_weights")
    if meta.get("encoder_source") is not None and not isinstance(meta["encoder_source"], dict):
        raise bad("encoder_source")
    if "encoder_frozen" in meta and not isinstance(meta["encoder_frozen"], bool):
        raise bad("encoder_frozen")
    for name in ("pixel_mean", "pixel_std"):
        values = meta.get(name)
        if values is None:
            continue
        ok = (isinstance(values, list) and len(values) == 3
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values))
        if not ok or (name == "pixel_std" and min(values) <= 0):
            raise CheckpointError(f"{p} has an invalid {name} {str(values)[:60]} (3 finite numbers"
                                  + (", each > 0)" if name == "pixel_std" else ")"))


def _check_tensor_values(p: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Weights must be floating point (a model's tensors all are) and finite: an int8/bool tensor or
    a NaN would give a silently wrong mask ("0 pixels, score nan")."""
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise CheckpointError(f"{p}: tensor {key} has dtype {str(t.dtype).replace('torch.', '')}; "
                                  "a synthfm checkpoint holds floating-point weights only")
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{p}: tensor {key} holds NaN or infinite values (a diverged or damaged checkpoint)")


def _expected_shapes(encoder: str, image_size: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(encoder, image_size=image_size)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _external_encoder_state(p: Path, meta: dict, sam_checkpoint: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    encoder, source = meta["encoder"], meta.get("encoder_source") or {}
    wanted = source.get("official_filename") or f"the official {encoder} SAM file"
    if sam_checkpoint is None:
        raise CheckpointError(
            f"{p} uses the SAM {encoder} image encoder, which is not stored in it; pass --sam-checkpoint PATH "
            f"({wanted}, see checkpoints/README.md)"
        )
    record = encoder_source_record(sam_checkpoint, encoder) if Path(sam_checkpoint).is_file() else None
    if record is not None and source.get("sha256") and record["sha256"] != source["sha256"]:
        raise CheckpointError(
            f"{p} was trained on the encoder of {source.get('file')} (SHA-256 {source['sha256'][:16]}...), "
            f"but {sam_checkpoint} has SHA-256 {record['sha256'][:16]}...; pass {source.get('file')}"
        )
    state = load_official_state_dict(sam_checkpoint, encoder)
    return adapt_encoder_state_dict(sub_state_dict(state, ENCODER_PREFIX), encoder, int(meta["image_size"]))


def load_checkpoint(
    path: str | os.PathLike, sam_checkpoint: str | os.PathLike | None = None, device: str = "cpu"
) -> tuple[SynthFM, dict]:
    """Load a checkpoint written by save_checkpoint; returns (model in eval mode on ``device``, metadata).

    Strict: raises CheckpointError naming the problem (missing file, truncated file, not
    safetensors, not a synthfm checkpoint, unknown encoder, missing/unexpected/misshapen keys,
    missing or wrong ``sam_checkpoint`` for an external SAM encoder).
    """
    p = Path(path)
    meta = read_metadata(p)
    encoder = meta["encoder"]
    if encoder not in ENCODERS:
        raise CheckpointError(f"{p} uses encoder {encoder!r}, unknown to synthfm {__version__} (known: {', '.join(ENCODERS)})")
    try:
        image_size = int(meta["image_size"])
        expected = _expected_shapes(encoder, image_size)
    except (UserError, TypeError, ValueError):
        raise CheckpointError(f"{p} has an invalid image_size {meta['image_size']!r}") from None
    external = meta["encoder_weights"] == "external"
    if meta["encoder_weights"] not in ("external", "included"):
        raise CheckpointError(f"{p} has an invalid encoder_weights value {meta['encoder_weights']!r}")
    if external:
        expected = {k: v for k, v in expected.items() if not k.startswith(ENCODER_PREFIX)}

    try:
        tensors = safetensors.torch.load_file(str(p), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise CheckpointError(f"cannot read {p}: {str(exc).splitlines()[0][:160]}") from None
    problem = describe_key_mismatch({k: tuple(v.shape) for k, v in tensors.items()}, expected)
    if problem:
        raise CheckpointError(f"{p} does not match a {encoder} model at {image_size} px: {problem}")
    _check_tensor_values(p, tensors)
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}

    if external:
        encoder_state = _external_encoder_state(p, meta, sam_checkpoint)
    elif ENCODERS[encoder].whole_model:
        encoder_state = None
    else:
        encoder_state = sub_state_dict(tensors, ENCODER_PREFIX)
    if ENCODERS[encoder].whole_model:
        model = build_model(encoder, image_size=image_size, freeze_encoder=False, encoder_state_dict=tensors)
    else:
        model = build_model(
            encoder,
            image_size=image_size,
            freeze_encoder=bool(meta.get("encoder_frozen", external)),
            encoder_state_dict=encoder_state,
        )
        model.prompt_encoder.load_state_dict(sub_state_dict(tensors, "prompt_encoder."), strict=True)
        model.mask_decoder.load_state_dict(sub_state_dict(tensors, "mask_decoder."), strict=True)
    for name in ("pixel_mean", "pixel_std"):
        values = meta.get(name)
        if values is not None:
            if not (isinstance(values, list) and len(values) == 3):
                raise CheckpointError(f"{p} has an invalid {name} {values!r}")
            getattr(model, name).copy_(torch.tensor(values, dtype=torch.float32))
    model.encoder_source = meta.get("encoder_source")
    return model.to(device).eval(), meta
