"""Read medical images and volumes; write masks in the source geometry.

Formats (chosen by extension; a folder is a DICOM series; an unknown extension is sniffed for the
DICOM ``DICM`` magic):

* 2D raster: ``.png .jpg .jpeg .tif .tiff .bmp`` via OpenCV ``IMREAD_UNCHANGED`` (16-bit and float
  TIFF are kept; colour is returned as RGB, alpha dropped; multi-page TIFF is refused).
* DICOM: one file (``.dcm``/``.dicom``/``.ima`` or no extension) with pydicom, RescaleSlope/Intercept
  applied; a series folder with SimpleITK, sorted along the slice normal (``synthfm.io.dicom``).
* Volumes: ``.nii .nii.gz .nrrd .nhdr .mha .mhd`` via SimpleITK.

Axis convention: volumes are (Z, Y, X) = (slices, rows, cols) arrays, exactly as
``SimpleITK.GetArrayFromImage`` returns them; ``spacing`` and ``origin`` are in SimpleITK's
(x, y, z) order (reversed w.r.t. the array axes) and ``direction`` is SimpleITK's row-major
flattened direction matrix (LPS patient space).  2D images are (H, W) or (H, W, 3) RGB.

Slicing: ``axis`` 0/"axial" takes ``array[k]`` (rows x cols), 1/"coronal" ``array[:, k, :]``
(slices x cols), 2/"sagittal" ``array[:, :, k]`` (slices x rows).  ``read_image`` keeps the file's
array axes; the commands, propagation and evaluation look at volumes through
:func:`synthfm.io.orientation.radiological_view` (the one volume convention), whose axes are the
anatomical planes whatever the file's voxel order, and ``write_mask(..., like=viewed)`` writes back
in the file's order and geometry.

Every failure to read raises ``ImageReadError`` with one line naming the file and the problem.
Sizes are checked from the header before any pixel is decoded: at most 2**28 pixels for a 2D
image and 2**30 voxels for a volume (``synthfm.io.headers``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from synthfm.io.atomic import atomic_output
from synthfm.errors import ImageReadError, UserError
from synthfm.io.headers import check_pixel_count, exif_orientation, raster_size

RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")
MASK_RASTER_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
MASK_VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".mha")
AXES = {"axial": 0, "coronal": 1, "sagittal": 2}

_FORMAT_NAMES = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
    ".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage",
    ".mhd": "MetaImage", ".dcm": "DICOM", ".dicom": "DICOM", ".ima": "DICOM",
}


@dataclass(frozen=True)
class LoadedImage:
    """An image or volume with its geometry.

    array: 2D (H, W) or (H, W, 3) RGB; 3D (Z, Y, X).  Values as stored (CT in HU).
    kind: ``"2d"`` or ``"3d"``.
    spacing, origin: SimpleITK (x, y[, z]) order, millimetres (1.0 / 0.0 when the format has none).
    direction: row-major flattened 2x2 or 3x3 direction matrix (identity when unknown).
    modality: a hint such as ``"CT"``, ``"MR"``, ``"US"`` (DICOM Modality) or None.
    format: ``"PNG"``, ``"JPEG"``, ``"TIFF"``, ``"BMP"``, ``"DICOM"``, ``"DICOM series"``, ``"NIfTI"``,
    ``"NRRD"``, ``"MetaImage"``.
    """

    array: np.ndarray
    kind: str
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    modality: str | None
    path: Path
    format: str
    meta: dict = field(default_factory=dict)
    # set by synthfm.io.orientation.radiological_view: array is then the view, and write_mask maps
    # masks back to the file's voxel order
    view: "ViewTransform | None" = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """(H, W) for 2D images (channels excluded), (Z, Y, X) for volumes."""
        return tuple(self.array.shape[: 2 if self.kind == "2d" else 3])

    def num_slices(self, axis: str | int = "axial") -> int:
        """Number of slices along ``axis`` (volumes only)."""
        if self.kind != "3d":
            raise UserError(f"{self.path}: a 2D image has no slices")
        return int(self.array.shape[axis_index(axis)])


def file_extension(path: str | Path) -> str:
    """Lower-case extension, with ``.nii.gz`` kept whole (``""`` if none)."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own warnings (libpng/libtiff chatter) while decoding; errors are ours."""
    import cv2

    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def _check_file(path: Path) -> None:
    """A regular file (not empty) or a folder; FIFOs, devices and unreachable paths are refused."""
    from synthfm.io.safe_inputs import check_regular_file

    st = check_regular_file(path, "file", allow_dir=True)
    if not path.is_dir() and st.st_size == 0:
        raise ImageReadError(f"{path}: file is empty")


