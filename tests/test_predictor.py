"""Predictor: SAM-equivalent geometry, one encoder pass per image, dtype handling, clear errors."""

import numpy as np
import pytest
import torch
from segment_anything.modeling import Sam
from segment_anything.predictor import SamPredictor

from synthfm.weights.checkpoint import save_checkpoint
from synthfm.errors import UserError
from synthfm.modeling import build_model
from synthfm.devices import resolve_device as check_device
from synthfm.inference.predictor import Predictor
from synthfm.weights import resolve_model
from synthfm.inference.transforms import logits_to_original

S = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("tiny_cnn", image_size=S).eval()


@pytest.fixture
def predictor(model):
    return Predictor(model)


def _count_encoder_calls(model) -> list:
    calls = []
    handle = model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def _disc_image(h=48, w=64, dtype=np.uint8) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    img = np.where((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 4) ** 2, 200, 30)
    return img.astype(dtype)


def _sam_reference(model) -> SamPredictor:
    """Plain segment_anything SamPredictor around the same modules."""
    if not hasattr(model.image_encoder, "img_size"):
        model.image_encoder.img_size = model.image_size  # SamPredictor reads it
    sam = Sam(
        image_encoder=model.image_encoder,
        prompt_encoder=model.prompt_encoder,
        mask_decoder=model.mask_decoder,
        pixel_mean=model.pixel_mean.tolist(),
        pixel_std=model.pixel_std.tolist(),
    ).eval()
    return SamPredictor(sam)


