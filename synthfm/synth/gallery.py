"""A matplotlib grid of samples with the outlines of their valid targets (for eyeballing recipes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from synthfm.io.atomic import atomic_output
from synthfm.synth.sample import Sample

MAX_TILES = 16
_TILE_PX = 256
_COLOURS = ("#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#ff2d55", "#5ac8fa", "#af52de", "#ff9500")


def _shrink(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Image and label map at no more than 256 px (display only)."""
    h, w = sample.labels.shape
    scale = min(1.0, _TILE_PX / max(h, w))
    if scale >= 1.0:
        return sample.image, sample.labels
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(sample.image, size, interpolation=cv2.INTER_AREA)
    labels = cv2.resize(sample.labels, size, interpolation=cv2.INTER_NEAREST)
    return image, labels


def render_gallery(samples: Sequence[Sample], titles: Sequence[str] | None = None) -> Figure:
    """A Figure with up to 16 samples: grey image, coloured outline per valid target."""
    shown = list(samples)[:MAX_TILES]
    n = max(1, len(shown))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.0 * cols, 3.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.set_axis_off()
        if k >= len(shown):
            continue
        sample = shown[k]
        image, labels = _shrink(sample)
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        for j, t in enumerate(sample.valid_targets):
            mask = np.isin(labels, np.asarray(sample.targets[t].label_ids, dtype=labels.dtype))
            if mask.any() and not mask.all():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=[_COLOURS[j % len(_COLOURS)]], linewidths=0.8)
        title = titles[k] if titles is not None else f"{sample.module}/{sample.flavour}"
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def save_gallery(path: str | Path, samples: Sequence[Sample], titles: Sequence[str] | None = None) -> Path:
    """Write :func:`render_gallery` as a PNG, atomically; returns the path."""
    fig = render_gallery(samples, titles)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