def read_image(path: str | Path) -> LoadedImage:
    """Read a 2D image or a 3D volume (see the module docstring for formats and conventions)."""
    p = Path(path)
    _check_file(p)
    if p.is_dir():
        return _from_dicom(p, _dicom().read_dicom_series(p), "DICOM series")
    ext = file_extension(p)
    if ext in RASTER_EXTENSIONS:
        return _read_raster(p, ext)
    if ext in VOLUME_EXTENSIONS:
        return _read_simpleitk(p, ext)
    if ext in DICOM_EXTENSIONS or _dicom().is_dicom_file(p):
        return _from_dicom(p, _dicom().read_dicom_file(p), "DICOM")
    supported = " ".join(RASTER_EXTENSIONS + VOLUME_EXTENSIONS + DICOM_EXTENSIONS)
    raise ImageReadError(f"{p}: unsupported file type {ext or '(no extension)'!r} (supported: {supported}, DICOM folder)")


def read_volume(path: str | Path) -> LoadedImage:
    """Like :func:`read_image` but the result must be a 3D volume."""
    img = read_image(path)
    if img.kind != "3d":
        raise ImageReadError(f"{img.path}: is a 2D image, not a volume")
    return img


def _dicom():
    from synthfm.io import dicom as io_dicom

    return io_dicom


def _from_dicom(path: Path, d, fmt: str) -> LoadedImage:
    _check_spacing(path, d.spacing)
    return LoadedImage(d.array, d.kind, d.spacing, d.origin, d.direction, d.modality, path, fmt, d.meta)


def _read_raster(path: Path, ext: str) -> LoadedImage:
    import cv2

    fmt = _FORMAT_NAMES[ext]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror})") from None
    header_size = raster_size(data)
    if header_size is not None:
        check_pixel_count(path, header_size)
    orientation = exif_orientation(data) if fmt == "JPEG" else None
    with _quiet_opencv():
        if fmt == "TIFF":
            pages = cv2.imcount(str(path))
            if pages > 1:
                raise ImageReadError(f"{path}: multi-page TIFF ({pages} pages) is not supported; save one 2D image")
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{path}: cannot decode {fmt} image (corrupt, truncated or not a {fmt} file)")
    if arr.ndim == 3:
        channels = arr.shape[2]
        if channels == 1:
            arr = arr[:, :, 0]
        elif channels == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        elif channels == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
        else:
            raise ImageReadError(f"{path}: {channels}-channel images are not supported (grey, RGB or RGBA only)")
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ImageReadError(f"{path}: unexpected image shape {arr.shape}")
    return LoadedImage(
        array=np.ascontiguousarray(arr), kind="2d", spacing=(1.0, 1.0), origin=(0.0, 0.0),
        direction=(1.0, 0.0, 0.0, 1.0), modality=None, path=path, format=fmt,
        meta={"dtype": str(arr.dtype), **({"exif_orientation": orientation} if orientation not in (None, 1) else {})},
    )


