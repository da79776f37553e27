#!/usr/bin/env bash
# One short GPU session's checks, run on the device machine from the repository root after
# docs/gpu/pack.sh (binaries in .gpu/), each part capped so that the whole fits one device call
# (about 7 minutes on an H100/H200). Writes logs and reports into ${OUT:-gpu-out}:
#   1. gpu.txt            nvidia-smi's view of the device
#   2. tests-cuda.txt     every [cuda] test case (attention, bf16, training kernels, encoder, train vs CPU)
#   3. sanitizer-*.txt    compute-sanitizer memcheck on the training kernels and the encoder, racecheck on
#                         the attention kernels (one test case each: the tools are slow)
#   4. train-step.*       sweep --mode train-step of the lra-small model on text, b=32, every variant
#   5. flash-bf16.*       flash and ls fwd+bwd in bf16 at (D=1024, h=16, d=64, b=1) beside PyTorch's SDPA
#                         layer on the same shapes (the CUDA issue's targets)
# Each part runs under `timeout`; a part that runs out says so in its log and the next part still runs.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu/lsbench
T=.gpu/lsbench_tests
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
part() {  # part NAME SECONDS CMD...: runs CMD under a time cap, output to $OUT/NAME.txt
  local name=$1 secs=$2
  shift 2
  local t0=$SECONDS
  timeout "$secs" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "== $name: exit $rc in $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo " (cut at ${secs} s)")" | tee -a "$OUT/summary.txt"
  tail -4 "$OUT/$name.txt" | sed 's/^/   /' | tee -a "$OUT/summary.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
part tests-cuda 150 "$T" "[cuda]" --durations yes
part sanitizer-memcheck-train 50 "$SAN" --tool memcheck --leak-check full --error-exitcode 9 "$T" "[cuda][train]"
part sanitizer-memcheck-encoder 50 "$SAN" --tool memcheck --error-exitcode 9 "$T" \
  "the encoder on CUDA computes the CPU's loss, logits and every gradient"
part sanitizer-racecheck-attention 50 "$SAN" --tool racecheck --error-exitcode 9 "$T" \
  "every variant on CUDA matches the CPU forward and backward with padding present"
part train-step 90 $B sweep --mode train-step --device cuda --task text --dim 64 --heads 2 --layers 2 \
  --mlp-dim 128 --batch 32 --variants full,flash,linformer:k=256,sliding:R=64,ls:w=8,r=32,lsra,nystromformer,performer \
  --n 1024,4096 --min-time 0.3 --max-time 3 --no-progress --out "$OUT/train-step.json"
part flash-bf16 40 $B attention bench --device cuda --mode fwdbwd --dim 1024 --heads 16 --batch 1 --precision bf16 \
  --min-time 0.2 --min-reps 5 --max-time 3 --variant flash ls:w=8,r=32 --n 4096 16384 --json "$OUT/flash-bf16.json"
part sdpa-bf16 40 python3 .gpu/sdpa_reference.py --what layer --b 1 --h 16 --d 64 --n 4096 16384 --dtype bf16
