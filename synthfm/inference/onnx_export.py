"""Export a SynthFM model to ONNX and check the graphs against PyTorch with onnxruntime.

Two graphs (SAM's ONNX convention for the decoder, the same tensors as ``SynthFM.decode``):

``decoder.onnx`` (prompt encoder + mask decoder + mask post-processing), inputs:

* ``image_embeddings`` (1, 256, S/16, S/16) float32 (from ``encoder.onnx`` or ``SynthFM.encode``);
* ``point_coords`` (1, N, 2) float32, (x, y) in **model-input pixels** (the original pixel
  coordinates scaled by ``resized / original`` per axis, ``synthfm.inference.transforms.coords_to_model``);
* ``point_labels`` (1, N) float32: 1 positive, 0 negative, 2 / 3 the top-left / bottom-right
  corners of a box, -1 a padding point.  N is dynamic.  As in SAM, the caller appends the padding
  point ``(0, 0)`` with label -1 when there is no box (``SynthFM.decode`` does the same
  internally); :func:`prompt_inputs` builds both arrays exactly like ``Predictor.predict``;
* ``mask_input`` (1, 1, S/4, S/4) float32 logits and ``has_mask_input`` (1,) float32 (1 or 0);
* ``orig_im_size`` (2,) float32 (H, W) of the original image.

outputs: ``masks`` (1, C, H, W) float32 logits in the original image frame (threshold 0),
``scores`` (1, C) predicted IoU, ``low_res_logits`` (1, C, S/4, S/4); C = 3 for a ``multimask``
export, else 1.

``encoder.onnx`` (small encoders only; the official ViT encoders are not exported), inputs
``image`` (1, 3, S, S) float32 in 0..255, the image resized so its longest side is S and padded
at the bottom/right (``synthfm.inference.transforms.image_to_model_input``), and ``input_size`` (2,) int64
(h, w) of the resized content; the graph normalises with the model's pixel mean/std and zeroes the
padding (as ``SynthFM.encode(..., valid_hw)``).  Output ``image_embeddings``.

Export uses PyTorch's TorchScript-based exporter (``dynamo=False``): it keeps the output size a
function of the ``orig_im_size`` *values*, which the ``torch.export`` path cannot.
``export.json`` records the files, their checksums and the verification (max abs difference
between onnxruntime and PyTorch for every output on several prompt sets and image shapes).

Outputs the checkpoint did not train (:mod:`synthfm.weights.outputs`) are marked: ``export.json``
and the ``decoder.onnx`` metadata (``custom_metadata_map["synthfm.trained_outputs"]``, JSON) say
which of ``multimask``, ``iou_scores`` (the ``scores`` output) and ``mask_input`` were trained;
the ``export-onnx`` command refuses ``--multimask`` for a checkpoint that did not train it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthfm.io.atomic import atomic_output, atomic_write_bytes
from synthfm.errors import UserError
from synthfm.modeling.batched_decoder import decode_per_embedding
from synthfm.modeling.registry import is_whole_model

ONNX_OPSET = 17
DECODER_FILE = "decoder.onnx"
ENCODER_FILE = "encoder.onnx"
REPORT_FILE = "export.json"
OUTPUT_FILES = (DECODER_FILE, ENCODER_FILE, REPORT_FILE)
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DECODER_OUTPUTS = ("masks", "scores", "low_res_logits")
TRAINED_OUTPUTS_KEY = "synthfm.trained_outputs"  # decoder.onnx metadata_props key
ENCODER_INPUTS = ("image", "input_size")
ENCODER_OUTPUTS = ("image_embeddings",)
# Tolerance the verification must meet for the export to be reported as verified.
VERIFY_TOLERANCE = 1e-3


def require_onnx() -> None:
    """UserError with the install hint when onnx / onnxruntime are missing."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"ONNX export needs {' and '.join(missing)}: pip install 'synthfm[onnx]'")


