"""napari reader contribution: open what :mod:`synthfm.io` reads as an image layer.

Formats: NIfTI, NRRD, MetaImage, a DICOM file or series folder, PNG/JPEG/TIFF/BMP (the same reader
as ``synthfm segment``).  Volumes come in the radiological view (:mod:`synthfm.io.orientation`),
so napari's axis 0 is axial; the layer's ``scale`` is the voxel size in millimetres along the
view's axes, its ``contrast_limits`` the automatic intensity window (a CT preset or MR/US
percentiles, :mod:`synthfm.io.intensity`).  The :class:`~synthfm.io.images.LoadedImage` rides along
in ``layer.metadata["synthfm_image"]``: the widget saves masks in that file's exact geometry.
"""

from __future__ import annotations

from pathlib import Path

from synthfm.io.images import DICOM_EXTENSIONS, RASTER_EXTENSIONS, VOLUME_EXTENSIONS, file_extension

METADATA_KEY = "synthfm_image"
READABLE_EXTENSIONS = RASTER_EXTENSIONS + VOLUME_EXTENSIONS + DICOM_EXTENSIONS


def get_reader(path):
    """npe2 reader hook: a function that reads ``path`` (a file or a DICOM folder), or None when
    synthfm does not read it (napari then asks another plugin)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir() or file_extension(p) in READABLE_EXTENSIONS:
        return read_layers
    return None


def layer_data(loaded) -> tuple:
    """The napari layer-data tuple ``(array, kwargs, "image")`` for a :class:`LoadedImage`."""
    from synthfm.io.intensity import resolve_window
    from synthfm.io.orientation import array_spacing, radiological_view

    view = radiological_view(loaded)
    rgb = view.kind == "2d" and view.array.ndim == 3
    if view.kind == "3d":
        scale = array_spacing(view)
    else:
        scale = tuple(float(s) for s in view.spacing[:2][::-1])
    kwargs = {"name": view.path.name, "scale": scale, "rgb": rgb, "metadata": {METADATA_KEY: view}}
    if not rgb:
        window = resolve_window(view.array, "auto", view.modality)
        kwargs["contrast_limits"] = (float(window.lo), float(window.hi))
    return view.array, kwargs, "image"


def read_layers(path) -> list[tuple]:
    """Read ``path`` with :func:`synthfm.io.read_image`; one image layer.  A file it cannot read
    raises :class:`~synthfm.errors.ImageReadError` (a ValueError, one line), which napari shows."""
    from synthfm.io.images import read_image

    if isinstance(path, (list, tuple)):
        path = path[0]
    return [layer_data(read_image(Path(path)))]