def _modality_from_metadata(reader) -> str | None:
    """A modality hint from NIfTI ``intent_name`` or an NRRD ``modality`` field, if it names one."""
    from synthfm.io.intensity import normalise_modality

    for key in ("intent_name", "modality"):
        if reader.HasMetaDataKey(key):
            value = reader.GetMetaData(key).strip()
            if normalise_modality(value):
                return value.upper()
    return None


def _read_simpleitk(path: Path, ext: str) -> LoadedImage:
    import SimpleITK as sitk

    from synthfm.io.safe_inputs import check_detached_data, check_metaimage_data, metaimage_element_bytes

    fmt = _FORMAT_NAMES[ext]
    check_detached_data(path, ext)  # before ITK opens any file a header names
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        from synthfm.io.nifti import unreadable_reason

        why = unreadable_reason(path) if fmt == "NIfTI" else None
        if why:
            raise ImageReadError(f"{path}: a valid NIfTI file that cannot be used: {why}") from None
        raise ImageReadError(f"{path}: cannot read {fmt} header (corrupt, truncated or not a {fmt} file)") from None
    check_pixel_count(path, reader.GetSize())
    _check_spacing(path, reader.GetSpacing())
    element = metaimage_element_bytes(path) if ext in (".mha", ".mhd") else None
    if element is not None:
        check_metaimage_data(path, ext, int(np.prod(reader.GetSize())) * element)
    if fmt == "NIfTI":
        _check_nifti_complete(path, ext)
    dim, size = reader.GetDimension(), reader.GetSize()
    if dim == 4 and size[3] == 1:
        reader.SetExtractIndex((0, 0, 0, 0))
        reader.SetExtractSize((size[0], size[1], size[2], 0))
        dim, size = 3, size[:3]
    if dim not in (2, 3):
        raise ImageReadError(f"{path}: {dim}D images are not supported (size {'x'.join(map(str, size))}); need 2D or 3D")
    try:
        img = reader.Execute()
    except RuntimeError:
        raise ImageReadError(f"{path}: cannot read {fmt} pixel data (corrupt or truncated file)") from None
    components = img.GetNumberOfComponentsPerPixel()
    arr = _array_of(img)
    if fmt == "NIfTI" and components == 1:
        from synthfm.io.nifti import restore_nans

        restore_nans(path, arr)  # ITK reads NaN voxels as 0
    if dim == 3 and components != 1:
        raise ImageReadError(f"{path}: volumes with {components} components per voxel are not supported")
    if dim == 2 and components not in (1, 3):
        raise ImageReadError(f"{path}: {components}-component 2D images are not supported (grey or RGB only)")
    if arr.size == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    return LoadedImage(
        array=arr, kind="3d" if dim == 3 else "2d",
        spacing=tuple(float(v) for v in img.GetSpacing()),
        origin=tuple(float(v) for v in img.GetOrigin()),
        direction=tuple(float(v) for v in img.GetDirection()),
        modality=_modality_from_metadata(reader), path=path, format=fmt,
        meta={"dtype": str(arr.dtype)},
    )


def _check_spacing(path: Path, spacing) -> None:
    """Voxel sizes must be finite and > 0 (a zero or negative one fails only when a mask is written)."""
    values = [float(v) for v in spacing]
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ImageReadError(f"{path}: invalid voxel spacing {tuple(values)} (each must be a finite number > 0)")


class _PixelBuffer:
    """Lends a SimpleITK image's pixel buffer to NumPy and keeps the image alive as the array's base.

    ``sitk.GetArrayFromImage`` copies the buffer, so a volume would briefly be in memory twice.
    The image is private to the reader (``MakeUnique`` inside the view), so the array may be
    writeable like a copy.
    """

    def __init__(self, image) -> None:
        import SimpleITK as sitk

        self._image = image
        interface = dict(sitk.GetArrayViewFromImage(image).__array_interface__)
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface


def _array_of(image) -> np.ndarray:
    """The (Z, Y, X[, C]) array of a SimpleITK image, without copying its pixels."""
    return np.asarray(_PixelBuffer(image))


