"""Torch re-implementation of the synthetic engine's modules, batched on the training device.

See :mod:`synthfm.synth.gpu.generator` (entry point: :class:`GpuSynthGenerator`).  The numpy engine in
:mod:`synthfm.synth` stays the reference; this package matches its parameter semantics
statistically (same ranges, same kinds), not bit for bit.
"""

from synthfm.synth.gpu.generator import GpuSynthGenerator, GpuSyntheticBatch

__all__ = ["GpuSynthGenerator", "GpuSyntheticBatch"]
