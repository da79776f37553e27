#!/usr/bin/env bash
# The example renders of docs/examples/: lsbench report on the measured CPU sweeps of
# docs/sweeps/cpu-2026-11-22/ (and the LRA smoke suite's report where present), as Markdown with
# linked SVG plots, one self-contained HTML file, CSV, and PNG copies of the plots rendered headless by
# rsvg-convert (Debian librsvg2-bin) for a look without a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
lsbench=${LSBENCH:-build/release/lsbench}
out=docs/examples
rm -rf "$out" && mkdir -p "$out"
inputs=(docs/sweeps/cpu-2026-11-22/train-step.json docs/sweeps/cpu-2026-11-22/attn-d256.json
        docs/sweeps/cpu-2026-11-22/maxlen.json)
[ -f docs/lra-smoke/report.json ] && inputs+=(docs/lra-smoke/report.json)
"$lsbench" report "${inputs[@]}" -o "$out/report.md" --plots "$out/plots"
"$lsbench" report "${inputs[@]}" --format html -o "$out/report.html"
"$lsbench" report "${inputs[@]}" --format csv -o "$out/report.csv"
for svg in "$out"/plots/*.svg; do rsvg-convert -o "${svg%.svg}.png" "$svg"; done
"$lsbench" data generate pathfinder --size 32 --count 16 --seed 0 --out "$out/pathfinder-data" >/dev/null
"$lsbench" data generate pathfinder --size 128 --count 12 --seed 0 --out "$out/pathfinder-data" >/dev/null
"$lsbench" data preview pathfinder "$out/pathfinder-data" --size 32 --count 16 -o "$out/pathfinder32-grid.png"
"$lsbench" data preview pathfinder "$out/pathfinder-data" --size 128 --count 12 -o "$out/pathx128-grid.png"
rm -rf "$out/pathfinder-data"
ls -l "$out" "$out/plots"
