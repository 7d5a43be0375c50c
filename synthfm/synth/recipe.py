"""Recipes: the frozen dataclass tree that configures the synthetic engine, and its YAML form.

A recipe file is YAML whose nesting mirrors the dataclasses below.  Any key may be left out (it
keeps the embedded default, which is ``synthfm/synth/recipes/synthfm.yaml``), so a new recipe only lists what
it changes.  Validation is strict and names the dotted key and the value in one line:
an unknown key, a wrong type, a value outside its bounds, a range with ``lo > hi`` or a
probability outside [0, 1] raises :class:`~synthfm.errors.RecipeError`.

Conventions: ranges are ``(lo, hi)`` tuples named ``*_range`` (YAML: a two-item list) and a value
is drawn uniformly from them (log-uniformly where the docstring says so); ``p_*`` fields are
probabilities; geometric sizes are fractions of the image side so that a recipe means the same
thing at 256 and 1024 pixels.
"""

from __future__ import annotations

import importlib.resources

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthfm.errors import RecipeError

Range = tuple[float, float]
IntRange = tuple[int, int]

# The named recipes are package data (synthfm/synth/recipes/*.yaml), so they ship in the wheel.
RECIPES_DIR = Path(str(importlib.resources.files("synthfm.synth") / "recipes"))


def _num(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """A scalar or range field whose value(s) must lie in [lo, hi]."""
    return field(default=default, metadata={"lo": lo, "hi": hi})


def _prob(default: float) -> Any:
    return field(default=default, metadata={"lo": 0.0, "hi": 1.0, "prob": True})


def _sub(factory: Any) -> Any:
    return field(default_factory=factory)


@dataclass(frozen=True)
class ModuleMix:
    """Probability of each generator module per sample; must sum to 1."""

    shape: float = _prob(0.5)
    boundary: float = _prob(0.5)


@dataclass(frozen=True)
class NoiseMix:
    """Relative weights (>= 0) of the noise kinds a flavour draws from."""

    gaussian: float = _num(0.0, 0.0)
    poisson: float = _num(0.0, 0.0)
    perlin: float = _num(0.0, 0.0)
    speckle: float = _num(0.0, 0.0)
    rician: float = _num(0.0, 0.0)


NOISE_KINDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(NoiseMix))


@dataclass(frozen=True)
class Flavour:
    """A modality flavour: which noise kinds and artefacts an image gets.

    p: probability of the flavour (the flavours' ``p`` sum to 1).
    noise: weights of the noise kinds; ``num_noises_range`` kinds are drawn without replacement.
    texture_scale: multiplies the per-structure texture amplitude (CT-like smooth tissue < 1).
    p_bias / p_blur / p_resolution_loss: artefact probabilities (see ``artefacts``).
    p_fan: probability of an ultrasound fan-shaped field of view (outside is 0, label 0).
    p_shadows: probability of acoustic shadows (dark sectors behind a random depth).
    """

    p: float = _prob(0.25)
    noise: NoiseMix = _sub(lambda: NoiseMix(gaussian=1.0))
    num_noises_range: IntRange = _num((1, 1), 1, len(NOISE_KINDS))
    texture_scale: float = _num(1.0, 0.0, 10.0)
    p_bias: float = _prob(0.3)
    p_blur: float = _prob(0.5)
    p_resolution_loss: float = _prob(0.2)
    p_fan: float = _prob(0.0)
    p_shadows: float = _prob(0.0)


@dataclass(frozen=True)
class Flavours:
    """The four modality flavours; their ``p`` must sum to 1."""

    generic: Flavour = _sub(
        lambda: Flavour(
            p=0.4,
            noise=NoiseMix(gaussian=1.0, poisson=1.0, perlin=1.0, speckle=1.0, rician=1.0),
            num_noises_range=(1, 2),
            texture_scale=1.0,
            p_bias=0.3,
            p_blur=0.5,
            p_resolution_loss=0.2,
        )
    )
    ct: Flavour = _sub(
        lambda: Flavour(
            p=0.2,
            noise=NoiseMix(gaussian=1.0, poisson=1.0),
            num_noises_range=(1, 1),
            texture_scale=0.3,
            p_bias=0.0,
            p_blur=0.7,
            p_resolution_loss=0.2,
        )
    )
    mr: Flavour = _sub(
        lambda: Flavour(
            p=0.2,
            noise=NoiseMix(rician=1.0),
            num_noises_range=(1, 1),
            texture_scale=0.7,
            p_bias=0.9,
            p_blur=0.5,
            p_resolution_loss=0.3,
        )
    )
    us: Flavour = _sub(
        lambda: Flavour(
            p=0.2,
            noise=NoiseMix(speckle=1.0),
            num_noises_range=(1, 1),
            texture_scale=1.0,
            p_bias=0.2,
            p_blur=0.3,
            p_resolution_loss=0.1,
            p_fan=0.8,
            p_shadows=0.5,
        )
    )