def logits_to_original_graph(low_res: torch.Tensor, orig_im_size: torch.Tensor, s: int) -> torch.Tensor:
    """SAM's post-processing in traceable ops: bilinear to S x S, crop the resized content, bilinear to (H, W)."""
    up = F.interpolate(low_res, size=(s, s), mode="bilinear", align_corners=False)
    size = orig_im_size.to(torch.float32)
    resized = torch.floor(size * (s / torch.max(size)) + 0.5).to(torch.int64)
    up = up[..., : resized[0], : resized[1]]
    hw = orig_im_size.to(torch.int64)
    return F.interpolate(up, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)


class DecoderGraph(nn.Module):
    """SynthFM's prompt encoder + mask decoder + post-processing in SAM's ONNX form (module docstring)."""

    def __init__(self, model, multimask: bool = False) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.image_size = int(model.image_size)
        self.multimask = bool(multimask)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        # Same maths as PromptEncoder._embed_points / _embed_boxes, written with masks instead
        # of boolean indexing so that it traces into a static graph.
        embedding = pe.pe_layer._pe_encoding((coords + 0.5) / self.image_size)
        lab = labels.unsqueeze(-1)
        embedding = embedding * (lab != -1).to(embedding.dtype)
        embedding = embedding + pe.not_a_point_embed.weight * (lab == -1).to(embedding.dtype)
        for i in range(pe.num_point_embeddings):
            embedding = embedding + pe.point_embeddings[i].weight * (lab == i).to(embedding.dtype)
        return embedding

    def _embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        has = has_mask_input.reshape(-1, 1, 1, 1)
        return has * pe.mask_downscaling(mask_input) + (1 - has) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_mask(mask_input, has_mask_input)
        low_res, scores = decode_per_embedding(
            self.mask_decoder, image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
            multimask_output=self.multimask,
        )
        return logits_to_original_graph(low_res, orig_im_size, self.image_size), scores, low_res


