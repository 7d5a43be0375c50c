"""One 64 x 64 training batch for loss tests: a bright disc, one positive click at its centre."""

import numpy as np
import torch


def one_disc_batch():
    """TrainBatch of 1 image (1, 1, 64, 64) float32 in 0..255 with its disc mask and one click, no box or mask prompt."""
    from synthfm.training.data import TrainBatch

    yy, xx = np.mgrid[:64, :64]
    mask = ((yy - 30) ** 2 + (xx - 34) ** 2 < 150).astype(np.uint8)
    return TrainBatch(
        indices=[0], images=torch.from_numpy(mask * 180.0 + 30.0).float()[None, None], masks=torch.from_numpy(mask)[None],
        point_coords=torch.tensor([[[34.0, 30.0]]]), point_labels=torch.tensor([[1]]),
        boxes=torch.zeros(1, 4), is_box=torch.tensor([False]), n_clicks=torch.tensor([1]),
        mask_inputs=torch.zeros(1, 1, 16, 16), has_mask=torch.tensor([False]),
    )
