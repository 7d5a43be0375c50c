"""One volume convention: evaluate.py's reader and `synthfm segment` see the same slice of a NIfTI
with a non-identity direction, and masks go back in the file's own voxel order and geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from synthfm.cli import cli
from synthfm.cli.support import run_click
from synthfm.evaluation.datasets import list_cases, load_dataset_info, read_case
from synthfm.inference.predictor import Predictor
from synthfm.io.images import read_image, write_mask
from synthfm.io.orientation import ViewTransform, radiological_view, view_transform

# voxel index x runs toward anterior, y toward the patient's left, z toward superior (LPS columns)
ROTATED = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _write_case(root, direction=ROTATED):
    ds = root / "Toy3D"
    (ds / "imagesTs").mkdir(parents=True)
    (ds / "labelsTs").mkdir()
    (ds / "dataset.json").write_text(json.dumps({
        "labels": {"background": 0, "blob": 1}, "file_ending": ".nii.gz", "modality": "CT",
        "channel_names": {"0": "CT"}}))
    rng = np.random.default_rng(0)
    vol = rng.integers(-200, 200, size=(6, 20, 28)).astype(np.int16)  # distinct values: any flip shows
    lab = np.zeros(vol.shape, np.uint8)
    lab[3, 4:12, 15:22] = 1
    for arr, path in ((vol, ds / "imagesTs" / "c1_0000.nii.gz"), (lab, ds / "labelsTs" / "c1.nii.gz")):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.7, 0.9, 2.5))
        img.SetOrigin((3.0, -4.0, 10.0))
        img.SetDirection(direction)
        sitk.WriteImage(img, str(path))
    return ds, vol


def test_view_transform_is_radiological_and_invertible():
    vt = view_transform((0.7, 0.9, 2.5), (0, 0, 0), ROTATED)
    # array axes (z, y, x): slice = z; rows = x (toward anterior: flipped, anterior on top); cols = y
    assert vt == ViewTransform((0, 2, 1), flip_rows=True, flip_cols=False)
    assert view_transform((1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1)).is_identity
    # index y along S (a coronal acquisition): the axial slices run along array axis 1
    assert view_transform((1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 0, 1, 0, -1, 0)).order[0] == 1
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(vt.to_file(vt.to_view(a)), a)


def test_evaluate_reader_and_segment_see_the_same_slice(tmp_path, tiny_checkpoint, monkeypatch):
    ds, vol = _write_case(tmp_path / "data")
    info = load_dataset_info(ds)
    (eval_slice,) = read_case(info, list_cases(info)[0], min_area=0.0)
    assert eval_slice.index == 3
    np.testing.assert_allclose(eval_slice.spacing, (0.7, 0.9))  # rows = file x (0.7 mm), cols = file y

    seen = []
    original = Predictor.set_image

    def spy(self, image, *args, **kwargs):
        seen.append(np.array(image))
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(Predictor, "set_image", spy)
    out = tmp_path / "mask.nii.gz"
    code = run_click(cli, ["segment", str(ds / "imagesTs" / "c1_0000.nii.gz"), "--slice", "3", "--point", "5,5",
                           "--model", str(tiny_checkpoint), "--out", str(out)])
    assert code == 0
    (segment_slice,) = seen
    np.testing.assert_array_equal(segment_slice, eval_slice.image)
    # the written mask is in the file's voxel order and geometry; only slice 3 can be filled
    src, got = sitk.ReadImage(str(ds / "imagesTs" / "c1_0000.nii.gz")), sitk.ReadImage(str(out))
    assert got.GetSize() == src.GetSize()
    np.testing.assert_allclose(got.GetDirection(), src.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(got.GetOrigin(), src.GetOrigin(), atol=1e-4)
    assert np.delete(sitk.GetArrayFromImage(got), 3, axis=0).sum() == 0


def test_masks_written_from_the_view_land_on_the_same_voxels(tmp_path):
    ds, vol = _write_case(tmp_path / "data")
    viewed = radiological_view(read_image(ds / "imagesTs" / "c1_0000.nii.gz"))
    assert viewed.array.shape == (6, 28, 20)
    mask = viewed.array > 100  # a mask in the view
    out = write_mask(tmp_path / "m.nrrd", mask, like=viewed)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))).astype(bool), vol > 100)


@pytest.mark.parametrize("direction", [(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), (-1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0)])
def test_view_round_trip_for_other_directions(tmp_path, direction):
    ds, vol = _write_case(tmp_path / "data", direction)
    viewed = radiological_view(read_image(ds / "imagesTs" / "c1_0000.nii.gz"))
    out = write_mask(tmp_path / "m.nii.gz", viewed.array > 0, like=viewed)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))).astype(bool), vol > 0)
