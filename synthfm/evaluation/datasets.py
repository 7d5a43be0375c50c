"""Read evaluation datasets in the nnU-Net v2 raw layout and cut them into prompted objects.

Layout (see ../shared/DESIGN.md, "Evaluation data contract")::

    <Dataset>/dataset.json
    <Dataset>/imagesTs/<case>_0000<file_ending>    image (channel 0; RGB PNGs carry all three)
    <Dataset>/labelsTs/<case><file_ending>         label map, 0 = background, ids as in "labels"

``file_ending`` ``.png`` (or another OpenCV 2D format) is one 2D image per case; ``.nii.gz`` /
``.nii`` is a volume evaluated slice by slice.

Volumes are read through :mod:`synthfm.io` and seen in the one volume convention of
:mod:`synthfm.io.orientation` (the one ``synthfm segment``, ``annotate`` and propagation use):
axial slices along the voxel axis closest to the patient's superior-inferior axis, anterior at the
top, the patient's right on the image's left.  ``EvalSlice.index`` is the index along that axis in
the file (= ``synthfm segment --slice``), and ``EvalSlice.spacing`` the in-plane pixel size
``(row, col)`` in mm (None for 2D images, whose distances are in pixels).

Objects: connected components (8-connectivity) of each class in one 2D image or slice
(components of a volume are taken per slice, not in 3D), kept when their area is at least
``min_area`` x the image area.  With ``instance_labels`` every nonzero id is one object of the
single foreground class (ids need not appear in ``labels``), split into components only if a
single id is spatially disconnected.  Objects are numbered per (slice, class) in a stable order
(by first pixel in row-major order).

Problems with one case (unreadable file, missing label, image/label size mismatch, label ids
not in dataset.json) raise :class:`CaseError`, which the evaluation reports and counts, instead
of stopping the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from synthfm.errors import UserError

VOLUME_ENDINGS = (".nii.gz", ".nii")
IMAGE_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEFAULT_MIN_AREA = 0.001


class CaseError(Exception):
    """One case cannot be evaluated (its message says why); the run goes on without it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the evaluation needs from one dataset.json."""

    name: str
    root: Path
    modality: str
    labels: dict[str, int]  # class name -> id, background excluded
    file_ending: str
    rgb: bool = False
    instance_labels: bool = False
    pseudo_labels: bool = False

    @property
    def is_volume(self) -> bool:
        return self.file_ending.lower() in VOLUME_ENDINGS

    def class_name(self, label_id: int) -> str:
        for name, value in self.labels.items():
            if value == label_id:
                return name
        raise KeyError(label_id)


@dataclass(frozen=True)
class Case:
    dataset: str
    case_id: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class GtObject:
    """One object: ``mask`` (H, W) bool, ``area`` in pixels, numbered ``index`` within its class."""

    class_name: str
    class_id: int
    index: int
    mask: np.ndarray
    area: int


@dataclass
class EvalSlice:
    """One 2D image (or one slice of a volume) and its objects.

    image: (H, W) or (H, W, 3) in the file's dtype (uint8, uint16, int16, float; RGB order).
    label: (H, W) integer label map.  spacing: (row, col) mm or None (pixels).
    index: slice index along the volume's slicing axis, None for 2D images.
    """

    dataset: str
    case_id: str
    index: int | None
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float] | None
    objects: list[GtObject] = field(default_factory=list)


# ---------------------------------------------------------------------------------- datasets


def load_dataset_info(folder: str | Path) -> DatasetInfo:
    """Parse ``folder/dataset.json``; raises UserError naming the file and the bad key."""
    root = Path(folder)
    path = root / "dataset.json"
    if path.exists():
        from synthfm.io.safe_inputs import check_regular_file

        check_regular_file(path, "dataset description", error=UserError)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no dataset.json in {root}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: expected a JSON object")
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise UserError(f"{path}: 'labels' must be a non-empty object of name -> id")
    try:
        classes = {str(k): int(v) for k, v in labels.items() if int(v) != 0}
    except (TypeError, ValueError):
        raise UserError(f"{path}: 'labels' values must be integer ids, got {labels!r}") from None
    if not classes:
        raise UserError(f"{path}: 'labels' has no foreground class")
    ending = meta.get("file_ending")
    if not isinstance(ending, str) or ending.lower() not in VOLUME_ENDINGS + IMAGE_ENDINGS:
        known = ", ".join(VOLUME_ENDINGS + IMAGE_ENDINGS)
        raise UserError(f"{path}: unsupported 'file_ending' {ending!r} (supported: {known})")
    return DatasetInfo(
        name=str(meta.get("name") or root.name),
        root=root,
        modality=str(meta.get("modality") or _modality_from_channels(meta) or "unknown"),
        labels=classes,
        file_ending=ending,
        rgb=bool(meta.get("rgb", False)),
        instance_labels=bool(meta.get("instance_labels", False)),
        pseudo_labels=bool(meta.get("pseudo_labels", False)),
    )


def _modality_from_channels(meta: dict) -> str | None:
    channels = meta.get("channel_names") or meta.get("modality")
    if isinstance(channels, dict) and channels:
        return str(next(iter(channels.values())))
    return None


def find_datasets(paths: list[str | Path] | str | Path, include_pseudo: bool = False) -> tuple[list[DatasetInfo], list[str]]:
    """Datasets under ``paths`` (each a dataset folder or a parent of dataset folders).

    Returns (datasets sorted by name, names of pseudo-label datasets left out).  Raises UserError
    for a missing path or when nothing is found.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: dict[Path, DatasetInfo] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"data folder does not exist: {p}")
        if not p.is_dir():
            raise UserError(f"data path is not a folder: {p}")
        folders = [p] if (p / "dataset.json").is_file() else sorted(d for d in p.iterdir() if (d / "dataset.json").is_file())
        if not folders:
            raise UserError(f"no dataset found in {p} (expected dataset.json in it or in its subfolders)")
        for folder in folders:
            found.setdefault(folder.resolve(), load_dataset_info(folder))
    datasets = sorted(found.values(), key=lambda d: d.name)
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"two datasets share the name {duplicates[0]!r}; give them distinct 'name' keys")
    pseudo = [d.name for d in datasets if d.pseudo_labels and not include_pseudo]
    kept = [d for d in datasets if include_pseudo or not d.pseudo_labels]
    if not kept:
        raise UserError(f"only pseudo-label datasets found ({', '.join(pseudo)}); pass --include-pseudo to evaluate them")
    return kept, pseudo