FLAVOURS: tuple[str, ...] = ("generic", "ct", "mr", "us")


@dataclass(frozen=True)
class ShapeConfig:
    """Shape-aware module: closed Bézier shapes on a textured background.

    num_shapes_range: shapes per image.  radius_range: mean radius / image side, drawn
    log-uniformly (0.25 = a shape half the image wide).  control_points_range: Bézier anchor
    points per outline.  irregularity_range: radial jitter of the anchors relative to the radius
    (0 = ellipse, large = concave).  aspect_range: minor/major axis ratio.  p_nested: a shape is
    placed inside an earlier one, with ``nested_scale_range`` = its radius / the parent's.
    p_touching: a shape is placed against an earlier one so their outlines touch.
    """

    num_shapes_range: IntRange = _num((3, 12), 1, 250)
    radius_range: Range = _num((0.025, 0.25), 0.001, 0.5)
    control_points_range: IntRange = _num((4, 10), 3, 64)
    irregularity_range: Range = _num((0.05, 0.6), 0.0, 0.95)
    aspect_range: Range = _num((0.35, 1.0), 0.05, 1.0)
    p_nested: float = _prob(0.25)
    nested_scale_range: Range = _num((0.3, 0.7), 0.01, 0.95)
    p_touching: float = _prob(0.3)


@dataclass(frozen=True)
class BoundaryConfig:
    """Boundary-aware module: SynthMorph-style label maps with random erosion.

    num_labels_range: structures per image (argmax of this many smooth random fields).
    field_cells_range: grid cells across the image of those fields (fewer = bigger blobs).
    warp_strength_range: peak displacement of the random smooth warp / image side.
    p_background: an enclosing background (label 0) surrounds the structures, like a body.
    p_erosion: probability that a structure is eroded by ``erosion_radius_range`` (/ image side),
    opening a thin gap (label 0) between it and its neighbours.
    p_near_equal: neighbouring structures get near-equal intensities (differing by
    ``near_equal_delta_range``), so the gap is the main cue.  p_union: probability of adding a
    target that is the union of two adjacent structures.
    """

    num_labels_range: IntRange = _num((4, 14), 2, 250)
    field_cells_range: IntRange = _num((3, 8), 2, 64)
    warp_strength_range: Range = _num((0.0, 0.05), 0.0, 0.5)
    p_background: float = _prob(0.8)
    p_erosion: float = _prob(0.7)
    erosion_radius_range: Range = _num((0.002, 0.008), 0.0, 0.1)
    p_near_equal: float = _prob(0.5)
    near_equal_delta_range: Range = _num((0.0, 0.06), 0.0, 1.0)
    p_union: float = _prob(0.3)


@dataclass(frozen=True)
class ContrastConfig:
    """Per-structure intensity and global contrast modulation.

    intensity_range: mean intensity of a structure or the background.  p_low_contrast: a
    structure differs from what surrounds it by only ``low_contrast_range``.  p_invert: the
    image is inverted (1 - x).  p_gamma: a gamma in ``gamma_range`` (log-uniform) is applied.
    texture_amplitude_range: amplitude of a structure's own texture; texture_cells_range: grid
    cells across the image of the texture fields (more = finer texture).
    """

    intensity_range: Range = _num((0.05, 0.95), 0.0, 1.0)
    p_low_contrast: float = _prob(0.15)
    low_contrast_range: Range = _num((0.02, 0.08), 0.0, 1.0)
    p_invert: float = _prob(0.15)
    p_gamma: float = _prob(0.4)
    gamma_range: Range = _num((0.5, 2.0), 0.05, 20.0)
    texture_amplitude_range: Range = _num((0.0, 0.15), 0.0, 1.0)
    texture_cells_range: IntRange = _num((4, 48), 1, 256)


