"""fit-recipe: statistics on images whose statistics are known, and the recipe it writes."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from synthfm.cli import cli
from synthfm.cli.support import run_click
from synthfm.synth import image_stats as st
from synthfm.synth.fit_recipe import fit, measure
from synthfm.synth.noise import add_poisson, apply_speckle
from synthfm.synth.recipe import ArtefactConfig, NoiseConfig, default_recipe, load_recipe, recipe_to_dict
from synthfm.synth.ultrasound import fan_mask, sample_fan

N = 256
YY, XX = np.mgrid[:N, :N] / N
RAMP = (0.15 + 0.7 * XX).astype(np.float32)


def _rng(k=0):
    return np.random.default_rng(k)


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.06])
def test_gaussian_noise_sigma_and_kind(sigma):
    img = np.clip(RAMP + _rng().normal(0, sigma, RAMP.shape).astype(np.float32), 0, 1)
    assert st.noise_sigma(img) == pytest.approx(sigma, rel=0.1)
    model = st.noise_model(img)
    assert model.kind == "gaussian" and abs(model.slope) < 0.2
    assert model.sigma_at_half == pytest.approx(sigma, rel=0.15)


def test_poisson_noise_is_signal_dependent():
    img = add_poisson(RAMP.copy(), _rng(), NoiseConfig(poisson_photons_range=(100.0, 100.0)))
    model = st.noise_model(img)
    assert model.kind == "poisson" and model.slope == pytest.approx(0.5, abs=0.12)
    assert model.sigma_at_half == pytest.approx(math.sqrt(0.5 / 100), rel=0.15)


@pytest.mark.parametrize("grain", [4.0, 12.0])
def test_speckle_is_identified_as_ultrasound_like(grain):
    img = apply_speckle(RAMP.copy(), _rng(), NoiseConfig(speckle_sigma_range=(0.7, 0.7), speckle_grain_range=(grain, grain)))
    model = st.noise_model(img)
    assert model.kind == "speckle" and model.slope > 0.75
    stats = [measure(img, "speckle.png")]
    recipe, changes, summary = fit(stats, default_recipe())
    assert summary["flavour"] == "us" and recipe.flavours.us.p == 0.5
    lo, hi = recipe.noise.speckle_sigma_range
    assert lo <= 0.7 * 1.25 and hi >= 0.7 * 0.75  # the simulated strength is recovered to within ~25 %
    glo, ghi = recipe.noise.speckle_grain_range
    assert glo <= grain * 1.5 and ghi >= grain / 1.5


def test_rician_background_is_identified():
    from synthfm.synth.noise import apply_rician

    img = np.zeros((N, N), np.float32)
    img[40:220, 40:220] = 0.5
    img = apply_rician(img, _rng(), NoiseConfig(rician_sigma_range=(0.03, 0.03)))
    model = st.noise_model(img)
    assert model.kind == "rician" and model.dark_ratio == pytest.approx(st.RAYLEIGH_MEAN_OVER_STD, rel=0.2)


@pytest.mark.parametrize("angle", [50.0, 90.0])
def test_fan_and_its_angle(angle):
    probe = sample_fan(_rng(), N, ArtefactConfig(fan_angle_range=(angle, angle)))
    img = (0.5 * fan_mask(probe, N)).astype(np.float32)
    is_fan, measured = st.fan_geometry(img)
    assert is_fan and measured == pytest.approx(angle, abs=5.0)
    ellipse = ((((YY - 0.5) / 0.4) ** 2 + ((XX - 0.5) / 0.48) ** 2) < 1).astype(np.float32) * 0.5
    assert st.fan_geometry(ellipse) == (False, 0.0)  # a body outline is not a fan


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 3.0])
def test_blur_of_a_step(sigma):
    step = np.where(XX > 0.5, 0.8, 0.2).astype(np.float32)
    assert st.blur_sigma(cv2.GaussianBlur(step, (0, 0), sigma)) == pytest.approx(sigma, abs=0.2)


@pytest.mark.parametrize("strength", [0.0, 0.3, 0.6])
def test_bias_strength_of_a_flat_image(strength):
    img = (0.4 * np.exp(strength * (2 * XX - 1))).astype(np.float32)
    # smoothing flattens the ends of a strong field: up to ~10 % low
    assert st.bias_strength(img) == pytest.approx(strength, abs=0.03 + 0.12 * strength)


def test_intensity_quantiles():
    img = np.tile(np.linspace(0.2, 0.6, N, dtype=np.float32), (N, 1))
    q02, q50, q98 = st.intensity_quantiles(img)
    assert q02 == pytest.approx(0.208, abs=0.01) and q50 == pytest.approx(0.4, abs=0.01) and q98 == pytest.approx(0.592, abs=0.01)


def _write_speckle_folder(folder: Path, n: int = 3) -> None:
    folder.mkdir()
    for i in range(n):
        probe = sample_fan(_rng(i), N, ArtefactConfig(fan_angle_range=(60.0, 60.0)))
        img = apply_speckle(RAMP.copy(), _rng(i), NoiseConfig(speckle_sigma_range=(0.6, 0.6), speckle_grain_range=(8.0, 8.0)))
        cv2.imwrite(str(folder / f"scan{i}.png"), (np.clip(img * fan_mask(probe, N), 0, 1) * 255).astype(np.uint8))
    labels = folder / "labelsTr"
    labels.mkdir()
    cv2.imwrite(str(labels / "ignored.png"), np.zeros((N, N), np.uint8))  # label folders are skipped


def test_cli_writes_a_valid_recipe_that_changes_what_it_claims(tmp_path, capsys):
    scans = tmp_path / "scans"
    _write_speckle_folder(scans)
    out = tmp_path / "fitted.yaml"
    code = run_click(cli, ["fit-recipe", str(scans), "--out", str(out)], prog_name="synthfm")
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "us-like scans (3 images)" in stdout
    recipe = load_recipe(out)  # a valid recipe
    base = recipe_to_dict(default_recipe())
    fitted = recipe_to_dict(recipe)
    changed = []
    for line in out.read_text().splitlines():
        if "# changed from" not in line:
            continue
        changed.append(line)
    # every marked key differs from the base, and every differing key is marked
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v
    fb, ff = dict(flat(base)), dict(flat(fitted))
    differing = {k for k in fb if fb[k] != ff[k] and k not in ("name", "description")}
    assert len(changed) == len(differing) > 0
    for key in differing:  # ranges are extended to cover what was measured, never narrowed
        if key.endswith("_range"):
            assert ff[key][0] <= fb[key][0] and ff[key][1] >= fb[key][1], key
    assert recipe.flavours.us.p == 0.5 and recipe.flavours.us.p_fan == 0.9  # halfway from 0.8 to 3/3 fans
    assert recipe.artefacts.fan_angle_range[0] <= 60 <= recipe.artefacts.fan_angle_range[1]
    data = yaml.safe_load(out.read_text())
    assert data["noise"]["speckle_sigma_range"] == list(recipe.noise.speckle_sigma_range)


def test_cli_bad_inputs_one_line_and_nothing_overwritten(tmp_path, capsys):
    code = run_click(cli, ["fit-recipe", str(tmp_path / "missing"), "--out", str(tmp_path / "a.yaml")], prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("synthfm: error: not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = run_click(cli, ["fit-recipe", str(empty), "--out", str(tmp_path / "a.yaml")], prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no image or volume" in err[0]
    scans = tmp_path / "scans"
    _write_speckle_folder(scans, n=1)
    existing = tmp_path / "mine.yaml"
    existing.write_text("name: mine\n")
    code = run_click(cli, ["fit-recipe", str(scans), "--out", str(existing)], prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]
    assert existing.read_text() == "name: mine\n"


def _stats(kind: str, n: int, fan: bool = False):
    from synthfm.synth.fit_recipe import ImageStats

    return [ImageStats(source=f"s{i}", noise_kind=kind, noise_sigma=0.01, slope=0.1, sigma_at_half=0.01, cv=0.1,
                       grain=1.0, bias=0.1, fan=fan, fan_angle=0.0, blur=0.5, q02=0.05, q50=0.4, q98=0.9)
            for i in range(n)]


def test_a_given_modality_decides_unless_no_image_shows_its_noise():
    base = default_recipe()
    # MRI given, no image Rician-like, all additive (e.g. skull-stripped, normalised MRI): the measurement wins
    recipe, changes, summary = fit(_stats("gaussian", 10), base, modality="MRI")
    assert summary["flavour"] == "ct" and recipe.flavours.ct.p == 0.5
    assert any("no image measures its noise model" in c.why for c in changes)
    # one Rician-like image is enough evidence to keep the given modality
    recipe, _, summary = fit(_stats("gaussian", 9) + _stats("rician", 1), base, modality="MRI")
    assert summary["flavour"] == "mr" and recipe.flavours.mr.p == 0.5
    # US given, a third of the images speckle-like: stays US even though most measure additive noise
    _, _, summary = fit(_stats("poisson", 8) + _stats("speckle", 4), base, modality="US")
    assert summary["flavour"] == "us"
    # no majority for another flavour: the modality decides
    _, _, summary = fit(_stats("gaussian", 5) + _stats("speckle", 5), base, modality="MRI")
    assert summary["flavour"] == "mr"
