#!/usr/bin/env bash
# The sweep behind docs/PERFORMANCE.md "Causal attention": every causal variant beside its bidirectional
# self (sweep --causal off,on), forward and forward+backward, at the LRA width (D = 64, h = 2, b = 8) and at
# the authors' enwik8 width (D = 512, h = 8, b = 1, with ls:w=512,l=16,r=1), n = 1K .. 16K, and maxlen of
# the causal training step for full, flash and ls under one budget.
# Usage: docs/causal-sweep.sh [OUTDIR] [MAX_N]   (MAX_N 16384 by default; 4096 takes minutes on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/causal}
max_n=${2:-16384}
mkdir -p "$out"
B=build/release/lsbench
T=(--warmup 1 --min-reps 3 --min-time 0.5 --max-time 60 --memory-budget 16GiB --no-progress)
"$B" sweep --variants full,flash,sliding:R=64,ls:w=8,r=32,lsra,performer --causal off,on --n "1024:$max_n:x2" \
  --batch 8 --dim 64 --heads 2 --mode attn-fwd,attn-fwdbwd "${T[@]}" --out "$out/d64.json" | tee "$out/d64.txt"
# At the enwik8 width the bidirectional ls is the LRA form (w=512: a window of 1,024 keys); l is causal only.
"$B" sweep --variants flash,ls:w=512,r=1 --causal off --n "1024:$max_n:x2" --batch 1 --dim 512 --heads 8 \
  --mode attn-fwd,attn-fwdbwd "${T[@]}" --out "$out/d512-bidirectional.json" | tee "$out/d512-bidirectional.txt"
"$B" sweep --variants flash,ls:w=512,l=16,r=1 --causal on --n "1024:$max_n:x2" --batch 1 --dim 512 --heads 8 \
  --mode attn-fwd,attn-fwdbwd "${T[@]}" --out "$out/d512-causal.json" | tee "$out/d512-causal.txt"
"$B" maxlen --variants full,flash,ls:w=512,l=16,r=1 --causal --mode train-step --batch 1 --dim 512 --heads 8 \
  --layers 2 --granule 1024 --memory-budget 4GiB --out "$out/maxlen.json" | tee "$out/maxlen.txt"
