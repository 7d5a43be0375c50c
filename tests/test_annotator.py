"""The annotator's logic, driven through its event handlers (no display needed)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from fake_state import ImageStateMixin
from synthfm.annotator.logic import (
    EVENT_LBUTTONDOWN,
    EVENT_MOUSEWHEEL,
    EVENT_RBUTTONDOWN,
    KEY_LEFT,
    KEY_RIGHT,
    KEY_TAB,
    Annotator,
    window_choices,
)
from synthfm.annotator.window import STATUS_HEIGHT, AnnotatorView, display_scale
from synthfm.cli import cli
from synthfm.cli.support import run_click
from synthfm.cli.annotate import default_output
from synthfm.io.intensity import resolve_window
from synthfm.io.images import read_image
from synthfm.modeling import build_model
from synthfm.inference.predictor import Predictor


class DiscPredictor(ImageStateMixin):
    """Stands in for Predictor: the mask is a disc of radius 6 around each positive click, minus
    discs of radius 3 around negative clicks.  Multimask gives radii 3 / 6 / 9 with scores
    0.5 / 0.9 / 0.7.  Records encodings and the mask inputs it was given."""

    def __init__(self):
        self.reset_image()
        self.encodings = 0
        self.mask_inputs = []

    def reset_image(self):
        self._features = None
        self.original_size = self.input_size = self.window = self.image_uint8 = None

    @property
    def is_image_set(self):
        return self._features is not None

    def set_image(self, image, preset="auto", modality=None):
        self._features = np.asarray(image).copy()
        self.original_size = self.input_size = self._features.shape[:2]
        self.window = preset
        self.encodings += 1

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=False):
        self.mask_inputs.append(mask_input)
        h, w = self.original_size
        yy, xx = np.mgrid[:h, :w]
        radii = (3, 6, 9) if multimask_output else (6,)
        masks = []
        for r in radii:
            m = np.zeros((h, w), bool)
            for (x, y), lab in zip(point_coords, point_labels):
                if lab == 1:
                    m |= (xx - x) ** 2 + (yy - y) ** 2 <= r * r
            for (x, y), lab in zip(point_coords, point_labels):
                if lab == 0:
                    m &= (xx - x) ** 2 + (yy - y) ** 2 > 9
            masks.append(m)
        scores = np.array([0.5, 0.9, 0.7] if multimask_output else [0.8], np.float32)
        low_res = np.stack([np.full((16, 16), float(r)) for r in radii]).astype(np.float32)
        return np.stack(masks), scores, low_res


def _disc(shape, x, y, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - x) ** 2 + (yy - y) ** 2 <= r * r


@pytest.fixture()
def png(tmp_path):
    img = np.full((40, 60), 30, np.uint8)
    img[10:30, 15:45] = 200
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), img)
    return read_image(path)


@pytest.fixture()
def ct(tmp_path):
    vol = np.full((5, 30, 40), -1000, np.int16)
    vol[:, 8:22, 10:30] = 50
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((1.0, -2.0, 30.0))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(img, str(path))
    return read_image(path)


def _annotator(image, tmp_path, **kw):
    lines = []
    a = Annotator(DiscPredictor(), image, kw.pop("out", tmp_path / "labels.png"), log=lines.append, **kw)
    return a, lines


def test_click_paints_the_object_and_undo_restores(png, tmp_path):
    a, lines = _annotator(png, tmp_path)
    a.on_mouse(EVENT_LBUTTONDOWN, 30, 20)
    np.testing.assert_array_equal(a.labels == 1, _disc((40, 60), 30, 20, 6))
    assert a.dirty and "click + (30, 20)" in lines[-1] and f"{_disc((40, 60), 30, 20, 6).sum()} pixels" in lines[-1]
    after_first = a.labels.copy()
    a.on_mouse(EVENT_RBUTTONDOWN, 33, 20)  # a negative click carves a hole
    assert not a.labels[20, 33] and a.labels[20, 27] == 1
    assert [c.positive for c in a.current_clicks()] == [True, False]
    a.on_key(ord("u"))
    np.testing.assert_array_equal(a.labels, after_first)
    assert len(a.current_clicks()) == 1
    a.on_key(ord("u"))
    assert not a.labels.any() and a.current_clicks() == []
    a.on_key(ord("u"))
    assert a.message == "nothing to undo"


def test_reset_clears_only_the_current_object(png, tmp_path):
    a, _ = _annotator(png, tmp_path)
    a.add_click(15, 15, True)
    a.on_key(KEY_TAB)
    assert a.object_id == 2
    a.add_click(45, 25, True)
    a.on_key(ord("r"))
    assert set(np.unique(a.labels)) == {0, 1}
    a.on_key(ord("u"))  # the reset is undoable
    assert set(np.unique(a.labels)) == {0, 1, 2}


def test_objects_have_their_own_ids_and_never_overwrite_each_other(png, tmp_path):
    a, _ = _annotator(png, tmp_path)
    a.add_click(25, 20, True)
    first = a.labels == 1
    a.on_key(KEY_TAB)
    a.add_click(30, 20, True)  # overlaps object 1's disc
    np.testing.assert_array_equal(a.labels == 1, first)
    np.testing.assert_array_equal(a.labels == 2, _disc((40, 60), 30, 20, 6) & ~first)
    a.on_key(ord("7"))
    assert a.object_id == 7
    a.add_click(50, 10, True)
    a.on_key(KEY_TAB)
    assert a.object_id == 8
    a.on_key(ord("1"))
    a.add_click(10, 30, True)  # object 1's clicks continue: it now has two discs
    assert a.object_id == 1 and len(a.current_clicks()) == 2 and a.labels[30, 10] == 1 and a.labels[20, 25] == 1


def test_slices_embeddings_and_navigation(ct, tmp_path):
    a, _ = _annotator(ct, tmp_path, out=tmp_path / "labels.nii.gz")
    fake = a.predictor
    assert a.slice_index == 2 and a.num_slices == 5
    a.add_click(20, 15, True)
    a.on_key(ord("n"))
    a.add_click(20, 15, True)
    a.on_mouse(EVENT_MOUSEWHEEL, 0, 0, flags=-120 << 16)  # wheel down: previous slice
    assert a.slice_index == 2
    a.on_key(KEY_RIGHT)
    a.on_key(KEY_RIGHT)
    a.on_key(KEY_RIGHT)  # clamped at the last slice
    assert a.slice_index == 4
    a.on_key(KEY_LEFT)
    a.on_key(ord("p"))
    a.add_click(10, 10, True)  # slice 2 again: its embedding comes from the cache
    assert fake.encodings == 2
    filled = [k for k in range(5) if a.labels[k].any()]
    assert filled == [2, 3]
    assert len(a.clicks[(1, 2)]) == 2 and len(a.clicks[(1, 3)]) == 1
    a.on_key(ord("u"))  # undo goes back to where the change was
    a.on_key(ord("n"))
    a.on_key(ord("u"))
    assert a.slice_index == 3 and not a.labels[3].any()


def test_2d_images_have_one_slice(png, tmp_path):
    a, _ = _annotator(png, tmp_path)
    a.on_key(ord("n"))
    assert a.slice_index == 0 and "one slice" in a.message


def test_window_cycling_changes_the_image_and_the_embedding(ct, tmp_path):
    a, _ = _annotator(ct, tmp_path, out=tmp_path / "labels.nii.gz")
    names = [w.name for w in a.windows]
    assert names[0] == "soft_tissue" and {"lung", "bone", "brain", "liver"} <= set(names)
    before = a.display_image().copy()
    a.add_click(20, 15, True)
    a.on_key(ord("w"))
    assert a.window.name == names[1] and names[1] in a.message
    assert not np.array_equal(a.display_image(), before)
    a.add_click(20, 15, True)
    assert a.predictor.encodings == 2  # the same slice, encoded again with the new window
    assert a.predictor.window == a.window
    for _ in range(len(names) - 1):
        a.on_key(ord("w"))
    assert a.window.name == "soft_tissue"


def test_window_choices_for_non_ct_data():
    mr = np.linspace(0, 1200, 4000).reshape(40, 100).astype(np.int16)
    choices = window_choices(mr, resolve_window(mr, "auto"))
    assert [w.name for w in choices] == ["mr", "full"]
    eight = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert [w.name for w in window_choices(eight, resolve_window(eight, "auto"))] == ["none", "mr"]


def test_multimask_candidates(png, tmp_path):
    a, _ = _annotator(png, tmp_path)
    a.add_click(30, 20, True)
    a.on_key(ord("m"))  # re-predicts with 3 candidates, takes the best score (radius 6)
    assert a.multimask and a.candidate == 1
    np.testing.assert_array_equal(a.labels == 1, _disc((40, 60), 30, 20, 6))
    a.on_key(ord("c"))
    assert a.candidate == 2
    np.testing.assert_array_equal(a.labels == 1, _disc((40, 60), 30, 20, 9))
    a.on_key(ord("c"))
    np.testing.assert_array_equal(a.labels == 1, _disc((40, 60), 30, 20, 3))
    a.on_key(ord("u"))
    np.testing.assert_array_equal(a.labels == 1, _disc((40, 60), 30, 20, 9))
    a.on_key(ord("m"))
    assert not a.multimask
    a.on_key(ord("c"))
    assert "no candidates" in a.message


def test_refine_feeds_the_previous_logits_back(png, tmp_path):
    plain, _ = _annotator(png, tmp_path)
    plain.add_click(30, 20, True)
    plain.add_click(20, 20, True)
    assert plain.predictor.mask_inputs == [None, None]
    refined, _ = _annotator(png, tmp_path, refine=True)
    refined.add_click(30, 20, True)
    refined.add_click(20, 20, True)
    assert refined.predictor.mask_inputs[0] is None
    assert refined.predictor.mask_inputs[1].shape == (1, 16, 16) and refined.predictor.mask_inputs[1].max() == 6


def test_clicks_outside_the_image_are_ignored(png, tmp_path):
    a, _ = _annotator(png, tmp_path)
    view = AnnotatorView(a)
    a.on_mouse(EVENT_LBUTTONDOWN, 10, view.size[1] + 5, to_image=view.to_image)  # the status bar
    a.add_click(70, 10, True)
    assert not a.labels.any() and not a.dirty and "outside" in a.message
    sx, sy = view.to_screen(30, 20)
    a.on_mouse(EVENT_LBUTTONDOWN, sx, sy, to_image=view.to_image)
    c = a.current_clicks()[0]
    assert abs(c.x - 30) <= 0.5 / view.scale + 1e-9 and abs(c.y - 20) <= 0.5 / view.scale + 1e-9


def test_save_2d_label_map_and_confirm_overwrite(png, tmp_path):
    out = tmp_path / "labels.png"
    a, lines = _annotator(png, tmp_path, out=out)
    a.add_click(30, 20, True)
    a.on_key(KEY_TAB)
    a.add_click(50, 8, True)
    a.on_key(ord("s"))
    saved = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert saved.dtype == np.uint8 and saved.shape == (40, 60)
    np.testing.assert_array_equal(saved, a.labels)
    assert set(np.unique(saved)) == {0, 1, 2} and not a.dirty and lines[-1].startswith("saved ")
    # a file this session wrote is replaced without asking
    a.add_click(10, 35, True)
    a.on_key(ord("s"))
    assert a.pending is None and np.array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), a.labels)
    # a new session asks before replacing it, and "any other key" keeps the old file
    b, _ = _annotator(png, tmp_path, out=out)
    b.add_click(30, 20, True)
    old = out.read_bytes()
    b.on_key(ord("s"))
    assert b.pending == "overwrite" and "press y" in b.message and out.read_bytes() == old
    b.on_key(ord("x"))
    assert b.pending is None and out.read_bytes() == old and b.dirty
    b.on_key(ord("s"))
    b.on_key(ord("y"))
    np.testing.assert_array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), b.labels)
    c, _ = _annotator(png, tmp_path, out=out, overwrite=True)
    c.add_click(5, 5, True)
    assert c.save() and c.pending is None


def test_save_volume_keeps_geometry(ct, tmp_path):
    out = tmp_path / "labels.nii.gz"
    a, _ = _annotator(ct, tmp_path, out=out)
    a.add_click(20, 15, True)
    a.on_key(ord("n"))
    a.on_key(KEY_TAB)
    a.add_click(12, 10, True)
    assert a.save()
    got, src = sitk.ReadImage(str(out)), sitk.ReadImage(str(ct.path))
    assert got.GetSize() == src.GetSize()
    np.testing.assert_allclose(got.GetSpacing(), src.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(got.GetOrigin(), src.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(got.GetDirection(), src.GetDirection(), atol=1e-6)
    arr = sitk.GetArrayFromImage(got)
    # the annotator works in the radiological view; the file keeps its own voxel order
    np.testing.assert_array_equal(arr, a.image.view.to_file(a.labels))
    assert arr[2].max() == 1 and arr[3].max() == 2 and not arr[[0, 1, 4]].any()


def test_quit_asks_when_there_is_unsaved_work(png, tmp_path):
    a, _ = _annotator(png, tmp_path)
    a.on_key(ord("q"))
    assert a.done  # nothing to lose
    b, _ = _annotator(png, tmp_path)
    b.add_click(30, 20, True)
    b.on_key(ord("q"))
    assert not b.done and b.pending == "quit"
    b.on_key(ord("n"))  # any other key: go on
    assert not b.done and b.pending is None
    b.on_key(27)  # Esc = quit, asks again
    b.on_key(ord("y"))
    assert b.done and not (tmp_path / "labels.png").exists()
    c, _ = _annotator(png, tmp_path)
    c.add_click(30, 20, True)
    c.on_key(ord("q"))
    c.on_key(ord("s"))  # save and quit
    assert c.done and (tmp_path / "labels.png").is_file()


def test_view_renders_image_labels_clicks_and_status(png, tmp_path):
    assert display_scale(40, 60) == 9.0 and display_scale(600, 400) == 1.0 and display_scale(2048, 100) == 0.5
    a, _ = _annotator(png, tmp_path)
    a.add_click(30, 20, True)
    a.on_key(KEY_TAB)
    a.add_click(10, 30, False)  # a negative click alone paints nothing
    view = AnnotatorView(a)
    pic = view.render()
    assert pic.shape == (40 * 9 + STATUS_HEIGHT, 60 * 9, 3) and pic.dtype == np.uint8
    b, g, r = pic[view.to_screen(10, 30)[::-1]]
    assert r > 200 and g < 60  # the negative click is drawn red
    inside = pic[view.to_screen(33, 20)[::-1]]  # object 1's tint differs from the plain image
    plain = cv2.cvtColor(a.display_image(), cv2.COLOR_GRAY2BGR)[20, 33]
    assert np.abs(inside.astype(int) - plain.astype(int)).max() > 20
    assert (pic[-STATUS_HEIGHT:] != 32).any()  # status text drawn


def test_real_predictor_gives_the_same_mask_as_predict(png, tmp_path):
    torch.manual_seed(0)
    predictor = Predictor(build_model("tiny_cnn", image_size=64))
    a = Annotator(predictor, png, tmp_path / "x.png", refine=True)
    a.add_click(30, 20, True)
    a.add_click(5, 5, False)
    ref = Predictor(predictor.model)
    ref.set_image(png.array, preset="none")
    m1, _, low = ref.predict(np.array([[30, 20]]), np.array([1]))
    masks, _, _ = ref.predict(np.array([[30, 20], [5, 5]]), np.array([1, 0]), mask_input=low)
    np.testing.assert_array_equal(a.labels == 1, masks[0])


def test_default_output_names(png, ct):
    assert default_output(png) == Path(png.path).parent / "img_labels.png"
    assert default_output(ct) == Path(ct.path).parent / "ct_labels.nii.gz"


def test_cli_without_display_is_one_line_error(png, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    code = run_click(cli, ["annotate", str(png.path)], prog_name="synthfm")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no display" in err[0]


def test_rgb_images_work_and_save_as_png(tmp_path):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[5:25, 10:30] = (200, 60, 20)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    image = read_image(tmp_path / "rgb.png")
    a, _ = _annotator(image, tmp_path, out=tmp_path / "rgb_labels.png")
    assert a.display_image().shape == (30, 40, 3)
    a.add_click(20, 15, True)
    assert a.save()
    saved = cv2.imread(str(tmp_path / "rgb_labels.png"), cv2.IMREAD_UNCHANGED)
    assert saved.shape == (30, 40) and np.array_equal(saved, a.labels) and saved.max() == 1
    assert AnnotatorView(a).render().shape[2] == 3
