"""What one prompt set asks for: a whole label of the synthetic map, or one connected piece of it.

A label of a SynthMorph-style map is usually scattered: the argmax of smooth noise gives each id
several disconnected blobs (40 % of the validation targets have two or more pieces of >= 0.1 % of
the image).  A click on one blob cannot say where the others are, while real objects are scored as
8-connected components per class and slice (:mod:`synthfm.evaluation.datasets`); the piece units
train and validate on that unit instead.  Measured from the shipped default (benchmarks/README.md,
"the target unit"), they did worse on real images than whole labels: uniform pieces collapse to tiny
masks on large objects, pieces by area cost CT at every prompt setting.  The presets therefore keep
``"label"``; the piece units stay for recipe research.

Units (``TrainConfig.targets``):

* ``"label"``: the union of the target's label ids (what runs before ``targets`` existed used);
* ``"component"``: one 8-connected component of that union, drawn uniformly among the components of
  at least ``MIN_COMPONENT_FRACTION`` of the image (the largest when none is that big): the smallest
  object the real-data protocol keeps (``synthfm.evaluation.datasets.DEFAULT_MIN_AREA``) and the
  recipes' ``min_area_fraction``;
* ``"component_area"``: the same, drawn with probability proportional to its area (the piece under a
  uniformly drawn pixel of the label), so large pieces are as common as they are in ``"label"``
  targets and the many small fragments of a scattered label are rare.

The torch engine's counterpart (``--synth-device``) is :func:`synthfm.synth.gpu.targets.component_masks`.
"""

from __future__ import annotations

import cv2
import numpy as np

from synthfm.training.config import TARGET_UNITS

MIN_COMPONENT_FRACTION = 0.001


def target_unit_mask(mask: np.ndarray, unit: str, rng: np.random.Generator,
                     min_fraction: float = MIN_COMPONENT_FRACTION) -> np.ndarray:
    """(H, W) bool: ``mask`` itself for ``"label"``, one of its 8-connected components for ``"component"``.

    mask: (H, W) bool or {0,1} target of one label (union).  ``rng`` is used only for
    ``"component"`` (one draw per call, also when there is a single component), so ``"label"``
    streams stay what they were.
    """
    if unit == "label":
        return mask.astype(bool, copy=False)
    if unit not in ("component", "component_area"):
        raise ValueError(f"unknown target unit {unit!r}; known: {', '.join(TARGET_UNITS)}")
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    draw = rng.random()
    if n <= 1:
        return mask.astype(bool, copy=False)
    big = np.flatnonzero(areas >= max(1, int(np.ceil(min_fraction * mask.size))))
    if not len(big):
        chosen = int(np.argmax(areas))
    elif unit == "component":
        chosen = int(big[min(int(draw * len(big)), len(big) - 1)])
    else:  # by area: invert the cumulative area at the draw
        cumulative = np.cumsum(areas[big], dtype=np.float64)
        chosen = int(big[min(int(np.searchsorted(cumulative, draw * cumulative[-1], side="right")), len(big) - 1)])
    return comp == chosen + 1
