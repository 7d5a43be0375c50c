"""Peak memory of the commands on a large volume: do they stream slices, or copy the volume?

    .venv/bin/python benchmarks/bench_memory.py [--size 512] [--slices 600] [--json PATH]

Builds, in a temporary folder, a (slices, size, size) int16 CT phantom (air -1000 HU, a body
ellipse at 40 HU, a 200 HU ellipsoid ``organ`` over the middle slices) as ``.nii.gz``, a one-case
nnU-Net dataset of it, and a tiny random model (tiny_cnn at 64 px; the model's size is
irrelevant to the volume's memory).  Each command then runs as its own process; its peak
resident memory is the ``ru_maxrss`` that ``os.wait4`` reports for it:

* ``import``: the interpreter with torch and synthfm imported (the floor);
* ``segment``: ``synthfm segment VOL --slice K --point ...`` (one slice, volume mask written);
* ``segment --propagate``: the same, following the organ through the volume;
* ``evaluate``: ``evaluate.py`` with the tiny model on the dataset (one click per object).

Children are started from a bare launcher interpreter, because Linux carries a parent's peak
RSS over fork+exec into the child's ``ru_maxrss``.

The table gives peak RSS, the volume's size in memory (int16) and ``(peak - floor) / volume``,
the number of volume-sized buffers a command holds at its worst.  Writes JSON; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIB = 1024 * 1024


def _phantom(slices: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Y, X) int16 HU volume and its uint8 organ label, built slice by slice."""
    vol = np.full((slices, size, size), -1000, np.int16)
    label = np.zeros((slices, size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    body = ((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / 0.45) ** 2 < 1
    z0, z1 = int(slices * 0.4), int(slices * 0.6)
    for z in range(slices):
        vol[z][body] = 40
        if z0 <= z < z1:
            t = (z - (z0 + z1) / 2) / ((z1 - z0) / 2)
            r = 0.12 * np.sqrt(max(0.0, 1 - t * t)) + 1e-3
            organ = (yy - 0.45) ** 2 + (xx - 0.55) ** 2 < r * r
            vol[z][organ] = 200
            label[z][organ] = 1
    return vol, label


def _write_inputs(d: Path, slices: int, size: int) -> dict[str, Path]:
    import nibabel as nib
    import torch

    from synthfm.weights.checkpoint import save_checkpoint
    from synthfm.modeling import build_model

    vol, label = _phantom(slices, size)
    # nibabel's (i, j, k) = our (X, Y, Z): transpose so that SimpleITK reads it back as (Z, Y, X)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    image_path = d / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0), affine), str(image_path))
    ds = d / "Dataset900_Memory"
    (ds / "imagesTs").mkdir(parents=True)
    (ds / "labelsTs").mkdir()
    os.link(image_path, ds / "imagesTs" / "big_0000.nii.gz")
    nib.save(nib.Nifti1Image(label.transpose(2, 1, 0), affine), str(ds / "labelsTs" / "big.nii.gz"))
    (ds / "dataset.json").write_text(json.dumps({"name": "Memory", "labels": {"background": 0, "organ": 1},
                                                 "file_ending": ".nii.gz", "modality": "CT",
                                                 "channel_names": {"0": "CT"}}))
    torch.manual_seed(0)
    model = d / "tiny.safetensors"
    save_checkpoint(model, build_model("tiny_cnn", image_size=64))
    return {"image": image_path, "dataset": ds, "model": model}


# Linux carries a parent's peak RSS over fork+exec into the child's ru_maxrss, so children are
# started from this small launcher (a bare interpreter), never from the big benchmark process.
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))\n"
)


def _peak_rss(argv: list[str]) -> tuple[float, float, int]:
    """(peak RSS MiB, wall s, exit code) of one child process."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    try:
        max_kib, code = (int(v) for v in done.stdout.split())
    except ValueError:
        raise SystemExit(f"launcher failed: {done.stderr.strip()[-500:]}") from None
    if code != 0:
        print(f"  ! exit {code}: {done.stderr.strip()[-300:]}", file=sys.stderr)
    return max_kib / 1024.0, wall, code  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=600)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "bench_memory.json")
    args = ap.parse_args()

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        paths = _write_inputs(d, args.slices, args.size)
        print(f"inputs written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        k = args.slices // 2
        point = f"{int(args.size * 0.55)},{int(args.size * 0.45)}"
        seg = [py, "-m", "synthfm.cli", "segment", str(paths["image"]), "--slice", str(k), "--point", point,
               "--model", str(paths["model"]), "--window", "soft_tissue"]
        runs = {
            "import": [py, "-c", "import torch, synthfm.cli.segment, synthfm.evaluation.protocol, synthfm.io.images"],
            "segment": seg + ["--out", str(d / "mask.nii.gz")],
            "segment --propagate": seg + ["--propagate", "--out", str(d / "mask_prop.nii.gz")],
            "evaluate": [py, str(REPO / "evaluate.py"), "--data", str(paths["dataset"]), "--method", str(paths["model"]),
                         "--prompt", "1,0", "--out", str(d / "eval"), "--quiet", "--no-overlays"],
        }
        volume_mib = args.slices * args.size * args.size * 2 / MIB
        rows = []
        for name, argv in runs.items():
            peak, wall, code = _peak_rss(argv)
            rows.append({"command": name, "peak_rss_mib": round(peak, 1), "wall_s": round(wall, 2), "exit_code": code})
            print(f"  {name}: {peak:.0f} MiB, {wall:.1f} s", file=sys.stderr)
    floor = rows[0]["peak_rss_mib"]
    for r in rows:
        r["volume_multiples_above_floor"] = round((r["peak_rss_mib"] - floor) / volume_mib, 2)

    print(f"\nvolume {args.slices} x {args.size} x {args.size} int16 = {volume_mib:.0f} MiB; floor (imports) {floor:.0f} MiB\n")
    print(f"| {'command':<20} | {'peak RSS MiB':>12} | {'(peak-floor)/volume':>19} | {'wall s':>7} | exit |")
    print(f"|{'-' * 22}|{'-' * 14}|{'-' * 21}|{'-' * 9}|------|")
    for r in rows:
        print(f"| {r['command']:<20} | {r['peak_rss_mib']:>12.0f} | {r['volume_multiples_above_floor']:>19.2f} | "
              f"{r['wall_s']:>7.1f} | {r['exit_code']:>4} |")
    from synthfm.io.atomic import atomic_write_bytes

    payload = {"volume_shape": [args.slices, args.size, args.size], "volume_dtype": "int16", "volume_mib": round(volume_mib, 1),
               "rows": rows, "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.json, (json.dumps(payload, indent=2) + "\n").encode())
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
