"""DICOM readers: one file with pydicom, a series folder with SimpleITK (GDCM).

Both return ``(array, geometry, modality, meta)`` pieces that ``synthfm.io.images`` wraps into a
``LoadedImage``.  Values are *modality values*: RescaleSlope/Intercept are applied (CT comes out in
Hounsfield units).  Geometry follows SimpleITK: spacing/origin in (x, y[, z]) order, direction a
row-major flattened matrix whose columns are the array axes' directions in patient (LPS) space.

A series is sorted by ImagePositionPatient projected on the slice normal (GDCM's ordering used by
``ImageSeriesReader.GetGDCMSeriesFileNames``), not by file name or InstanceNumber.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthfm.errors import ImageReadError
from synthfm.io.headers import check_pixel_count


@dataclass
class DicomRead:
    """What a DICOM reader found; ``array`` is (H, W), (H, W, 3) or (Z, Y, X)."""

    array: np.ndarray
    kind: str
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    modality: str | None
    meta: dict = field(default_factory=dict)


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` has the DICOM Part 10 preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _rescaled(arr: np.ndarray, ds) -> tuple[np.ndarray, dict]:
    """Apply RescaleSlope/Intercept; stays integer when both are integers (CT HU stays int)."""
    try:
        given = ds.get("RescaleSlope", None)
        zero_slope = given not in (None, "") and float(given) == 0
        slope = float(given or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        raise ImageReadError(f"{getattr(ds, 'filename', 'DICOM file')}: RescaleSlope/RescaleIntercept are not numbers "
                             f"({ds.get('RescaleSlope')!r}, {ds.get('RescaleIntercept')!r})") from None
    if zero_slope:
        raise ImageReadError(f"{getattr(ds, 'filename', 'DICOM file')}: invalid RescaleSlope 0 (every pixel would read "
                             "as the intercept)")
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise ImageReadError(f"{getattr(ds, 'filename', 'DICOM file')}: invalid RescaleSlope {slope} / RescaleIntercept {intercept}")
    info = {"rescale_slope": slope, "rescale_intercept": intercept}
    if slope == 1.0 and intercept == 0.0:
        return arr, info
    if slope.is_integer() and intercept.is_integer():
        out = arr.astype(np.int32) * int(slope) + int(intercept)
        if out.min() >= np.iinfo(np.int16).min and out.max() <= np.iinfo(np.int16).max:
            out = out.astype(np.int16)
        return out, info
    return (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)), info


def _float_list(value, n: int) -> list[float] | None:
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n else None


def read_dicom_file(path: Path) -> DicomRead:
    """Read one DICOM file (single frame -> 2D; multi-frame grey -> 3D (frames, rows, cols))."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError:
        raise ImageReadError(f"{path}: not a DICOM file (no DICM header)") from None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise ImageReadError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM file has no pixel data (not an image)")
    _check_declared_size(path, ds)
    rescaled_by_gdcm = False
    try:
        arr = ds.pixel_array
    except Exception as exc:
        arr = _decode_with_simpleitk(path, exc)
        rescaled_by_gdcm = True
    arr = np.asarray(arr)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = arr.ndim == (4 if frames > 1 else 3)
    if colour and frames > 1:
        raise ImageReadError(f"{path}: multi-frame colour DICOM (cine) is not supported")
    meta: dict = {"photometric": photometric, "frames": frames}
    if not colour:
        if not rescaled_by_gdcm:
            arr, info = _rescaled(arr, ds)
            meta.update(info)
        if photometric == "MONOCHROME1":
            # MONOCHROME1 shows high values dark; invert so that the image looks as displayed
            arr = (arr.max() + arr.min() - arr).astype(arr.dtype)
            meta["inverted_monochrome1"] = True
    ps = _float_list(ds.get("PixelSpacing"), 2) or [1.0, 1.0]
    col_sp, row_sp = ps[1], ps[0]
    modality = str(ds.get("Modality", "")) or None
    iop = _float_list(ds.get("ImageOrientationPatient"), 6)
    ipp = _float_list(ds.get("ImagePositionPatient"), 3)
    if frames > 1:
        dz = float(ds.get("SpacingBetweenSlices", 0) or ds.get("SliceThickness", 0) or 1.0)
        direction = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        if iop is not None:
            row_dir, col_dir = np.array(iop[:3]), np.array(iop[3:])
            normal = np.cross(row_dir, col_dir)
            direction = tuple(float(v) for v in np.stack([row_dir, col_dir, normal], axis=1).reshape(-1))
        meta["note"] = "multi-frame geometry from the first frame (per-frame positions ignored)"
        return DicomRead(arr, "3d", (col_sp, row_sp, dz), tuple(ipp or (0.0, 0.0, 0.0)), direction, modality, meta)
    if ipp is not None:
        meta["image_position_patient"] = ipp
    if iop is not None:
        meta["image_orientation_patient"] = iop
    return DicomRead(arr, "2d", (col_sp, row_sp), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0), modality, meta)


