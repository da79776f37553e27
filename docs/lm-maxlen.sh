#!/usr/bin/env bash
# The paper's "3x longer sequences" measured (docs/RESULTS.md "How long a sequence fits"): maxlen of the
# causal training step (forward, backward and AdamW, every buffer tracked) for full, flash and
# ls:w=512,l=16,r=1 at the enwik8-base width (D = 512, h = 8, 12 blocks, MLP 2048, b = 1, byte vocabulary)
# under 8 GiB and 16 GiB. Each fitting probe runs two whole steps (several minutes each at n = 25-31K on 2
# cores; both budgets took 82 min on 2026-12-07).
# Usage: docs/lm-maxlen.sh [OUTDIR] [DEVICE]   (DEVICE cpu by default; cuda on a GPU machine)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/lm-maxlen}
device=${2:-cpu}
mkdir -p "$out"
for budget in 8GiB 16GiB; do
  build/release/lsbench maxlen --variants full,flash,ls:w=512,l=16,r=1 --causal --task enwik8 --mode train-step \
    --batch 1 --dim 512 --heads 8 --layers 12 --mlp-dim 2048 --granule 1024 --device "$device" \
    --memory-budget "$budget" --out "$out/maxlen-$budget.json" | tee "$out/maxlen-$budget.txt"
done
