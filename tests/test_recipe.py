"""Recipes: YAML <-> frozen dataclasses, the embedded default, and one-line validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthfm.errors import RecipeError, UserError
from synthfm.synth.recipe import (
    Recipe,
    available_recipes,
    default_recipe,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
)

REPO = Path(__file__).resolve().parents[1]


def test_default_recipe_equals_the_shipped_synthfm_yaml():
    assert default_recipe() == load_recipe("synthfm")
    assert default_recipe() == load_recipe(REPO / "synthfm" / "synth" / "recipes" / "synthfm.yaml")


def test_shipped_recipes_load_and_select_their_modules():
    assert {"synthfm", "shape_only", "boundary_only"} <= set(available_recipes())
    shape = load_recipe("shape_only")
    boundary = load_recipe("boundary_only")
    assert (shape.modules.shape, shape.modules.boundary) == (1.0, 0.0)
    assert (boundary.modules.shape, boundary.modules.boundary) == (0.0, 1.0)
    assert shape.name == "shape_only" and boundary.name == "boundary_only"
    # everything not listed keeps the default
    assert shape.noise == default_recipe().noise


def test_dict_round_trip_is_json_serialisable_and_exact():
    for name in available_recipes():
        recipe = load_recipe(name)
        d = json.loads(json.dumps(recipe_to_dict(recipe)))
        assert recipe_from_dict(d) == recipe
    assert isinstance(recipe_to_dict(default_recipe())["shape"]["num_shapes_range"], list)


def test_recipe_is_frozen_and_hashable():
    recipe = default_recipe()
    with pytest.raises(AttributeError):
        recipe.name = "x"  # type: ignore[misc]
    assert hash(recipe) == hash(default_recipe())


def test_partial_file_keeps_defaults_and_takes_its_name_from_the_file(tmp_path):
    path = tmp_path / "my_mix.yaml"
    path.write_text("shape:\n  num_shapes_range: [1, 3]\n")
    recipe = load_recipe(path)
    assert recipe.name == "my_mix"
    assert recipe.shape.num_shapes_range == (1, 3)
    assert recipe.boundary == default_recipe().boundary
    assert load_recipe(str(path)) == recipe


def test_integers_are_accepted_where_floats_are_expected():
    recipe = recipe_from_dict({"noise": {"poisson_photons_range": [30, 1000]}})
    assert recipe.noise.poisson_photons_range == (30.0, 1000.0)
    assert all(isinstance(v, float) for v in recipe.noise.poisson_photons_range)


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    "text, key, shown, problem",
    [
        ("shape:\n  num_shape_range: [1, 2]\n", "shape.num_shape_range", "[1, 2]", "unknown key"),
        ("bogus: 1\n", "bogus", "1", "unknown key"),
        ("shape:\n  num_shapes_range: [8, 2]\n", "shape.num_shapes_range", "[8, 2]", "lo > hi"),
        ("shape:\n  p_nested: 1.5\n", "shape.p_nested", "1.5", "probability must be in [0, 1]"),
        ("shape:\n  p_touching: -0.1\n", "shape.p_touching", "-0.1", "probability must be in [0, 1]"),
        ("shape:\n  radius_range: [-0.1, 0.2]\n", "shape.radius_range", "[-0.1, 0.2]", "must be"),
        ("shape:\n  num_shapes_range: [1.5, 3]\n", "shape.num_shapes_range", "[1.5, 3]", "integer"),
        ("shape:\n  num_shapes_range: 3\n", "shape.num_shapes_range", "3", "range [lo, hi]"),
        ("shape:\n  p_nested: yes\n", "shape.p_nested", "True", "number"),
        ("augment:\n  enabled: 1\n", "augment.enabled", "1", "true or false"),
        ("name: 3\n", "name", "3", "string"),
        ("shape: [1, 2]\n", "shape", "[1, 2]", "mapping"),
        ("modules:\n  shape: 0.9\n", "modules", "0.9", "sum to 1"),
        ("flavours:\n  ct:\n    p: 0.5\n", "flavours", "0.5", "sum to 1"),
        ("flavours:\n  us:\n    num_noises_range: [1, 3]\n", "flavours.us.num_noises_range", "[1, 3]", "noise kinds"),
        (
            "flavours:\n  us:\n    noise: {speckle: 0.0}\n",
            "flavours.us.noise",
            "'speckle': 0.0",
            "weight > 0",
        ),
    ],
)
def test_validation_errors_name_the_dotted_key_and_the_value(tmp_path, text, key, shown, problem):
    message = _error(tmp_path, text)
    assert f": {key}:" in message
    assert shown in message
    assert problem in message


def test_invalid_yaml_and_non_mapping_top_level(tmp_path):
    assert "not valid YAML" in _error(tmp_path, "shape: [1, 2\n")
    assert "mapping" in _error(tmp_path, "- 1\n- 2\n")


def test_missing_file_unknown_name_and_folder(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match=r"unknown recipe name 'nope' \(known: .*synthfm"):
        load_recipe("nope")
    with pytest.raises(RecipeError, match="folder"):
        load_recipe(tmp_path)
    assert issubclass(RecipeError, UserError)


def test_recipe_from_dict_validates_and_fills_defaults():
    assert recipe_from_dict({}) == Recipe()
    with pytest.raises(RecipeError, match=r"recipe: contrast\.gamma_range: range has lo > hi \(got \[2\.0, 1\.0\]\)"):
        recipe_from_dict({"contrast": {"gamma_range": [2.0, 1.0]}})


def test_partial_section_keeps_the_defaults_of_its_own_place():
    recipe = recipe_from_dict({"flavours": {"us": {"p_shadows": 1.0}}})
    default_us = default_recipe().flavours.us
    assert recipe.flavours.us.p_shadows == 1.0
    assert recipe.flavours.us.noise == default_us.noise  # speckle only, not the class default
    assert recipe.flavours.us.p == default_us.p


def test_synthfm_yaml_documents_every_key():
    import yaml

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    text = yaml.safe_load((REPO / "synthfm" / "synth" / "recipes" / "synthfm.yaml").read_text())
    assert keys(text) == keys(recipe_to_dict(default_recipe()))
