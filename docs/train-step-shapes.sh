#!/usr/bin/env bash
# The table "training step at the LRA shapes" of docs/PERFORMANCE.md: one training step of the lra-small
# model (D = 64, 2 heads, 2 layers, MLP 128; AdamW, fp32) for every variant at ListOps' shape (b = 32,
# n = 2048), Text's (b = 32, n = 4096) and Image/Pathfinder's (b = 256, n = 1024), timed by
# `sweep --mode train-step`. Each result carries the cost model's FLOPs per step and the share of the
# measured fp32 peak; points beyond the 16 GiB budget are recorded as oom.
#
#   docs/train-step-shapes.sh [LSBENCH] [OUT.json] [BEFORE.json]     (about 8 minutes on 2 cores)
#
# LSBENCH is the binary (default build/release/lsbench). Run the script once per build (an earlier
# commit; or a -DLSBENCH_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3 build run with
# ONEDNN_MAX_CPU_ISA=AVX2, which is what an AVX2-only CPU runs) into another OUT, back to back on an
# otherwise idle machine; given BEFORE.json, the script ends with `lsbench compare BEFORE.json OUT.json`.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/release/lsbench}
out=${2:-build/train-step-shapes.json}
rm -f "$out"
common=(--mode train-step --dim 64 --heads 2 --layers 2 --mlp-dim 128 --threads 2
        --variants full,flash,sliding,ls:w=8,r=32,nystromformer,performer,linformer,lsra
        --warmup 1 --min-reps 5 --min-time 0 --max-time 120 --memory-budget 16GiB --no-progress)
# One sweep per shape, each added to the same report (--resume keeps the points already there). Exit 4
# means a point did not fit the budget (full attention at n = 4096): a result, recorded as oom.
"$B" sweep "${common[@]}" --task listops --batch 32 --n 2048 --out "$out" || [ $? -eq 4 ]
"$B" sweep "${common[@]}" --task text --batch 32 --n 4096 --out "$out" --resume || [ $? -eq 4 ]
"$B" sweep "${common[@]}" --task image --batch 256 --n 1024 --out "$out" --resume || [ $? -eq 4 ]
"$B" report "$out"
if [ $# -ge 3 ]; then "$B" compare "$3" "$out" || true; fi  # exit 1 (a regression) is a figure here, not a failure
