#!/usr/bin/env bash
# The two commands of the README. Each installs what is missing (Debian packages), builds
# (incrementally: quick when nothing changed), then:
#   ./dev.sh main   runs the main job on embedded defaults and prints a readable report
#   ./dev.sh test   runs the whole test suite (what .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")"

# ocl-icd-opencl-dev: Debian's oneDNN is built with the OpenCL GPU runtime, so its CMake config needs
# OpenCL's headers and library (a Recommends of libdnnl-dev, which --no-install-recommends skips).
PACKAGES=(cmake ninja-build g++ git libdnnl-dev ocl-icd-opencl-dev libcli11-dev nlohmann-json3-dev libfmt-dev catch2 libpng-dev libarchive-dev librsvg2-bin)
BUILD=build/release
# The Catch2 tags the sanitizer build runs (dev.sh test). Not the sweep tests (minutes each there; and
# the compare gate's test times two sweeps against a 1 ms threshold, which the sanitizers' slowdown exceeds).
SANITIZED_TESTS="[npy],[profile],[report],[interop],[machine],[pathfinder]~[distribution],[listops],[optim],[memory],[matmul],[compare]~[sweep],[registry]~[sweep],[hardening],[encoder],[attention],[lm][data]~[smoke]"

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "dev.sh: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  # build.ninja, not CMakeCache.txt: a configure that failed half-way leaves a cache but no build files.
  [ -f "$BUILD/build.ninja" ] || cmake --preset release -DBUILD_TESTING=ON >/dev/null
  cmake --build "$BUILD" -j "$(nproc)"
}

case "${1:-}" in
  main)
    install_missing
    build
    # The LRA suite's smoke preset on the data it can reach (ListOps, Pathfinder and Path-X generated;
    # IMDb and CIFAR-10 from ../shared/data when it is there): every task x variant plus the efficiency
    # sweep, ending with the accuracy (LRA Table 1) and efficiency (Table 2) tables. A report newer than
    # the binary is resumed, so a second run with nothing changed only prints the summary again.
    report="$BUILD/lsbench-lra-smoke.json"
    resume=()
    [ -f "$report" ] && [ "$report" -nt "$BUILD/lsbench" ] && resume=(--resume)
    # Exit 4 means some run did not fit the memory budget (full attention on Path-X): a result, shown as
    # oom in the tables, not a failure of the job.
    "$BUILD/lsbench" lra --preset smoke --data-dir "$BUILD/lra-data" --archives ../shared/data --out "$report" \
      "${resume[@]}" || [ $? -eq 4 ]
    # Character-level language modelling (smoke preset, causal decoders) on the IMDb reviews as a byte-level
    # stand-in for enwik8: every variant with a causal form, ending with the BPC table.
    lm_report="$BUILD/lsbench-lm-smoke.json"
    lm_resume=()
    [ -f "$lm_report" ] && [ "$lm_report" -nt "$BUILD/lsbench" ] && lm_resume=(--resume)
    "$BUILD/lsbench" lra --preset smoke --tasks corpus --no-efficiency \
      --variants full,flash,sliding:R=32,lsra,performer,ls:w=32,l=16,r=1 \
      --data-dir "$BUILD/lra-data" --archives ../shared/data --out "$lm_report" "${lm_resume[@]}"
    ;;
  test)
    install_missing
    build
    # First the same code under AddressSanitizer and UndefinedBehaviorSanitizer (CPU only): the unit tests
    # of files, reports, the model, the optimiser, interop and hostile input (the training and sweep tests
    # are left out: they take minutes there). The allocator may return null so that an impossible
    # request is refused as without the sanitizer; leaks are not checked (caches live as long as the process).
    [ -f build/asan/build.ninja ] || cmake --preset asan -DBUILD_TESTING=ON >/dev/null
    cmake --build build/asan -j "$(nproc)"
    ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
      LSBENCH_REPORT_SCHEMA="$PWD/reports/lsbench-report.schema.json" \
      build/asan/tests/lsbench_tests "$SANITIZED_TESTS"
    # The fuzz harnesses' corpora (fuzz/corpus: seeds and past findings) replayed under the sanitizers.
    ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build/asan -R '^fuzz_replay_' --output-on-failure -j "$(nproc)"
    # Then the whole suite, whose CTest summary closes the run.
    ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)"
    ;;
  *)
    echo "usage: ./dev.sh main | test" >&2
    exit 2
    ;;
esac
