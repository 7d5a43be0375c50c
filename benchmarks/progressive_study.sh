#!/usr/bin/env bash
# Arm (d) of the model study (benchmarks/README.md, "Model study: progressive resolution"): from one
# 128 px click_unet checkpoint, two finishing phases trained side by side for the same wall time,
# 1 torch thread + 1 generation worker each, same recipe, seed and constant learning rate:
#   (d128) keep training at 128 px (the control: the same minutes spent without a resolution change)
#   (dS)   train at S px (default 192: the largest size whose click stays in the 30 ms budget,
#          benchmarks/README.md "Predictor"), images generated at 256 px and resized, as at 128.
# Then both (and the starting point) are scored on the fixed 256 px synthetic set and on the dev sets.
#   bash benchmarks/progressive_study.sh INIT.safetensors [MINUTES] [S]     (writes runs/progressive/*)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
INIT=${1:?usage: progressive_study.sh INIT.safetensors [MINUTES] [S]}
T=$(( ${2:-25} * 60 ))
S=${3:-192}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=runs/progressive
COMMON="--preset click --init $INIT --epochs 1 --images-per-epoch 1000000 --batch-size 16 --prompts-per-image 2
  --lr 2e-4 --lr-schedule constant --warmup-steps 20 --val-images 0 --checkpoint-every 20 --seed 4 --quiet"
mkdir -p $OUT
timeout -s INT $T $PY train.py $COMMON --size 128 --out $OUT/d128 > $OUT/d128.log 2>&1 &
timeout -s INT $T $PY train.py $COMMON --size "$S" --out $OUT/d$S > $OUT/d$S.log 2>&1 &
wait
$PY benchmarks/eval_synth_val.py "$INIT" $OUT/d128/last.safetensors $OUT/d$S/last.safetensors --images 256 \
  --json $OUT/synthetic_val.json
$PY benchmarks/eval_dev_table.py $OUT/d128/last.safetensors $OUT/d$S/last.safetensors --focus off --flip off \
  --threads 1 --json $OUT/dev.json
