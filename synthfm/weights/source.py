"""Where a model comes from: the one place every command, the evaluator and the trainer ask.

* :func:`load_model` ``("default" | path | "sam:vit_b", sam_checkpoint=, device=)`` -> ``(model, metadata)``:
  ``"default"`` is the shipped checkpoint (package data, found with ``importlib.resources``), a path
  is a synthfm ``.safetensors`` checkpoint, ``"sam:<encoder>"`` is plain SAM from the official
  ``.pth`` file given as ``sam_checkpoint``.
* :func:`model_spec` checks the options (files exist, encoder names) without loading anything, so
  a command can refuse bad options before it reads its input.
* :func:`init_model` builds the model a training run starts from (random init, or the frozen
  official SAM encoder with a fresh decoder).

A new model family plugs in here: give it a spec kind (``"<family>:<name>"`` or its own
checkpoint metadata ``format``) and return an ``nn.Module`` with the ``encode``/``decode``
interface :class:`synthfm.inference.Predictor` drives (see :class:`synthfm.modeling.SynthFM`).
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthfm.errors import CheckpointError, UserError

DEFAULT_MODEL = "default"
DEFAULT_CHECKPOINT_NAME = "synthfm_default.safetensors"
# The shipped default model is package data of synthfm.weights (data/*.safetensors, see setup.cfg).
DEFAULT_MODEL_PATH = Path(str(importlib.resources.files("synthfm.weights") / "data" / DEFAULT_CHECKPOINT_NAME))
SAM_PREFIX = "sam:"
SAM_ENCODERS = ("vit_h", "vit_l", "vit_b")


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """``"default"`` -> the shipped checkpoint; anything else is a path that must exist.

    Raises UserError when the default model is not shipped or the file is missing.
    """
    if str(name_or_path) == DEFAULT_MODEL:
        if not DEFAULT_MODEL_PATH.is_file():
            raise UserError("no default model is shipped yet; pass --model PATH")
        return DEFAULT_MODEL_PATH
    from synthfm.io.safe_inputs import check_regular_file

    p = Path(name_or_path)
    if not p.exists():
        raise UserError(f"model file not found: {p}")
    if p.is_dir():
        raise UserError(f"model path is a folder, not a checkpoint file: {p}")
    check_regular_file(p, "model file", error=UserError)
    return p


@dataclass(frozen=True)
class ModelSpec:
    """A checked model choice.  kind: ``"synthfm"`` (a checkpoint ``path``) or ``"sam"`` (plain SAM)."""

    kind: str
    path: Path | None = None
    encoder: str | None = None
    sam_checkpoint: Path | None = None

    @property
    def label(self) -> str:
        if self.kind == "sam":
            return f"sam_{self.encoder}"
        return "synthfm" if self.path == DEFAULT_MODEL_PATH else Path(self.path).name.split(".")[0]


def _check_sam_encoder(encoder: str) -> str:
    if encoder not in SAM_ENCODERS:
        raise UserError(f"plain SAM needs --encoder vit_h, vit_l or vit_b, got {encoder!r}")
    return encoder


def model_spec(model: str | os.PathLike | None = None, encoder: str | None = None,
               sam_checkpoint: str | os.PathLike | None = None) -> ModelSpec:
    """Decide where the model comes from and check the files exist (nothing is loaded).

    model: ``"default"``, a checkpoint path, ``"sam:vit_b"`` or None.  None means plain SAM when
    ``sam_checkpoint`` is given (``encoder`` or vit_h) and the default model otherwise; ``encoder``
    with a checkpoint must match the checkpoint's encoder (checked on load).
    """
    from synthfm.io.safe_inputs import check_regular_file

    sam = None if sam_checkpoint is None else Path(sam_checkpoint)
    if sam is not None and not sam.exists():
        raise UserError(f"SAM checkpoint not found: {sam}")
    if sam is not None:
        check_regular_file(sam, "SAM checkpoint", error=UserError)
    if model is not None and str(model).startswith(SAM_PREFIX):
        name = _check_sam_encoder(str(model)[len(SAM_PREFIX):])
        if sam is None:
            raise UserError(f"model {model} needs --sam-checkpoint PATH (the official SAM weights)")
        return ModelSpec("sam", encoder=name, sam_checkpoint=sam)
    if model is not None:
        return ModelSpec("synthfm", path=resolve_model(model), encoder=encoder, sam_checkpoint=sam)
    if sam is not None:
        return ModelSpec("sam", encoder=_check_sam_encoder(encoder or "vit_h"), sam_checkpoint=sam)
    if encoder is not None and encoder.startswith("vit_"):
        raise UserError(f"--encoder {encoder} needs --sam-checkpoint PATH (the official SAM weights)")
    return ModelSpec("synthfm", path=resolve_model(DEFAULT_MODEL), encoder=encoder)


def load_model(model: str | os.PathLike | ModelSpec = DEFAULT_MODEL, sam_checkpoint: str | os.PathLike | None = None,
               device="cpu", encoder: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The model for inference, on ``device``, in eval mode, and its metadata (a dict).

    For a synthfm checkpoint the metadata is the checkpoint's (encoder, image size, recipe,
    train_config, ...); for plain SAM it names the encoder and the SAM file.
    Raises UserError (or CheckpointError) with one line for any bad choice or file.
    """
    from synthfm.devices import resolve_device

    spec = model if isinstance(model, ModelSpec) else model_spec(model, encoder, sam_checkpoint)
    dev = resolve_device(device)
    if spec.kind == "sam":
        from synthfm.weights.official_sam import build_model as build_official_sam

        net = build_official_sam(spec.encoder, sam_checkpoint=str(spec.sam_checkpoint), load_sam_decoder=True)
        metadata: dict[str, Any] = {"format": "official_sam", "encoder": spec.encoder,
                                    "sam_checkpoint": str(spec.sam_checkpoint)}
    else:
        from synthfm.weights.checkpoint import load_checkpoint

        sam = None if spec.sam_checkpoint is None else str(spec.sam_checkpoint)
        net, metadata = load_checkpoint(spec.path, sam_checkpoint=sam, device=str(dev))
        metadata = dict(metadata)
        if spec.encoder is not None and spec.encoder != net.encoder_name:
            raise UserError(f"--encoder {spec.encoder} does not match the checkpoint's encoder {net.encoder_name}")
        apply_single_mask_rule(net, metadata)
    return net.to(dev).eval(), metadata


