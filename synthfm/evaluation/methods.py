"""Evaluation methods by name: classical baselines, plain SAM, and any model :func:`synthfm.weights.load_model` loads.

A method is anything with ``name``, ``set_image(image, modality)`` and ``predict(clicks) -> (H, W)
bool`` (the :class:`synthfm.evaluation.baselines.Method` protocol).  Network methods wrap a
:class:`synthfm.inference.Predictor`; a new model family that loads through ``load_model`` and
drives ``Predictor`` needs no change here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from synthfm.errors import UserError
from synthfm.evaluation.baselines import CLASSICAL_METHODS, Method, build_classical
from synthfm.prompts import Clicks


class PredictorMethod:
    """A promptable network behind :class:`synthfm.inference.predictor.Predictor` (synthfm checkpoints, SAM).

    With ``multimask_single_click`` a single-click prompt asks for SAM's three masks and keeps
    the one with the highest predicted IoU (SAM's own ambiguity protocol); otherwise, and for
    any prompt with more than one click, one mask is requested.  ``build_methods`` turns it on
    for official SAM and for synthfm checkpoints that trained both the 3-mask output and the IoU
    scores that choose among them (:mod:`synthfm.weights.outputs`; an untrained head would only
    add noise).  ``settings()`` records what the checkpoint trained, so a report says it.
    """

    def __init__(self, name: str, predictor, preset: str = "auto", multimask_single_click: bool = False) -> None:
        self.name = name
        self.predictor = predictor
        self.preset = preset
        self.multimask_single_click = multimask_single_click

    def settings(self) -> dict:
        outputs = getattr(self.predictor, "trained_outputs", None)
        recorded = {} if outputs is None else {"trained_outputs": {**outputs.as_dict(), "source": outputs.source}}
        return {"preset": self.preset, "multimask_single_click": self.multimask_single_click, **recorded}

    def set_image(self, image: np.ndarray, modality: str | None = None) -> None:
        self.predictor.set_image(image, preset=self.preset, modality=modality)

    def predict(self, clicks: Clicks) -> np.ndarray:
        multimask = self.multimask_single_click and len(clicks) == 1
        masks, scores, _ = self.predictor.predict(
            point_coords=np.asarray(clicks.coords, np.float32),
            point_labels=np.asarray(clicks.labels, np.int64),
            multimask_output=multimask,
        )
        return np.asarray(masks[int(np.argmax(scores)) if multimask else 0], dtype=bool)


def build_methods(
    names: Sequence[str],
    sam_checkpoint: str | None = None,
    encoder: str | None = None,
    device: str = "cpu",
) -> list[Method]:
    """Methods by name: a classical baseline, ``sam``, ``default`` or a synthfm checkpoint path.

    Raises UserError for an unknown name, a missing checkpoint or ``sam`` without its options.
    """
    if not names:
        raise UserError(f"give at least one --method ({', '.join(_known_methods())})")
    methods: list[Method] = []
    used: set[str] = set()
    for name in names:
        method = _build_method(name, sam_checkpoint, encoder, device)
        base, k = method.name, 2
        while method.name in used:
            method.name = f"{base}_{k}"
            k += 1
        used.add(method.name)
        methods.append(method)
    return methods


def _known_methods() -> list[str]:
    return [*CLASSICAL_METHODS, "sam", "default", "<path to a synthfm .safetensors checkpoint>"]


def _build_method(name: str, sam_checkpoint: str | None, encoder: str | None, device: str) -> Method:
    if name in CLASSICAL_METHODS:
        return build_classical(name)
    if name == "sam":
        if not sam_checkpoint or not encoder:
            raise UserError("method 'sam' needs --sam-checkpoint PATH and --encoder vit_h|vit_l|vit_b")
        if not encoder.startswith("vit_"):
            raise UserError(f"method 'sam' needs an official SAM encoder (vit_h, vit_l, vit_b), got {encoder!r}")
        from synthfm.inference.predictor import Predictor

        predictor = Predictor.from_checkpoint(f"sam:{encoder}", sam_checkpoint=sam_checkpoint, device=device)
        return PredictorMethod(f"sam_{encoder}", predictor, multimask_single_click=True)
    looks_like_path = name == "default" or any(s in name for s in ("/", "\\", ".safetensors"))
    if not looks_like_path:
        raise UserError(f"unknown method {name!r}; known: {', '.join(_known_methods())}")
    from synthfm.inference.predictor import Predictor

    if name != "default" and not Path(name).is_file():
        raise UserError(f"checkpoint not found: {name}")
    predictor = Predictor.from_checkpoint(name, sam_checkpoint=sam_checkpoint, device=device)
    label = "synthfm" if name == "default" else Path(name).name.split(".")[0]
    outputs = predictor.trained_outputs
    return PredictorMethod(label, predictor, multimask_single_click=outputs.multimask and outputs.iou_scores)


def method_settings(method: Method) -> dict:
    settings = getattr(method, "settings", None)
    return settings() if callable(settings) else {}
