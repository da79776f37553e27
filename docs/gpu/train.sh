#!/usr/bin/env bash
# The GPU training measurements of docs/PERFORMANCE.md and docs/RESULTS.md, run on the device machine
# from the repository root after docs/gpu/pack.sh (binaries in .gpu/). Writes into ${OUT:-gpu-out}.
#   1. the GPU tests ([cuda]: attention, the training kernels, the encoder, a train run vs the CPU);
#   2. train-step of the LRA small model on byte-level text, b=32, every variant, n = 1K..8K (LRA Table 2's
#      shape, as `lra --preset lra-small` measures it on the CPU);
#   3. lra-small ListOps runs (the whole 5,000-step recipe) for the variants given as arguments
#      (default: ls:w=8,r=32 and full), each resumable from its checkpoint directory.
# Each part fits the device tool's 10-minute call limit when run alone: PART=tests|steps|listops.
set -uo pipefail
OUT=${OUT:-gpu-out}
PART=${PART:-all}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu/lsbench
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
if [ "$PART" = all ] || [ "$PART" = tests ]; then
  .gpu/lsbench_tests "[cuda]" 2>&1 | tail -60 | tee "$OUT/tests-cuda.txt"
fi
if [ "$PART" = all ] || [ "$PART" = steps ]; then
  $B sweep --mode train-step --device cuda --task text --dim 64 --heads 2 --layers 2 --mlp-dim 128 --batch 32 \
    --variants full,flash,linformer:k=256,sliding:R=64,ls:w=8,r=32,lsra,nystromformer,performer \
    --n 1024,2048,3072,4096,8192 --min-time 0.5 --max-time 10 --no-progress --out "$OUT/train-step-lra-small.json" \
    2>&1 | tail -50 | tee "$OUT/train-step-lra-small.txt"
fi
if [ "$PART" = all ] || [ "$PART" = listops ]; then
  DATA=${DATA:-$OUT/listops}
  [ -f "$DATA/basic_train.tsv" ] || $B data generate listops --out "$DATA" --seed 1
  variants=("$@")
  [ ${#variants[@]} -eq 0 ] && variants=("ls:w=8,r=32" full)
  for v in "${variants[@]}"; do
    slug=$(echo "$v" | tr ':,=' '-_-')
    $B train --task listops --data-dir "$DATA" --preset lra-small --variant "$v" --device cuda --no-progress \
      --checkpoint-dir "$OUT/ckpt-listops-$slug" --resume --out "$OUT/listops-$slug.json" 2>&1 | tail -3 \
      | tee -a "$OUT/listops.txt"
  done
fi
