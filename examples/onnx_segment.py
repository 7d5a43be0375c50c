"""Segment an image from clicks with the exported ONNX graphs only: numpy + onnxruntime + OpenCV, no torch, no synthfm.

    synthfm export-onnx --model default --out onnx/          # once, where synthfm is installed
    python examples/onnx_segment.py onnx/ slice.png --point 260,250 [--negative X,Y] [--box X0,Y0,X1,Y1] --out mask.png

Needs: ``pip install numpy onnxruntime opencv-python-headless``.  The input is an 8-bit image
(grey or RGB PNG/JPEG/BMP/TIFF).  CT/MR values must be windowed to 0..255 first (what synthfm's
``--window`` does: ``clip((v - (level - width / 2)) / width, 0, 1) * 255``).

Everything ``Predictor.set_image`` / ``Predictor.predict`` do for one plain pass is written out here:

* ``encoder.onnx`` input ``image`` (1, 3, S, S) float32 in 0..255 (grey repeated to 3 channels),
  the image resized so its **longest side is S** (other side ``int(side * S / longest + 0.5)``;
  OpenCV ``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging) and **padded with 0 at the
  bottom and right**; ``input_size`` (2,) int64 = (h, w) of the resized content.  S is
  ``image_size`` in export.json.  The graph normalises and zeroes the padding itself.
* ``decoder.onnx``: ``point_coords`` (1, N, 2) float32 (x, y) **scaled to the resized image**
  (x * w / W, y * h / H); ``point_labels`` (1, N) float32, 1 positive, 0 negative, a box as two
  points labelled 2 (top-left) and 3 (bottom-right) after the clicks, and **without a box one
  padding point (0, 0) labelled -1** appended; ``mask_input`` zeros of the graph's declared shape
  with ``has_mask_input`` [0]; ``orig_im_size`` [H, W] float32.  Output ``masks`` (1, 1, H, W)
  logits in the original frame: the mask is ``logits > 0``.

This is the single pass of ``synthfm segment`` (the shipped model leaves the focus step and flip TTA
off); tests/test_onnx_example.py runs this script with torch made unimportable and compares it with
PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort


def read_image8(path: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) RGB uint8; SystemExit with one line for anything else."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        sys.exit(f"onnx_segment: error: cannot read {path}")
    if image.dtype != np.uint8:
        sys.exit(f"onnx_segment: error: {path} is {image.dtype}; window it to 8 bits first")
    if image.ndim == 3:
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)  # drop alpha; OpenCV reads BGR
    return image


def encoder_inputs(image8: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (1, 3, S, S) float32 0..255 (resized longest side S, zero-padded bottom/right), ``input_size`` (h, w)."""
    rgb = np.repeat(image8[:, :, None], 3, axis=2) if image8.ndim == 2 else image8
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    h, w = max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))
    if (h, w) != (height, width):
        shrinking = h * w < height * width
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    padded = np.zeros((size, size, 3), np.float32)
    padded[:h, :w] = rgb
    return np.ascontiguousarray(padded.transpose(2, 0, 1))[None], np.array([h, w], np.int64)


def decoder_points(points, negatives, box, original_hw, resized_hw) -> tuple[np.ndarray, np.ndarray]:
    """``point_coords`` (1, N, 2) and ``point_labels`` (1, N) float32 in the decoder's convention."""
    (height, width), (h, w) = original_hw, resized_hw
    xy = [tuple(p) for p in points] + [tuple(p) for p in negatives]
    labels = [1.0] * len(points) + [0.0] * len(negatives)
    if box is not None:
        xy += [(box[0], box[1]), (box[2], box[3])]
        labels += [2.0, 3.0]
    coords = np.asarray(xy, np.float64).reshape(-1, 2) * np.array([w / width, h / height])
    if box is None:  # SAM's padding point
        coords = np.concatenate([coords, np.zeros((1, 2))])
        labels.append(-1.0)
    return coords[None].astype(np.float32), np.asarray(labels, np.float32)[None]


def segment(onnx_dir: Path, image8: np.ndarray, points, negatives=(), box=None) -> np.ndarray:
    """Mask logits (H, W) float32 for one object (threshold 0)."""
    size = int(json.loads((onnx_dir / "export.json").read_text())["image_size"])
    encoder = ort.InferenceSession(str(onnx_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(onnx_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    image, input_size = encoder_inputs(image8, size)
    (embedding,) = encoder.run(None, {"image": image, "input_size": input_size})
    coords, labels = decoder_points(points, negatives, box, image8.shape[:2], tuple(int(v) for v in input_size))
    mask_shape = [d for d in next(i.shape for i in decoder.get_inputs() if i.name == "mask_input")]
    masks, scores, _ = decoder.run(None, {
        "image_embeddings": embedding,
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": np.zeros(mask_shape, np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array(image8.shape[:2], np.float32),
    })
    return masks[0, 0]


def _numbers(count: int):
    def parse(text: str) -> tuple[float, ...]:
        values = tuple(float(v) for v in text.split(","))
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
        return values
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx_dir", type=Path, help="folder written by synthfm export-onnx")
    parser.add_argument("image", type=Path, help="8-bit grey or RGB image")
    parser.add_argument("--point", action="append", type=_numbers(2), default=[], help="positive click X,Y (pixels)")
    parser.add_argument("--negative", action="append", type=_numbers(2), default=[], help="negative click X,Y")
    parser.add_argument("--box", type=_numbers(4), default=None, help="box X0,Y0,X1,Y1")
    parser.add_argument("--out", type=Path, required=True, help="mask PNG (0/255)")
    parser.add_argument("--logits", type=Path, default=None, help="also save the (H, W) float32 logits (.npy)")
    args = parser.parse_args(argv)
    if not args.point and args.box is None:
        parser.error("give at least one --point or a --box")
    logits = segment(args.onnx_dir, read_image8(args.image), args.point, args.negative, args.box)
    if not cv2.imwrite(str(args.out), (logits > 0).astype(np.uint8) * 255):
        sys.exit(f"onnx_segment: error: cannot write {args.out}")
    if args.logits is not None:
        np.save(args.logits, logits.astype(np.float32))
    print(f"{args.image}: {int((logits > 0).sum())} pixels -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