def _check_nifti_complete(path: Path, ext: str) -> None:
    """ITK zero-fills a truncated NIfTI silently; compare the data size with the header's promise."""
    import gzip
    import zlib

    import nibabel as nib

    try:
        header = nib.load(str(path)).header
        expected = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    except Exception:
        raise ImageReadError(f"{path}: cannot read NIfTI header (corrupt, truncated or not a NIfTI file)") from None
    if ext == ".nii":
        actual = path.stat().st_size
    elif _gzip_trailer_size(path) == expected % 2**32:
        # the trailer of a complete single-member gzip holds the uncompressed size; a cut file's
        # last 4 bytes are compressed data that match by chance with probability 2**-32
        actual = expected
    else:
        actual = 0
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    actual += len(chunk)
        except (EOFError, OSError, zlib.error):
            raise ImageReadError(f"{path}: corrupt or truncated gzip data") from None
    if actual < expected:
        raise ImageReadError(f"{path}: truncated NIfTI file ({actual} of {expected} bytes of data)")


def _gzip_trailer_size(path: Path) -> int:
    with open(path, "rb") as fh:
        fh.seek(-4, 2)
        return int.from_bytes(fh.read(4), "little")


def axis_index(axis: str | int) -> int:
    """``"axial"``/``"coronal"``/``"sagittal"`` or 0/1/2 -> array axis 0/1/2."""
    if isinstance(axis, str):
        key = axis.strip().lower()
        if key in AXES:
            return AXES[key]
        if key in ("0", "1", "2"):
            return int(key)
    elif isinstance(axis, (int, np.integer)) and int(axis) in (0, 1, 2):
        return int(axis)
    raise UserError(f"unknown axis {axis!r}; choose axial, coronal or sagittal (array axis 0, 1 or 2)")


def _volume_array(volume: LoadedImage | np.ndarray) -> np.ndarray:
    arr = volume.array if isinstance(volume, LoadedImage) else np.asarray(volume)
    if arr.ndim != 3:
        raise UserError(f"need a 3D (Z, Y, X) volume, got shape {arr.shape}")
    return arr


def check_slice(volume: LoadedImage | np.ndarray, k: int, axis: str | int = "axial") -> None:
    """Raise UserError when slice ``k`` does not exist along ``axis``."""
    arr = _volume_array(volume)
    a = axis_index(axis)
    n = arr.shape[a]
    if not 0 <= int(k) < n:
        name = next((nm for nm, i in AXES.items() if i == a), str(a))
        raise UserError(f"slice {k} is out of range: the volume has {n} {name} slices (0..{n - 1})")


def slice_of(volume: LoadedImage | np.ndarray, k: int, axis: str | int = "axial") -> np.ndarray:
    """The 2D slice ``k`` of a (Z, Y, X) volume along ``axis`` (a view; see module docstring)."""
    arr = _volume_array(volume)
    check_slice(arr, k, axis)
    index: list = [slice(None)] * 3
    index[axis_index(axis)] = int(k)
    return arr[tuple(index)]


def embed_slice(volume_shape: tuple[int, int, int], k: int, axis: str | int, mask2d: np.ndarray) -> np.ndarray:
    """A zero uint8 volume of ``volume_shape`` with ``mask2d`` (non-zero -> 1) in slice ``k``."""
    out = np.zeros(volume_shape, dtype=np.uint8)
    view = slice_of(out, k, axis)
    if view.shape != np.asarray(mask2d).shape:
        raise UserError(f"mask shape {np.asarray(mask2d).shape} does not match slice shape {view.shape}")
    view[...] = np.asarray(mask2d) != 0
    return out


