#!/usr/bin/env bash
# The sweep behind docs/PERFORMANCE.md "Causal attention": every causal variant beside its bidirectional
# self (sweep --causal off,on), forward and forward+backward, at the LRA width (D = 64, h = 2, b = 8) and at
# the authors' enwik8 width (D = 512, h = 8, b = 1, with ls:w=512,l=16,r=1), n = 1K .. 16K, and maxlen of
# the causal training step for full, flash and ls under one budget.
# `ls` runs at its defaults: bidirectional w=8, r=32 (LRA), causal w=512, l=16, r=1 (the authors' enwik8).
# Usage: docs/causal-sweep.sh [OUTDIR] [MAX_N]   (MAX_N 16384 by default; 4096 takes minutes on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/causal}
max_n=${2:-16384}
mkdir -p "$out"
B=build/release/lsbench
T=(--warmup 1 --min-reps 3 --min-time 0.5 --max-time 60 --memory-budget 16GiB --no-progress)
"$B" sweep --variants full,flash,sliding:R=64,ls,lsra,performer --causal off,on --n "1024:$max_n:x2" \
  --batch 8 --dim 64 --heads 2 --mode attn-fwd,attn-fwdbwd "${T[@]}" --out "$out/d64.json" | tee "$out/d64.txt"
# At the enwik8 width: flash both ways, and causal ls beside causal flash. (Bidirectional ls:w=512 is left
# out: its float64 reference check at n = 512 alone takes minutes, the window being the whole sequence.)
"$B" sweep --variants flash --causal off,on --n "1024:$max_n:x2" --batch 1 --dim 512 --heads 8 \
  --mode attn-fwd,attn-fwdbwd "${T[@]}" --out "$out/d512-flash.json" | tee "$out/d512-flash.txt"
"$B" sweep --variants ls:w=512,l=16,r=1 --causal on --n "1024:$max_n:x2" --batch 1 --dim 512 --heads 8 \
  --mode attn-fwd,attn-fwdbwd "${T[@]}" --out "$out/d512-ls.json" | tee "$out/d512-ls.txt"
"$B" maxlen --variants full,flash,ls:w=512,l=16,r=1 --causal --mode train-step --batch 1 --dim 512 --heads 8 \
  --layers 2 --granule 1024 --limit 32768 --memory-budget 4GiB --out "$out/maxlen-4GiB.json" | tee "$out/maxlen-4GiB.txt"
"$B" maxlen --variants full,flash,ls:w=512,l=16,r=1 --causal --mode train-step --batch 1 --dim 512 --heads 8 \
  --layers 2 --granule 1024 --limit 65536 --memory-budget 1GiB --out "$out/maxlen-1GiB.json" | tee "$out/maxlen-1GiB.txt"
