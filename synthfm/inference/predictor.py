"""SamPredictor-like inference: encode an image once, then answer clicks cheaply.

    predictor = Predictor.from_checkpoint("model.safetensors")
    predictor.set_image(ct_slice_in_hu, preset="soft_tissue")     # one encoder pass
    masks, scores, low_res = predictor.predict(np.array([[120, 88]]), np.array([1]))

Everything the caller sees is in the pixel frame of the image given to ``set_image``: clicks
``(x, y)`` = (column, row) pixels, boxes ``(x0, y0, x1, y1)``, masks (C, H, W).  Internally the image
goes through an intensity preset (``synthfm.io.intensity``) to 8-bit, then SAM's longest-side resize
and bottom/right padding to the model's S x S input (``synthfm.inference.transforms``); the padding is 0
after normalisation, as in SAM.  ``predict`` runs only the prompt encoder and mask decoder on the
cached embedding, then maps the S/4 logits back to the image frame like ``SamPredictor``.
With ``multimask_output=True`` the three masks come in SAM's decoder order (not sorted by score);
pick with the returned scores.

Outputs a checkpoint did not train (``predictor.trained_outputs``, see :mod:`synthfm.weights.outputs`)
are refused or marked: ``multimask_output=True`` and ``mask_input`` raise
:class:`~synthfm.weights.outputs.UntrainedOutputError`, and untrained IoU scores come back as NaN,
unless the predictor is built with ``allow_untrained=True`` (then the raw values are returned).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthfm.devices import resolve_device
from synthfm.errors import UserError
from synthfm.io.intensity import IntensityWindow, resolve_window
from synthfm.prompts import check_prompts_inside
from synthfm.inference.transforms import box_to_model, coords_to_model, image_to_model_input, logits_to_original
from synthfm.weights.outputs import TrainedOutputs, all_trained, trained_outputs_of

MASK_THRESHOLD = 0.0


@dataclass(frozen=True)
class ImageState:
    """What :meth:`Predictor.set_image` computes for one image: enough to answer clicks on it again.

    embedding: (1, 256, S/16, S/16) tensor on the predictor's device; original_size (H, W);
    input_size (h, w) of the resized image inside the S x S input; window: the resolved intensity
    window; image_uint8: the 8-bit image the model saw.
    """

    embedding: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    window: IntensityWindow | None = None
    image_uint8: np.ndarray | None = None


def _as_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]  # drop alpha
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise UserError(f"image must be grey (H, W) or RGB (H, W, 3), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UserError(f"image is empty (shape {arr.shape})")
    if arr.dtype.kind not in "biuf":
        raise UserError(f"image must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).any():
        raise UserError("image has no finite pixel value (all NaN or Inf)")
    return arr


class Predictor:
    """Click-to-mask inference for one image at a time (see the module docstring).

    Attributes after ``set_image``: ``original_size`` (H, W), ``input_size`` (h, w) of the resized
    image inside the S x S input, ``window`` (the resolved :class:`IntensityWindow`), ``image_uint8``
    (the 8-bit image the model saw, (H, W) or (H, W, 3)).  ``metadata`` holds the checkpoint's
    metadata when built with :meth:`from_checkpoint`.  ``trained_outputs``: which outputs the model
    was trained to give (from the checkpoint; "not checked", i.e. all allowed, for a model given
    directly); ``allow_untrained``: return untrained outputs anyway, unmarked.
    """

    def __init__(self, model, device: str | torch.device = "cpu", focus: bool = False, flip_tta: bool = False,
                 trained_outputs: TrainedOutputs | None = None, allow_untrained: bool = False,
                 clicked_components: bool = False) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.metadata: dict = {}
        self.focus = bool(focus)
        self.flip_tta = bool(flip_tta)
        self.clicked_components = bool(clicked_components)
        self.trained_outputs = trained_outputs if trained_outputs is not None else all_trained("not checked")
        self.allow_untrained = bool(allow_untrained)
        self.reset_image()

    @classmethod
    def from_checkpoint(
        cls, path_or_default: str | Path = "default", sam_checkpoint: str | None = None,
        device: str | torch.device = "cpu", encoder: str | None = None, allow_untrained: bool = False,
    ) -> "Predictor":
        """A Predictor for any model :func:`synthfm.weights.load_model` knows: ``"default"`` (the
        shipped model), a synthfm checkpoint path, or ``"sam:vit_b"`` etc. with ``sam_checkpoint``.

        ``sam_checkpoint`` is also needed when a synthfm checkpoint references an official SAM encoder.
        The checkpoint's ``inference`` metadata (e.g. ``{"focus": true, "flip_tta": false}``, chosen
        when the model was shipped) sets the predictor's defaults; change ``predictor.focus``,
        ``predictor.flip_tta``, ``predictor.clicked_components`` or ``predictor.single_mask`` to override.  Its
        ``trained_outputs`` (or, for older checkpoints, its ``train_config``) decides which outputs
        are refused or marked (module docstring); ``allow_untrained=True`` turns that off.
        """
        from synthfm.weights import load_model

        model, metadata = load_model(path_or_default, sam_checkpoint=sam_checkpoint, device=device, encoder=encoder)
        inference = metadata.get("inference") if isinstance(metadata, dict) else None
        inference = inference if isinstance(inference, dict) else {}
        predictor = cls(model, model_device(model), focus=bool(inference.get("focus", False)),
                        flip_tta=bool(inference.get("flip_tta", False)), trained_outputs=trained_outputs_of(metadata),
                        allow_untrained=allow_untrained,
                        clicked_components=bool(inference.get("clicked_components", False)))
        predictor.metadata = dict(metadata)
        return predictor

    @property
    def single_mask(self) -> str | None:
        """How one mask is made from a click_unet's candidates (``"best"`` or ``"iou_blend"``,
        :mod:`synthfm.modeling.single_mask`; the checkpoint's ``inference.single_mask`` sets it);
        None for models with their own single-mask output (SAM's decoder)."""
        return getattr(self.model, "single_mask_rule", None)

    @single_mask.setter
    def single_mask(self, rule: str) -> None:
        from synthfm.modeling.single_mask import check_rule

        if not hasattr(self.model, "single_mask_rule"):
            raise UserError(f"this model ({getattr(self.model, 'encoder_name', type(self.model).__name__)}) has its own single-mask output; single_mask cannot be set")
        try:
            self.model.single_mask_rule = check_rule(str(rule))
        except ValueError as exc:
            raise UserError(str(exc)) from None

    @property
    def image_size(self) -> int:
        """S, the model's square input side."""
        return int(self.model.image_size)

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self._features: torch.Tensor | None = None
        self._mirrored_features: torch.Tensor | None = None  # flip TTA's embedding, made on first use
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.window: IntensityWindow | None = None
        self.image_uint8: np.ndarray | None = None

    def set_image(
        self,
        image: np.ndarray,
        preset: str | tuple[float, float] | IntensityWindow = "auto",
        modality: str | None = None,
    ) -> None:
        """Encode ``image`` once; later :meth:`predict` calls reuse the embedding.

        image: (H, W) grey or (H, W, 3) RGB; uint8, uint16, int16, float...  preset: ``"auto"``,
        ``"none"``, a CT window name, ``"L,W"``, ``"mr"``, ``"us"`` or a resolved window (e.g. one
        computed on a whole volume; see ``synthfm.io.intensity``).  modality: a hint for ``"auto"``
        (``"CT"``, ``"MR"``, ``"US"``).
        """
        arr = _as_image(image)
        window = resolve_window(arr, preset, modality)
        image8 = window.apply(arr)
        tensor, resized_hw = image_to_model_input(image8, self.image_size)
        self.reset_image()
        with torch.inference_mode():
            features = self.model.encode(tensor.to(self.device), valid_hw=resized_hw)
        self._features = features
        self.original_size = (int(arr.shape[0]), int(arr.shape[1]))
        self.input_size = resized_hw
        self.window = window
        self.image_uint8 = image8

    def get_image_embedding(self) -> torch.Tensor:
        """The cached embedding: (1, 256, S/16, S/16) for SynthFM, (1, C, S/4, S/4) for click_unet."""
        if self._features is None:
            raise RuntimeError("call set_image(...) before get_image_embedding()")
        return self._features

    def get_image_state(self) -> ImageState:
        """The current image's embedding and geometry, to restore later with :meth:`set_image_state`
        (e.g. a cache of encoded slices: switching back to a slice costs no encoder pass)."""
        if self._features is None:
            raise RuntimeError("call set_image(...) before get_image_state()")
        return ImageState(self._features, self.original_size, self.input_size, self.window, self.image_uint8)

    def set_image_state(self, state: ImageState) -> None:
        """Make ``state`` (from :meth:`get_image_state`, or an embedding computed elsewhere) the current image."""
        emb = state.embedding
        side = int(getattr(self.model, "embedding_size", self.image_size // 16))
        if not isinstance(emb, torch.Tensor) or emb.ndim != 4 or emb.shape[0] != 1 or tuple(emb.shape[2:]) != (side, side):
            shape = tuple(emb.shape) if hasattr(emb, "shape") else type(emb).__name__
            raise ValueError(f"embedding must be a (1, C, {side}, {side}) tensor for this model, got {shape}")
        self._features = emb.to(self.device)
        self._mirrored_features = None
        self.original_size = (int(state.original_size[0]), int(state.original_size[1]))
        self.input_size = (int(state.input_size[0]), int(state.input_size[1]))
        self.window = state.window
        self.image_uint8 = state.image_uint8

    def is_current(self, state: ImageState) -> bool:
        """Whether ``state`` is the image the predictor answers clicks on now (no copy is compared)."""
        return self._features is not None and self._features is state.embedding

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = False,
        return_logits: bool = False,
        focus: bool | None = None,
        flip_tta: bool | None = None,
        clicked_components: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for the given prompts on the current image.

        point_coords: (N, 2) (x, y) pixels of the image given to set_image; point_labels: (N,)
        1 = positive, 0 = negative.  box: (4,) (x0, y0, x1, y1) pixels.  mask_input: (1, S/4, S/4)
        logits, e.g. a previous ``low_res_logits[i:i+1]``.  At least one prompt is needed.
        Returns ``(masks (C, H, W) bool, scores (C,) float32, low_res_logits (C, S/4, S/4) float32)``,
        C = 3 with ``multimask_output`` else 1; ``return_logits=True`` gives float32 logits instead
        of bool masks (threshold 0).  Clicks or a box outside the image raise UserError.
        Untrained outputs (``self.trained_outputs``): ``multimask_output=True`` or ``mask_input``
        raise UntrainedOutputError and the scores are NaN, unless ``self.allow_untrained``.
        focus (None = the predictor's ``focus`` attribute): for a single mask from clicks, re-run on
        a crop around the first prediction (:mod:`synthfm.inference.focus`) and return that result.
        flip_tta (None = the predictor's ``flip_tta`` attribute): for a single mask without a mask
        input, average with the left-right mirrored image's prediction (:mod:`synthfm.inference.flip_tta`);
        the returned ``low_res_logits`` stay those of the plain pass (they are in its model frame).
        clicked_components (None = the predictor's attribute): drop the pieces of each mask that no
        positive click is on (:mod:`synthfm.inference.clicked_components`); ``low_res_logits`` unchanged.
        """
        if self._features is None:
            raise RuntimeError("call set_image(...) before predict(...)")
        self._check_trained(bool(multimask_output), mask_input is not None)
        coords_t, labels_t = self._points_to_model(point_coords, point_labels)
        box_t = self._box_to_model(box)
        mask_t = self._mask_input(mask_input)
        if coords_t is None and box_t is None and mask_t is None:
            raise UserError("give at least one click, a box or a mask input")
        low_res_np, scores, logits = self._decode(self._features, self.input_size, coords_t, labels_t, box_t,
                                                  mask_t, multimask_output)
        if (self.flip_tta if flip_tta is None else flip_tta) and logits.shape[0] == 1 and mask_t is None \
                and self.image_uint8 is not None:
            logits, scores = self._flip_tta(logits, scores, point_coords, point_labels, box)
        if (self.focus if focus is None else focus) and logits.shape[0] == 1 and box is None:
            from synthfm.inference.focus import focused_logits

            refined = focused_logits(self.model, self.image_uint8, logits[0], point_coords, point_labels, self.device)
            if refined is not None:
                logits = refined[0][None]
                scores = np.asarray([refined[1]], np.float32)
        if self.clicked_components if clicked_components is None else clicked_components:
            from synthfm.inference.clicked_components import clicked_components as keep_clicked

            logits = keep_clicked(logits, point_coords, point_labels)
        if not (self.trained_outputs.iou_scores or self.allow_untrained):
            scores = np.full_like(scores, np.nan)  # an untrained IoU head's numbers are not scores
        masks = logits if return_logits else logits > MASK_THRESHOLD
        return masks, scores, low_res_np.astype(np.float32, copy=False)

    def _decode(self, features, input_size, coords_t, labels_t, box_t, mask_t, multimask_output):
        """(low-res logits (C, S/4, S/4), scores (C,), full-frame logits (C, H, W)) for one prompt set."""
        with torch.inference_mode():
            low_res, iou = self.model.decode(
                features, point_coords=coords_t, point_labels=labels_t, boxes=box_t, mask_inputs=mask_t,
                multimask_output=bool(multimask_output),
            )
        low_res_np = low_res[0].float().cpu().numpy()
        scores = iou[0].float().cpu().numpy().astype(np.float32)
        logits = logits_to_original(low_res_np, input_size, self.original_size, self.image_size)
        return low_res_np, scores, logits

    def _flip_tta(self, logits, scores, point_coords, point_labels, box):
        from synthfm.inference.flip_tta import average_with_mirror, mirror_box, mirror_image, mirror_points

        width = self.original_size[1]
        if self._mirrored_features is None:
            tensor, hw = image_to_model_input(mirror_image(self.image_uint8), self.image_size)
            with torch.inference_mode():
                self._mirrored_features = self.model.encode(tensor.to(self.device), valid_hw=hw)
        coords_t, labels_t = self._points_to_model(mirror_points(point_coords, width), point_labels)
        box_t = self._box_to_model(mirror_box(box, width))
        _, m_scores, m_logits = self._decode(self._mirrored_features, self.input_size, coords_t, labels_t, box_t,
                                             None, False)
        return average_with_mirror(logits, scores, m_logits, m_scores)

    # ------------------------------------------------------------------ prompt checks
    def _check_trained(self, multimask: bool, has_mask_input: bool) -> None:
        if self.allow_untrained:
            return
        hint = "pass allow_untrained=True to get its raw values anyway"
        if multimask:
            self.trained_outputs.require("multimask", "multimask_output=True", "ask for one mask, or " + hint)
        if has_mask_input:
            self.trained_outputs.require("mask_input", "mask_input", "give clicks only, or " + hint)

    def _points_to_model(self, coords, labels) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if coords is None and labels is None:
            return None, None
        if coords is None or labels is None:
            raise UserError("point_coords and point_labels must be given together")
        c = np.asarray(coords, dtype=np.float64)
        if c.ndim == 1 and c.shape[0] == 2:
            c = c[None]
        lab = np.asarray(labels).reshape(-1)
        if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] != lab.shape[0]:
            raise UserError(f"clicks must be (N, 2) with N labels, got coords {c.shape} and labels {lab.shape}")
        if c.shape[0] == 0:
            return None, None
        if not np.all(np.isfinite(c)):
            raise UserError("click coordinates must be finite numbers")
        if not np.all(np.isin(lab, (0, 1))):
            raise UserError(f"click labels must be 1 (positive) or 0 (negative), got {sorted(set(lab.tolist()))}")
        check_prompts_inside(c, None, self.original_size)
        model_coords = coords_to_model(c, self.original_size, self.image_size)
        coords_t = torch.from_numpy(model_coords)[None].to(self.device)
        labels_t = torch.from_numpy(lab.astype(np.int64))[None].to(self.device)
        return coords_t, labels_t

    def _box_to_model(self, box) -> torch.Tensor | None:
        if box is None:
            return None
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        if b.shape != (4,) or not np.all(np.isfinite(b)):
            raise UserError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {np.asarray(box).tolist()}")
        check_prompts_inside(None, b, self.original_size)
        return torch.from_numpy(box_to_model(b, self.original_size, self.image_size))[None].to(self.device)

    def _mask_input(self, mask_input) -> torch.Tensor | None:
        if mask_input is None:
            return None
        side = self.image_size // 4
        m = np.asarray(mask_input, dtype=np.float32)
        low = int(getattr(self.model, "low_res_size", side))
        if m.size == low * low and low != side:
            side = low
        if m.size != side * side:
            raise UserError(f"mask_input must be (1, {side}, {side}) low-res logits, got shape {m.shape}")
        return torch.from_numpy(m.reshape(1, 1, side, side).copy()).to(self.device)


def model_device(model) -> torch.device:
    """The device of ``model``'s parameters (cpu for a model without any)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