@dataclass(frozen=True)
class NoiseConfig:
    """Parameters of the noise library (which kinds are used is up to the flavour).

    gaussian_sigma_range: additive std.  poisson_photons_range: photons at intensity 1
    (log-uniform; fewer = noisier, signal-dependent).  perlin_*: additive multi-octave gradient
    noise (amplitude, octaves, base grid cells).  speckle_sigma_range: strength of multiplicative
    Rayleigh speckle; speckle_grain_range: its grain size in pixels (at 1024 px; scaled).
    rician_sigma_range: std of the complex Gaussian noise whose magnitude is taken (MRI).
    """

    gaussian_sigma_range: Range = _num((0.005, 0.06), 0.0, 1.0)
    poisson_photons_range: Range = _num((30.0, 1000.0), 1.0, 1e7)
    perlin_amplitude_range: Range = _num((0.02, 0.15), 0.0, 1.0)
    perlin_octaves_range: IntRange = _num((2, 5), 1, 8)
    perlin_cells_range: IntRange = _num((2, 8), 1, 64)
    speckle_sigma_range: Range = _num((0.3, 0.9), 0.0, 1.0)
    speckle_grain_range: Range = _num((1.0, 3.0), 1.0, 16.0)
    rician_sigma_range: Range = _num((0.01, 0.08), 0.0, 1.0)


@dataclass(frozen=True)
class ArtefactConfig:
    """Acquisition: native resolution and artefacts (whether each artefact happens is up to the flavour).

    native_scale_range: the image is rendered (intensities, texture, artefacts, noise) at this
    fraction of the output side and up-sampled linearly, like a 512-matrix CT shown to the model
    at 1024 px; partial-volume edges come from area-averaging the full-size label map, and the
    label map itself always has the full size.  Use [1.0, 1.0] for full-resolution detail.
    bias_strength_range: multiplicative smooth bias field exp(s * f), f in [-1, 1].
    blur_sigma_range: Gaussian blur std / image side (partial-volume edges).
    resolution_factor_range: down-sampling factor before up-sampling back (resolution loss).
    fan_angle_range: ultrasound fan opening in degrees.  shadows_range: number of acoustic
    shadows; shadow_strength_range: their attenuation; shadow_width_range: their angular width
    in degrees.  depth_attenuation_range: ultrasound intensity loss at the far end of the fan.
    """

    native_scale_range: Range = _num((0.5, 1.0), 0.05, 1.0)
    bias_strength_range: Range = _num((0.1, 0.5), 0.0, 5.0)
    blur_sigma_range: Range = _num((0.0005, 0.002), 0.0, 0.05)
    resolution_factor_range: Range = _num((0.25, 0.75), 0.01, 1.0)
    fan_angle_range: Range = _num((50.0, 100.0), 5.0, 170.0)
    shadows_range: IntRange = _num((1, 3), 0, 16)
    shadow_strength_range: Range = _num((0.4, 0.9), 0.0, 1.0)
    shadow_width_range: Range = _num((2.0, 10.0), 0.1, 90.0)
    depth_attenuation_range: Range = _num((0.0, 0.6), 0.0, 1.0)


