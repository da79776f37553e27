#!/usr/bin/env bash
# Runs one sweep (8 variants x 4 modes x 3 lengths, one with padding, x fp32/bf16: 192 points, seconds)
# and short training runs (every task kind's smoke recipe, 4 steps, on ListOps generated small) with two
# lsbench binaries and checks that a change left the results alone: every id pairs (the config and its
# canonical id unchanged) and every point has the same status, tracked peak bytes, analytic bytes and
# cost-model FLOPs, every training run the same status and loss curve; then `compare` of the two sweep
# reports (times are single samples: read, not gated).
#   docs/same-points.sh OLD_LSBENCH NEW_LSBENCH OUT_DIR
set -euo pipefail
OLD=$1 NEW=$2 OUT=$3
mkdir -p "$OUT"
ARGS=(--variants full,flash,linformer:k=64,sliding:R=16,ls:w=8,r=16,nystromformer,performer,lsra
      --mode attn-fwd,attn-fwdbwd,model-fwd,train-step --n 200,256,512 --precision fp32,bf16 --batch 2 --dim 32
      --heads 2 --layers 1 --task listops --warmup 0 --min-reps 1 --min-time 0 --seed 3 --no-progress)
"$OLD" sweep "${ARGS[@]}" --out "$OUT/old.json" > "$OUT/old.log"
"$NEW" sweep "${ARGS[@]}" --out "$OUT/new.json" > "$OUT/new.log"
"$NEW" data generate listops --out "$OUT/listops" --train 300 --val 60 --test 60 --min-length 10 --max-length 120 \
  --seed 2 > /dev/null
for v in full flash ls:w=8,r=16 performer; do
  for bin in old new; do
    B=$OLD; [ $bin = new ] && B=$NEW
    "$B" train --task listops --data-dir "$OUT/listops" --preset smoke --variant "$v" --steps 4 --eval-every 2 \
      --log-every 1 --threads 1 --seed 3 --no-progress --out "$OUT/train-$bin-${v%%:*}.json" > /dev/null
  done
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def points(name):
    return {r["id"]: r for r in json.load(open(f"{out}/{name}.json"))["results"]}
def facts(r):
    m = r.get("memory", {})
    return (r.get("status"), m.get("peak_tracked_bytes"), m.get("analytic_bytes"), r.get("throughput", {}).get("flops"))
old, new = points("old"), points("new")
paired = set(old) & set(new)
print(f"points: old {len(old)}, new {len(new)}, paired {len(paired)}")
differ = [k for k in sorted(paired) if facts(old[k]) != facts(new[k])]
for k in differ:
    print("differs:", k, old[k]["config"]["variant"], old[k]["config"]["mode"], facts(old[k]), "->", facts(new[k]))
ok = len(paired) == len(old) == len(new) and not differ
import glob
runs = 0
for f in sorted(glob.glob(f"{out}/train-old-*.json")):
    a = json.load(open(f))["results"][0]
    b = json.load(open(f.replace("train-old-", "train-new-")))["results"][0]
    same = a["id"] == b["id"] and a["status"] == b["status"] and a["curves"]["loss"] == b["curves"]["loss"]
    runs += 1
    print(f"train {a['config']['variant']}: {'same id, status and losses' if same else 'DIFFERS'}")
    ok = ok and same
print(f"training runs: {runs}")
print("same points, same status, memory and FLOPs" if ok else "NOT the same")
sys.exit(0 if ok else 1)
PY
"$NEW" compare "$OUT/old.json" "$OUT/new.json" --time-threshold 1000% --out "$OUT/compare.md" > /dev/null || true
