"""Model weights: synthfm safetensors checkpoints (:mod:`.checkpoint`), official SAM files
(:mod:`.official_sam`), the shipped default model (package data in ``data/``) and the one
:func:`load_model` every command, the evaluator and the trainer use (:mod:`.source`)."""

from synthfm.weights.source import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_PATH,
    ModelSpec,
    init_model,
    load_model,
    model_spec,
    resolve_model,
)

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_PATH", "ModelSpec", "init_model", "load_model", "model_spec", "resolve_model"]
