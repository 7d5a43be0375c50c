"""ClickUNet: shapes, prompt rasterisation, the SynthFM decode contract, checkpoints, training."""

import numpy as np
import pytest
import torch

from synthfm.modeling.click_unet import PROMPT_CHANNELS, ClickUNet, rasterise_prompts


def tiny_model(size: int = 64) -> ClickUNet:
    torch.manual_seed(0)
    return ClickUNet(image_size=size, widths=(4, 8, 16, 16), depths=(1, 1, 1), attention_blocks=1,
                     num_heads=2).eval()


def test_rasterised_clicks_peak_at_the_click_and_respect_labels():
    coords = torch.tensor([[[10.0, 30.0], [50.0, 6.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, 0, -1]])
    maps = rasterise_prompts(16, 4.0, 1, torch.device("cpu"), coords, labels)
    assert maps.shape == (1, PROMPT_CHANNELS, 16, 16)
    pos, neg = maps[0, 0], maps[0, 1]
    assert divmod(int(pos.argmax()), 16) == (30 // 4, 10 // 4)
    assert divmod(int(neg.argmax()), 16) == (6 // 4, 50 // 4)
    assert float(pos.max()) > 0.8 and float(neg.max()) > 0.8
    # the padding point (label -1) leaves no trace near the origin
    assert float(pos[0, 0]) < 1e-3 and float(neg[0, 0]) < 1e-3
    assert float(maps[0, 2:].abs().sum()) == 0.0


def test_rasterised_box_covers_its_cells_and_mask_flag_is_per_row():
    boxes = torch.tensor([[8.0, 8.0, 24.0, 16.0], [0.0, 0.0, 0.0, 0.0]])
    masks = torch.full((2, 1, 8, 8), 5.0)
    maps = rasterise_prompts(8, 4.0, 2, torch.device("cpu"), boxes=boxes, mask_inputs=masks,
                             mask_given=torch.tensor([True, False]))
    box = maps[0, 2]
    assert torch.allclose(box.sum(), torch.tensor(4.0 * 2.0))  # 16 x 8 px = 4 x 2 cells
    assert float(box[2, 2]) == 1.0 and float(box[0, 0]) == 0.0
    assert float(maps[1, 2].sum()) == 0.0
    assert torch.allclose(maps[0, 3], torch.sigmoid(torch.tensor(5.0)).expand(8, 8))
    assert float(maps[0, 4].min()) == 1.0 and float(maps[1, 3:].abs().sum()) == 0.0


def test_decode_contract_matches_synthfm():
    model = tiny_model()
    images = torch.rand(2, 3, 64, 64) * 255
    emb = model.encode(images)
    assert emb.shape == (2, model.embedding_channels, 16, 16)
    coords = torch.tensor([[[20.0, 20.0]], [[40.0, 10.0]]])
    labels = torch.ones(2, 1, dtype=torch.int64)
    with torch.no_grad():
        multi, iou3 = model.decode(emb, coords, labels, multimask_output=True)
        single, iou1 = model.decode(emb, coords, labels)
    assert multi.shape == (2, 3, 32, 32) and iou3.shape == (2, 3)
    assert single.shape == (2, 1, 32, 32) and iou1.shape == (2, 1)
    best = iou3.argmax(dim=1)
    for i in range(2):
        assert torch.equal(single[i, 0], multi[i, best[i]])
    assert float(iou3.min()) >= 0.0 and float(iou3.max()) <= 1.0
    # a previous output (S/2) is accepted as the mask input and changes the result
    with torch.no_grad():
        again, _ = model.decode(emb, coords, labels, mask_inputs=single)
    assert again.shape == single.shape and not torch.allclose(again, single)


def test_prompts_change_the_output_and_padding_is_ignored():
    model = tiny_model()
    emb = model.encode(torch.rand(1, 3, 64, 64) * 255)
    with torch.no_grad():
        a, _ = model.decode(emb, torch.tensor([[[10.0, 10.0]]]), torch.tensor([[1]]))
        b, _ = model.decode(emb, torch.tensor([[[50.0, 50.0]]]), torch.tensor([[1]]))
        c, _ = model.decode(emb, torch.tensor([[[10.0, 10.0], [33.0, 3.0]]]), torch.tensor([[1, -1]]))
    assert not torch.allclose(a, b)
    assert torch.allclose(a, c, atol=1e-6)


def test_zero_padding_hides_the_padded_area():
    model = tiny_model()
    images = torch.rand(1, 3, 64, 64) * 255
    noisy = images.clone()
    noisy[:, :, 48:, :] = torch.rand(1, 3, 16, 64) * 255
    a = model.encode(images, valid_hw=(48, 64))
    b = model.encode(noisy, valid_hw=(48, 64))
    assert torch.allclose(a, b)


def test_checkpoint_round_trip(tmp_path):
    from synthfm.weights.checkpoint import load_checkpoint, save_checkpoint
    from synthfm.modeling import build_model

    model = build_model("click_unet", image_size=64)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, metadata={"note": "x"})
    loaded, meta = load_checkpoint(path)
    assert meta["encoder"] == "click_unet" and isinstance(loaded, ClickUNet)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_a_few_training_steps_reduce_the_loss_on_one_batch():
    from disc_batch import one_disc_batch
    from synthfm.training.loop import compute_loss
    from synthfm.training.config import TrainConfig

    torch.manual_seed(0)
    model = tiny_model().train()
    batch = one_disc_batch()
    config = TrainConfig(bce_weight=1.0, iou_loss_weight=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss, _ = compute_loss(model, batch, config)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-5:]) < 0.75 * losses[0]


def test_predictor_api_with_click_unet():
    from synthfm.inference.predictor import Predictor

    predictor = Predictor(tiny_model())
    image = (np.random.default_rng(0).random((90, 120)) * 255).astype(np.uint8)
    predictor.set_image(image, preset="none")
    assert predictor.get_image_embedding().shape[-1] == 16
    masks, scores, low = predictor.predict(np.array([[60.0, 40.0]]), np.array([1]))
    assert masks.shape == (1, 90, 120) and scores.shape == (1,) and low.shape == (1, 32, 32)
    multi, mscores, mlow = predictor.predict(np.array([[60.0, 40.0]]), np.array([1]), multimask_output=True)
    assert multi.shape == (3, 90, 120)
    assert np.array_equal(masks[0], multi[int(np.argmax(mscores))])
    again, _, _ = predictor.predict(np.array([[60.0, 40.0]]), np.array([1]), mask_input=low)  # feedback
    assert again.shape == masks.shape
    state = predictor.get_image_state()
    predictor.set_image(np.zeros((50, 50), np.uint8), preset="none")
    predictor.set_image_state(state)
    back, _, _ = predictor.predict(np.array([[60.0, 40.0]]), np.array([1]))
    assert np.array_equal(back, masks)
    focused, _, _ = predictor.predict(np.array([[60.0, 40.0]]), np.array([1]), focus=True)
    assert focused.shape == masks.shape


def test_click_preset_run_resumes_exactly_and_records_trained_outputs(tmp_path, one_torch_thread):
    from resume_check import assert_stop_resume_exact

    from synthfm.training.config import preset_config, validate_config
    from synthfm.weights.checkpoint import read_metadata

    validate_config(preset_config("click"))

    def cfg(out):
        return preset_config("click", out=str(out), size=64, gen_size=96, epochs=1, images_per_epoch=8,
                             batch_size=2, prompts_per_image=2, val_images=2, workers=0, checkpoint_every=0,
                             warmup_steps=1, seed=3)

    a = assert_stop_resume_exact(cfg, tmp_path, stop_after_steps=2)
    meta = read_metadata(a / "best.safetensors")
    assert meta["encoder"] == "click_unet"
    assert meta["trained_outputs"] == {"multimask": True, "iou_scores": True, "mask_input": True}


def test_init_needs_the_same_architecture(tmp_path, one_torch_thread):
    from synthfm.errors import UserError
    from synthfm.training.config import preset_config
    from synthfm.training.loop import build_training_model
    from synthfm.weights.checkpoint import save_checkpoint
    from synthfm.modeling import build_model

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, build_model("click_unet", image_size=64))
    model = build_training_model(preset_config("click", size=128, init=str(path)))  # other size: fine
    assert model.image_size == 128
    with pytest.raises(UserError, match="click_unet model"):
        build_training_model(preset_config("small", init=str(path)))
