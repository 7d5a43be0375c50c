"""The one volume convention: slices as a radiological viewer shows them.

Every consumer of volumes (``synthfm segment``, ``annotate``, propagation, ``evaluate.py``) looks at
a volume through :func:`radiological_view`:

* axis 0 is the file's voxel axis closest to the patient's superior-inferior axis ("axial"),
  axis 1 the one closest to anterior-posterior ("coronal"), axis 2 the one closest to
  right-left ("sagittal"); found from the direction matrix (``nibabel.io_orientation``);
* in an axial slice, rows run anterior -> posterior (anterior on top) and columns patient right ->
  left (the patient's right on the screen's left), i.e. the radiological convention;
* slice ``K`` along axis 0 is voxel index ``K`` of that file axis (not flipped), as viewers number
  slices.

The view is a NumPy view (transpose + flips, no copy).  :meth:`ViewTransform.to_file` maps an array
in the view back to the file's voxel order, so masks are written in the input's exact geometry
(:func:`synthfm.io.images.write_mask` does it when ``like`` is a viewed image).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ViewTransform:
    """order: the file array's axes taken as (slice, row, col); then rows and/or columns flipped."""

    order: tuple[int, int, int] = (0, 1, 2)
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def is_identity(self) -> bool:
        return self.order == (0, 1, 2) and not self.flip_rows and not self.flip_cols

    def to_view(self, arr: np.ndarray) -> np.ndarray:
        """(file array) -> (view array), a view without copying."""
        out = np.transpose(arr, self.order + tuple(range(3, arr.ndim)))
        if self.flip_rows:
            out = out[:, ::-1]
        if self.flip_cols:
            out = out[:, :, ::-1]
        return out

    def to_file(self, arr: np.ndarray) -> np.ndarray:
        """(view array) -> (file array): the inverse of :meth:`to_view`."""
        out = arr
        if self.flip_cols:
            out = out[:, :, ::-1]
        if self.flip_rows:
            out = out[:, ::-1]
        inverse = tuple(int(i) for i in np.argsort(self.order))
        return np.transpose(out, inverse + tuple(range(3, arr.ndim)))

    def view_spacing(self, array_spacing: tuple[float, float, float]) -> tuple[float, float, float]:
        """Voxel size along the view's axes, from the voxel size along the file array's axes."""
        return tuple(float(array_spacing[a]) for a in self.order)


def volume_slicing(affine: np.ndarray) -> tuple[int, int, int, bool, bool]:
    """From a voxel-to-world (RAS) affine: (slice_axis, row_axis, col_axis, flip_rows, flip_cols).

    slice_axis is the voxel axis closest to superior-inferior; rows run anterior -> posterior and
    columns patient right -> left (radiological view) once the flips are applied.
    """
    import nibabel as nib

    ornt = nib.io_orientation(affine)  # per voxel axis: (world axis 0=x R, 1=y A, 2=z S; +1/-1)
    world = [int(w) for w in ornt[:, 0]]
    slice_axis = world.index(2)
    row_axis, col_axis = world.index(1), world.index(0)
    # RAS world: voxel index increasing toward A must be flipped to put anterior on top, and
    # increasing toward R must be flipped to put the patient's right on the left.
    return slice_axis, row_axis, col_axis, bool(ornt[row_axis, 1] > 0), bool(ornt[col_axis, 1] > 0)


def array_affine(spacing, origin, direction) -> np.ndarray:
    """The RAS voxel-to-world affine of a (Z, Y, X) array read by SimpleITK (LPS, (x, y, z) order)."""
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    m = lps_to_ras @ d @ np.diag(np.asarray(spacing, dtype=np.float64))  # columns: SimpleITK x, y, z
    affine = np.eye(4)
    affine[:3, :3] = m[:, ::-1]  # array axis a is SimpleITK axis 2 - a
    affine[:3, 3] = lps_to_ras @ np.asarray(origin, dtype=np.float64)
    return affine


def view_transform(spacing, origin, direction) -> ViewTransform:
    """The :class:`ViewTransform` of a volume with SimpleITK geometry (see the module docstring)."""
    slice_axis, row_axis, col_axis, flip_rows, flip_cols = volume_slicing(array_affine(spacing, origin, direction))
    return ViewTransform((slice_axis, row_axis, col_axis), flip_rows, flip_cols)


def radiological_view(loaded):
    """``loaded`` (a :class:`synthfm.io.images.LoadedImage`) seen in the one volume convention.

    2D images come back unchanged.  For a volume, ``array`` becomes the (axial, coronal, sagittal)
    view and ``view`` records the transform, so ``write_mask(path, mask_in_view, like=viewed)``
    writes the mask in the file's own voxel order and geometry.  Calling it twice is harmless.
    """
    if loaded.kind != "3d" or getattr(loaded, "view", None) is not None:
        return loaded
    vt = view_transform(loaded.spacing, loaded.origin, loaded.direction)
    return dataclasses.replace(loaded, array=vt.to_view(loaded.array), view=vt)


def array_spacing(loaded) -> tuple[float, float, float]:
    """Voxel size (mm) along the axes of ``loaded.array`` (the view's axes for a viewed volume)."""
    file_spacing = tuple(float(s) for s in loaded.spacing[::-1])  # SimpleITK (x, y, z) -> array (z, y, x)
    vt = getattr(loaded, "view", None)
    return file_spacing if vt is None else vt.view_spacing(file_spacing)
