"""The one picture of a prediction for a person to check (``segment --overlay``, the demo, evaluation).

One colour convention everywhere, said in a legend drawn under the picture:

* prediction: amber fill (35 % opacity) with an amber contour;
* ground truth (when known): an azure contour, no fill (so the prediction stays visible under it);
* positive clicks: green dots; negative clicks: red crosses (shape as well as colour differs);
  both outlined in white, so they show on any background;
* box prompt: a magenta rectangle.

Small images are enlarged by a whole factor (nearest neighbour, so pixels stay square and
crisp) until the longer side is at least ``MIN_SIDE`` px; a 122 x 101 slice becomes 610 x 505.
Pictures are RGB uint8 arrays; :func:`write_overlay` writes them (PNG/JPEG/BMP) atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from synthfm.errors import UserError

PREDICTION_RGB = (255, 176, 0)
TRUTH_RGB = (0, 170, 255)
POSITIVE_RGB = (0, 210, 0)
NEGATIVE_RGB = (235, 30, 30)
BOX_RGB = (230, 0, 230)
OUTLINE_RGB = (255, 255, 255)
FILL_OPACITY = 0.35
MIN_SIDE = 512
_FONT_SCALE = 0.5
_LINE_HEIGHT = 22


def scale_factor(height: int, width: int, min_side: int = MIN_SIDE) -> int:
    """The whole enlargement factor that brings the longer side to at least ``min_side`` (1 if it is)."""
    return max(1, math.ceil(min_side / max(1, height, width)))


def render_overlay(
    image8: np.ndarray,
    mask: np.ndarray,
    coords=None,
    labels=None,
    box=None,
    truth: np.ndarray | None = None,
    caption: str | None = None,
    min_side: int = MIN_SIDE,
) -> np.ndarray:
    """RGB uint8 picture (enlarged, with a legend below; see the module docstring).

    image8: (H, W) grey or (H, W, 3) RGB uint8, the image the model saw.  mask: (H, W) bool
    prediction.  coords: (N, 2) (x, y) pixels of ``image8`` with labels (N,) 1/0; box (4,)
    (x0, y0, x1, y1) pixels; truth: (H, W) bool ground truth; caption: a line of text over the legend.
    """
    import cv2

    rgb = np.repeat(image8[:, :, None], 3, axis=2) if image8.ndim == 2 else np.asarray(image8)[:, :, :3]
    h, w = mask.shape
    f = scale_factor(h, w, min_side)
    big = (w * f, h * f)
    canvas = np.ascontiguousarray(cv2.resize(rgb.astype(np.uint8), big, interpolation=cv2.INTER_NEAREST))
    line = max(2, round(max(big) / 300))

    pred = cv2.resize(mask.astype(np.uint8), big, interpolation=cv2.INTER_NEAREST).astype(bool)
    tint = np.asarray(PREDICTION_RGB, np.float32)
    canvas[pred] = ((1 - FILL_OPACITY) * canvas[pred] + FILL_OPACITY * tint).astype(np.uint8)
    _contour(canvas, pred, PREDICTION_RGB, line)
    if truth is not None:
        _contour(canvas, cv2.resize(truth.astype(np.uint8), big, interpolation=cv2.INTER_NEAREST).astype(bool),
                 TRUTH_RGB, line)
    if box is not None:
        x0, y0, x1, y1 = (int(round((float(v) + 0.5) * f - 0.5)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), BOX_RGB, line)
    labels_list = [] if coords is None else [int(v) for v in np.asarray(labels).reshape(-1)]
    radius = max(5, round(max(big) / 110))
    for (x, y), label in zip([] if coords is None else np.asarray(coords, float).reshape(-1, 2), labels_list):
        centre = (int(round((x + 0.5) * f - 0.5)), int(round((y + 0.5) * f - 0.5)))
        _click(canvas, centre, label == 1, radius)
    entries = [("prediction", "fill", PREDICTION_RGB)]
    if truth is not None:
        entries.append(("ground truth", "contour", TRUTH_RGB))
    if 1 in labels_list:
        entries.append(("positive click", "dot", POSITIVE_RGB))
    if 0 in labels_list:
        entries.append(("negative click", "cross", NEGATIVE_RGB))
    if box is not None:
        entries.append(("box", "contour", BOX_RGB))
    return np.concatenate([canvas, _legend(canvas.shape[1], entries, caption)], axis=0)


def _contour(canvas: np.ndarray, mask: np.ndarray, colour, thickness: int) -> None:
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, thickness, lineType=cv2.LINE_AA)


def _click(canvas: np.ndarray, centre: tuple[int, int], positive: bool, radius: int) -> None:
    import cv2

    if positive:
        cv2.circle(canvas, centre, radius + 2, OUTLINE_RGB, -1, lineType=cv2.LINE_AA)
        cv2.circle(canvas, centre, radius, POSITIVE_RGB, -1, lineType=cv2.LINE_AA)
    else:
        size = 2 * radius + 2
        cv2.drawMarker(canvas, centre, OUTLINE_RGB, cv2.MARKER_TILTED_CROSS, size + 4, max(2, radius // 2) + 3)
        cv2.drawMarker(canvas, centre, NEGATIVE_RGB, cv2.MARKER_TILTED_CROSS, size, max(2, radius // 2))


def _legend(width: int, entries: list[tuple[str, str, tuple]], caption: str | None) -> np.ndarray:
    """White rows under the picture: the caption, then a swatch + name per entry (wrapped to ``width``)."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    rows: list[list[tuple[str, str, tuple]]] = [[]]
    x = 6
    for entry in entries:
        need = 22 + cv2.getTextSize(entry[0], font, _FONT_SCALE, 1)[0][0] + 14
        if rows[-1] and x + need > width:
            rows.append([])
            x = 6
        rows[-1].append(entry)
        x += need
    lines = ([caption] if caption else []) + rows
    bar = np.full((_LINE_HEIGHT * len(lines) + 4, width, 3), 255, np.uint8)
    for i, item in enumerate(lines):
        base = _LINE_HEIGHT * (i + 1) - 6
        if isinstance(item, str):
            cv2.putText(bar, item, (6, base), font, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
            continue
        x = 6
        for name, kind, colour in item:
            top = base - 12
            if kind == "fill":
                cv2.rectangle(bar, (x, top), (x + 14, top + 14), colour, -1)
            elif kind == "contour":
                cv2.rectangle(bar, (x, top), (x + 14, top + 14), colour, 2)
            elif kind == "dot":
                cv2.circle(bar, (x + 7, top + 7), 6, colour, -1, lineType=cv2.LINE_AA)
            else:
                cv2.drawMarker(bar, (x + 7, top + 7), colour, cv2.MARKER_TILTED_CROSS, 14, 2)
            cv2.putText(bar, name, (x + 20, base), font, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
            x += 22 + cv2.getTextSize(name, font, _FONT_SCALE, 1)[0][0] + 14
    return bar


def write_overlay(path: str | Path, rgb: np.ndarray, *, overwrite: bool = True, into: Path | None = None) -> None:
    """Write an RGB picture atomically (PNG/JPEG/BMP by the extension); UserError if OpenCV cannot.

    overwrite=False: never replace an existing file (UserError if one appeared meanwhile).
    into: write to this temporary path instead (the caller moves it into place).
    """
    import contextlib

    import cv2

    from synthfm.io.atomic import atomic_output

    with (contextlib.nullcontext(into) if into is not None else atomic_output(path, exclusive=not overwrite)) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise UserError(f"could not write the overlay image {path}")
