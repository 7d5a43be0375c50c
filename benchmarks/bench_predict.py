"""Benchmark the Predictor on the CPU: set_image (encoder pass) and one click (one mask).

    .venv/bin/python benchmarks/bench_predict.py --model PATH|default [--json PATH]
    .venv/bin/python benchmarks/bench_predict.py --encoder tiny_cnn [--image-size 256] [--json PATH]

Without a trained model, ``--encoder NAME`` measures a randomly initialised model of that
architecture (timings do not depend on the weights).  The image is a 512 x 512 int16 CT slice in
HU (``--image PATH`` reads any file synthfm.io.images can read; volumes use their middle slice), so
set_image includes the intensity preset, resize and padding.  A click is ``Predictor.predict``
with one positive point and ``multimask_output=False``, mask returned at the image's size; the
table also splits it into prompt encoder + mask decoder and mapping the logits back to the image.
Medians over --reps / --clicks runs after a warm-up, ``torch.set_num_threads(--threads)`` (2).

Prints a table and writes JSON (``set_image_s_median``, ``click_ms_median``, ...).  Never asserts
on timings.  On a shared, oversubscribed CPU set ``OMP_WAIT_POLICY=PASSIVE`` (recorded in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthfm.io.atomic import atomic_write_bytes  # noqa: E402
from synthfm.inference.predictor import Predictor  # noqa: E402
from synthfm.inference.transforms import coords_to_model, logits_to_original  # noqa: E402


def _times(fn, reps: int) -> list[float]:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _synthetic_ct(size: int = 512) -> np.ndarray:
    """A deterministic HU slice: air, a body ellipse of soft tissue, an organ and a bone ring."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    hu = np.full((size, size), -1000.0)
    body = ((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / 0.45) ** 2 < 1
    hu[body] = 40
    hu[((yy - 0.45) / 0.12) ** 2 + ((xx - 0.35) / 0.15) ** 2 < 1] = 90
    ring = np.abs(np.hypot(yy - 0.62, xx - 0.5) - 0.06) < 0.015
    hu[ring] = 900
    return (hu + rng.normal(0, 15, hu.shape)).astype(np.int16)


def _load_image(path: str | None) -> tuple[np.ndarray, str]:
    if path is None:
        return _synthetic_ct(), "synthetic CT 512x512 int16 (HU)"
    from synthfm.io.images import read_image, slice_of

    img = read_image(path)
    if img.kind == "3d":
        return np.asarray(slice_of(img, img.array.shape[0] // 2)), f"{path} (middle axial slice)"
    return img.array, str(path)


def _build(args) -> tuple[Predictor, str]:
    if args.model is not None:
        predictor = Predictor.from_checkpoint(args.model, sam_checkpoint=args.sam_checkpoint)
        if args.encoder and args.encoder != predictor.model.encoder_name:
            raise SystemExit(f"--encoder {args.encoder} does not match the checkpoint's {predictor.model.encoder_name}")
        return predictor, f"checkpoint {args.model}"
    from synthfm.modeling import build_model

    torch.manual_seed(0)
    model = build_model(args.encoder or "tiny_cnn", image_size=args.image_size)
    return Predictor(model), "random init (architecture timing only)"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint path or 'default'")
    ap.add_argument("--encoder", default=None, help="random-init architecture when no --model (default tiny_cnn)")
    ap.add_argument("--image-size", type=int, default=None, help="model input size S for --encoder")
    ap.add_argument("--sam-checkpoint", default=None)
    ap.add_argument("--image", default=None, help="image or volume to use (default: synthetic 512x512 CT)")
    ap.add_argument("--reps", type=int, default=5, help="set_image repetitions")
    ap.add_argument("--clicks", type=int, default=50, help="click repetitions")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--focus", choices=("model", "on", "off"), default="model",
                    help="the focus step: as the checkpoint says (default), or forced on / off")
    ap.add_argument("--flip", choices=("model", "on", "off"), default="model",
                    help="flip test-time augmentation: as the checkpoint says (default), or forced on / off")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.model is None and args.encoder is None:
        args.encoder = "tiny_cnn"
    torch.set_num_threads(args.threads)

    predictor, source = _build(args)
    if args.focus != "model":
        predictor.focus = args.focus == "on"
    if args.flip != "model":
        predictor.flip_tta = args.flip == "on"
    image, image_desc = _load_image(args.image)
    h, w = image.shape[:2]
    set_times = _times(lambda: predictor.set_image(image), args.reps)

    rng = np.random.default_rng(1)
    clicks = rng.uniform([w * 0.25, h * 0.25], [w * 0.75, h * 0.75], (args.clicks + 1, 2)).astype(np.float32)
    it = iter(range(10**9))

    def one_click():
        i = next(it) % len(clicks)
        return predictor.predict(clicks[i : i + 1], np.array([1]))

    click_times = _times(one_click, args.clicks)

    # split one click: prompt encoder + decoder vs. logits -> mask at the image size
    s = predictor.image_size
    emb = predictor.get_image_embedding()
    pc = torch.from_numpy(coords_to_model(clicks[:1], (h, w), s))[None]
    pl = torch.ones(1, 1, dtype=torch.int64)
    with torch.inference_mode():
        decode_times = _times(lambda: predictor.model.decode(emb, pc, pl), args.clicks)
        low = predictor.model.decode(emb, pc, pl)[0][0].numpy()
    post_times = _times(lambda: logits_to_original(low, predictor.input_size, (h, w), s) > 0, args.clicks)

    med = statistics.median
    result = {
        "encoder": predictor.model.encoder_name,
        "image_size": s,
        "weights": source,
        "image": image_desc,
        "image_shape": list(image.shape),
        "threads": args.threads,
        "focus": bool(predictor.focus),
        "flip_tta": bool(predictor.flip_tta),
        "set_image_s_median": med(set_times),
        "set_image_s_max": max(set_times),
        "click_ms_median": 1e3 * med(click_times),
        "click_ms_p90": 1e3 * float(np.percentile(click_times, 90)),
        "decode_ms_median": 1e3 * med(decode_times),
        "postprocess_ms_median": 1e3 * med(post_times),
        "reps": args.reps,
        "clicks": args.clicks,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    rows = [
        ("set_image (s, median)", f"{result['set_image_s_median']:.3f}"),
        ("click (ms, median)", f"{result['click_ms_median']:.1f}"),
        ("click (ms, p90)", f"{result['click_ms_p90']:.1f}"),
        ("  prompt enc + decoder (ms)", f"{result['decode_ms_median']:.1f}"),
        ("  logits -> mask at image size (ms)", f"{result['postprocess_ms_median']:.1f}"),
    ]
    print(f"Predictor on CPU, {args.threads} threads: {result['encoder']} @ {s} px, {source}")
    print(f"image: {image_desc}, load average {result['load_average_1min']}")
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
    return result


if __name__ == "__main__":
    main()