def list_cases(info: DatasetInfo, splits: tuple[str, ...] = ("Ts",)) -> list[Case]:
    """Cases of a dataset, sorted by id: every ``images<split>/<case>_0000<ending>`` of ``splits``.

    Evaluation reads the test split (``imagesTs``/``labelsTs``); fine-tuning passes ``("Tr", "Ts")``
    and takes whichever folders exist (at least one must).  A case id found in two splits is an error.
    """
    suffix = "_0000" + info.file_ending
    present = [s for s in splits if (info.root / f"images{s}").is_dir()]
    if not present:
        wanted = " or ".join(str(info.root / f"images{s}") for s in splits)
        raise UserError(f"dataset {info.name}: missing folder {wanted}")
    cases: dict[str, Case] = {}
    for split in present:
        for path in sorted((info.root / f"images{split}").iterdir()):
            if path.name.endswith(suffix):
                case_id = path.name[: -len(suffix)]
                if case_id in cases:
                    raise UserError(f"dataset {info.name}: case {case_id!r} is in more than one of images{'/images'.join(present)}")
                cases[case_id] = Case(info.name, case_id, path, info.root / f"labels{split}" / f"{case_id}{info.file_ending}")
    return [cases[k] for k in sorted(cases)]


# ----------------------------------------------------------------------------------- reading


def read_case(info: DatasetInfo, case: Case, min_area: float = DEFAULT_MIN_AREA) -> list[EvalSlice]:
    """Read one case into the slices that hold at least one object (2D: zero or one slice).

    Raises CaseError for an unreadable or inconsistent case.
    """
    if not case.label_path.is_file():
        raise CaseError(f"label file missing: {case.label_path.name}")
    if info.is_volume:
        raw = _read_volume_slices(info, case)
    else:
        image, label = _read_image(case.image_path), _read_label_2d(case.label_path)
        if image.shape[:2] != label.shape:
            raise CaseError(f"image size {image.shape[:2]} != label size {label.shape}")
        _check_label_ids(info, label)
        raw = [(None, image, label, None)]
    slices = []
    for index, image, label, spacing in raw:
        objects = extract_objects(label, info, min_area)
        if objects:
            slices.append(EvalSlice(info.name, case.case_id, index, image, label, spacing, objects))
    return slices


def _check_raster(path: Path, what: str) -> None:
    """Before OpenCV opens it: a regular file (a FIFO would hang) whose header size is within limits."""
    from synthfm.errors import ImageReadError
    from synthfm.io.headers import check_pixel_count, raster_size
    from synthfm.io.safe_inputs import check_regular_file

    try:
        check_regular_file(path, what, error=CaseError)
        with open(path, "rb") as fh:
            size = raster_size(fh.read(1 << 16))
        if size is not None:
            check_pixel_count(path.name, size)
    except ImageReadError as exc:
        raise CaseError(str(exc)) from None
    except OSError as exc:
        raise CaseError(f"cannot read {what} {path.name} ({exc.strerror})") from None


