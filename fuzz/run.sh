#!/usr/bin/env bash
# Searches with libFuzzer: builds the harnesses with clang (preset fuzz: ASan + UBSan + coverage) and
# runs each one from its seed corpus in fuzz/corpus/<name>/, new inputs going to build/fuzz/corpus/<name>/
# (the tree's seeds stay small). Findings (crash-*, leak-*, timeout-*, oom-*) land in build/fuzz/findings/.
#
#   fuzz/run.sh [--runs N] [--max-time S] [--jobs J] [--merge] [HARNESS...]
#     --runs N      executions per harness (default 1000000)
#     --max-time S  stop a harness after S seconds even if N is not reached (default 600)
#     --jobs J      harnesses run side by side (default: the number of CPUs)
#     --merge       afterwards, add the inputs that reach new coverage to fuzz/corpus/<name>/ (minimised)
#     HARNESS       npy report listops text retrieval cifar png pathfinder checkpoint argv (default: all)
#
# Prints one line per harness (executions, seconds, executions/s, coverage, corpus, findings) and writes
# the same table to build/fuzz/summary.md. Exit 1 when any harness found something.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=1000000 max_time=600 jobs=$(nproc) merge=0 harnesses=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --max-time) max_time=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    -*) echo "fuzz/run.sh: unknown option $1" >&2; exit 2 ;;
    *) harnesses+=("$1"); shift ;;
  esac
done
[ ${#harnesses[@]} -gt 0 ] || harnesses=(npy report listops text retrieval cifar png pathfinder checkpoint argv)

missing=()
for p in clang libclang-rt-14-dev libomp-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f build/fuzz/build.ninja ] || cmake --preset fuzz >/dev/null
cmake --build build/fuzz -j "$(nproc)" --target "${harnesses[@]/#/lsbench_fuzz_}"

mkdir -p build/fuzz/findings build/fuzz/logs
run_one() {
  local h=$1 work=build/fuzz/corpus/$1
  mkdir -p "$work"
  # rss/malloc limits: a loader that asks for gigabytes on a small file is a finding; -timeout: a hang is one.
  # detect_leaks=0: caches (oneDNN's, the allocator's) live as long as the process. malloc_context_size=4:
  # ASan records 4 frames per allocation instead of 30 (the record was a tenth of the argv harness's time);
  # replay a finding under plain ASAN_OPTIONS for its full stacks. OMP_WAIT_POLICY=passive: each execution
  # opens one parallel region (the thread grant), and workers spinning after it took a core from the
  # process beside it (with two processes on two cores, 1.5x the executions/s).
  # The argument-vector harness prints an error line per input: its stderr is closed (libFuzzer keeps its own).
  local quiet=()
  [ "$h" = argv ] && quiet=(-close_fd_mask=2)
  ASAN_OPTIONS=detect_leaks=0:malloc_context_size=4 OMP_WAIT_POLICY=passive "build/fuzz/fuzz/lsbench_fuzz_$h" "$work" "fuzz/corpus/$h" -runs="$runs" "${quiet[@]}" \
    -max_total_time="$max_time" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="build/fuzz/findings/$h-" >"build/fuzz/logs/$h.log" 2>&1 || true
}
export -f run_one
export runs max_time
printf '%s\n' "${harnesses[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'

status=0
{
  echo "| harness | executions | seconds | executions/s | coverage (edges) | corpus | findings |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for h in "${harnesses[@]}"; do
    log=build/fuzz/logs/$h.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(find "build/fuzz/corpus/$h" -type f | wc -l)
    found=$(find build/fuzz/findings -name "$h-*" -type f | wc -l)
    [ "$found" -eq 0 ] || status=1
    echo "| $h | ${execs:-?} | ${secs:-?} | ${rate:-?} | ${cov:-?} | $corp | $found |"
  done
} | tee build/fuzz/summary.md

if [ "$merge" -eq 1 ]; then
  for h in "${harnesses[@]}"; do
    ASAN_OPTIONS=detect_leaks=0 "build/fuzz/fuzz/lsbench_fuzz_$h" -merge=1 "fuzz/corpus/$h" "build/fuzz/corpus/$h" \
      >"build/fuzz/logs/$h.merge.log" 2>&1
  done
fi
exit $status
