"""Intensity presets: CT windows, percentile clipping, 8-bit pass-through, the auto rules."""

import numpy as np
import pytest

from synthfm.errors import UserError
from synthfm.io.intensity import (
    CT_WINDOWS,
    PRESET_NAMES,
    IntensityWindow,
    choose_auto_preset,
    normalise_modality,
    parse_preset,
    resolve_window,
    to_uint8,
    window_from_level_width,
)


def _ct_slice(rng, shape=(64, 64)) -> np.ndarray:
    """Int16 HU: air -1024 around a soft-tissue disc with a bone spot."""
    hu = np.full(shape, -1024, np.int16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    hu[(yy - 32) ** 2 + (xx - 32) ** 2 < 25**2] = 40
    hu[(yy - 32) ** 2 + (xx - 40) ** 2 < 4**2] = 1200
    return hu + rng.integers(-10, 10, shape).astype(np.int16)


def test_documented_ct_windows():
    assert CT_WINDOWS["soft_tissue"] == (40.0, 400.0)
    assert CT_WINDOWS["lung"] == (-600.0, 1500.0)
    assert CT_WINDOWS["bone"] == (400.0, 1800.0)
    assert CT_WINDOWS["brain"] == (40.0, 80.0)
    assert CT_WINDOWS["liver"] == (60.0, 160.0)
    assert set(PRESET_NAMES) == {"auto", "none", "mr", "us", *CT_WINDOWS}


def test_soft_tissue_window_maps_edges_and_level():
    hu = np.array([-2000, -160, 40, 240, 3000], np.int16)
    out = to_uint8(hu, "soft_tissue")
    assert out.dtype == np.uint8
    assert out.tolist()[0] == 0 and out.tolist()[1] == 0
    assert abs(int(out[2]) - 128) <= 1
    assert out.tolist()[3:] == [255, 255]


def test_window_output_is_monotonic_in_input():
    values = np.arange(-1500, 2000, 7, dtype=np.int16)
    for name in CT_WINDOWS:
        out = to_uint8(values, name).astype(int)
        assert np.all(np.diff(out) >= 0)


def test_custom_window_parsing():
    assert parse_preset("40,400") == (40.0, 400.0)
    assert parse_preset(" -600 , 1500 ") == (-600.0, 1500.0)
    assert parse_preset("SOFT_TISSUE") == "soft_tissue"
    w = resolve_window(np.zeros(3), "50,100")
    assert (w.lo, w.hi, w.name) == (0.0, 100.0, "custom")
    for bad in ("foo", "40", "40,0", "40,-5", "a,b", "1,2,3", ""):
        with pytest.raises(UserError):
            parse_preset(bad)
    with pytest.raises(UserError):
        window_from_level_width(40, float("nan"))


def test_auto_uint8_is_identity_even_for_ct_hint():
    img = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(img, "auto"), img)
    np.testing.assert_array_equal(to_uint8(img, "auto", modality="CT"), img)
    np.testing.assert_array_equal(to_uint8(img, "none"), img)
    rgb = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(rgb), rgb)


def test_auto_detects_hu_like_integer_data():
    hu = _ct_slice(np.random.default_rng(2))
    assert choose_auto_preset(hu) == "soft_tissue"
    assert resolve_window(hu).name == "soft_tissue"
    np.testing.assert_array_equal(to_uint8(hu), to_uint8(hu, "soft_tissue"))
    # float HU (e.g. a NIfTI with scl_slope) is recognised by its range too
    assert choose_auto_preset(hu.astype(np.float32)) == "soft_tissue"


def test_auto_percentile_clips_16bit_mr():
    rng = np.random.default_rng(3)
    mr = rng.gamma(2.0, 300.0, (100, 100)).astype(np.uint16)
    assert choose_auto_preset(mr) == "mr"
    w = resolve_window(mr)
    lo, hi = np.percentile(mr.astype(np.float64), [0.5, 99.5])
    assert w.name == "mr" and w.lo == pytest.approx(lo) and w.hi == pytest.approx(hi)
    out = to_uint8(mr)
    assert 0.003 <= (out == 0).mean() <= 0.008
    assert 0.003 <= (out == 255).mean() <= 0.008


def test_auto_rules_for_other_data():
    assert choose_auto_preset(np.array([[0, 17, 235]], np.uint16)) == "none"  # 8-bit values in 16-bit
    unit = np.random.default_rng(4).random((8, 8)).astype(np.float32)
    assert choose_auto_preset(unit) == "unit"
    np.testing.assert_allclose(to_uint8(unit), np.rint(unit * 255), atol=1)
    assert choose_auto_preset(np.array([[-3.0, 0.5, 2.0]], np.float32)) == "mr"  # z-scored MR
    assert choose_auto_preset(np.array([[-5, 0, 900]], np.int16)) == "mr"  # small negatives are not CT air
    assert choose_auto_preset(np.array([[0, 4000]], np.uint16), modality="CT") == "soft_tissue"
    assert choose_auto_preset(np.array([[0, 4000]], np.uint16), modality="MR") == "mr"
    assert choose_auto_preset(np.array([[0, 4000]], np.uint16), modality="US") == "us"


def test_modality_names():
    assert normalise_modality("CT") == "ct"
    assert normalise_modality("mri") == "mr"
    assert normalise_modality(" MR ") == "mr"
    assert normalise_modality("US") == "us"
    assert normalise_modality("DX") is None and normalise_modality(None) is None


def test_us_preset():
    img8 = np.array([[0, 100, 255]], np.uint16)
    assert to_uint8(img8, "us").tolist() == [[0, 100, 255]]
    wide = np.array([[1000, 2000, 3000]], np.uint16)
    assert to_uint8(wide, "us").tolist() == [[0, 128, 255]]


def test_rgb_uses_one_mapping_for_all_channels():
    rgb = np.zeros((4, 4, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1000, 2000, 3000
    rgb[0, 0] = (0, 0, 0)
    rgb[3, 3] = (4000, 4000, 4000)
    w = resolve_window(rgb, "mr")
    out = w.apply(rgb)
    assert out.shape == rgb.shape
    assert out[1, 1, 0] < out[1, 1, 1] < out[1, 1, 2]


def test_degenerate_and_nan_inputs():
    const = np.full((5, 5), 300, np.int32)
    out = to_uint8(const, "mr")
    assert out.dtype == np.uint8 and len(np.unique(out)) == 1
    f = np.array([[np.nan, -500.0, 1000.0]], np.float32)
    out = to_uint8(f, "soft_tissue")
    assert out.tolist() == [[0, 0, 255]]


def test_resolved_window_passes_through_and_volume_stats_are_deterministic():
    rng = np.random.default_rng(5)
    vol = rng.gamma(2.0, 100.0, (40, 160, 200)).astype(np.float32)  # 1.28M values: subsampled stats
    w1 = resolve_window(vol, "mr")
    w2 = resolve_window(vol, "mr")
    assert w1 == w2
    full_lo, full_hi = np.percentile(vol, [0.5, 99.5])
    assert w1.lo == pytest.approx(full_lo, rel=0.05) and w1.hi == pytest.approx(full_hi, rel=0.05)
    fixed = IntensityWindow(0.0, 10.0, "custom")
    assert resolve_window(vol, fixed) is fixed


def test_describe_is_readable():
    assert resolve_window(np.zeros(2), "soft_tissue").describe() == "soft_tissue (L 40 / W 400)"
    assert resolve_window(np.zeros(2, np.uint8)).describe() == "none (0..255)"
