"""NIfTI details that ITK gets wrong or words badly; used by :mod:`synthfm.io.images`.

* :func:`restore_nans`: ITK's NIfTI reader turns NaN voxels of a float image into 0, so an all-NaN
  slice would read as a black slice and be segmented.  NaNs are put back (read slab by slab with
  nibabel), and the commands then refuse a slice without any finite value.
* :func:`unreadable_reason`: why ITK refused a header that nibabel reads, e.g. a sheared affine
  (valid NIfTI, but not representable as spacing + rotation), instead of calling it corrupt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_SLAB_VOXELS = 1 << 24


def restore_nans(path: Path, arr: np.ndarray) -> None:
    """Write NaN into ``arr`` ((Z, Y, X) or (Y, X) as ITK returns it) where the file holds NaN."""
    import nibabel as nib

    img = nib.load(str(path))
    if img.header.get_data_dtype().kind != "f" or arr.dtype.kind != "f":
        return
    proxy = img.dataobj
    shape = img.shape
    if len(shape) == 2:
        nan = np.isnan(np.asarray(proxy[:, :]))
        if nan.any():
            arr[nan.T] = np.nan
        return
    if len(shape) != 3 or arr.shape != shape[::-1]:
        return
    per_z = max(1, _SLAB_VOXELS // max(1, shape[0] * shape[1]))
    for z0 in range(0, shape[2], per_z):
        slab = np.asarray(proxy[:, :, z0:z0 + per_z])  # (X, Y, z)
        nan = np.isnan(slab)
        if nan.any():
            view = arr[z0:z0 + per_z]  # (z, Y, X)
            view[nan.transpose(2, 1, 0)] = np.nan


def unreadable_reason(path: Path) -> str | None:
    """A specific reason when nibabel reads the header ITK refused; None if nibabel fails too."""
    import nibabel as nib

    try:
        affine = nib.load(str(path)).affine
    except Exception:
        return None
    m = np.asarray(affine, dtype=float)[:3, :3]
    if not np.all(np.isfinite(m)):
        return "its affine holds non-finite values"
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms == 0):
        return "its affine has a zero voxel size"
    unit = m / norms
    if not np.allclose(unit.T @ unit, np.eye(3), atol=1e-4):
        return ("its affine is sheared (axes not perpendicular), which ITK cannot represent; resample it to an "
                "orthogonal grid first")
    return None
