"""Intensity presets: map raw scanner values to the 8-bit image the model sees.

Every preset resolves to an :class:`IntensityWindow` ``[lo, hi]`` that is mapped linearly onto
0..255 (values outside are clipped).  Presets:

* ``none``: 8-bit as is; values are taken as 0..255 (clipped), no rescaling.
* ``soft_tissue``: CT window level 40 / width 400 HU (abdomen; the default for CT).
* ``lung``: CT L -600 / W 1500.   ``bone``: CT L 400 / W 1800.
* ``brain``: CT L 40 / W 80.      ``liver``: CT L 60 / W 160.
* ``"L,W"``: a custom CT window, e.g. ``"50,350"`` or ``"-500,1400"`` (width > 0).
* ``mr``: percentile clipping, ``[p0.5, p99.5]`` of the data -> 0..255.
* ``us``: ultrasound; as is when all values fit 0..255, else the data's min..max -> 0..255.
* ``auto``: chosen from the metadata and the values (see :func:`choose_auto_preset`); it may also
  resolve to ``unit`` (float data in 0..1, multiplied by 255).

CT windows assume Hounsfield units (DICOM RescaleSlope/Intercept already applied, as
``synthfm.io.images`` does).  Percentiles are computed on at most ~1M values sampled with a fixed stride,
so resolving a preset on a whole volume is cheap and deterministic.  Colour images use one mapping
for all channels (colour balance is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthfm.errors import UserError

CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
}
MR_PERCENTILES: tuple[float, float] = (0.5, 99.5)
PRESET_NAMES: tuple[str, ...] = ("auto", "none", *CT_WINDOWS, "mr", "us")

# Values below this (and above HU_PADDING_FLOOR) mark data as CT in Hounsfield units: air is -1000,
# and scanners pad outside the field of view with -1024, -2000, -2048 or -3024.
HU_AIR_CEILING = -500.0
HU_PADDING_FLOOR = -3100.0
_MAX_STAT_VALUES = 1_000_000


@dataclass(frozen=True)
class IntensityWindow:
    """A resolved mapping: values ``lo..hi`` go linearly to 0..255, the rest is clipped.

    ``name`` says which preset produced it (``"soft_tissue"``, ``"mr"``, ``"none"``, ...).
    """

    lo: float
    hi: float
    name: str

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(H, W[, C]) or (Z, H, W) any numeric dtype -> uint8 of the same shape (NaN -> 0)."""
        arr = np.asarray(image)
        if arr.dtype == np.uint8 and self.lo == 0.0 and self.hi == 255.0:
            return arr.copy()
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        span = max(self.hi - self.lo, 1e-12)
        x = arr.astype(np.float32)
        x -= np.float32(self.lo)
        x *= np.float32(255.0 / span)
        np.clip(x, 0.0, 255.0, out=x)
        np.nan_to_num(x, copy=False, nan=0.0)
        return np.rint(x).astype(np.uint8)

    def describe(self) -> str:
        """Human-readable, e.g. ``"soft_tissue (L 40 / W 400)"`` or ``"mr (12.0..873.5)"``."""
        if self.name in CT_WINDOWS or self.name == "custom":
            level, width = (self.lo + self.hi) / 2, self.hi - self.lo
            return f"{self.name} (L {level:g} / W {width:g})"
        return f"{self.name} ({self.lo:g}..{self.hi:g})"


MAX_WINDOW_VALUE = 1e12


def window_from_level_width(level: float, width: float, name: str = "custom") -> IntensityWindow:
    """CT window ``level``/``width`` (HU) -> IntensityWindow ``[level - width/2, level + width/2]``."""
    if not np.isfinite(level) or not np.isfinite(width) or width <= 0:
        raise UserError(f"window width must be a positive number and level finite, got L={level}, W={width}")
    if abs(level) > MAX_WINDOW_VALUE or width > MAX_WINDOW_VALUE or width < 1e-6 * max(1.0, abs(level)):
        # beyond these, level +- width/2 overflows or rounds to one value: every pixel would map to 0 or 255
        raise UserError(f"window L={level:g}, W={width:g} is out of range (|level| and width at most {MAX_WINDOW_VALUE:g}, "
                        "width not below 1e-6 of the level)")
    return IntensityWindow(level - width / 2.0, level + width / 2.0, name)


def parse_preset(text: str) -> str | tuple[float, float]:
    """Validate a preset string: a name from PRESET_NAMES, or ``"L,W"`` -> (level, width).

    Raises UserError naming the valid choices.
    """
    t = str(text).strip().lower()
    if t in PRESET_NAMES:
        return t
    if "," in t:
        parts = t.split(",")
        try:
            level, width = (float(p) for p in parts)
        except ValueError:
            raise UserError(f"custom window must be 'LEVEL,WIDTH' numbers (e.g. 40,400), got {text!r}") from None
        window_from_level_width(level, width)  # validates
        return level, width
    raise UserError(f"unknown window {text!r}; choose one of {', '.join(PRESET_NAMES)} or 'LEVEL,WIDTH'")


