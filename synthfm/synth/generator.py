"""Generate one synthetic sample: module -> scene -> clean image -> flavour -> augmentation -> targets.

The label map is rendered at the output size; the image at a native resolution (a fraction of
it, ``artefacts.native_scale_range``) and up-sampled after noise, like a real acquisition.

``sample_at(recipe, seed, index, size)`` is the only entry point training needs: sample ``index``
of run ``seed`` comes from ``np.random.default_rng([seed, index])``, so it is a pure function of
(recipe, seed, index, size), identical whatever the number of workers or the order of requests.
"""

from __future__ import annotations

import numpy as np

from synthfm.synth.augment import augment
from synthfm.synth.fields import uniform
from synthfm.synth.flavours import acquire, choose_flavour
from synthfm.synth.labelmaps import render_boundary_scene
from synthfm.synth.recipe import Recipe
from synthfm.synth.sample import Sample
from synthfm.synth.scene import Scene, modulate_contrast, render_clean
from synthfm.synth.shapes import render_shape_scene
from synthfm.synth.targets import assess_targets

MODULES: tuple[str, ...] = ("shape", "boundary")
MIN_SIZE = 16


def render_scene(recipe: Recipe, module: str, size: int, rng: np.random.Generator) -> Scene:
    """The label map and intensities of one module ("shape" or "boundary")."""
    if module == "shape":
        return render_shape_scene(recipe.shape, recipe.contrast, size, rng)
    if module == "boundary":
        return render_boundary_scene(recipe.boundary, recipe.contrast, size, rng)
    raise ValueError(f"unknown module {module!r} (known: {', '.join(MODULES)})")


def native_size(size: int, scale: float) -> int:
    """Side of the native-resolution image for an output side ``size`` (at least MIN_SIZE)."""
    return int(min(size, max(MIN_SIZE, round(size * scale))))


def generate_sample(
    recipe: Recipe, size: int, rng: np.random.Generator, module: str | None = None, augmentation: bool = True
) -> Sample:
    """One (size x size) sample drawn with ``rng``.

    module: force "shape" or "boundary" instead of drawing it from ``recipe.modules`` (used by
    benchmarks and tests; the module draw is still consumed so the rest is unchanged).
    augmentation: False skips the albumentations step (its seed is still drawn).
    Returns a :class:`Sample` with image (size, size) float32 in [0, 1] and labels uint16.
    """
    size = int(size)
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    probs = np.array([recipe.modules.shape, recipe.modules.boundary], dtype=np.float64)
    drawn = MODULES[int(rng.choice(len(MODULES), p=probs / probs.sum()))]
    module = module or drawn
    flavour_name = choose_flavour(recipe, rng)
    flavour = getattr(recipe.flavours, flavour_name)

    scene = render_scene(recipe, module, size, rng)
    native = native_size(size, uniform(rng, recipe.artefacts.native_scale_range))
    image = render_clean(scene, native, recipe.contrast, flavour.texture_scale, rng)
    image = modulate_contrast(image, recipe.contrast, rng)
    acquired = acquire(image, scene.labels, flavour, recipe, rng)
    image, labels, fov = acquired.image, acquired.labels, acquired.fov
    aug_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))
    if augmentation:
        image, labels, fov = augment(image, labels, fov, recipe.augment, aug_rng)

    targets = assess_targets(labels, scene.candidates, recipe.targets, fov)
    return Sample(
        image=np.ascontiguousarray(image, dtype=np.float32),
        labels=labels.astype(np.uint16),
        targets=targets,
        module=module,
        flavour=flavour_name,
    )


def sample_at(recipe: Recipe, seed: int, index: int, size: int) -> Sample:
    """Sample ``index`` of run ``seed``: ``generate_sample`` with ``np.random.default_rng([seed, index])``."""
    return generate_sample(recipe, size, np.random.default_rng([int(seed), int(index)]))
