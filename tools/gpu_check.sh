#!/usr/bin/env bash
# One prepared GPU check, for the first session that is lent a GPU (issue 23). Run it from
# the repository root on the device machine:
#
#     bash tools/gpu_check.sh              # every figure into $OUT/gpu_check.txt
#     bash tools/gpu_check.sh --dry-run    # here: list what it would run, run nothing
#
# It runs tests/test_gpu.py, tools/bench_train.py --device cuda (eager, captured, bf16,
# stacked K = 1, 4, 16), tools/bench_detect.py --big --gpu-only and two real hyperzsl-train
# wall times on CUB-shaped synthetic data (the data travels with no file: the generator
# makes it): 100 epochs of one model (target <= 10 s) and 16 stacked seeds (target <= 30 s),
# and one real tinyimagenet-zsl-dev run when its two files were carried (47 MB): here,
#     mkdir -p data && cp -r ../shared/data/tinyimagenet-zsl-dev data/   (/data/ is ignored)
# and name `data` in the device call's `carry`.
# Each step has its own time limit; together they end within 8 minutes.
#
# Wheels: the machine has torch and no faiss. Wheels under .whl/ (git-ignored; name .whl
# in the device call's `carry`) are installed first. faiss-gpu for CUDA 13 did not fit:
# faiss-gpu 1.15.1 is 135 MB and faiss-gpu-cuvs 119 MB, over the 64 MiB a call carries,
# and faiss-gpu-cu13-cuvs had no wheel for Python 3.12 (checked 2026-12-03); without it
# the detectors use torch on CUDA, which bench_detect measures.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.txt"
: > "$LOG"
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
START=$(date +%s)

step() {            # step NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*" | tee -a "$LOG"
    [ "$DRY" = 1 ] && return 0
    local t0 rc
    t0=$(date +%s)
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
}

# CUB-shaped synthetic data (11,788 x 2048 features, 312-d side information), the
# faithful network, fast numerics, the captured step
CUB=(--set data.synthetic.classes=200 --set data.synthetic.unseen=50
     --set data.synthetic.per_class=59 --set data.synthetic.attr_dim=312
     --set data.synthetic.feature_dim=2048 --set data.synthetic.noise=2.0
     --set "model.image_hidden=[1560,1660]" --set "model.side_hidden=[1450,665]"
     --set model.latent_dim=64 --set train.epochs=100 --set train.numerics=fast
     --set train.capture=true --set classifier.epochs=23 --device cuda)

if ls .whl/*.whl >/dev/null 2>&1; then
    step wheels 120 "$PY" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
else
    echo "== wheels: none under .whl/ (faiss-gpu not installed; detectors use torch)" | tee -a "$LOG"
fi
step environment 30 "$PY" -c "import torch, hyperzsl.training as t; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name()); \
print('bf16 supported:', torch.cuda.is_bf16_supported())"
step test_gpu 100 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py
step bench_train 130 "$PY" tools/bench_train.py --device cuda --steps 30 --rounds 3
step bench_detect 45 "$PY" tools/bench_detect.py --big --gpu-only
step train_100_epochs 30 "$PY" -m hyperzsl train recipes/demo.yaml "${CUB[@]}" \
    --out "$OUT/run_single"
step train_16_stacked_seeds 45 "$PY" -m hyperzsl train recipes/demo.yaml "${CUB[@]}" \
    --seeds 0-15 --out "$OUT/run_stacked"
if [ -f data/tinyimagenet-zsl-dev/res101.mat ]; then      # carried: see the header
    step train_tinyimagenet 60 "$PY" -m hyperzsl train recipes/gzsl/tinyimagenet_dev_cadavae.yaml \
        --set data.path=data/tinyimagenet-zsl-dev --set train.numerics=fast \
        --set train.capture=true --device cuda --out "$OUT/run_tinyimagenet"
else
    echo "== train_tinyimagenet: data/tinyimagenet-zsl-dev not carried; skipped" | tee -a "$LOG"
fi
step train_100_epochs_bf16 30 "$PY" -m hyperzsl train recipes/demo.yaml "${CUB[@]}" \
    --set train.precision=bf16 --out "$OUT/run_single_bf16"
if [ "$DRY" = 0 ]; then
    grep -H "VAE trained in\|replicas trained in\|classifier:" "$OUT"/run_*/train.log \
        "$OUT"/run_stacked/seed0/train.log 2>/dev/null | tee -a "$LOG"
    rm -rf "$OUT"/run_*          # the figures are in the log; $OUT returns at most 8 files
fi
echo "== gpu_check: $(( $(date +%s) - START )) s in all; figures in $LOG" | tee -a "$LOG"
