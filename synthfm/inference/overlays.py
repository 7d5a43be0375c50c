"""Pictures of a prediction for a person to check: the 8-bit image, the mask, the clicks and the box."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthfm.errors import UserError


def write_overlay(path: str | Path, bgr: np.ndarray) -> None:
    """Write a BGR picture atomically (PNG/JPEG/BMP by the extension); UserError if OpenCV cannot."""
    import cv2

    from synthfm.io.atomic import atomic_output

    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), bgr):
            raise UserError(f"could not write the overlay image {path}")


def render_overlay(image8: np.ndarray, mask: np.ndarray, coords, labels, box) -> np.ndarray:
    """BGR uint8 picture: the 8-bit image, the mask tinted green with a yellow contour, positive
    clicks as green dots, negative clicks as red dots, the box in cyan."""
    import cv2

    grey = image8 if image8.ndim == 2 else None
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR) if grey is not None else cv2.cvtColor(image8, cv2.COLOR_RGB2BGR)
    h, w = mask.shape
    scale = max(1, round(max(h, w) / 400))
    m = mask.astype(bool)
    tint = np.array([0, 200, 0], dtype=np.float32)
    bgr[m] = (0.6 * bgr[m].astype(np.float32) + 0.4 * tint).astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(bgr, contours, -1, (0, 255, 255), scale)
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(bgr, (x0, y0), (x1, y1), (255, 255, 0), scale)
    if coords is not None:
        radius = max(3, round(max(h, w) / 100))
        for (x, y), label in zip(coords, labels):
            centre = (int(round(float(x))), int(round(float(y))))
            colour = (0, 220, 0) if label == 1 else (0, 0, 255)
            cv2.circle(bgr, centre, radius, colour, -1, lineType=cv2.LINE_AA)
            cv2.circle(bgr, centre, radius, (255, 255, 255), max(1, scale // 2), lineType=cv2.LINE_AA)
    return bgr
