"""Medical I/O: raster, DICOM (file + series), NIfTI/NRRD/MHA, geometry round trips, clear errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from synthfm.errors import ImageReadError, UserError
from synthfm.io.images import (
    check_slice,
    embed_slice,
    file_extension,
    read_image,
    read_volume,
    slice_of,
    write_mask,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _rotation(deg_z: float, deg_x: float) -> np.ndarray:
    a, b = np.deg2rad(deg_z), np.deg2rad(deg_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _volume(tmp_path: Path, name: str, shape=(6, 20, 30), dtype=np.int16) -> tuple[Path, sitk.Image]:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1024, 1500, shape).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 1.3, 4.0))
    img.SetOrigin((10.0, -5.5, 3.25))
    img.SetDirection(tuple(_rotation(30, 20).reshape(-1)))
    path = tmp_path / name
    sitk.WriteImage(img, str(path))
    return path, img


# ---------------------------------------------------------------------------------------- raster
def test_png_grey_8_and_16_bit(tmp_path):
    rng = np.random.default_rng(1)
    g8 = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (40, 50), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g8.png"), g8)
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    a = read_image(tmp_path / "g8.png")
    b = read_image(tmp_path / "g16.png")
    assert a.kind == "2d" and a.format == "PNG" and a.array.dtype == np.uint8
    np.testing.assert_array_equal(a.array, g8)
    assert b.array.dtype == np.uint16
    np.testing.assert_array_equal(b.array, g16)
    assert a.spatial_shape == (40, 50) and a.spacing == (1.0, 1.0)


def test_colour_is_rgb_and_alpha_is_dropped(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(tmp_path / "c.png").array, rgb)
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full((10, 12), 9, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png").array, rgb)


def test_tiff_keeps_int16_and_float_and_jpeg_bmp_read(tmp_path):
    i16 = np.arange(-600, 600, dtype=np.int16).reshape(30, 40)
    f32 = np.linspace(0, 1, 1200, dtype=np.float32).reshape(30, 40)
    cv2.imwrite(str(tmp_path / "i.tif"), i16)
    cv2.imwrite(str(tmp_path / "f.tiff"), f32)
    np.testing.assert_array_equal(read_image(tmp_path / "i.tif").array, i16)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff").array, f32)
    g = np.full((16, 16), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "g.jpg"), g)
    cv2.imwrite(str(tmp_path / "g.bmp"), g)
    assert abs(int(read_image(tmp_path / "g.jpg").array.mean()) - 128) <= 2
    assert read_image(tmp_path / "g.bmp").format == "BMP"


def _one_line_error(exc_info, path) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_raster_errors(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageReadError) as e:
        read_image(missing)
    assert "not found" in _one_line_error(e, missing)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError) as e:
        read_image(empty)
    assert "empty" in _one_line_error(e, empty)
    ok, buf = cv2.imencode(".png", np.zeros((64, 64), np.uint8) + 7)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(ImageReadError) as e:
        read_image(truncated)
    assert "cannot decode PNG" in _one_line_error(e, truncated)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageReadError):
        read_image(garbage)
    gif = tmp_path / "x.gif"
    gif.write_bytes(b"GIF89a....")
    with pytest.raises(ImageReadError) as e:
        read_image(gif)
    assert "unsupported file type '.gif'" in _one_line_error(e, gif)
    pages = tmp_path / "pages.tif"
    cv2.imwritemulti(str(pages), [np.zeros((8, 8), np.uint8)] * 3)
    with pytest.raises(ImageReadError) as e:
        read_image(pages)
    assert "multi-page" in _one_line_error(e, pages)


def test_read_volume_refuses_2d(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageReadError, match="not a volume"):
        read_volume(tmp_path / "g.png")


# ------------------------------------------------------------------------------ volumes + geometry
@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.nrrd", "v.mha", "v.mhd"])
def test_volume_read_keeps_array_order_and_geometry(tmp_path, name):
    path, ref = _volume(tmp_path, name)
    img = read_image(path)
    assert img.kind == "3d" and img.array.shape == (6, 20, 30)
    np.testing.assert_array_equal(img.array, sitk.GetArrayFromImage(ref))
    np.testing.assert_allclose(img.spacing, ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(img.origin, ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(img.direction, ref.GetDirection(), atol=1e-5)
    assert read_volume(path).array.shape == (6, 20, 30)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha", ".nii"])
def test_volume_mask_round_trip_preserves_geometry(tmp_path, ext):
    path, ref = _volume(tmp_path, "img.nii.gz")
    img = read_image(path)
    mask = np.zeros(img.array.shape, bool)
    mask[2, 5:12, 7:20] = True
    out = write_mask(tmp_path / f"mask{ext}", mask, like=img)
    back = read_image(out)
    assert back.array.dtype == np.uint8 and set(np.unique(back.array)) == {0, 1}
    np.testing.assert_array_equal(back.array.astype(bool), mask)
    np.testing.assert_allclose(back.spacing, (0.7, 1.3, 4.0), atol=1e-5)
    np.testing.assert_allclose(back.origin, img.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, img.direction, atol=1e-5)
    assert not np.allclose(back.direction, np.eye(3).reshape(-1))  # the test really is non-identity
    # physical position of a voxel is the same in image and mask
    idx = (7, 5, 2)
    ref_point = ref.TransformIndexToPhysicalPoint(idx)
    mask_point = sitk.ReadImage(str(out)).TransformIndexToPhysicalPoint(idx)
    np.testing.assert_allclose(ref_point, mask_point, atol=1e-3)


def test_4d_volumes(tmp_path):
    vols = [sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16)) for _ in range(2)]
    sitk.WriteImage(sitk.JoinSeries(vols), str(tmp_path / "t2.nii.gz"))
    with pytest.raises(ImageReadError) as e:
        read_image(tmp_path / "t2.nii.gz")
    assert "4D" in _one_line_error(e, tmp_path / "t2.nii.gz")
    sitk.WriteImage(sitk.JoinSeries(vols[:1]), str(tmp_path / "t1.nii.gz"))
    assert read_image(tmp_path / "t1.nii.gz").array.shape == (3, 4, 5)


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_volumes_are_refused(tmp_path, ext):
    """ITK zero-fills a cut NIfTI without complaint; read_image must not."""
    path, _ = _volume(tmp_path, f"v{ext}", shape=(20, 40, 40))
    data = path.read_bytes()
    trunc = tmp_path / f"trunc{ext}"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as e:
        read_image(trunc)
    _one_line_error(e, trunc)


def test_multi_member_gzip_nifti_is_accepted(tmp_path):
    import gzip

    path, ref = _volume(tmp_path, "v.nii", shape=(4, 8, 8))
    raw = path.read_bytes()
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(raw[:300]) + gzip.compress(raw[300:]))
    np.testing.assert_array_equal(read_image(multi).array, sitk.GetArrayFromImage(ref))


def test_fake_and_incomplete_volumes(tmp_path):
    fake = tmp_path / "fake.nrrd"
    fake.write_bytes(b"hello, I am not an NRRD file\n")
    with pytest.raises(ImageReadError) as e:
        read_image(fake)
    _one_line_error(e, fake)
    fake_nii = tmp_path / "fake.nii.gz"
    fake_nii.write_bytes(b"not gzip")
    with pytest.raises(ImageReadError) as e:
        read_image(fake_nii)
    _one_line_error(e, fake_nii)
    mhd, _ = _volume(tmp_path, "m.mhd")
    for data_file in tmp_path.glob("m.*raw"):
        data_file.unlink()
    with pytest.raises(ImageReadError):
        read_image(mhd)


def test_2d_nifti_is_a_2d_image(tmp_path):
    img = sitk.GetImageFromArray(np.arange(20, dtype=np.uint16).reshape(4, 5))
    sitk.WriteImage(img, str(tmp_path / "p.nrrd"))
    loaded = read_image(tmp_path / "p.nrrd")
    assert loaded.kind == "2d" and loaded.array.shape == (4, 5)


# ------------------------------------------------------------------------------------- slicing
def test_slicing_axes_and_embedding():
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    np.testing.assert_array_equal(slice_of(vol, 2, "axial"), vol[2])
    np.testing.assert_array_equal(slice_of(vol, 3, "coronal"), vol[:, 3, :])
    np.testing.assert_array_equal(slice_of(vol, 5, "sagittal"), vol[:, :, 5])
    np.testing.assert_array_equal(slice_of(vol, 1, 2), vol[:, :, 1])
    with pytest.raises(UserError, match=r"out of range.*0\.\.3"):
        check_slice(vol, 4, "axial")
    with pytest.raises(UserError):
        slice_of(vol, -1)
    with pytest.raises(UserError, match="unknown axis"):
        slice_of(vol, 0, "oblique")
    m = np.zeros((4, 6), bool)
    m[1, 2] = True
    full = embed_slice(vol.shape, 3, "coronal", m)
    assert full.dtype == np.uint8 and full.sum() == 1 and full[1, 3, 2] == 1
    with pytest.raises(UserError):
        embed_slice(vol.shape, 3, "axial", m)


# -------------------------------------------------------------------------------------- writing
def test_write_png_mask_values_and_errors(tmp_path):
    like = read_image(_png(tmp_path / "in.png", (10, 12)))
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    out = write_mask(tmp_path / "m.png", mask, like=like)
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8 and set(np.unique(back)) == {0, 255}
    np.testing.assert_array_equal(back > 0, mask)
    labels = mask.astype(np.uint8) * 3
    np.testing.assert_array_equal(cv2.imread(str(write_mask(tmp_path / "l.png", labels)), cv2.IMREAD_UNCHANGED), labels)
    with pytest.raises(UserError, match="does not match"):
        write_mask(tmp_path / "bad.png", np.zeros((3, 3), bool), like=like)
    with pytest.raises(UserError, match="one 2D mask"):
        write_mask(tmp_path / "bad.png", np.zeros((2, 3, 3), bool))
    with pytest.raises(UserError, match="cannot write a mask"):
        write_mask(tmp_path / "bad.jpg", mask)
    assert not (tmp_path / "bad.png").exists() and not (tmp_path / "bad.jpg").exists()


def test_failed_write_keeps_existing_file(tmp_path):
    target = tmp_path / "keep.nii.gz"
    target.write_bytes(b"precious")
    path, _ = _volume(tmp_path, "v.nii.gz")
    like = read_image(path)
    with pytest.raises(UserError):
        write_mask(target, np.zeros((1, 2, 3), bool), like=like)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz", "v.nii.gz"]


def _png(path: Path, shape) -> Path:
    cv2.imwrite(str(path), np.zeros(shape, np.uint8))
    return path


def test_file_extension():
    assert file_extension("a/b.NII.GZ") == ".nii.gz"
    assert file_extension("x.tar.gz") == ".gz"
    assert file_extension("noext") == ""


# ----------------------------------------------------------------------------------------- DICOM
def _write_dicom(path: Path, pixels: np.ndarray, **kw) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = kw.get("modality", "CT")
    ds.PatientName, ds.PatientID = "Test^Phantom", "0"
    ds.StudyInstanceUID = kw.get("study", "1.2.3.4")
    ds.SeriesInstanceUID = kw.get("series", "1.2.3.4.5")
    ds.FrameOfReferenceUID = "1.2.3.4.6"
    rgb = kw.get("photometric") == "RGB"
    frames = pixels.shape[0] if pixels.ndim == 3 and not rgb else 1
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = kw.get("photometric", "MONOCHROME2")
    if rgb:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.PixelSpacing = [0.8, 0.7]  # row spacing, column spacing
    ds.SliceThickness = 2.5
    ds.ImagePositionPatient = [float(v) for v in kw.get("ipp", (0.0, 0.0, 0.0))]
    ds.ImageOrientationPatient = [float(v) for v in kw.get("iop", (1, 0, 0, 0, 1, 0))]
    ds.InstanceNumber = kw.get("instance", 1)
    ds.RescaleSlope = kw.get("slope", 1)
    ds.RescaleIntercept = kw.get("intercept", -1024)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_single_dicom_applies_rescale(tmp_path):
    raw = np.full((12, 16), 1024, np.uint16)
    raw[3:6, 4:9] = 1064  # 40 HU
    raw[0, 0] = 0  # -1024 HU
    p = _write_dicom(tmp_path / "ct.dcm", raw)
    img = read_image(p)
    assert img.kind == "2d" and img.format == "DICOM" and img.modality == "CT"
    assert np.issubdtype(img.array.dtype, np.integer)
    assert img.array[0, 0] == -1024 and img.array[4, 5] == 40 and img.array[10, 10] == 0
    assert img.spacing == (0.7, 0.8)
    noext = tmp_path / "IM0001"
    noext.write_bytes(p.read_bytes())
    np.testing.assert_array_equal(read_image(noext).array, img.array)
    frac = read_image(_write_dicom(tmp_path / "f.dcm", raw, slope=0.5, intercept=-10))
    assert frac.array.dtype.kind == "f" and frac.array[4, 5] == pytest.approx(1064 * 0.5 - 10)


def test_colour_and_multiframe_dicom(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0], rgb[2, 3] = 200, (1, 2, 3)
    img = read_image(_write_dicom(tmp_path / "us.dcm", rgb, photometric="RGB", modality="US"))
    assert img.kind == "2d" and img.modality == "US"
    np.testing.assert_array_equal(img.array, rgb)
    frames = np.stack([np.full((5, 7), 1024 + 10 * k, np.uint16) for k in range(3)])
    vol = read_image(_write_dicom(tmp_path / "mf.dcm", frames))
    assert vol.kind == "3d" and vol.array.shape == (3, 5, 7)
    assert [int(vol.array[k, 0, 0]) for k in range(3)] == [0, 10, 20]
    assert vol.spacing[:2] == (0.7, 0.8)


def test_monochrome1_is_inverted(tmp_path):
    raw = np.zeros((4, 4), np.uint16)
    raw[0, 0] = 100
    img = read_image(_write_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1", intercept=0))
    assert img.array[0, 0] == 0 and img.array[1, 1] == 100 and img.meta["inverted_monochrome1"]


def test_dicom_errors(tmp_path):
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"\0" * 200)
    with pytest.raises(ImageReadError) as e:
        read_image(fake)
    _one_line_error(e, fake)
    good = _write_dicom(tmp_path / "g.dcm", np.zeros((32, 32), np.uint16))
    trunc = tmp_path / "t.dcm"
    trunc.write_bytes(good.read_bytes()[:-700])
    with pytest.raises(ImageReadError) as e:
        read_image(trunc)
    _one_line_error(e, trunc)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ImageReadError, match="no DICOM series"):
        read_image(tmp_path / "empty_dir")


def test_dicom_series_is_sorted_along_the_slice_normal(tmp_path):
    """Oblique slices with shuffled file names and reversed InstanceNumbers: order comes from IPP."""
    folder = tmp_path / "series"
    folder.mkdir()
    rot = _rotation(25, 15)
    row_dir, col_dir = rot[:, 0], rot[:, 1]
    normal = np.cross(row_dir, col_dir)
    origin = np.array([-100.0, 20.0, 55.0])
    dz = 3.0
    n = 5
    file_order = [3, 0, 4, 1, 2]
    for k in range(n):
        raw = np.full((10, 14), 1024 + 100 * k, np.uint16)  # HU = 100 k identifies the slice
        raw[0, k] = 0
        _write_dicom(
            folder / f"img{file_order[k]:02d}.dcm", raw,
            ipp=origin + k * dz * normal, iop=np.concatenate([row_dir, col_dir]), instance=n - k,
        )
    img = read_image(folder)
    assert img.kind == "3d" and img.format == "DICOM series" and img.modality == "CT"
    assert img.array.shape == (5, 10, 14)
    assert [int(np.median(img.array[k])) for k in range(n)] == [0, 100, 200, 300, 400]
    np.testing.assert_allclose(img.spacing, (0.7, 0.8, dz), atol=1e-4)
    np.testing.assert_allclose(img.origin, origin, atol=1e-4)
    np.testing.assert_allclose(np.array(img.direction).reshape(3, 3), np.stack([row_dir, col_dir, normal], 1), atol=1e-5)
    # a mask written for the series lands on the same physical voxels
    mask = np.zeros(img.array.shape, bool)
    mask[4, 2, 3] = True
    out = read_image(write_mask(tmp_path / "series_mask.nrrd", mask, like=img))
    np.testing.assert_allclose(out.direction, img.direction, atol=1e-5)
    np.testing.assert_allclose(out.origin, img.origin, atol=1e-4)


# --------------------------------------------------------------------------------- shared data
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not available")
def test_real_png_and_nifti_datasets():
    png = DATA / "CT_KidneyKiTS19" / "imagesTs" / "10036_103_0000.png"
    rgb = next((DATA / "ENDO_PolypKvasirSEG" / "imagesTs").glob("*.png"))
    ct = DATA / "CT_MultiOrganTotalSegPseudo" / "imagesTs" / "example_ct_0000.nii.gz"
    mr = DATA / "MRI_BrainTumorPyradiomics" / "imagesTs" / "brain1_0000.nii.gz"
    a = read_image(png)
    assert a.kind == "2d" and a.array.shape == (512, 512) and a.array.dtype == np.uint8
    assert read_image(rgb).array.ndim == 3
    c = read_image(ct)
    assert c.kind == "3d" and c.array.shape == (30, 101, 122) and c.array.min() <= -1000
    np.testing.assert_allclose(c.spacing, (3.0, 3.0, 3.0))
    m = read_image(mr)
    np.testing.assert_allclose(np.array(m.direction).reshape(3, 3), np.diag([1.0, -1.0, 1.0]), atol=1e-6)
    np.testing.assert_allclose(m.spacing, (0.78125, 0.78125, 6.5), atol=1e-5)
    label = read_image(DATA / "MRI_BrainTumorPyradiomics" / "labelsTs" / "brain1.nii.gz")
    assert label.array.shape == m.array.shape
