"""synthfm: promptable medical image segmentation trained on synthetic images only."""

import os as _os

# On small shared CPUs, OpenMP threads that spin while waiting make torch 5-20x slower under load
# (measured in benchmarks/bench_encoders.py); this must be set before torch is imported.  A value the
# user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
