"""Models: encoder registry and the SynthFM model (nn.Modules only, no file I/O)."""

from synthfm.modeling.registry import (
    ENCODERS,
    EncoderSpec,
    build_encoder,
    build_model,
    check_image_size,
    get_encoder_spec,
)
from synthfm.modeling.synthfm_model import SAM_PIXEL_MEAN, SAM_PIXEL_STD, SynthFM

__all__ = [
    "ENCODERS",
    "EncoderSpec",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "SynthFM",
    "build_encoder",
    "build_model",
    "check_image_size",
    "get_encoder_spec",
]
