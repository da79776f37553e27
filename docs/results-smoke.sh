#!/usr/bin/env bash
# The smoke table of docs/RESULTS.md: the smoke preset on every task x variant, one report each, then
# a Markdown table (test accuracy at the best validation, majority class, steps/s, peak memory).
# Usage: docs/results-smoke.sh [OUTDIR]   (about 4 minutes on 2 cores; needs the shipped data
# extracted into build/release/data, which the test suite does on its first run)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/results-smoke}
mkdir -p "$out"
B=build/release/lsbench
data=build/release/data
[ -f "$out/listops/basic_test.tsv" ] ||
  "$B" data generate listops --out "$out/listops" --seed 1 --train 5000 --val 500 --test 2000 \
    --min-length 10 --max-length 250
declare -A dir=([listops]="$out/listops" [text]="$data/aclImdb" [image]="$data/cifar-10-batches-bin")
for task in listops text image; do
  [ -d "${dir[$task]}" ] || { echo "skipping $task: ${dir[$task]} is missing"; continue; }
  for v in full flash linformer:k=256 sliding:R=64 ls:w=8,r=32; do
    "$B" train --task $task --data-dir "${dir[$task]}" --preset smoke --variant $v --threads 2 --no-progress \
      --out "$out/$task-${v%%:*}.json" | tail -1
  done
done
python3 - "$out" <<'PY'
import json, sys, glob
print("| task | variant | test acc. (best val) | test acc. (final) | majority class | steps/s | peak tracked memory |")
print("|---|---|---|---|---|---|---|")
for task in ["listops", "text", "image"]:
    for f in sorted(glob.glob(f"{sys.argv[1]}/{task}-*.json")):
        r = json.load(open(f))["results"][0]
        a, c = r["accuracy"], r["config"]
        spec = c["variant"] + (":" + ",".join(f"{k}={v}" for k, v in c["variant_params"].items() if k != "n_max") if c["variant_params"] else "")
        print(f"| {task} | `{spec}` | {100*a['test_at_best_val']:.1f}% | {100*a['test_final']:.1f}% | "
              f"{100*a['test_majority_class']:.1f}% | {r['throughput']['steps_per_s']:.1f} | "
              f"{r['memory']['peak_tracked_bytes']/2**20:.0f} MiB |")
PY