class EncoderGraph(nn.Module):
    """Normalisation + padding mask + image encoder: (1,3,S,S) 0..255 and (h, w) -> embeddings."""

    def __init__(self, model, image_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder if image_encoder is None else image_encoder
        self.image_size = int(model.image_size)
        self.register_buffer("pixel_mean", model.pixel_mean.detach().clone().view(1, 3, 1, 1))
        self.register_buffer("pixel_std", model.pixel_std.detach().clone().view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor, input_size: torch.Tensor) -> torch.Tensor:
        x = (image - self.pixel_mean) / self.pixel_std
        positions = torch.arange(self.image_size, device=image.device)
        rows = (positions < input_size[0]).to(x.dtype).reshape(1, 1, -1, 1)
        cols = (positions < input_size[1]).to(x.dtype).reshape(1, 1, 1, -1)
        return self.image_encoder(x * rows * cols)


# ------------------------------------------------------------------------ caller-side helpers


def prompt_inputs(
    coords: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None, original_hw: tuple[int, int], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``point_coords`` (1, M, 2) and ``point_labels`` (1, M) float32 for ``decoder.onnx``.

    coords (N, 2) (x, y) pixels of the original image, labels (N,) 1/0, box (4,) (x0, y0, x1, y1)
    pixels or None.  Like ``Predictor.predict``: the box becomes two points labelled 2 and 3 after
    the clicks; without a box a padding point (label -1) is appended.
    """
    from synthfm.inference.transforms import box_to_model, coords_to_model

    pts = np.zeros((0, 2), np.float32) if coords is None else np.asarray(coords, np.float64).reshape(-1, 2)
    lab = np.zeros((0,), np.float32) if labels is None else np.asarray(labels, np.float32).reshape(-1)
    pts = coords_to_model(pts, original_hw, size) if len(pts) else pts.astype(np.float32)
    if box is not None:
        corners = box_to_model(np.asarray(box, np.float64).reshape(4), original_hw, size).reshape(2, 2)
        pts = np.concatenate([pts, corners]).astype(np.float32)
        lab = np.concatenate([lab, np.array([2, 3], np.float32)])
    else:
        pts = np.concatenate([pts, np.zeros((1, 2), np.float32)])
        lab = np.concatenate([lab, np.array([-1], np.float32)])
    return pts[None].astype(np.float32), lab[None].astype(np.float32)


def image_inputs(image8: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (1, 3, S, S) float32 and ``input_size`` (2,) int64 for ``encoder.onnx`` from an
    8-bit (H, W) or (H, W, 3) image (apply an intensity preset first, see ``synthfm.io.intensity``)."""
    from synthfm.inference.transforms import image_to_model_input

    tensor, hw = image_to_model_input(image8, size)
    return tensor.numpy(), np.asarray(hw, dtype=np.int64)


# ---------------------------------------------------------------------------------- export


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _export(module: nn.Module, args: tuple, path: Path, inputs, outputs, dynamic_axes, opset: int,
            properties: dict[str, str] | None = None) -> None:
    with atomic_output(path) as tmp, warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of torch.export, which cannot keep the
        # output size a function of orig_im_size's values; its warnings are not the user's business
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(tmp), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)
        if properties:
            import onnx

            graph = onnx.load(str(tmp))
            onnx.helper.set_model_props(graph, properties)
            onnx.save(graph, str(tmp))


def check_output_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """Create ``out_dir`` if needed; UserError if it is a file or would lose existing exports."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out is a file, not a folder: {out}")
    if not out.exists():
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise UserError(f"parent folder of --out does not exist: {parent}")
    elif not overwrite:
        existing = [name for name in OUTPUT_FILES if (out / name).exists()]
        if existing:
            raise UserError(f"{out} already holds {', '.join(existing)} (pass --overwrite to replace)")
    return out


def export_onnx(
    model,
    out_dir: str | Path,
    multimask: bool = False,
    include_encoder: bool = True,
    opset: int = ONNX_OPSET,
    verify: bool = True,
    overwrite: bool = False,
    metadata: dict | None = None,
    trained_outputs=None,
) -> dict:
    """Write ``decoder.onnx`` (+ ``encoder.onnx`` for small encoders) and ``export.json`` to ``out_dir``.

    model: a SynthFM (CPU, float32).  include_encoder: also export the image encoder (skipped,
    with the reason in the report, for the official ``vit_*`` encoders).  verify: run both graphs
    with onnxruntime and record the max abs difference to PyTorch.  trained_outputs: the model's
    :class:`~synthfm.weights.outputs.TrainedOutputs` (recorded in export.json and decoder.onnx;
    None = not checked).  Returns the report dict.
    """
    require_onnx()
    from synthfm import __version__
    from synthfm.modeling import ENCODERS

    out = check_output_dir(out_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").float().eval()
    s, e = model.image_size, model.embedding_size
    channels, mask_side = _embedding_channels(model), _mask_side(model)
    report: dict = {
        "synthfm_version": __version__,
        "encoder": model.encoder_name,
        "image_size": s,
        "multimask": bool(multimask),
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=False), torch {torch.__version__}",
        "pixel_mean": [float(v) for v in model.pixel_mean],
        "pixel_std": [float(v) for v in model.pixel_std],
        "source": dict(metadata or {}),
        "trained_outputs": None if trained_outputs is None else {**trained_outputs.as_dict(), "source": trained_outputs.source},
        "files": {},
    }
    properties = None if trained_outputs is None else {TRAINED_OUTPUTS_KEY: json.dumps(report["trained_outputs"])}
    decoder = _decoder_graph(model, multimask).eval()
    example = (
        torch.zeros(1, channels, e, e),
        torch.tensor([[[s / 2, s / 2], [0.0, 0.0]]], dtype=torch.float32),
        torch.tensor([[1.0, -1.0]]),
        torch.zeros(1, 1, mask_side, mask_side),
        torch.zeros(1),
        torch.tensor([float(s), float(s)]),
    )
    dynamic = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"},
               "masks": {2: "height", 3: "width"}}
    with torch.no_grad():
        _export(decoder, example, out / DECODER_FILE, DECODER_INPUTS, DECODER_OUTPUTS, dynamic, opset, properties)
    report["files"]["decoder"] = _file_entry(out / DECODER_FILE, DECODER_INPUTS, DECODER_OUTPUTS)

    official = ENCODERS[model.encoder_name].official
    if include_encoder and not official:
        encoder = _encoder_graph(model).eval()
        with torch.no_grad():
            _export(encoder, (torch.zeros(1, 3, s, s), torch.tensor([s, s], dtype=torch.int64)), out / ENCODER_FILE,
                    ENCODER_INPUTS, ENCODER_OUTPUTS, None, opset)
        report["files"]["encoder"] = _file_entry(out / ENCODER_FILE, ENCODER_INPUTS, ENCODER_OUTPUTS)
    else:
        report["files"]["encoder"] = None
        report["encoder_skipped"] = ("official SAM ViT encoders are not exported (use SAM's own tools)"
                                     if official else "not requested")
        if not official and (out / ENCODER_FILE).exists():
            (out / ENCODER_FILE).unlink()  # a stale encoder from an earlier export would not match
    if verify:
        report["verification"] = verify_export(model, out, multimask)
    atomic_write_bytes(out / REPORT_FILE, (json.dumps(report, indent=2) + "\n").encode())
    return report


def _is_click_unet(model) -> bool:
    return is_whole_model(getattr(model, "encoder_name", None))


def _embedding_channels(model) -> int:
    return int(model.embedding_channels) if _is_click_unet(model) else 256


def _mask_side(model) -> int:
    return int(model.mask_input_size) if _is_click_unet(model) else 4 * int(model.embedding_size)


def _decoder_graph(model, multimask: bool) -> nn.Module:
    if _is_click_unet(model):
        from synthfm.inference.onnx_click_unet import ClickUNetDecoderGraph

        return ClickUNetDecoderGraph(model, multimask)
    return DecoderGraph(model, multimask)


def _encoder_graph(model) -> nn.Module:
    if _is_click_unet(model):
        from synthfm.inference.onnx_click_unet import ClickUNetStem

        return EncoderGraph(model, image_encoder=ClickUNetStem(model))
    return EncoderGraph(model)


def _file_entry(path: Path, inputs, outputs) -> dict:
    import onnx

    onnx.checker.check_model(str(path))
    return {"path": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path),
            "inputs": list(inputs), "outputs": list(outputs)}


# ---------------------------------------------------------------------------- verification


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _decoder_cases(size: int) -> list[dict]:
    """Prompt sets and image shapes that exercise every input: 1 and 4 clicks, a box, a mask."""
    return [
        {"name": "1 click", "coords": [[0.4, 0.5]], "labels": [1], "box": None, "mask": False, "hw": (size, size)},
        {"name": "3 clicks + box, wide image", "coords": [[0.3, 0.4], [0.6, 0.5], [0.1, 0.1]], "labels": [1, 1, 0],
         "box": [0.2, 0.2, 0.7, 0.8], "mask": False, "hw": (size // 2 + 3, 2 * size + 5)},
        {"name": "2 clicks + mask input, tall image", "coords": [[0.5, 0.5], [0.9, 0.2]], "labels": [1, 0], "box": None,
         "mask": True, "hw": (3 * size // 2 + 1, size // 3)},
        {"name": "box only", "coords": None, "labels": None, "box": [0.1, 0.3, 0.6, 0.9], "mask": False,
         "hw": (size + 17, size - 5)},
    ]


def verify_export(model, out_dir: str | Path, multimask: bool = False, seed: int = 0) -> dict:
    """Compare onnxruntime with PyTorch on the exported graphs; returns max abs differences.

    Decoder: random embeddings (and mask input) for the cases of ``_decoder_cases``; PyTorch
    reference = ``SynthFM.decode`` for the low-res logits and scores, and ``logits_to_original``
    (what ``Predictor.predict`` returns) for the full-size masks.  Encoder: a random image with
    padding vs ``SynthFM.encode(..., valid_hw)``.
    """
    from synthfm.inference.transforms import logits_to_original, preprocess_shape

    out = Path(out_dir)
    gen = torch.Generator().manual_seed(seed)
    s, e = model.image_size, model.embedding_size
    channels, mask_side = _embedding_channels(model), _mask_side(model)
    session = _session(out / DECODER_FILE)
    cases = []
    worst = {"masks": 0.0, "scores": 0.0, "low_res_logits": 0.0}
    for case in _decoder_cases(s):
        h, w = case["hw"]
        emb = torch.randn(1, channels, e, e, generator=gen)
        mask_in = torch.randn(1, 1, mask_side, mask_side, generator=gen) * 4 if case["mask"] else None
        coords = None if case["coords"] is None else np.asarray(case["coords"]) * [w - 1, h - 1]
        labels = None if case["labels"] is None else np.asarray(case["labels"])
        box = None if case["box"] is None else np.asarray(case["box"]) * [w - 1, h - 1, w - 1, h - 1]
        pc, pl = prompt_inputs(coords, labels, box, (h, w), s)
        feeds = {
            "image_embeddings": emb.numpy(), "point_coords": pc, "point_labels": pl,
            "mask_input": (mask_in if mask_in is not None else torch.zeros(1, 1, mask_side, mask_side)).numpy(),
            "has_mask_input": np.array([1.0 if mask_in is not None else 0.0], np.float32),
            "orig_im_size": np.array([h, w], np.float32),
        }
        masks, scores, low_res = session.run(list(DECODER_OUTPUTS), feeds)
        with torch.no_grad():
            ref_low, ref_scores = _torch_decode(model, emb, coords, labels, box, mask_in, (h, w), multimask)
        ref_masks = logits_to_original(ref_low[0], preprocess_shape(h, w, s), (h, w), s)
        diffs = {
            "masks": float(np.abs(masks[0] - ref_masks).max()),
            "scores": float(np.abs(scores - ref_scores.numpy()).max()),
            "low_res_logits": float(np.abs(low_res - ref_low.numpy()).max()),
        }
        agreement = float(((masks[0] > 0) == (ref_masks > 0)).mean())
        cases.append({"name": case["name"], "num_points": int(pc.shape[1]), "orig_im_size": [h, w],
                      "masks_shape": list(masks.shape), "max_abs_diff": diffs, "mask_agreement": agreement})
        worst = {k: max(worst[k], diffs[k]) for k in worst}
    result = {"onnxruntime": _ort_version(), "decoder": {"cases": cases, "max_abs_diff": worst}}
    if (out / ENCODER_FILE).exists():
        img = torch.rand(1, 3, s, s, generator=gen) * 255
        hw = (s, int(s * 0.7))
        img[:, :, :, hw[1]:] = 0
        emb_onnx = _session(out / ENCODER_FILE).run(None, {"image": img.numpy(), "input_size": np.array(hw, np.int64)})[0]
        with torch.no_grad():
            ref = model.encode(img, valid_hw=hw).numpy()
        result["encoder"] = {"max_abs_diff": float(np.abs(emb_onnx - ref).max()), "max_abs_value": float(np.abs(ref).max())}
    numbers = list(worst.values()) + ([result["encoder"]["max_abs_diff"]] if "encoder" in result else [])
    result["max_abs_diff"] = max(numbers)
    result["tolerance"] = VERIFY_TOLERANCE
    result["passed"] = bool(result["max_abs_diff"] <= VERIFY_TOLERANCE)
    return result


def _torch_decode(model, emb, coords, labels, box, mask_in, hw, multimask):
    """SynthFM.decode with the prompts in model-input pixels, as Predictor.predict builds them."""
    from synthfm.inference.transforms import box_to_model, coords_to_model

    s = model.image_size
    pc = pl = bx = None
    if coords is not None:
        pc = torch.from_numpy(coords_to_model(np.asarray(coords, np.float64), hw, s))[None]
        pl = torch.from_numpy(np.asarray(labels, np.int64))[None]
    if box is not None:
        bx = torch.from_numpy(box_to_model(np.asarray(box, np.float64), hw, s))[None]
    return model.decode(emb, point_coords=pc, point_labels=pl, boxes=bx, mask_inputs=mask_in, multimask_output=multimask)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