def _check_declared_size(path: Path, ds) -> None:
    """Refuse a header that promises a huge image, or more native pixel bytes than the file holds,
    before a decoder allocates the promised image (GDCM would zero-fill a short one)."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 8) or 8)
    except (TypeError, ValueError):
        raise ImageReadError(f"{path}: DICOM image size tags (Rows, Columns, NumberOfFrames) are not numbers") from None
    if rows <= 0 or cols <= 0:
        raise ImageReadError(f"{path}: DICOM image has Rows x Columns = {rows} x {cols}")
    check_pixel_count(path, (cols, rows) if frames == 1 else (cols, rows, frames))
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID", None)
    if syntax is None or syntax.is_compressed:
        return
    expected = (rows * cols * frames * samples * bits + 7) // 8
    actual = len(ds.PixelData)
    if actual < expected:
        raise ImageReadError(f"{path}: truncated DICOM pixel data ({actual} of {expected} bytes)")


def _decode_with_simpleitk(path: Path, original: Exception) -> np.ndarray:
    """Compressed transfer syntaxes pydicom cannot decode without plugins: let GDCM try."""
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError:
        raise ImageReadError(
            f"{path}: cannot decode DICOM pixel data ({type(original).__name__}: {str(original).splitlines()[0]})"
        ) from None
    arr = sitk.GetArrayFromImage(img)  # GDCM applies RescaleSlope/Intercept itself
    if arr.ndim >= 3 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def _check_series_size(folder: Path, files) -> None:
    """Refuse a series whose first slice header times the slice count promises too many voxels."""
    import SimpleITK as sitk

    head = sitk.ImageFileReader()
    head.SetFileName(str(files[0]))
    try:
        head.ReadImageInformation()
    except RuntimeError:
        raise ImageReadError(f"{folder}: cannot read the header of {Path(files[0]).name}") from None
    cols, rows = head.GetSize()[:2]
    check_pixel_count(folder, (cols, rows, len(files)))


def _check_series_complete(folder: Path, files, all_listed) -> None:
    """GDCM silently leaves out a DICOM file it cannot read (the volume then has a slice fewer and
    its geometry no longer matches); refuse a folder with such a file, or with a slice whose
    uncompressed pixel data is short."""
    import pydicom

    listed = {Path(f).resolve() for f in all_listed}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.resolve() not in listed and (is_dicom_file(entry) or entry.suffix.lower() == ".dcm"):
            raise ImageReadError(f"{folder}: {entry.name} is a DICOM file that cannot be read as part of a series "
                                 "(truncated or damaged); remove it or repair it")
    for name in files:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
            rows, cols = int(ds.Rows), int(ds.Columns)
            bits, samples = int(ds.get("BitsAllocated", 16) or 16), int(ds.get("SamplesPerPixel", 1) or 1)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except Exception:
            raise ImageReadError(f"{folder}: cannot read the header of {Path(name).name}") from None
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID", None)
        if syntax is None or syntax.is_compressed:
            continue
        need = (rows * cols * frames * samples * bits + 7) // 8
        if os.path.getsize(name) < need:
            raise ImageReadError(f"{folder}: {Path(name).name} has truncated pixel data "
                                 f"({os.path.getsize(name)} bytes in the file, the pixels alone need {need})")


def read_dicom_series(folder: Path) -> DicomRead:
    """Read the DICOM series in ``folder`` as a (Z, Y, X) volume sorted along the slice normal.

    When the folder holds several series, the one with the most files is read and the others are
    listed in ``meta["other_series"]``.
    """
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    try:
        series_ids = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series_ids = ()
    if not series_ids:
        raise ImageReadError(f"{folder}: folder holds no DICOM series")
    files_by_id = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    chosen = max(series_ids, key=lambda s: len(files_by_id[s]))
    files = files_by_id[chosen]
    _check_series_size(folder, files)
    _check_series_complete(folder, files, [f for sid in series_ids for f in files_by_id[sid]])
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        img = reader.Execute()
    except RuntimeError:
        raise ImageReadError(f"{folder}: cannot read DICOM series {chosen} (corrupt or inconsistent slices)") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{folder}: colour DICOM series are not supported")
    modality = None
    if reader.HasMetaDataKey(0, "0008|0060"):
        modality = reader.GetMetaData(0, "0008|0060").strip() or None
    meta = {
        "series_uid": chosen,
        "files": [str(Path(f).name) for f in files],
        "other_series": [s for s in series_ids if s != chosen],
    }
    return DicomRead(
        array=np.asarray(sitk.GetArrayFromImage(img)),
        kind="3d",
        spacing=tuple(float(v) for v in img.GetSpacing()),
        origin=tuple(float(v) for v in img.GetOrigin()),
        direction=tuple(float(v) for v in img.GetDirection()),
        modality=modality,
        meta=meta,
    )
