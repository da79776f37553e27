#!/usr/bin/env bash
# The CPU sweeps and maxlen runs of docs/PERFORMANCE.md ("Sweeps on this machine"), in the order they
# were run. Usage: docs/sweep-cpu.sh OUTDIR  (about 27 minutes on 2 cores)
set -uo pipefail
B=${LSBENCH:-build/release/lsbench}
OUT=${1:?usage: docs/sweep-cpu.sh OUTDIR}
mkdir -p "$OUT"
# The longest sequence for a training step of the LRA small model (D=64, h=2, L=2, b=8) in 16 GiB.
# flash is stopped at n = 16K: each of its steps there takes about a minute on 2 cores.
$B maxlen --variants full,ls:w=8,r=32 --mode train-step --batch 8 --dim 64 --heads 2 --layers 2 \
  --memory-budget 16GiB --out "$OUT/maxlen.json" 2>&1 | tee "$OUT/maxlen.txt"
$B maxlen --variants flash --mode train-step --batch 8 --dim 64 --heads 2 --layers 2 \
  --memory-budget 16GiB --limit 16384 --out "$OUT/maxlen-flash.json" 2>&1 | tee "$OUT/maxlen-flash.txt"
# Training steps of the LRA small model, n from 1K up, all variants, 16 GiB budget, capped at 30 s a point.
$B sweep --variants full,flash,linformer:k=256,sliding:R=64,ls:w=8,r=32 --n 1024:32768:x2 --mode train-step \
  --batch 8 --dim 64 --heads 2 --layers 2 --memory-budget 16GiB --min-time 1 --min-reps 3 --warmup 1 \
  --max-time 30 --no-progress --out "$OUT/train-step.json" 2>&1 | tee "$OUT/train-step.txt"
# The attention layer alone at D=256, h=4, b=2.
$B sweep --variants full,flash,linformer:k=256,sliding:R=64,ls:w=8,r=32 --n 1024:16384:x2 --mode attn-fwdbwd \
  --batch 2 --dim 256 --heads 4 --memory-budget 16GiB --min-time 1 --min-reps 3 --warmup 1 --max-time 30 \
  --no-progress --out "$OUT/attn-d256.json" 2>&1 | tee "$OUT/attn-d256.txt"