@dataclass(frozen=True)
class TargetConfig:
    """When a target is flagged invalid (Target.valid=False) so that training skips it.

    min_area_fraction: smaller than this fraction of the image -> "too_small".
    max_border_fraction: more of its outline than this on the image (or field-of-view) border
    -> "touches_border" (outline length estimated as the perimeter of a disc of equal area).
    """

    min_area_fraction: float = _num(0.001, 0.0, 1.0)
    max_border_fraction: float = _num(0.3, 0.0, 1.0)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation applied after rendering (image linear, labels nearest interpolation).

    The generators are already random in position, orientation, size and shape, so these
    defaults are modest; they add interpolation effects, uncovered borders and the odd mirrored
    ultrasound fan.  enabled: switch everything off.  p_hflip / p_vflip: horizontal / vertical
    flip.  p_rotate90: a random multiple of 90 degrees.  p_affine: rotation (degrees), scale and
    translation (fraction of the side) from the ranges below.  p_elastic: elastic grid distortion
    of ``elastic_strength_range``.  p_brightness_contrast: x (1 + contrast) + brightness.
    """

    enabled: bool = True
    p_hflip: float = _prob(0.5)
    p_vflip: float = _prob(0.2)
    p_rotate90: float = _prob(0.1)
    p_affine: float = _prob(0.2)
    rotate_range: Range = _num((-20.0, 20.0), -180.0, 180.0)
    scale_range: Range = _num((0.85, 1.15), 0.1, 10.0)
    translate_range: Range = _num((-0.05, 0.05), -0.5, 0.5)
    p_elastic: float = _prob(0.05)
    elastic_strength_range: Range = _num((0.05, 0.2), 0.0, 0.5)
    p_brightness_contrast: float = _prob(0.3)
    brightness_range: Range = _num((-0.1, 0.1), -1.0, 1.0)
    contrast_range: Range = _num((-0.2, 0.2), -1.0, 1.0)


@dataclass(frozen=True)
class Recipe:
    """Everything the synthetic engine needs; ``synthfm/synth/recipes/synthfm.yaml`` holds the defaults."""

    name: str = "synthfm"
    description: str = "SynthFM mix: shape-aware and boundary-aware modules, four modality flavours"
    modules: ModuleMix = _sub(ModuleMix)
    flavours: Flavours = _sub(Flavours)
    shape: ShapeConfig = _sub(ShapeConfig)
    boundary: BoundaryConfig = _sub(BoundaryConfig)
    contrast: ContrastConfig = _sub(ContrastConfig)
    noise: NoiseConfig = _sub(NoiseConfig)
    artefacts: ArtefactConfig = _sub(ArtefactConfig)
    targets: TargetConfig = _sub(TargetConfig)
    augment: AugmentConfig = _sub(AugmentConfig)


def default_recipe() -> Recipe:
    """The embedded default recipe; equal to ``load_recipe("synthfm")``."""
    return Recipe()


# ---------------------------------------------------------------------------------------------
# dict <-> dataclasses, with validation


def recipe_to_dict(recipe: Recipe) -> dict:
    """A JSON-serialisable nested dict (ranges as lists); ``recipe_from_dict`` inverts it."""
    return _to_plain(recipe)


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def recipe_from_dict(d: dict, source: str = "recipe") -> Recipe:
    """Build and validate a :class:`Recipe`; missing keys keep their defaults.

    Raises RecipeError("<source>: <dotted.key>: <problem> (got <value>)").
    """
    return _build(Recipe, d, "", source)


MAX_RECIPE_NUMBER = 1e9  # no recipe value comes near it; bigger ones are typos or attacks (huge loops)
MAX_RECIPE_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000  # nodes visited, aliases counted each time they are used


def _shown(value: Any) -> str:
    """A bounded repr: an error message must not expand an alias bomb or print a 400-digit number."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxstring, r.maxother, r.maxlong = 3, 6, 6, 60, 60, 40
    return r.repr(value)


def _fail(source: str, path: str, value: Any, problem: str) -> typing.NoReturn:
    where = path or "<top level>"
    raise RecipeError(f"{source}: {where}: {problem} (got {_shown(value)})")


def _build(cls: type, data: Any, path: str, source: str, base: Any = None) -> Any:
    """``base`` (default: ``cls()``) with the keys of ``data`` replaced, recursively, so that a
    partial section keeps the defaults of *its* place in the tree (e.g. ``flavours.us``)."""
    if not isinstance(data, dict):
        _fail(source, path, data, "expected a mapping of keys to values")
    base = cls() if base is None else base
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        # a key that is not a plain word (e.g. one holding a newline) is quoted so the error stays one line
        shown = key if isinstance(key, str) and key.isidentifier() else _shown(key)
        dotted = f"{path}.{shown}" if path else shown
        if key not in known:
            _fail(source, dotted, value, f"unknown key (known here: {', '.join(known)})")
        kwargs[key] = _convert(hints[key], value, dotted, known[key].metadata, source, getattr(base, key))
    obj = dataclasses.replace(base, **kwargs)
    _check_whole(obj, path, source)
    return obj


def _convert(hint: Any, value: Any, path: str, meta: Any, source: str, base: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, source, base)
    if typing.get_origin(hint) is tuple:
        elem = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            _fail(source, path, value, "expected a range [lo, hi]")
        lo, hi = (_scalar(elem, v, path, meta, source, whole=value) for v in value)
        if lo > hi:
            _fail(source, path, list(value), "range has lo > hi")
        return (lo, hi)
    return _scalar(hint, value, path, meta, source)


def _scalar(kind: type, value: Any, path: str, meta: Any, source: str, whole: Any = None) -> Any:
    shown = value if whole is None else list(whole)
    if kind is bool:
        if not isinstance(value, bool):
            _fail(source, path, shown, "expected true or false")
        return value
    if kind is str:
        if not isinstance(value, str):
            _fail(source, path, shown, "expected a string")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(source, path, shown, f"expected {'an integer' if kind is int else 'a number'}")
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                _fail(source, path, shown, "expected an integer")
            value = int(value)
    if abs(value) > MAX_RECIPE_NUMBER:
        _fail(source, path, shown, f"number is too large (at most {MAX_RECIPE_NUMBER:g} in magnitude)")
    if kind is not int:
        value = float(value)
        if not math.isfinite(value):
            _fail(source, path, shown, "expected a finite number")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and value < lo or hi is not None and value > hi:
        if meta.get("prob"):
            _fail(source, path, shown, "probability must be in [0, 1]")
        bounds = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        _fail(source, path, shown, f"must be {bounds}")
    return value


