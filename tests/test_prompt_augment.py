"""Training-only prompt augmentations: zoom crops, perturbed priors, corrective clicks."""

import numpy as np

from synthfm.training.prompt_augment import ZOOM_FILL_RANGE, corrective_clicks, mask_logits, perturbed_mask, zoom_on_target


def disc(size=128, cy=60, cx=70, r=20):
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


class _Sample:
    def __init__(self, labels):
        self.image = labels.astype(np.float32)
        self.labels = labels.astype(np.uint16)

    valid_targets = [0]

    def target_mask(self, k):
        return self.labels == 1


def test_zoom_crop_keeps_the_target_and_fills_the_frame():
    sample = _Sample(disc().astype(np.uint16))
    for seed in range(20):
        image, labels = zoom_on_target(sample, np.random.default_rng(seed))
        assert image.shape == labels.shape and image.shape[0] == image.shape[1]
        assert (labels == 1).sum() == disc().sum()  # the whole object is inside the crop
        extent = 40
        assert extent / image.shape[0] >= ZOOM_FILL_RANGE[0] - 0.02


def test_perturbed_prior_is_close_but_not_equal():
    mask = disc()
    ious = []
    for seed in range(30):
        prior = perturbed_mask(mask, 32, np.random.default_rng(seed))
        assert prior.shape == (32, 32) and prior.min() >= 0 and prior.max() <= 1
        small = disc(32, 15, 17.5, 5) > 0
        p = prior > 0.5
        ious.append((p & small).sum() / max(1, (p | small).sum()))
    assert 0.3 < np.median(ious) < 0.98
    logits = mask_logits(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert logits[0, 0] < 0 and abs(logits[0, 1]) < 1e-6 and logits[0, 2] > 0


def test_corrective_clicks_point_at_errors():
    mask = disc()
    prior = np.zeros((128, 128), np.float32)  # nothing predicted: every error is a miss
    for seed in range(10):
        clicks = corrective_clicks(mask, prior, 5, 3, np.random.default_rng(seed))
        assert len(clicks) >= 1
        for (x, y), lab in zip(clicks.coords, clicks.labels):
            assert mask[int(round(y)), int(round(x))] == bool(lab)