def normalise_modality(modality: str | None) -> str | None:
    """DICOM Modality / dataset modality -> ``"ct"``, ``"mr"``, ``"us"`` or None (no usable hint)."""
    if not modality:
        return None
    m = str(modality).strip().upper()
    if m == "CT":
        return "ct"
    if m in ("MR", "MRI"):
        return "mr"
    if m == "US":
        return "us"
    return None


def _stat_values(data: np.ndarray) -> np.ndarray:
    """A deterministic strided subsample (<= ~1M values) of the finite values of ``data``."""
    flat = np.asarray(data).reshape(-1)
    step = max(1, flat.size // _MAX_STAT_VALUES)
    vals = flat[::step]
    if vals.dtype.kind == "f":
        vals = vals[np.isfinite(vals)]
    return vals


def _is_integer_dtype(data: np.ndarray) -> bool:
    return np.asarray(data).dtype.kind in "iub"


def choose_auto_preset(data: np.ndarray, modality: str | None = None) -> str:
    """The preset ``auto`` picks for ``data`` (a 2D image or a whole volume).

    In order: uint8/bool data -> ``none``; a modality hint (DICOM Modality) CT -> ``soft_tissue``,
    MR -> ``mr``, US -> ``us``; integer data whose values all fit 0..255 -> ``none``; float data in
    0..1 -> ``unit`` (x255); values whose minimum is HU-like air/padding (-3100..-500) -> ``soft_tissue``
    (CT in HU); anything else (16-bit MR, microscopy, float) -> ``mr`` (percentile clipping).
    """
    arr = np.asarray(data)
    if arr.dtype in (np.uint8, np.bool_):
        return "none"
    hint = normalise_modality(modality)
    if hint == "ct":
        return "soft_tissue"
    if hint in ("mr", "us"):
        return hint
    vals = _stat_values(arr)
    if vals.size == 0:
        return "none"
    lo, hi = float(vals.min()), float(vals.max())
    if _is_integer_dtype(arr) and lo >= 0 and hi <= 255:
        return "none"
    if arr.dtype.kind == "f" and lo >= 0 and hi <= 1:
        return "unit"
    if HU_PADDING_FLOOR <= lo <= HU_AIR_CEILING:
        return "soft_tissue"
    return "mr"


def resolve_window(
    data: np.ndarray, preset: str | tuple[float, float] | IntensityWindow = "auto", modality: str | None = None
) -> IntensityWindow:
    """Resolve ``preset`` against ``data`` (an image or a whole volume) into an IntensityWindow.

    ``preset`` is a name, ``"L,W"``, a (level, width) tuple or an already resolved window.
    Resolve once on a volume and apply the window to each slice for consistent slices.
    """
    if isinstance(preset, IntensityWindow):
        return preset
    spec = parse_preset(preset) if isinstance(preset, str) else preset
    if isinstance(spec, tuple):
        level, width = spec
        return window_from_level_width(float(level), float(width))
    if spec == "auto":
        spec = choose_auto_preset(data, modality)
    if spec == "none":
        return IntensityWindow(0.0, 255.0, "none")
    if spec == "unit":
        return IntensityWindow(0.0, 1.0, "unit")
    if spec in CT_WINDOWS:
        level, width = CT_WINDOWS[spec]
        return window_from_level_width(level, width, name=spec)
    vals = _stat_values(data)
    if vals.size == 0:
        return IntensityWindow(0.0, 255.0, spec)
    if spec == "us":
        lo, hi = float(vals.min()), float(vals.max())
        if lo >= 0 and hi <= 255:
            return IntensityWindow(0.0, 255.0, "us")
        return IntensityWindow(lo, hi if hi > lo else lo + 1.0, "us")
    # "mr": percentile clipping
    p_lo, p_hi = np.percentile(vals.astype(np.float64), MR_PERCENTILES)
    lo, hi = float(p_lo), float(p_hi)
    if hi <= lo:
        hi = lo + 1.0
    return IntensityWindow(lo, hi, "mr")


def model_grey(image: np.ndarray, modality: str | None) -> np.ndarray:
    """(H, W) float32 in [0, 1]: ``image`` (H, W) or (H, W, 3) of any dtype as the model sees it.

    The ``auto`` window of :func:`synthfm.io.intensity.resolve_window` (as Predictor.set_image
    applies it in evaluation) to 8 bits, RGB reduced to its luminance.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    image8 = resolve_window(arr, "auto", modality).apply(arr)
    grey = image8.astype(np.float32)
    if grey.ndim == 3:
        grey = grey[:, :, :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return grey / np.float32(255.0)


def to_uint8(
    image: np.ndarray, preset: str | tuple[float, float] | IntensityWindow = "auto", modality: str | None = None
) -> np.ndarray:
    """Map ``image`` (any numeric dtype, (H, W) or (H, W, C)) to uint8 with ``preset``."""
    return resolve_window(image, preset, modality).apply(image)
