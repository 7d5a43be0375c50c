"""Inference: :class:`Predictor` (encode an image once, answer clicks), transforms, 3D propagation,
overlays and ONNX export.  ``Predictor.from_checkpoint(spec)`` loads through
:func:`synthfm.weights.load_model`."""

from synthfm.inference.predictor import ImageState, Predictor

__all__ = ["ImageState", "Predictor"]
