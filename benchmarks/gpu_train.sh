#!/usr/bin/env bash
# Continue the shipped default on one GPU for a fixed wall time: two arms side by side, each with
# half of the machine's cores generating images.
#
#   OUT=/path/to/out bash benchmarks/gpu_train.sh              # GPU machine: ~7 min of training per arm
#   TINY=1 OUT=/tmp/gpu_smoke bash benchmarks/gpu_train.sh     # CPU check of the same script (~1.5 min)
#   ARMS=small TIME_MIN=20 OUT=... bash benchmarks/gpu_train.sh  # one arm, another budget
#   AMP=1 / EXTRA="--lr 5e-4" ...                              # bf16 autocast / more train.py options
# First run and what it showed: benchmarks/README.md, "First GPU run".
#
# Arms (both start from the shipped default, `--init default`, same seed, prompts and schedule):
#   small = the same click_unet, another cosine cycle at GPU throughput;
#   deep  = click_unet_deep, grown from the default without changing its function (training/grow.py).
# The cosine schedule decays over the wall-time budget (train.py --time-budget), so each arm ends
# annealed whatever the machine's speed; best.safetensors is chosen on synthetic validation only.
#
# Installs the wheels it carries in .whl/ (albumentations and its needs; see the device README)
# into /tmp/site.  Run folders go to $RUNS (default /tmp/gpu_runs); $OUT gets at most 8 files:
# ARM_best.safetensors and ARM_last.safetensors per arm, logs.tar.gz (each arm's log.csv, val.csv,
# config.json and console output) and gpu_train.json (device, wall time, steps, images, img/s,
# last and best validation per arm).  Calling it again with the same RUNS resumes (train.py --resume).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to an output folder}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! $PY -c "import albumentations" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
# workers generate with numpy/OpenCV; nested BLAS/OpenMP threads would only oversubscribe the cores
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
ARMS=${ARMS:-small deep}
N_ARMS=$(wc -w <<< "$ARMS")
if [ "${TINY:-0}" = 1 ]; then
  TIME_MIN=${TIME_MIN:-0.4}; DEVICE=cpu; WORKERS=1; BATCH=4; SIZE=64; IPE=16; EPOCHS=50; VAL=4; WARMUP=2
else
  TIME_MIN=${TIME_MIN:-7}; DEVICE=cuda; BATCH=64; SIZE=128; IPE=40000; EPOCHS=100; VAL=256; WARMUP=100
  WORKERS=$(( ($(nproc) - 2) / N_ARMS )); [ "$WORKERS" -ge 1 ] || WORKERS=1
fi
# a hard stop a minute after the budget, in case a step or a validation hangs
LIMIT=$(python3 -c "print(int(float('$TIME_MIN') * 60 + 60))")
# fp32 unless AMP=1: the first GPU run's bf16 click_unet arm diverged at the peak learning rate
AMP_FLAG=--no-amp; [ "${AMP:-0}" = 1 ] && AMP_FLAG=
RUNS=${RUNS:-/tmp/gpu_runs}
mkdir -p "$RUNS"
declare -A ENCODER=([small]=click_unet [deep]=click_unet_deep)

train_arm() {  # train_arm ARM [extra train.py options...]
  local arm=$1; shift
  local run="$RUNS/$arm"
  if [ -f "$run/last_state.pt" ]; then
    timeout -s INT "$LIMIT" $PY train.py --resume "$run" --workers "$WORKERS" --device "$DEVICE" --quiet "$@"
  else
    timeout -s INT "$LIMIT" $PY train.py --preset click --init default --encoder "${ENCODER[$arm]}" \
      --size "$SIZE" --gen-size $((SIZE * 2)) --epochs "$EPOCHS" --images-per-epoch "$IPE" --batch-size "$BATCH" \
      --prompts-per-image 4 --lr 1e-3 --warmup-steps "$WARMUP" --first-mask-weight 0.5 --val-images "$VAL" \
      --workers "$WORKERS" --checkpoint-every 200 --time-budget "$TIME_MIN" --device "$DEVICE" --seed 6 \
      --out "$run" --overwrite --quiet $AMP_FLAG ${EXTRA:-} "$@"
  fi
}

run_arm() {  # one arm; with AMP=1, retried once in fp32 if it fails at once (e.g. an untried bf16 kernel)
  local arm=$1 start rc
  start=$(date +%s)
  train_arm "$arm" > "$RUNS/$arm.console" 2>&1
  rc=$?
  if [ -z "$AMP_FLAG" ] && [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$rc" != 130 ] \
      && [ $(( $(date +%s) - start )) -lt 120 ] && [ ! -f "$RUNS/$arm/last_state.pt" ]; then
    echo "exit $rc within 2 min: retrying without --amp" >> "$RUNS/$arm.console"
    train_arm "$arm" --no-amp >> "$RUNS/$arm.console" 2>&1
    rc=$?
  fi
  echo "$rc" > "$RUNS/$arm.rc"
}

START=$(date +%s)
for arm in $ARMS; do
  [ -n "${ENCODER[$arm]:-}" ] || { echo "unknown arm $arm (known: ${!ENCODER[*]})" >&2; exit 2; }
  run_arm "$arm" &
done
wait
END=$(date +%s)
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$RUNS/nvidia_smi.csv" 2>/dev/null || true

RC=0
for arm in $ARMS; do
  for f in best last; do
    [ -f "$RUNS/$arm/$f.safetensors" ] && cp "$RUNS/$arm/$f.safetensors" "$OUT/${arm}_$f.safetensors"
  done
  rc=$(cat "$RUNS/$arm.rc" 2>/dev/null || echo 1)
  [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$rc" = 130 ] || RC=$rc
done
(cd "$RUNS" && tar czf "$OUT/logs.tar.gz" --ignore-failed-read ./*.console ./*.rc nvidia_smi.csv \
  $(for arm in $ARMS; do echo "$arm/log.csv $arm/val.csv $arm/config.json"; done) 2>/dev/null)
$PY - "$RUNS" "$OUT/gpu_train.json" "$((END - START))" "$ARMS" <<'PY'
import csv, json, os, sys
import torch
runs, out, wall, arms = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()

def rows(path):
    return list(csv.DictReader(open(path))) if os.path.exists(path) else []

info = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_cores": os.cpu_count(), "wall_s": wall, "arms": {}}
for arm in arms:
    log, val = rows(f"{runs}/{arm}/log.csv"), rows(f"{runs}/{arm}/val.csv")
    rc = open(f"{runs}/{arm}.rc").read().strip() if os.path.exists(f"{runs}/{arm}.rc") else None
    rates = sorted(float(r["img_s"]) for r in log if r.get("img_s"))
    best = max(val, key=lambda r: float(r["mean"])) if val else None
    info["arms"][arm] = {"exit_code": rc, "steps": int(log[-1]["step"]) if log else 0,
                         "images_seen": int(log[-1]["images_seen"]) if log else 0,
                         "img_s_median": rates[len(rates) // 2] if rates else None,
                         "val_last": val[-1] if val else None, "val_best": best}
json.dump(info, open(out, "w"), indent=2)
print(json.dumps(info, indent=1))
PY
exit "$RC"
