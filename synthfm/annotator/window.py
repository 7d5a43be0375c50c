"""Drawing and the OpenCV window loop of ``synthfm annotate`` (the state lives in ``synthfm.annotator.logic``).

The picture is the current slice (with the current intensity window) scaled for the screen, the
label map tinted per object (the current object outlined in white), the current object's clicks
(green = positive, red = negative) and a status bar: slice, object, window, multimask, clicks,
unsaved flag, then the last message or confirmation question.
"""

from __future__ import annotations

import cv2
import numpy as np

from synthfm.annotator.logic import Annotator

STATUS_HEIGHT = 44
MIN_DISPLAY_SIDE = 512
MAX_DISPLAY_SIDE = 1024
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def display_scale(h: int, w: int) -> float:
    """Screen pixels per image pixel: small images are zoomed by an integer factor so that the
    longest side reaches 512 px, large ones shrunk to 1024 px."""
    side = max(h, w)
    if side < MIN_DISPLAY_SIDE:
        return float(int(np.ceil(MIN_DISPLAY_SIDE / side)))
    if side > MAX_DISPLAY_SIDE:
        return MAX_DISPLAY_SIDE / side
    return 1.0


def label_colour(label: int) -> tuple[int, int, int]:
    """A distinct BGR colour per label id (golden-angle hues)."""
    hue = int((label * 137.508) % 180)
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


class AnnotatorView:
    """Renders an :class:`Annotator` and maps screen positions back to image pixels."""

    def __init__(self, annotator: Annotator) -> None:
        self.annotator = annotator
        h, w = annotator.shape
        self.scale = display_scale(h, w)
        self.size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))  # (width, height) on screen

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """Screen (x, y) -> image pixel (x, y): pixel centres map to integer coordinates."""
        return (x + 0.5) / self.scale - 0.5, (y + 0.5) / self.scale - 0.5

    def to_screen(self, x: float, y: float) -> tuple[int, int]:
        return int(round((x + 0.5) * self.scale - 0.5)), int(round((y + 0.5) * self.scale - 0.5))

    def render(self) -> np.ndarray:
        """The window's picture: BGR uint8 (display height + status bar, display width)."""
        a = self.annotator
        image8 = a.display_image()
        bgr = cv2.cvtColor(image8, cv2.COLOR_GRAY2BGR) if image8.ndim == 2 else cv2.cvtColor(image8, cv2.COLOR_RGB2BGR)
        labels = a.label_slice()
        tinted = bgr.astype(np.float32)
        for label in np.unique(labels):
            if label == 0:
                continue
            m = labels == label
            tinted[m] = 0.55 * tinted[m] + 0.45 * np.array(label_colour(int(label)), np.float32)
        interpolation = cv2.INTER_NEAREST if self.scale >= 1 else cv2.INTER_AREA
        screen = cv2.resize(tinted.astype(np.uint8), self.size, interpolation=interpolation)
        current = cv2.resize((labels == a.object_id).astype(np.uint8), self.size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(current, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(screen, contours, -1, (255, 255, 255), 1, lineType=cv2.LINE_AA)
        for c in a.current_clicks():
            centre = self.to_screen(c.x, c.y)
            colour = (0, 220, 0) if c.positive else (0, 0, 255)
            cv2.circle(screen, centre, 5, colour, -1, lineType=cv2.LINE_AA)
            cv2.circle(screen, centre, 5, (255, 255, 255), 1, lineType=cv2.LINE_AA)
        return np.vstack([screen, self._status_bar(screen.shape[1])])

    def _status_bar(self, width: int) -> np.ndarray:
        a = self.annotator
        bar = np.full((STATUS_HEIGHT, width, 3), 32, np.uint8)
        where = f"slice {a.slice_index + 1}/{a.num_slices}" if a.is_volume else "2D"
        state = (f"{where} | object {a.object_id} | {a.window.describe()} | multimask {'on' if a.multimask else 'off'}"
                 f" | {len(a.current_clicks())} clicks{' | unsaved' if a.dirty else ''}")
        colour = (80, 200, 255) if a.pending else (230, 230, 230)
        for row, (text, col) in enumerate(((state, (230, 230, 230)), (a.message, colour))):
            cv2.putText(bar, _fit(text, width), (6, 16 + 20 * row), _FONT, 0.42, col, 1, cv2.LINE_AA)
        return bar


def _fit(text: str, width: int, font_scale: float = 0.42) -> str:
    """Cut ``text`` (with an ellipsis) so that it fits ``width`` pixels."""
    if cv2.getTextSize(text, _FONT, font_scale, 1)[0][0] <= width - 12:
        return text
    while text and cv2.getTextSize(text + "...", _FONT, font_scale, 1)[0][0] > width - 12:
        text = text[:-1]
    return text + "..."


def run_window(annotator: Annotator, title: str = "synthfm annotate", poll_ms: int = 30) -> None:
    """Show the annotator in an OpenCV window until it is done (q / Esc, confirmed)."""
    view = AnnotatorView(annotator)

    def on_mouse(event, x, y, flags, param=None):
        annotator.on_mouse(event, x, y, flags, to_image=view.to_image)

    def open_window() -> None:
        # GUI_NORMAL: no toolbar, so window pixels are image pixels and right clicks reach us
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        cv2.setMouseCallback(title, on_mouse)

    open_window()
    shown = None
    try:
        while not annotator.done:
            if shown != annotator.version:
                shown = annotator.version
                cv2.imshow(title, view.render())
            key = cv2.waitKeyEx(poll_ms)
            if key != -1:
                annotator.on_key(key)
            elif cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
                # closed from the title bar: never drop unsaved work silently, ask in a new window
                if not annotator.dirty:
                    break
                annotator.quit()
                open_window()
                shown = None
    finally:
        cv2.destroyAllWindows()
        cv2.waitKey(1)
