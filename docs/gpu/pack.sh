#!/usr/bin/env bash
# Builds lsbench for a Hopper GPU machine (sm_90, no -march=native so that it runs on any x86-64)
# and packs the binaries with the shared libraries that such a machine may lack (oneDNN, fmt, libpng)
# into .gpu/, to be carried to the machine and run there with
#   LD_LIBRARY_PATH=.gpu/lib:/usr/local/cuda/lib64 .gpu/lsbench ...
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f build/gpu/CMakeCache.txt ] || cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLSBENCH_NATIVE=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DBUILD_TESTING=ON >/dev/null
cmake --build build/gpu -j "$(nproc)"
rm -rf .gpu && mkdir -p .gpu/lib
cp build/gpu/lsbench build/gpu/tests/lsbench_tests docs/gpu/sdpa_reference.py .gpu/
strip .gpu/lsbench .gpu/lsbench_tests
for lib in $(ldd build/gpu/lsbench | awk '/=>/ {print $3}' | grep -E 'dnnl|fmt|png|gomp|OpenCL'); do
  cp -L "$lib" .gpu/lib/
done
du -sh .gpu
