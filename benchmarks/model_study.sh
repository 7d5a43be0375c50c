#!/usr/bin/env bash
# The compute-matched model study of benchmarks/README.md ("Model study"): two arms trained side by
# side for the same wall time (25 min), 1 torch thread + 1 generation worker each, same recipe and
# seed, constant learning rate after warm-up, no validation during training; then both scored on
# one synthetic validation set (64 images generated at 256 px) and on the dev sets.
#   bash benchmarks/model_study.sh [MINUTES]          (writes runs/study/*)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
T=$(( ${1:-25} * 60 ))
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
COMMON="--preset small --recipe synthfm --epochs 1 --images-per-epoch 1000000 --batch-size 8 --prompts-per-image 4
  --bce-weight 1 --val-images 0 --workers 1 --checkpoint-every 25 --seed 0 --lr-schedule constant --quiet"
mkdir -p runs/study
# (a) late fusion: tiny_cnn encoder at S/16 -> SAM prompt encoder + mask decoder, 256 px (the previous default)
timeout -s INT $T $PY train.py $COMMON --encoder tiny_cnn --train-encoder --size 256 --lr 3e-4 --box-fraction 0.15 \
  --out runs/study/arm_a_late256 > runs/study/arm_a.log 2>&1 &
# (c) early fusion: click_unet, prompts rasterised into the U-Net at S/4, 128 px, mask prompts + zoom crops
timeout -s INT $T $PY train.py $COMMON --encoder click_unet --size 128 --gen-size 256 --lr 1e-3 --warmup-steps 100 \
  --box-fraction 0.1 --mask-fraction 0.3 --zoom-fraction 0.3 --iou-loss-weight 1 --out runs/study/arm_c_early128 \
  > runs/study/arm_c.log 2>&1 &
wait
$PY benchmarks/eval_synth_val.py runs/study/arm_a_late256/last.safetensors runs/study/arm_c_early128/last.safetensors \
  --images 64 --json runs/study/synthetic_val.json
$PY benchmarks/eval_dev_table.py runs/study/arm_c_early128/last.safetensors --limit 25 --json runs/study/dev_arm_c.json
