#!/usr/bin/env bash
# Training steps/s with and without dropout on attention probabilities (docs/PERFORMANCE.md, "Dropout on
# attention probabilities"): the smoke ListOps data, the small model, rounds alternating.
#   docs/attn-dropout-cost.sh [LSBENCH] [ROUNDS]     (defaults: build/release/lsbench, 2)
set -euo pipefail
BIN=${1:-build/release/lsbench}
ROUNDS=${2:-2}
DATA=build/release/data/listops-smoke-seed1   # made by the test suite, or: lsbench data generate listops
out=$(mktemp)
common=(train --task listops --data-dir "$DATA" --preset smoke --dim 64 --layers 2 --mlp-dim 128 --batch 32
        --dropout 0.1 --steps 240 --eval-every 240 --max-val 64 --max-test 64 --threads 2 --no-progress)
for round in $(seq "$ROUNDS"); do
  for v in full flash ls:w=8,r=32; do
    for attn in 0 0.1; do
      "$BIN" "${common[@]}" --variant "$v" --attention-dropout "$attn" --out "$out" >/dev/null
      sps=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(round(r['throughput']['steps_per_s'], 2))" "$out")
      echo "round $round  $v  attention dropout $attn  $sps steps/s"
    done
  done
done
rm -f "$out"
