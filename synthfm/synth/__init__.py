"""Synthetic data engine: pure functions of an explicit np.random.Generator."""
