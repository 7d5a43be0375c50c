#!/usr/bin/env bash
# Rebuild the shipped default (checkpoints/README.md) from nothing, in one command: the same chain of
# training stages that produced it, each starting from the previous stage's selected checkpoint.
# Synthetic images only; every stage selects on its own synthetic validation stream.  Stages 2-4
# pin the whole-label target unit (--targets label, the preset's default) so a later default cannot change them.
# CPU, 1 torch thread, 1 generation worker: about 4.6 h on one core of the project's machine
# (stage wall times: 23 min, 67 min, 97 min, 86 min).  Resumable: rerun the same command and
# finished stages are skipped (each stage is a normal run folder; an interrupted one continues with
# --resume).
#   bash checkpoints/reproduce_default.sh [OUT=runs/default_chain]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-runs/default_chain}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"

stage() {  # stage NAME "RESUME_ARGS" ARGS...: train into $OUT/NAME unless finished; resume if interrupted
  local name=$1 resume_args=$2; shift 2
  if [ -f "$OUT/$name/.done" ]; then echo "stage $name: done"; return; fi
  if [ -f "$OUT/$name/config.json" ]; then
    # shellcheck disable=SC2086
    $PY train.py --resume "$OUT/$name" $resume_args
  else
    $PY train.py "$@" --out "$OUT/$name"
  fi
  touch "$OUT/$name/.done"
}

# 1. arm (c) of the model study: 3,000 images (375 steps of 8), constant learning rate, from scratch
stage 1_arm_c "--stop-after-steps 375" --preset small --recipe synthfm --epochs 1 --images-per-epoch 1000000 --batch-size 8 \
  --prompts-per-image 4 --bce-weight 1 --val-images 0 --workers 1 --checkpoint-every 25 --seed 0 \
  --lr-schedule constant --encoder click_unet --size 128 --gen-size 256 --lr 1e-3 --warmup-steps 100 \
  --box-fraction 0.1 --mask-fraction 0.3 --zoom-fraction 0.3 --iou-loss-weight 1 --stop-after-steps 375
# 2. cosine schedule over 12,000 fresh images (seed 1)
stage 2_long "" --preset click --init "$OUT/1_arm_c/last.safetensors" --epochs 12 --warmup-steps 50 --seed 1 \
  --targets label
# 3. a second cosine cycle over 70,000 images (seed 2)
stage 3_long2 "" --preset click --init "$OUT/2_long/best.safetensors" --epochs 28 --images-per-epoch 2500 \
  --batch-size 16 --prompts-per-image 2 --warmup-steps 50 --seed 2 --checkpoint-every 25 --targets label
# 4. a third cosine cycle over 55,000 images (seed 3)
stage 4_long3 "" --preset click --init "$OUT/3_long2/best.safetensors" --epochs 22 --images-per-epoch 2500 \
  --batch-size 16 --prompts-per-image 2 --warmup-steps 50 --seed 3 --checkpoint-every 25 --targets label
# 5. store the selected weights as the package stores them (float16, run-only keys dropped)
$PY checkpoints/store_default.py "$OUT/4_long3/best.safetensors" --run "$OUT/4_long3" \
  --out "$OUT/synthfm_default.safetensors" --overwrite
