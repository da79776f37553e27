#!/usr/bin/env bash
# One short GPU session's checks, run on the device machine from the repository root after
# docs/gpu/pack.sh (binaries in .gpu/), each part capped so that the whole fits one device call.
# Writes at most 9 files into ${OUT:-gpu-out} (the device tool brings back only a few):
#   summary.txt      the GPU, then each part's exit status, time and last lines
#   tests.txt        every [cuda] test case (compact reporter: failures only), then compute-sanitizer:
#                    racecheck on flash's tensor-core kernels, memcheck on the training kernels, the encoder
#                    and the causal and bf16 kernels, racecheck on the causal and the training kernels
#   interop.txt      `model run` of tests/golden/interop on cpu, cuda and cuda bf16, compared with the golden
#                    float64 logits (the whole model on the GPU against an independent implementation)
#   train-step.txt   sweep --mode train-step of the lra-small model on text, b=32, every variant, n 1K and 4K,
#                    fp32 (train-step.json) then bf16 (train-step-bf16.json), each point with its per-op
#                    profile (--profile 3: time per op on CUDA events, launch gaps included)
#   profile.txt      nsys's summaries (kernels, CUDA API) of two lra-small train-step points, where nsys exists
#   exact.txt        exact attention fwd+bwd in bf16, n 1K..32K, bidirectional and causal, D=1024 h=16 and
#                    D=512 h=8: lsbench's flash, cudnn (cuDNN's fused attention) and PyTorch's SDPA
#                    (the whole layer each: projections + attention, as `attention bench` times it)
#   listops-*.json   lra-small ListOps (the whole recipe) on the GPU for the variants in $LISTOPS
# A part that runs out of time says so in summary.txt and the next part still runs.
set -uo pipefail
OUT=${OUT:-gpu-out}
LISTOPS=${LISTOPS:-}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=$PWD/.gpu/lsbench
T=$PWD/.gpu/lsbench_tests
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
part() {  # part NAME LOG SECONDS CMD...: CMD under a time cap, its output appended to $OUT/LOG
  local name=$1 log=$2 secs=$3
  shift 3
  local t0=$SECONDS
  echo "===== $name: $*" >>"$OUT/$log"
  timeout "$secs" "$@" 2>&1 | grep -v "Host Frame\|Saved host backtrace" >>"$OUT/$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc in $((SECONDS - t0)) s$([ "$rc" -eq 124 ] && echo " (cut at ${secs} s)")" | tee -a "$OUT/summary.txt"
  tail -3 "$OUT/$log" | sed 's/^/   /' | tee -a "$OUT/summary.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/summary.txt"
$B info 2>&1 | grep -E "^(cuda|cudnn|bf16)" | tee -a "$OUT/summary.txt"
part tests-cuda tests.txt 120 "$T" "[cuda]" -r compact
# The figures #36 asks for come next, so that a cut-short call still brings them back.
exact() {  # flash and cudnn in lsbench, then PyTorch's SDPA, on the same shapes in the same call
  local causal shape
  for causal in "" --causal; do
    for shape in "1024 16" "512 8"; do
      set -- $shape
      $B attention bench --device cuda --mode fwdbwd --precision bf16 --dim "$1" --heads "$2" --batch 1 $causal \
        --min-time 0.2 --min-reps 5 --max-time 3 --variant flash cudnn --n 1024 4096 16384 32768 2>&1 | tail -12
      python3 .gpu/sdpa_reference.py --what layer --b 1 --h "$2" --d 64 --n 1024 4096 16384 32768 --dtype bf16 \
        $causal 2>&1 | tail -4
    done
  done
}
export -f exact
part exact exact.txt 200 bash -c exact
# flash's tensor-core kernels (cp.async double buffers, ldmatrix): racecheck on the shared-memory reuse.
part racecheck-flash-bf16 tests.txt 60 "$SAN" --tool racecheck --error-exitcode 9 "$T" "flash's tensor-core kernels*"
part memcheck-train tests.txt 90 "$SAN" --tool memcheck --error-exitcode 9 "$T" "[cuda][train]"
part memcheck-encoder tests.txt 90 "$SAN" --tool memcheck --error-exitcode 9 "$T" "[cuda][encoder]"
# The causal kernels (ls, performer, flash fp32 and bf16), written without a GPU at hand: memcheck and racecheck.
part memcheck-causal tests.txt 60 "$SAN" --tool memcheck --error-exitcode 9 "$T" "[cuda][causal],[cuda][bf16]"
# cudnn's graphs meet a GPU for the first time: cuDNN's own error log says why an engine refuses one.
part cudnn tests.txt 60 env CUDNN_LOGLEVEL_DBG=1 CUDNN_LOGDEST_DBG=stderr "$T" "[cudnn]"
part memcheck-cudnn tests.txt 60 "$SAN" --tool memcheck --error-exitcode 9 "$T" "[cudnn]"
part racecheck-causal tests.txt 45 "$SAN" --tool racecheck --error-exitcode 9 "$T" "[cuda][causal]"
part racecheck-train tests.txt 60 "$SAN" --tool racecheck --error-exitcode 9 "$T" "[cuda][train]~a run on CUDA follows*"
interop() {
  local g=tests/golden/interop tmp
  tmp=$(mktemp -d)
  for v in full ls; do
    local spec=full
    [ $v = ls ] && spec=ls:w=4,r=3
    for run in "cpu fp32" "cuda fp32" "cuda bf16"; do
      set -- $run
      $B model run --weights $g/$v/weights --variant $spec --heads 2 --input $g/$v/ids.npy --mask $g/$v/mask.npy \
        --labels $g/$v/labels.npy --grads "$tmp/$v-$1-$2" --output "$tmp/$v-$1-$2.npy" --pooling mean-all \
        --device "$1" --precision "$2" | tail -1
    done
  done
  python3 - "$g" "$tmp" <<'EOF'
import sys, os, numpy as np
g, tmp = sys.argv[1:]
for v in ("full", "ls"):
    want = np.load(f"{g}/{v}/logits.npy")
    for run in ("cpu-fp32", "cuda-fp32", "cuda-bf16"):
        got = np.load(f"{tmp}/{v}-{run}.npy").astype(np.float64)
        err = np.abs(got - want).max() / np.abs(want).max()
        gerr = 0.0
        for f in os.listdir(f"{g}/{v}/grads"):
            w = np.load(f"{g}/{v}/grads/{f}")
            gerr = max(gerr, np.abs(np.load(f"{tmp}/{v}-{run}/{f}") - w).max() / max(np.abs(w).max(), 1e-3))
        print(f"{v:4s} {run:9s} logits max error / max magnitude {err:.2e}; gradients (each against max(its magnitude, 1e-3)) {gerr:.2e}")
EOF
}
export -f interop
export B
part interop interop.txt 60 bash -c interop
part train-step train-step.txt 90 $B sweep --mode train-step --device cuda --task text --dim 64 --heads 2 --layers 2 \
  --mlp-dim 128 --batch 32 --variants full,flash,linformer:k=256,sliding:R=64,ls:w=8,r=32,lsra,nystromformer,performer \
  --n 1024,4096 --min-time 0.3 --max-time 3 --no-progress --profile 3 --out "$OUT/train-step.json"
# The same step in bf16: cuBLAS on tensor cores and flash on its tensor-core kernels.
part train-step-bf16 train-step.txt 90 $B sweep --mode train-step --device cuda --task text --dim 64 --heads 2 --layers 2 \
  --mlp-dim 128 --batch 32 --variants full,flash,linformer:k=256,sliding:R=64,ls:w=8,r=32,lsra,nystromformer,performer \
  --n 1024,4096 --min-time 0.3 --max-time 3 --no-progress --profile 3 --precision bf16 --out "$OUT/train-step-bf16.json"
# Where the train step's time goes (issue #36 item 3: launches, fusions): nsys's kernel and API summaries
# of two points, where the machine has Nsight Systems.
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
  part profile profile.txt 120 "$NSYS" profile --stats=true --force-overwrite=true -o /tmp/lsb-train-step \
    $B sweep --mode train-step --device cuda --task text --dim 64 --heads 2 --layers 2 --mlp-dim 128 --batch 32 \
    --variants flash,ls:w=8,r=32 --n 1024 --min-time 0.3 --max-time 1 --no-progress --out /tmp/lsb-profile.json
else
  echo "== profile: no Nsight Systems (nsys) on this machine" | tee -a "$OUT/summary.txt"
fi
if [ -n "$LISTOPS" ]; then
  DATA=/tmp/lsbench-listops
  part listops-data summary.txt 60 $B data generate listops --out $DATA --seed 1
  for v in $LISTOPS; do
    slug=$(echo "$v" | tr ':,=' '-_-')
    part "listops $v" summary.txt 240 $B train --task listops --data-dir $DATA --preset lra-small --variant "$v" \
      --device cuda --no-progress --checkpoint-dir /tmp/ck-$slug --resume --out "$OUT/listops-$slug.json"
  done
fi
