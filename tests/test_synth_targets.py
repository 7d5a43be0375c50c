"""Target validity: empty, too small and border-cut targets are flagged with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from synthfm.synth.recipe import TargetConfig
from synthfm.synth.targets import assess_targets, border_ring


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_reasons(dtype):
    labels = np.zeros((100, 100), dtype)
    labels[40:60, 40:60] = 1  # inside, 4% of the image
    labels[5:7, 5:7] = 2  # 4 pixels: too small
    labels[0:30, 70:90] = 3  # a whole side on the top border
    labels[90:100, 0:3] = 300 if dtype == np.uint16 else 4  # a sliver on the corner
    big = 300 if dtype == np.uint16 else 4
    cfg = TargetConfig(min_area_fraction=0.001, max_border_fraction=0.2)
    out = assess_targets(labels, [(1,), (2,), (3,), (big,), (5,), (1, 2)], cfg)
    assert [(t.valid, t.reason) for t in out] == [
        (True, ""),
        (False, "too_small"),
        (False, "touches_border"),
        (False, "touches_border"),
        (False, "empty"),
        (True, ""),
    ]
    assert out[5].label_ids == (1, 2)


def test_a_slight_border_contact_is_tolerated():
    labels = np.zeros((100, 100), np.uint8)
    labels[0:40, 30:70] = 1  # 40 pixels on the border, perimeter of an equal disc ~ 142
    assert assess_targets(labels, [(1,)], TargetConfig(max_border_fraction=0.3))[0].valid
    assert not assess_targets(labels, [(1,)], TargetConfig(max_border_fraction=0.2))[0].valid


def test_field_of_view_edge_counts_as_border():
    labels = np.zeros((100, 100), np.uint8)
    labels[30:70, 30:70] = 1
    fov = np.zeros((100, 100), np.uint8)
    fov[:, :50] = 1
    labels *= fov
    ring = border_ring(fov)
    assert ring[50, 49] == 1 and ring[50, 48] == 0 and ring[0, 10] == 1
    cfg = TargetConfig()
    assert assess_targets(labels, [(1,)], cfg)[0].valid  # without the fov it is an inner object
    assert assess_targets(labels, [(1,)], cfg, fov)[0].reason == "touches_border"
