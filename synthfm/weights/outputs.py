"""Which outputs a model was trained to give, read from its checkpoint metadata.

A model always *computes* three masks, an IoU score per mask and a mask-prompt path, whether or
not training ever supervised them; an output that was never trained is noise that looks like an
answer (e.g. a lattice of blobs for the 3-mask output, scores anti-correlated with Dice).  So the
predictor, the CLI, evaluation and the ONNX export ask :func:`trained_outputs_of` first and refuse
(or mark) what a checkpoint did not train:

* ``multimask``: the 3 candidate masks for ambiguous clicks (``multimask_output=True``, ``--multimask``);
* ``iou_scores``: the predicted-IoU scores (best-of-3 choice, ``--stop-score``, the printed score);
* ``mask_input``: a previous mask given back as a prompt (``mask_input``, annotate's refine mode).

Where the answer comes from (``TrainedOutputs.source``):

* ``"recorded"``: the checkpoint's ``trained_outputs`` metadata (every training run writes it,
  :func:`synthfm.training.early_fusion.trained_outputs`);
* ``"train_config"``: an older checkpoint without that key: inferred from its stored
  ``train_config`` with the same rule, a missing setting counting as "not trained";
* ``"official SAM"``: plain SAM, whose outputs were all trained by Meta;
* ``"unknown"``: neither key (a checkpoint saved by hand): nothing is assumed trained;
* ``"not checked"``: a model handed to the predictor directly, no metadata: the caller vouches.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthfm.errors import UserError

OUTPUT_NAMES = ("multimask", "iou_scores", "mask_input")
OUTPUT_DESCRIPTIONS = {
    "multimask": "the 3-candidate (multimask) output",
    "iou_scores": "the predicted-IoU scores",
    "mask_input": "mask prompts (mask_input)",
}


class UntrainedOutputError(UserError):
    """An output the checkpoint did not train was asked for."""


@dataclass(frozen=True)
class TrainedOutputs:
    """Whether each output of :data:`OUTPUT_NAMES` was trained, and where that was read (``source``)."""

    multimask: bool
    iou_scores: bool
    mask_input: bool
    source: str

    def as_dict(self) -> dict[str, bool]:
        return {name: bool(getattr(self, name)) for name in OUTPUT_NAMES}

    def untrained(self) -> list[str]:
        """Names of the outputs that were not trained, in :data:`OUTPUT_NAMES` order."""
        return [name for name in OUTPUT_NAMES if not getattr(self, name)]

    def describe(self) -> str:
        """One line, e.g. ``"trained: iou_scores; not trained: multimask, mask_input (train_config)"``."""
        done = [n for n in OUTPUT_NAMES if getattr(self, n)]
        parts = [f"trained: {', '.join(done) or 'none'}"]
        if self.untrained():
            parts.append(f"not trained: {', '.join(self.untrained())}")
        return "; ".join(parts) + f" ({self.source})"

    def require(self, name: str, asked_by: str, hint: str = "") -> None:
        """UntrainedOutputError naming ``asked_by`` (e.g. ``"--multimask"``) unless ``name`` was trained."""
        if name not in OUTPUT_NAMES:
            raise ValueError(f"unknown output {name!r}; known: {', '.join(OUTPUT_NAMES)}")
        if getattr(self, name):
            return
        why = {"unknown": "its metadata records neither trained_outputs nor train_config",
               "train_config": "by its train_config"}.get(self.source, "by its metadata")
        raise UntrainedOutputError(
            f"{asked_by} needs {OUTPUT_DESCRIPTIONS[name]}, which this checkpoint did not train ({why}); "
            f"its values would be noise" + (f"; {hint}" if hint else "")
        )


def all_trained(source: str) -> TrainedOutputs:
    return TrainedOutputs(True, True, True, source)


def _from_config(config: dict, encoder: str | None) -> TrainedOutputs:
    # The rule of synthfm.training.early_fusion.trained_outputs, on a stored dict whose keys may
    # predate some settings: a missing key is "not trained" (tests/test_trained_outputs.py keeps
    # the two rules in step).
    from synthfm.modeling.registry import is_whole_model  # lazy: this module is read without torch

    whole_model = is_whole_model(config.get("encoder") or encoder)

    def positive(key: str) -> bool:
        try:
            return float(config.get(key) or 0.0) > 0
        except (TypeError, ValueError):
            return False

    return TrainedOutputs(
        multimask=whole_model or config.get("multimask") is True,
        iou_scores=positive("iou_loss_weight"),
        mask_input=whole_model and positive("mask_fraction"),
        source="train_config",
    )


def trained_outputs_of(metadata: dict | None) -> TrainedOutputs:
    """What a model with this metadata (``load_model``'s second value) was trained to output."""
    if metadata is None:
        return all_trained("not checked")
    if metadata.get("format") == "official_sam":
        return all_trained("official SAM")
    recorded = metadata.get("trained_outputs")
    if isinstance(recorded, dict):
        return TrainedOutputs(*(recorded.get(name) is True for name in OUTPUT_NAMES), source="recorded")
    config = metadata.get("train_config")
    if isinstance(config, dict):
        return _from_config(config, metadata.get("encoder"))
    return TrainedOutputs(False, False, False, source="unknown")


def trained_outputs_for_spec(spec) -> TrainedOutputs:
    """:func:`trained_outputs_of` for a :class:`synthfm.weights.ModelSpec`, reading only the
    checkpoint's header (no weights), so a command can refuse an option before loading the model."""
    if spec.kind == "sam":
        return all_trained("official SAM")
    from synthfm.weights.checkpoint import read_metadata

    return trained_outputs_of(read_metadata(spec.path))


def score_text(score: float) -> str:
    """A predicted-IoU score for people: ``"0.873"``, or ``"n/a (IoU head not trained)"`` for NaN."""
    return "n/a (IoU head not trained)" if score != score else f"{score:.3f}"