def _check_whole(obj: Any, path: str, source: str) -> None:
    """Checks that involve several fields of one dataclass."""
    prefix = f"{path}." if path else ""
    if isinstance(obj, ModuleMix):
        _sums_to_one(source, path, {"shape": obj.shape, "boundary": obj.boundary})
    elif isinstance(obj, Flavours):
        _sums_to_one(source, path, {n: getattr(obj, n).p for n in FLAVOURS})
        for name in FLAVOURS:
            flavour = getattr(obj, name)
            weights = [getattr(flavour.noise, k) for k in NOISE_KINDS]
            if flavour.p > 0 and sum(weights) <= 0:
                _fail(source, f"{prefix}{name}.noise", _to_plain(flavour.noise), "needs a noise kind with weight > 0")
            usable = sum(w > 0 for w in weights)
            if flavour.p > 0 and flavour.num_noises_range[1] > usable:
                _fail(
                    source,
                    f"{prefix}{name}.num_noises_range",
                    list(flavour.num_noises_range),
                    f"more noise kinds than have weight > 0 ({usable})",
                )


def _sums_to_one(source: str, path: str, probs: dict[str, float]) -> None:
    total = sum(probs.values())
    if abs(total - 1.0) > 1e-6:
        _fail(source, path, probs, f"probabilities must sum to 1 (sum is {total:g})")


# ---------------------------------------------------------------------------------------------
# files


def resolve_recipe_path(path_or_name: str | Path) -> Path:
    """A path to an existing file, or a bare name looked up as ``synthfm/synth/recipes/<name>.yaml`` (package data)."""
    text = str(path_or_name)
    p = Path(text).expanduser()
    if p.is_file() or (p.exists() and not p.is_dir()):
        return p  # a FIFO or device is refused with its own reason by load_recipe
    is_bare = isinstance(path_or_name, str) and "/" not in text and "\\" not in text and p.suffix == ""
    if is_bare and text:
        candidate = RECIPES_DIR / f"{text}.yaml"
        if candidate.is_file():
            return candidate
        known = ", ".join(available_recipes()) or "none found"
        raise RecipeError(f"unknown recipe name {text!r} (known: {known}; or pass a path to a .yaml file)")
    if p.is_dir():
        raise RecipeError(f"recipe path is a folder, not a file: {p}")
    raise RecipeError(f"recipe file not found: {p}")


def available_recipes() -> list[str]:
    """Names of the recipes shipped in ``synthfm/synth/recipes`` (package data)."""
    return sorted(q.stem for q in RECIPES_DIR.glob("*.yaml")) if RECIPES_DIR.is_dir() else []


def _check_yaml_shape(root: Any, source: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH and documents that expand (aliases) to more than
    MAX_YAML_NODES nodes, before anything is constructed."""
    budget = MAX_YAML_NODES
    stack = [(root, 0)] if root is not None else []
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise RecipeError(f"{source}: YAML expands to more than {MAX_YAML_NODES} values (aliases?); "
                              "a recipe is a short mapping")
        if depth > MAX_YAML_DEPTH:
            raise RecipeError(f"{source}: YAML nested too deeply (at most {MAX_YAML_DEPTH} levels)")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend(((key, depth + 1), (value, depth + 1)))


def load_recipe(path_or_name: str | Path) -> Recipe:
    """Load and validate a recipe from a YAML file path or a bare name like ``"synthfm"``.

    A file without ``name`` takes its file name (stem) as the recipe name.
    Raises RecipeError naming the file, the dotted key and the value.
    """
    from synthfm.io.safe_inputs import check_regular_file

    path = resolve_recipe_path(path_or_name)
    st = check_regular_file(path, "recipe file", error=RecipeError)
    if st.st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: recipe file is {st.st_size} bytes; a recipe is a short YAML file (at most {MAX_RECIPE_BYTES})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    try:
        _check_yaml_shape(yaml.compose(text, Loader=yaml.SafeLoader), str(path))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:300]
        raise RecipeError(f"{path}: not valid YAML: {first}") from None
    except RecursionError:
        raise RecipeError(f"{path}: YAML nested too deeply (at most {MAX_YAML_DEPTH} levels)") from None
    if data is None:
        data = {}
    if isinstance(data, dict) and "name" not in data:
        data = {"name": path.stem, **data}
    return recipe_from_dict(data, source=str(path))
