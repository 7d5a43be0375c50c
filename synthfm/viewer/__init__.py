"""The napari plugin: a reader for what :mod:`synthfm.io` reads and the "synthfm" dock widget.

:mod:`.session` holds the annotation state (no Qt), :mod:`.widget` the dock widget, :mod:`.reader`
the reader contribution; ``napari.yaml`` (package data) is the npe2 manifest, found through the
``napari.manifest`` entry point of an installed synthfm.  Needs the ``synthfm[viewer]`` extra.
"""

from __future__ import annotations

from pathlib import Path

# torch's compiler stack loads triton, which brings its own LLVM; loaded after an OpenGL context of
# Mesa's software renderer (llvmpipe, another LLVM) it segfaults, so load it before napari's Qt/GL.
import torch._dynamo  # noqa: F401,E402

MANIFEST = Path(__file__).with_name("napari.yaml")


def ensure_registered() -> None:
    """Register the plugin with napari's plugin manager when the entry point did not (a source
    checkout on ``PYTHONPATH`` that is not pip-installed); harmless when it is registered."""
    from npe2 import PluginManager

    manager = PluginManager.instance()
    if "synthfm" not in manager:
        manager.register(str(MANIFEST))