def _read_image(path: Path) -> np.ndarray:
    _check_raster(path, "image")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise CaseError(f"cannot read image {path.name} (corrupt or unsupported)")
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        else:
            raise CaseError(f"image {path.name} has {image.shape[2]} channels")
    return np.ascontiguousarray(image)


def _read_label_2d(path: Path) -> np.ndarray:
    _check_raster(path, "label")
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.size == 0:
        raise CaseError(f"cannot read label {path.name} (corrupt or unsupported)")
    if label.ndim == 3:
        if not (label == label[:, :, :1]).all():
            raise CaseError(f"label {path.name} is a colour image; expected a single-channel id map")
        label = label[:, :, 0]
    if not np.issubdtype(label.dtype, np.integer):
        raise CaseError(f"label {path.name} has non-integer dtype {label.dtype}")
    return label


def _check_label_ids(info: DatasetInfo, label: np.ndarray) -> None:
    if info.instance_labels:
        return
    # slice by slice: np.unique on a whole volume would sort a full copy of it
    planes = label if label.ndim == 3 else label[None]
    present = set()
    for plane in planes:
        present.update(int(v) for v in np.unique(plane))
    present.discard(0)
    unknown = sorted(present - set(info.labels.values()))
    if unknown:
        raise CaseError(f"label ids {unknown} not in dataset.json labels")


def _load_volume(path: Path):
    """A volume through synthfm.io, in the one volume convention (synthfm.io.orientation)."""
    from synthfm.io.images import read_image
    from synthfm.io.orientation import radiological_view

    try:
        vol = read_image(path)
    except UserError as exc:
        raise CaseError(f"cannot read {path.name}: {' '.join(str(exc).split())}") from None
    if vol.kind != "3d":
        raise CaseError(f"{path.name}: expected a 3D volume, got shape {vol.array.shape}")
    return radiological_view(vol)


def _same_geometry(a, b) -> bool:
    scale = max(float(np.max(np.abs(a.spacing))), 1.0)
    return (np.allclose(a.spacing, b.spacing, atol=1e-3 * scale) and np.allclose(a.origin, b.origin, atol=1e-3 * scale)
            and np.allclose(a.direction, b.direction, atol=1e-3))


def _read_volume_slices(info: DatasetInfo, case: Case) -> list[tuple[int, np.ndarray, np.ndarray, tuple[float, float]]]:
    from synthfm.io.orientation import array_spacing

    image, label_vol = _load_volume(case.image_path), _load_volume(case.label_path)
    if image.array.shape != label_vol.array.shape:
        raise CaseError(f"image size {image.array.shape} != label size {label_vol.array.shape}")
    if not _same_geometry(image, label_vol):
        raise CaseError("image and label affines differ (different geometry)")
    label = label_vol.array
    if not np.issubdtype(label.dtype, np.integer):
        rounded = np.rint(label)
        if not np.allclose(label, rounded):
            raise CaseError("label volume has non-integer values")
        label = rounded.astype(np.int32)
    _check_label_ids(info, label)
    spacing = array_spacing(image)[1:]  # (row, col) mm of the axial view
    out = []
    # only the labelled slices are copied, never a whole volume
    for k in range(label.shape[0]):
        lab = label[k]
        if lab.any():
            out.append((k, np.ascontiguousarray(image.array[k]), np.ascontiguousarray(lab), spacing))
    return out


# ----------------------------------------------------------------------------------- objects


def extract_objects(label: np.ndarray, info: DatasetInfo, min_area: float = DEFAULT_MIN_AREA) -> list[GtObject]:
    """Objects of one (H, W) label map; see the module docstring for the definition."""
    h, w = label.shape
    min_pixels = max(1, int(np.ceil(min_area * h * w)))
    objects: list[GtObject] = []
    if info.instance_labels:
        name, class_id = next(iter(info.labels.items()))
        index = 0
        for instance in _ids_in_order(label):
            for mask, area in _components(label == instance, min_pixels):
                objects.append(GtObject(name, class_id, index, mask, area))
                index += 1
        return objects
    for name, class_id in info.labels.items():
        for index, (mask, area) in enumerate(_components(label == class_id, min_pixels)):
            objects.append(GtObject(name, class_id, index, mask, area))
    return objects


def _ids_in_order(label: np.ndarray) -> list[int]:
    """Nonzero ids ordered by their first pixel (row-major), so numbering follows the image."""
    flat = label.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids != 0
    return [int(i) for i in ids[keep][np.argsort(first[keep])]]


def _components(mask: np.ndarray, min_pixels: int) -> list[tuple[np.ndarray, int]]:
    if not mask.any():
        return []
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    # cv2 numbers components in raster order of their first pixel: a stable object order
    return [(comp == k, int(stats[k, cv2.CC_STAT_AREA])) for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_pixels]