@pytest.mark.parametrize("hw", [(64, 64), (40, 64), (64, 24)])
def test_matches_sam_predictor_when_no_resize_is_needed(model, hw):
    """Longest side == S: same pixels in, so logits, scores and masks equal SamPredictor's
    (this covers padding, coordinate scaling, points + box + mask prompts and postprocessing)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
    ours = Predictor(model)
    ours.set_image(rgb, preset="none")
    ref = _sam_reference(model)
    ref.set_image(rgb)
    torch.testing.assert_close(ours.get_image_embedding(), ref.get_image_embedding(), atol=1e-5, rtol=1e-4)
    h, w = hw
    points = np.array([[w * 0.3, h * 0.4], [w * 0.7, h * 0.6]], np.float32)
    labels = np.array([1, 0])
    box = np.array([2, 3, w - 5, h - 4], np.float32)
    for kwargs in (
        dict(point_coords=points, point_labels=labels, multimask_output=False),
        dict(point_coords=points[:1], point_labels=labels[:1], multimask_output=True),
        dict(box=box, multimask_output=False),
        dict(point_coords=points, point_labels=labels, box=box, multimask_output=True),
    ):
        m1, s1, l1 = ours.predict(**kwargs)
        m2, s2, l2 = ref.predict(**kwargs)
        np.testing.assert_allclose(l1, l2, atol=1e-4)
        np.testing.assert_allclose(s1, s2, atol=1e-5)
        assert m1.shape == m2.shape == (l1.shape[0], h, w)
        logits = ref.predict(**kwargs, return_logits=True)[0]
        assert np.all((m1 == m2) | (np.abs(logits) < 1e-4))
    m1, _, l1 = ours.predict(points[:1], labels[:1], mask_input=l1[:1])
    m2, _, l2 = ref.predict(points[:1], labels[:1], mask_input=l2[:1], multimask_output=False)
    np.testing.assert_allclose(l1, l2, atol=1e-4)


def test_output_shapes_for_non_square_resized_input(predictor):
    img = _disc_image(150, 90)
    predictor.set_image(img)
    assert predictor.original_size == (150, 90) and predictor.input_size == (64, 38)
    masks, scores, low = predictor.predict(np.array([[30, 75]]), np.array([1]))
    assert masks.shape == (1, 150, 90) and masks.dtype == bool
    assert scores.shape == (1,) and scores.dtype == np.float32
    assert low.shape == (1, S // 4, S // 4) and low.dtype == np.float32
    np.testing.assert_array_equal(masks, logits_to_original(low, (64, 38), (150, 90), S) > 0)
    masks3, scores3, low3 = predictor.predict(np.array([[30, 75]]), np.array([1]), multimask_output=True)
    assert masks3.shape == (3, 150, 90) and scores3.shape == (3,) and low3.shape == (3, 16, 16)
    logits, _, _ = predictor.predict(np.array([[30, 75]]), np.array([1]), return_logits=True)
    assert logits.dtype == np.float32 and np.array_equal(logits > 0, masks)


def test_encoder_runs_once_per_image_not_per_click(model):
    calls, handle = _count_encoder_calls(model)
    try:
        p = Predictor(model)
        p.set_image(_disc_image())
        assert len(calls) == 1
        rng = np.random.default_rng(1)
        for _ in range(5):
            p.predict(rng.uniform(0, 40, (3, 2)), np.array([1, 0, 1]), multimask_output=bool(rng.integers(2)))
        p.predict(box=np.array([5, 5, 30, 30]))
        assert len(calls) == 1
        p.set_image(_disc_image(30, 20))
        assert len(calls) == 2
    finally:
        handle.remove()


@pytest.mark.parametrize(
    "image,preset",
    [
        (_disc_image(dtype=np.uint8), "auto"),
        (np.stack([_disc_image()] * 3, axis=2), "auto"),
        (_disc_image(dtype=np.uint16) * 100, "auto"),
        ((_disc_image().astype(np.int16) * 5 - 1024), "auto"),
        (_disc_image().astype(np.float32) / 255.0, "auto"),
        (_disc_image().astype(np.float64) * 3.3 - 7, "mr"),
        (_disc_image()[:, :, None], "none"),
        (np.dstack([np.stack([_disc_image()] * 3, axis=2), np.full((48, 64), 255, np.uint8)]), "none"),
    ],
)
def test_accepts_grey_rgb_16bit_and_float(predictor, image, preset):
    predictor.set_image(image, preset=preset)
    assert predictor.image_uint8.dtype == np.uint8
    masks, scores, _ = predictor.predict(np.array([[20, 24]]), np.array([1]))
    assert masks.shape == (1, 48, 64) and np.isfinite(scores).all()


def test_presets_change_what_the_model_sees(predictor):
    hu = np.linspace(-1000, 1000, 48 * 64).reshape(48, 64).astype(np.int16)
    predictor.set_image(hu, preset="soft_tissue")
    soft, emb_soft = predictor.image_uint8.copy(), predictor.get_image_embedding().clone()
    assert predictor.window.name == "soft_tissue"
    predictor.set_image(hu, preset="lung")
    assert predictor.window.name == "lung"
    assert not np.array_equal(soft, predictor.image_uint8)
    assert not torch.equal(emb_soft, predictor.get_image_embedding())
    predictor.set_image(hu)  # auto: HU-like -> soft tissue
    np.testing.assert_array_equal(predictor.image_uint8, soft)
    predictor.set_image(hu, preset="-100,300")
    assert predictor.window.name == "custom"


def test_prompt_errors(predictor):
    with pytest.raises(RuntimeError, match="set_image"):
        Predictor(predictor.model).predict(np.array([[1, 1]]), np.array([1]))
    predictor.set_image(_disc_image())  # 64 wide, 48 high
    with pytest.raises(UserError, match=r"outside the image \(64 x 48"):
        predictor.predict(np.array([[64.6, 10]]), np.array([1]))
    with pytest.raises(UserError, match="outside"):
        predictor.predict(np.array([[10, -1]]), np.array([1]))
    predictor.predict(np.array([[63, 47]]), np.array([1]))  # last pixel is fine
    with pytest.raises(UserError, match="labels"):
        predictor.predict(np.array([[1, 1]]), np.array([2]))
    with pytest.raises(UserError, match="N labels"):
        predictor.predict(np.array([[1, 1], [2, 2]]), np.array([1]))
    with pytest.raises(UserError, match="together"):
        predictor.predict(np.array([[1, 1]]))
    with pytest.raises(UserError, match="at least one"):
        predictor.predict()
    with pytest.raises(UserError, match="finite"):
        predictor.predict(np.array([[np.nan, 1]]), np.array([1]))
    with pytest.raises(UserError, match="x0 <= x1"):
        predictor.predict(box=np.array([10, 10, 5, 20]))
    with pytest.raises(UserError, match="outside"):
        predictor.predict(box=np.array([0, 0, 100, 20]))
    with pytest.raises(UserError, match="mask_input"):
        predictor.predict(np.array([[1, 1]]), np.array([1]), mask_input=np.zeros((1, 8, 8)))
    with pytest.raises(UserError, match="grey"):
        predictor.set_image(np.zeros((8, 8, 5), np.uint8))
    predictor.reset_image()
    assert not predictor.is_image_set


def test_from_checkpoint_gives_the_same_predictions(model, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, metadata={"note": "test", "trained_outputs": {"multimask": True, "iou_scores": True}})
    loaded = Predictor.from_checkpoint(path)
    assert loaded.metadata["note"] == "test" and loaded.image_size == S
    direct = Predictor(model)
    img = _disc_image(70, 50)
    for p in (loaded, direct):
        p.set_image(img)
    a = loaded.predict(np.array([[20, 30]]), np.array([1]), multimask_output=True)
    b = direct.predict(np.array([[20, 30]]), np.array([1]), multimask_output=True)
    np.testing.assert_allclose(a[2], b[2], atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)


def test_resolve_model(tmp_path, monkeypatch):
    import synthfm.weights.source as pred

    monkeypatch.setattr(pred, "DEFAULT_MODEL_PATH", tmp_path / "absent.safetensors")
    with pytest.raises(UserError, match="no default model is shipped yet; pass --model PATH"):
        resolve_model("default")
    shipped = tmp_path / "shipped.safetensors"
    shipped.write_bytes(b"x")
    monkeypatch.setattr(pred, "DEFAULT_MODEL_PATH", shipped)
    assert resolve_model("default") == shipped
    with pytest.raises(UserError, match="not found"):
        resolve_model(tmp_path / "nope.safetensors")
    with pytest.raises(UserError, match="folder"):
        resolve_model(tmp_path)
    with pytest.raises(UserError):
        Predictor.from_checkpoint(tmp_path / "nope.safetensors")


def test_check_device():
    assert check_device("cpu").type == "cpu"
    with pytest.raises(UserError):
        check_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            check_device("cuda")
