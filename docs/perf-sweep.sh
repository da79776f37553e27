#!/usr/bin/env bash
# The sweep behind docs/PERFORMANCE.md: both shapes of the foundation issue, both modes, every
# variant, n = 1K .. 32K under a 16 GiB budget (points that do not fit are recorded as oom).
# Usage: docs/perf-sweep.sh [OUTDIR]   (about 15 minutes on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/perf}
mkdir -p "$out"
B=build/release/lsbench
V=(--variant full --variant flash --variant linformer:k=256 --variant sliding:R=64 --variant ls:w=8,r=32)
N=(--n 1024 2048 4096 8192 16384 32768)
T=(--warmup 1 --min-reps 3 --min-time 1 --max-time 60 --memory-budget 16GiB)
for mode in fwd fwdbwd; do
  "$B" attention bench "${V[@]}" "${N[@]}" --batch 8 --dim 64 --heads 2 --mode $mode "${T[@]}" \
    --json "$out/d64-$mode.json" | tee "$out/d64-$mode.txt"
  "$B" attention bench "${V[@]}" "${N[@]}" --batch 2 --dim 256 --heads 4 --mode $mode "${T[@]}" \
    --json "$out/d256-$mode.json" | tee "$out/d256-$mode.txt"
done
