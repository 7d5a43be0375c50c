"""nnU-Net folder reading and object extraction (synthfm.evaluation.datasets).

The dataset builders here are reused by tests/test_evaluation.py and tests/test_evaluate_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from synthfm.evaluation.datasets import CaseError, extract_objects, find_datasets, list_cases, load_dataset_info, read_case
from synthfm.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def write_dataset_json(root: Path, **overrides) -> None:
    meta = {
        "name": root.name,
        "modality": "CT",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "file_ending": ".png",
    }
    meta.update(overrides)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta))


def write_png_case(root: Path, case: str, image: np.ndarray, label: np.ndarray) -> None:
    (root / "imagesTs").mkdir(parents=True, exist_ok=True)
    (root / "labelsTs").mkdir(parents=True, exist_ok=True)
    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    assert cv2.imwrite(str(root / "imagesTs" / f"{case}_0000.png"), img)
    assert cv2.imwrite(str(root / "labelsTs" / f"{case}.png"), label)


def two_object_label(size: int = 64) -> np.ndarray:
    """Label with two class-1 squares, one class-2 disc, and a class-1 speck below 0.1%."""
    label = np.zeros((size, size), np.uint8)
    label[5:20, 5:20] = 1
    label[30:50, 8:22] = 1
    cv2.circle(label, (45, 40), 8, 2, -1)
    label[60, 60] = 1  # 1 px < 0.1% of 64*64 = 4.1 px
    return label


def image_from_label(label: np.ndarray, seed: int = 0) -> np.ndarray:
    """8-bit image whose intensity encodes the label (for oracle methods), plus mild noise."""
    rng = np.random.default_rng(seed)
    img = 40 + 80 * label.astype(np.float32) + rng.normal(0, 3, label.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_png_dataset(root: Path, n_cases: int = 2, **json_overrides) -> Path:
    write_dataset_json(root, **json_overrides)
    for k in range(n_cases):
        label = np.roll(two_object_label(), k, axis=1)
        write_png_case(root, f"case{k:02d}", image_from_label(label, seed=k), label)
    return root


# anisotropic affine whose voxel axes are (S, R->L flipped, A): slicing must follow axis 0
VOLUME_AFFINE = np.array(
    [
        [0.0, -0.5, 0.0, 10.0],  # world x (R) <- voxel axis 1, decreasing: axis 1 runs toward L
        [0.0, 0.0, 0.8, -5.0],  # world y (A) <- voxel axis 2, increasing toward A
        [3.0, 0.0, 0.0, 2.0],  # world z (S) <- voxel axis 0, 3 mm slices
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def write_nifti_dataset(root: Path, **json_overrides) -> Path:
    """One volume (5, 24, 32) with a box in slices 1-2 (voxel axis 0) and a marker voxel."""
    write_dataset_json(root, file_ending=".nii.gz", labels={"background": 0, "tumor": 1}, modality="MRI", **json_overrides)
    (root / "imagesTs").mkdir(exist_ok=True)
    (root / "labelsTs").mkdir(exist_ok=True)
    label = np.zeros((5, 24, 32), np.uint8)
    label[1:3, 6:16, 10:26] = 1
    image = (100 + 300 * label.astype(np.int16)).astype(np.int16)
    image[1, 0, 31] = 2000  # voxel axis1=0 (most right), axis2=31 (most anterior)
    nib.save(nib.Nifti1Image(image, VOLUME_AFFINE), str(root / "imagesTs" / "vol_0000.nii.gz"))
    nib.save(nib.Nifti1Image(label, VOLUME_AFFINE), str(root / "labelsTs" / "vol.nii.gz"))
    return root


# ------------------------------------------------------------------------------------- tests


def test_find_datasets_accepts_dataset_or_parent_and_skips_pseudo(tmp_path):
    write_png_dataset(tmp_path / "A", n_cases=1)
    write_png_dataset(tmp_path / "B", n_cases=1, pseudo_labels=True)
    (tmp_path / "not_a_dataset").mkdir()
    kept, pseudo = find_datasets(tmp_path)
    assert [d.name for d in kept] == ["A"] and pseudo == ["B"]
    kept, pseudo = find_datasets(tmp_path, include_pseudo=True)
    assert [d.name for d in kept] == ["A", "B"] and pseudo == []
    kept, _ = find_datasets(tmp_path / "A")
    assert [d.name for d in kept] == ["A"]


@pytest.mark.parametrize("problem", ["missing", "empty", "only_pseudo"])
def test_find_datasets_errors_are_user_errors(tmp_path, problem):
    if problem == "only_pseudo":
        write_png_dataset(tmp_path / "P", n_cases=1, pseudo_labels=True)
    target = tmp_path / "nope" if problem == "missing" else tmp_path
    with pytest.raises(UserError):
        find_datasets(target)


def test_bad_dataset_json_names_the_key(tmp_path):
    write_dataset_json(tmp_path / "X", file_ending=".xyz")
    with pytest.raises(UserError, match="file_ending"):
        load_dataset_info(tmp_path / "X")


def test_objects_are_8_connected_components_above_min_area(tmp_path):
    info = load_dataset_info(write_png_dataset(tmp_path / "D", n_cases=1))
    label = two_object_label()
    objects = extract_objects(label, info, min_area=0.001)
    assert [(o.class_name, o.index) for o in objects] == [("organ", 0), ("organ", 1), ("lesion", 0)]
    assert [o.area for o in objects[:2]] == [15 * 15, 20 * 14]
    assert all(o.mask.dtype == bool and o.mask.sum() == o.area for o in objects)
    # diagonal contact joins two squares into one object (8-connectivity)
    diag = np.zeros((64, 64), np.uint8)
    diag[0:10, 0:10] = 1
    diag[10:20, 10:20] = 1
    assert len(extract_objects(diag, info)) == 1
    # a higher threshold drops the smaller objects
    assert len(extract_objects(label, info, min_area=250 / 64**2)) == 1


def test_instance_labels_make_each_id_one_object(tmp_path):
    info = load_dataset_info(write_png_dataset(tmp_path / "I", n_cases=1, instance_labels=True, labels={"background": 0, "cell": 1}))
    label = np.zeros((64, 64), np.uint8)
    label[10:20, 10:20] = 7
    label[10:20, 20:30] = 3  # touching 7: still a separate object
    label[40:50, 40:50] = 200
    objects = extract_objects(label, info)
    assert len(objects) == 3 and all(o.class_name == "cell" for o in objects)
    assert sorted(o.area for o in objects) == [100, 100, 100]


def test_png_cases_read_rgb_16bit_and_report_problems(tmp_path):
    root = write_png_dataset(tmp_path / "D", n_cases=1)
    label = two_object_label()
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB order
    write_png_case(root, "rgb", rgb, label)
    write_png_case(root, "u16", (label.astype(np.uint16) * 20000), label)
    write_png_case(root, "badsize", np.zeros((32, 64), np.uint8), label)
    write_png_case(root, "unknown", np.zeros((64, 64), np.uint8), np.where(label == 2, 9, label).astype(np.uint8))
    write_png_case(root, "corrupt", np.zeros((64, 64), np.uint8), label)
    (root / "imagesTs" / "corrupt_0000.png").write_bytes(b"\x89PNG not really")
    info = load_dataset_info(root)
    cases = {c.case_id: c for c in list_cases(info)}
    assert set(cases) == {"case00", "rgb", "u16", "badsize", "unknown", "corrupt"}
    (sl,) = read_case(info, cases["rgb"])
    assert sl.image.shape == (64, 64, 3) and sl.image[0, 0, 0] == 200 and sl.image[0, 0, 2] == 0
    assert sl.index is None and sl.spacing is None and len(sl.objects) == 3
    (sl,) = read_case(info, cases["u16"])
    assert sl.image.dtype == np.uint16 and sl.image.max() == 40000
    for name, message in (("badsize", "size"), ("unknown", "not in dataset.json"), ("corrupt", "cannot read")):
        with pytest.raises(CaseError, match=message):
            read_case(info, cases[name])


def test_volume_is_sliced_along_superior_axis_with_geometry(tmp_path):
    info = load_dataset_info(write_nifti_dataset(tmp_path / "V"))
    (case,) = list_cases(info)
    slices = read_case(info, case)
    assert [s.index for s in slices] == [1, 2]  # voxel axis 0 is superior-inferior
    sl = slices[0]
    # rows follow world y (voxel axis 2, 32 voxels), columns world x (voxel axis 1, 24 voxels)
    assert sl.image.shape == (32, 24) and sl.label.shape == (32, 24)
    assert sl.spacing == pytest.approx((0.8, 0.5))
    # radiological view: most anterior row on top, patient's right on the left
    assert sl.image[0, 0] == 2000
    (obj,) = sl.objects
    assert obj.area == 10 * 16
    assert obj.mask.any(axis=1).sum() == 16 and obj.mask.any(axis=0).sum() == 10


def test_volume_geometry_mismatch_is_a_case_error(tmp_path):
    root = write_nifti_dataset(tmp_path / "V")
    lab = nib.load(str(root / "labelsTs" / "vol.nii.gz"))
    shifted = VOLUME_AFFINE.copy()
    shifted[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(lab.dataobj), shifted), str(root / "labelsTs" / "vol.nii.gz"))
    info = load_dataset_info(root)
    with pytest.raises(CaseError, match="affine"):
        read_case(info, list_cases(info)[0])


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
def test_shared_data_datasets_load():
    kept, pseudo = find_datasets(SHARED_DATA)
    assert kept and all(not d.pseudo_labels for d in kept)
    assert all(not d.name.endswith("Pseudo") for d in kept)
    micro = [d for d in kept if d.instance_labels]
    for info in micro[:1]:
        (sl,) = read_case(info, list_cases(info)[0])
        assert len(sl.objects) > 50
