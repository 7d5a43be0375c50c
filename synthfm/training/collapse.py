"""Tell a collapsed training run from one that learned something, on its synthetic validation set.

A run has *collapsed* when its model answers the same whatever the prompt.  Two signs, both
measured on the run's own validation images (:mod:`synthfm.training.validation`):

* prompts ignored: the masks predicted for different prompt settings of the same image are (all
  but) identical, so the validation Dice is the same for every setting;
* all foreground / all background: the predicted masks cover (nearly) the whole image, or
  (nearly) nothing, whatever the object's size.

``train`` prints :func:`collapse_warnings` at the end of a run (``synthfm.cli.train``); the thresholds
are generous so that a merely weak model (which still follows its clicks) is not flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synthfm.training.validation import ValidationSet, build_validation_set, evaluate_validation

# A model that follows its prompts changes at least this fraction of an image's pixels between
# prompt settings on average (a 3-click mask differs from a 1-click one); a collapsed one ~0.
PROMPTS_IGNORED_CHANGE = 1e-3
PROMPTS_IGNORED_DICE_SPREAD = 1e-3
ALL_FOREGROUND_FRACTION = 0.9
ALL_BACKGROUND_FRACTION = 1e-3


@dataclass(frozen=True)
class PredictionStats:
    """What a model predicts on a validation set.

    foreground: mean predicted fraction of the image; target: mean true object fraction;
    prompt_change: mean fraction of pixels whose prediction differs from the first prompt
    setting's (over the other settings; 0 with one setting); dice: ``evaluate_validation``'s dict.
    """

    foreground: float
    target: float
    prompt_change: float
    dice: dict[str, float]


class _Observer:
    def __init__(self, settings) -> None:
        self.first_setting = settings[0]
        self.first: torch.Tensor | None = None
        self.foreground: list[float] = []
        self.target: list[float] = []
        self.change: list[float] = []

    def __call__(self, setting, logits: torch.Tensor, target: torch.Tensor) -> None:
        masks = logits > 0
        self.foreground.append(float(masks.float().mean()))
        if setting == self.first_setting:
            self.first = masks
            self.target.append(float(target.float().mean()))
        else:
            self.change.append(float((masks != self.first).float().mean()))


def prediction_stats(model, vset: ValidationSet, device: torch.device | str = "cpu") -> PredictionStats | None:
    """:class:`PredictionStats` of ``model`` on ``vset`` (None for an empty set)."""
    if len(vset) == 0:
        return None
    observer = _Observer(vset.settings)
    dice = evaluate_validation(model, vset, device, observe=observer)
    return PredictionStats(
        foreground=float(np.mean(observer.foreground)),
        target=float(np.mean(observer.target)),
        prompt_change=float(np.mean(observer.change)) if observer.change else 0.0,
        dice=dice,
    )


def collapse_warnings(stats: PredictionStats | None) -> list[str]:
    """One sentence per sign of collapse found in ``stats`` (empty: none found)."""
    if stats is None:
        return []
    found = []
    dice = [v for k, v in stats.dice.items() if k.startswith("dice_")]
    if len(dice) > 1 and stats.prompt_change < PROMPTS_IGNORED_CHANGE:
        spread = max(dice) - min(dice)
        same = "identical" if spread < PROMPTS_IGNORED_DICE_SPREAD else f"within {spread:.3f}"
        found.append(
            f"the model ignores its prompts: its masks for different prompt settings differ on "
            f"{100 * stats.prompt_change:.3f}% of the pixels, and validation Dice is {same} for every setting "
            f"({', '.join(f'{k[5:]}: {v:.3f}' for k, v in stats.dice.items() if k.startswith('dice_'))})"
        )
    if stats.foreground >= ALL_FOREGROUND_FRACTION:
        found.append(f"the model predicts (nearly) everything as the object: {100 * stats.foreground:.1f}% of "
                     f"each image on average, the objects cover {100 * stats.target:.1f}%")
    elif stats.foreground <= ALL_BACKGROUND_FRACTION:
        found.append(f"the model predicts (nearly) nothing: {100 * stats.foreground:.3f}% of each image on "
                     f"average, the objects cover {100 * stats.target:.1f}%")
    return found


def describe_collapse(warnings: list[str]) -> str:
    """The message ``train`` prints for a collapsed run (``warnings`` from :func:`collapse_warnings`)."""
    return ("warning: this run has collapsed: " + "; ".join(warnings) + ". Its weights are not useful; "
            "train longer or with more images per epoch, check the learning rate, or start from a working "
            "checkpoint (--init).")


CHECK_IMAGES = 16


def check_run(out, config, n_images: int = CHECK_IMAGES) -> list[str]:
    """:func:`collapse_warnings` for the last weights of the run in folder ``out`` (``config``: its
    TrainConfig), on the first ``n_images`` images of the run's own validation set; [] without one."""
    from pathlib import Path

    from synthfm.devices import resolve_device
    from synthfm.synth.recipe import recipe_from_dict
    from synthfm.training.run_folder import LAST_WEIGHTS, read_run_config
    from synthfm.weights.checkpoint import load_checkpoint

    out = Path(out)
    if config.val_images == 0 or not (out / LAST_WEIGHTS).is_file():
        return []
    device = resolve_device(config.device)
    model, _ = load_checkpoint(out / LAST_WEIGHTS, sam_checkpoint=config.sam_checkpoint, device=str(device))
    recipe = recipe_from_dict(read_run_config(out)["recipe"], source=str(out))
    vset = build_validation_set(recipe, config.seed, min(n_images, config.val_images), model.image_size,
                                config.gen_size, targets=config.targets)
    return collapse_warnings(prediction_stats(model, vset, device))
