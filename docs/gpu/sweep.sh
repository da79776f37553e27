#!/usr/bin/env bash
# The GPU attention sweeps of docs/PERFORMANCE.md, run on the device machine from the repository root
# after docs/gpu/pack.sh (binaries in .gpu/). Writes reports and logs into ${OUT:-gpu-out}.
#   (D=256, h=4, b=2) and (D=1024, h=16, d=64, b=1), attn-fwdbwd, fp32, every variant (and bf16: every
#   variant at D=1024, flash and ls at D=256),
#   plus PyTorch's scaled_dot_product_attention on the same shapes (layer and core, fp32 and bf16).
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu/lsbench
T="--min-time 0.2 --min-reps 5 --max-time 6"
NS="1024 2048 4096 8192 16384 32768 65536"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$B attention bench --device cuda --mode fwdbwd --dim 256 --heads 4 --batch 2 $T \
  --variant full flash linformer:k=256 sliding:R=64 ls:w=8,r=32 --n $NS --json "$OUT/attn-d256.json" \
  2>&1 | tail -40 | tee "$OUT/attn-d256.txt"
$B attention bench --device cuda --mode fwdbwd --dim 1024 --heads 16 --batch 1 $T \
  --variant full flash linformer:k=256 sliding:R=64 ls:w=8,r=32 --n $NS --json "$OUT/attn-d1024.json" \
  2>&1 | tail -40 | tee "$OUT/attn-d1024.txt"
# bf16 (cuBLAS on tensor cores for the products, flash's own tensor-core kernels; the window kernels stay
# fp32), the same shape; then flash alone in bf16 at D=256 on the lengths PyTorch is measured at below.
$B attention bench --device cuda --mode fwdbwd --dim 1024 --heads 16 --batch 1 --precision bf16 $T \
  --variant full flash linformer:k=256 sliding:R=64 ls:w=8,r=32 --n $NS --json "$OUT/attn-d1024-bf16.json" \
  2>&1 | tail -40 | tee "$OUT/attn-d1024-bf16.txt"
$B attention bench --device cuda --mode fwdbwd --dim 256 --heads 4 --batch 2 --precision bf16 $T \
  --variant flash ls:w=8,r=32 --n 1024 4096 16384 --json "$OUT/attn-d256-bf16.json" \
  2>&1 | tail -20 | tee "$OUT/attn-d256-bf16.txt"
python3 .gpu/sdpa_reference.py --what layer --b 1 --h 16 --d 64 --n 1024 2048 4096 8192 16384 32768 \
  --dtype bf16 fp32 2>&1 | tee "$OUT/sdpa-d1024-layer.jsonl"
python3 .gpu/sdpa_reference.py --what layer --b 2 --h 4 --d 64 --n 1024 4096 16384 --dtype bf16 fp32 2>&1 \
  | tee "$OUT/sdpa-d256-layer.jsonl"
