"""Shape-aware module: several closed Bézier shapes on a background.

Shapes are drawn in order into a uint8 label map (later shapes occlude earlier ones), so each
label is the visible part of one shape.  A shape is placed freely (possibly cut by the image
border), nested inside an earlier shape, or against an earlier shape so that their outlines
touch.  Sizes are log-uniform from tiny to half the image.  Each shape gets its own intensity;
with ``p_low_contrast`` it differs from what it sits on by only a little.

Targets: every shape on its own, and for every shape that has nested children also the filled
union of it and its descendants (an organ including its lesion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synthfm.synth.bezier import outline_points, points_for_radius, sample_outline_params
from synthfm.synth.fields import integer, log_uniform, uniform
from synthfm.synth.recipe import ContrastConfig, ShapeConfig
from synthfm.synth.scene import MAX_LABELS, Scene, near, new_intensity_table

# fillPoly works in 1/16 pixel fixed point (shift=4) for sub-pixel accurate outlines.
_SHIFT = 4
_ONE = 1 << _SHIFT
# Free shapes are centred at least this fraction of the side away from the border.
_MARGIN = 0.05
_PLACEMENT_TRIES = 4


@dataclass
class _Placed:
    label: int
    center: np.ndarray  # (2,) float64 (x, y) pixels
    polygon: np.ndarray  # (M, 2) float64 (x, y) pixels
    parent: int  # label of the container, 0 = background


def _unit_outline(rng: np.random.Generator, cfg: ShapeConfig, radius_px: float) -> np.ndarray:
    n = integer(rng, cfg.control_points_range)
    params = sample_outline_params(rng, n, uniform(rng, cfg.irregularity_range), uniform(rng, cfg.aspect_range))
    return outline_points(params, points_for_radius(radius_px, n))


def _inscribed_radius(shape: _Placed) -> float:
    """Radius of a disc around the shape's centre that lies inside its (star-shaped) outline,
    with a margin for polygon chords and rasterisation so a nested child never reaches the edge."""
    nearest = float(np.min(np.linalg.norm(shape.polygon - shape.center, axis=1)))
    return max(0.0, 0.97 * nearest - 1.5)


def _place_relative(
    rng: np.random.Generator, cfg: ShapeConfig, placed: list[_Placed], label: int, unit: np.ndarray,
    radius: float, extent: float, nested: bool,
) -> _Placed:
    if nested:
        parent = placed[int(rng.integers(len(placed)))]
        room = _inscribed_radius(parent)
        reach = uniform(rng, cfg.nested_scale_range) * room  # the child's farthest point from its centre
        offset_len = (room - reach) * math.sqrt(rng.random())
        direction = rng.uniform(0.0, 2.0 * math.pi)
        center = parent.center + offset_len * np.array([math.cos(direction), math.sin(direction)])
        return _Placed(label, center, center + unit * (reach / extent), parent.label)
    other = placed[int(rng.integers(len(placed)))]
    direction = rng.uniform(0.0, 2.0 * math.pi)
    u = np.array([math.cos(direction), math.sin(direction)])
    # The neighbour's outline point farthest along u, and this shape's farthest point along -u:
    # putting one onto the other makes the outlines touch without a gap.
    contact = other.polygon[int(np.argmax((other.polygon - other.center) @ u))]
    poly = unit * radius
    center = contact - poly[int(np.argmax(poly @ -u))]
    return _Placed(label, center, center + poly, other.parent)


def _place(
    rng: np.random.Generator, cfg: ShapeConfig, size: int, placed: list[_Placed], label: int
) -> _Placed:
    radius = log_uniform(rng, *cfg.radius_range) * size
    unit = _unit_outline(rng, cfg, radius)
    extent = float(np.max(np.linalg.norm(unit, axis=1)))  # farthest outline point, unit scale
    mode = rng.random()
    if placed and mode < cfg.p_nested + cfg.p_touching:
        # A few tries to land the centre inside the image; placements next to a shape at the
        # border would otherwise often fall outside and leave an empty label.
        for _ in range(_PLACEMENT_TRIES):
            shape = _place_relative(rng, cfg, placed, label, unit, radius, extent, nested=mode < cfg.p_nested)
            if np.all((shape.center >= 0) & (shape.center < size)):
                return shape
    center = rng.uniform(_MARGIN * size, (1.0 - _MARGIN) * size, size=2)
    return _Placed(label, center, center + unit * radius, 0)


def _descendants(placed: list[_Placed]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for shape in placed:
        children.setdefault(shape.parent, []).append(shape.label)
    out: dict[int, list[int]] = {}
    for shape in placed:
        stack, seen = list(children.get(shape.label, [])), []
        while stack:
            k = stack.pop()
            seen.append(k)
            stack.extend(children.get(k, []))
        if seen:
            out[shape.label] = sorted(seen)
    return out


def render_shape_scene(cfg: ShapeConfig, contrast: ContrastConfig, size: int, rng: np.random.Generator) -> Scene:
    """A (size, size) scene of ``cfg.num_shapes_range`` Bézier shapes; label ids 1..n in drawing order."""
    n_shapes = min(integer(rng, cfg.num_shapes_range), MAX_LABELS)
    labels = np.zeros((size, size), dtype=np.uint8)
    intensity = new_intensity_table()
    intensity[0] = uniform(rng, contrast.intensity_range)
    placed: list[_Placed] = []
    for label in range(1, n_shapes + 1):
        shape = _place(rng, cfg, size, placed, label)
        placed.append(shape)
        if rng.random() < contrast.p_low_contrast:
            intensity[label] = near(rng, float(intensity[shape.parent]), contrast.low_contrast_range)
        else:
            intensity[label] = uniform(rng, contrast.intensity_range)
        pts = np.round(shape.polygon * _ONE).astype(np.int32)
        cv2.fillPoly(labels, [pts], color=label, lineType=cv2.LINE_8, shift=_SHIFT)
    candidates: list[tuple[int, ...]] = [(shape.label,) for shape in placed]
    for label, below in _descendants(placed).items():
        candidates.append(tuple(sorted([label, *below])))
    return Scene(labels=labels, intensity=intensity, candidates=candidates)
