"""synthfm: promptable medical image segmentation trained on synthetic images only.

Importing the library changes no process state; the command-line entry points (``synthfm``,
``train.py``, ``evaluate.py``, all through :mod:`synthfm.cli`) set ``OMP_WAIT_POLICY=PASSIVE``
unless it is set (see :mod:`synthfm.cli`).
"""

__version__ = "0.1.0"
