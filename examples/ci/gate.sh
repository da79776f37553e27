#!/usr/bin/env bash
# The CI gate: a small attention sweep, its HTML render, and a comparison with a baseline report made
# by the same runner type. Exit status: compare's (1 on a regression, 2 on an unusable report), 0 when
# there is no baseline yet (this run then becomes it), or the sweep's own when it fails.
#   examples/ci/gate.sh LSBENCH BASELINE.json OUT_DIR
set -uo pipefail
lsbench=$1 baseline=$2 out=$3
mkdir -p "$out"
"$lsbench" sweep --variants full,flash,linformer:k=64,sliding:R=32,ls:w=8,r=16 --n 512,1024,2048 \
  --batch 2 --dim 64 --heads 2 --mode attn-fwdbwd --no-progress --out "$out/sweep.json" || exit $?
"$lsbench" report "$out/sweep.json" --format html -o "$out/sweep.html" || exit $?
if [ -f "$baseline" ]; then
  "$lsbench" compare "$baseline" "$out/sweep.json" -o "$out/compare.md"
  exit $?
fi
printf '# lsbench gate\n\nNo baseline report for this runner type yet: this run becomes it.\n' >"$out/compare.md"
