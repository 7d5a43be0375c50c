"""The unit the synthetic engine produces: one image, its label map and its candidate targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Target:
    """One candidate segmentation target of a sample.

    label_ids: the label-map ids whose union is the target (usually one id).
    valid: False when training should skip it; ``reason`` then says why
    ("too_small", "touches_border", "empty").
    """

    label_ids: tuple[int, ...]
    valid: bool = True
    reason: str = ""


@dataclass(frozen=True)
class Sample:
    """One synthetic training image.

    image: (H, W) float32 in [0, 1], grey.
    labels: (H, W) uint16 label map, 0 = background, one id per structure.
    targets: candidate targets (see :class:`Target`).
    module: which generator made it ("shape" or "boundary").
    flavour: the modality flavour used ("generic", "ct", "mr", "us").
    """

    image: np.ndarray
    labels: np.ndarray
    targets: tuple[Target, ...]
    module: str
    flavour: str

    def target_mask(self, k: int) -> np.ndarray:
        """(H, W) bool mask of target ``k``."""
        return np.isin(self.labels, np.asarray(self.targets[k].label_ids, dtype=self.labels.dtype))

    @property
    def valid_targets(self) -> list[int]:
        """Indices of targets usable for training."""
        return [k for k, t in enumerate(self.targets) if t.valid]