def _mask_values(mask: np.ndarray, for_raster: bool) -> np.ndarray:
    """bool -> 0/255 (raster) or 0/1 (volume) uint8; integer label ids kept (uint8 or uint16)."""
    m = np.asarray(mask)
    if m.dtype == np.bool_:
        # a volume mask is written as is: a bool array is already 0/1 bytes, so view it (no copy)
        return m.astype(np.uint8) * 255 if for_raster else np.ascontiguousarray(m).view(np.uint8)
    if m.dtype.kind not in "iu":
        raise UserError(f"mask must be bool or integer label ids, got dtype {m.dtype}")
    if m.size and m.min() < 0:
        raise UserError("mask label ids must be >= 0")
    top = int(m.max()) if m.size else 0
    if top > np.iinfo(np.uint16).max:
        raise UserError(f"mask label id {top} does not fit in 16 bits")
    return m.astype(np.uint8 if top <= 255 else np.uint16, copy=False)


def write_mask(path: str | Path, mask: np.ndarray, like: LoadedImage | None = None, *, overwrite: bool = True,
               into: Path | None = None) -> Path:
    """Write a mask atomically; the format follows the extension of ``path``.

    2D masks: ``.png``/``.bmp``/``.tif`` (uint8, 0/255 for bool, label ids as is; uint16 if ids
    > 255) or a volume format (2D geometry of ``like``).  3D masks (Z, Y, X): ``.nii``/``.nii.gz``/
    ``.nrrd``/``.mha`` (uint8 0/1 for bool) with ``like``'s spacing, origin and direction.
    ``mask`` must have ``like``'s spatial shape.  An existing file is replaced only on success (the
    new one verified first); with ``overwrite=False`` an existing file is never replaced (UserError).
    into: write the file's bytes to this (temporary) path instead, in ``path``'s format; the caller
    moves it into place (:func:`synthfm.io.atomic.write_together`).
    """
    import SimpleITK as sitk

    p = Path(path)
    m = np.asarray(mask)
    ext = file_extension(p)
    if like is not None and tuple(m.shape) != like.spatial_shape:
        raise UserError(f"mask shape {m.shape} does not match the image shape {like.spatial_shape}")
    if like is not None and like.view is not None and m.ndim == 3:
        m = np.ascontiguousarray(like.view.to_file(m))  # back to the file's voxel order
    if ext in MASK_RASTER_EXTENSIONS:
        if m.ndim != 2:
            raise UserError(f"{p}: a {ext} file holds one 2D mask; write volumes as {' or '.join(MASK_VOLUME_EXTENSIONS)}")
        return _write_raster_mask(p, _mask_values(m, for_raster=True), overwrite, into)
    if ext not in MASK_VOLUME_EXTENSIONS:
        allowed = " ".join(MASK_RASTER_EXTENSIONS + MASK_VOLUME_EXTENSIONS)
        raise UserError(f"{p}: cannot write a mask as {ext or '(no extension)'!r} (use one of: {allowed})")
    if m.ndim not in (2, 3):
        raise UserError(f"mask must be 2D or 3D, got shape {m.shape}")
    img = sitk.GetImageFromArray(_mask_values(m, for_raster=False))
    if like is not None and len(like.spacing) == m.ndim:
        img.SetSpacing(like.spacing)
        img.SetOrigin(like.origin)
        img.SetDirection(like.direction)
    with _target(p, overwrite, into) as tmp:
        try:
            sitk.WriteImage(img, str(tmp), useCompression=ext != ".nii")
        except RuntimeError as exc:
            raise UserError(f"{p}: could not write the mask ({_first_line(exc)})") from None
    return p


def _target(path: Path, overwrite: bool, into: Path | None):
    return contextlib.nullcontext(into) if into is not None else atomic_output(path, exclusive=not overwrite)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def _write_raster_mask(path: Path, values: np.ndarray, overwrite: bool = True, into: Path | None = None) -> Path:
    import cv2

    with _target(path, overwrite, into) as tmp:
        if not cv2.imwrite(str(tmp), values):
            raise UserError(f"{path}: could not write the mask image")
    return path