def apply_single_mask_rule(net, metadata: dict[str, Any]) -> None:
    """Set ``net.single_mask_rule`` from the checkpoint's ``inference.single_mask`` (if both exist).

    Only the inference path applies it: training (``--init``, ``--resume``) keeps ``"best"``, so the
    validation that selects checkpoints is the same for every run.  Unknown rules raise CheckpointError.
    """
    from synthfm.modeling.single_mask import check_rule

    inference = metadata.get("inference")
    rule = inference.get("single_mask") if isinstance(inference, dict) else None
    if rule is None or not hasattr(net, "single_mask_rule"):
        return
    try:
        net.single_mask_rule = check_rule(str(rule))
    except ValueError as exc:
        raise CheckpointError(f"checkpoint metadata 'inference.single_mask': {exc}") from None


def init_model(encoder: str, image_size: int, sam_checkpoint: str | os.PathLike | None = None,
               freeze_encoder: bool | None = None):
    """The untrained model a training run starts from (uses the global torch RNG; seed it first).

    vit_* with ``sam_checkpoint``: SAM's official encoder weights (frozen) and a fresh decoder;
    otherwise a random init of the registry's ``encoder`` (``freeze_encoder`` None = its default).
    """
    if encoder.startswith("vit_") and sam_checkpoint is not None:
        from synthfm.weights.official_sam import build_model as build_official_sam

        return build_official_sam(encoder, sam_checkpoint=sam_checkpoint, load_sam_decoder=False, image_size=image_size)
    from synthfm.modeling import build_model

    return build_model(encoder, image_size=image_size, freeze_encoder=freeze_encoder)
