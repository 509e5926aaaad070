#!/usr/bin/env bash
# The one command that fills the README's benchmark table on a GPU machine (about 4 minutes on
# an H100-class card). After `bash ../shared/gpu/fetch-vulkan-loader.sh` and
# `cargo build --release` here:
#   .gl/run bash scripts/gpu-bench.sh target/release/frflow "$OUT"
# Writes OUT/tables.txt (everything printed) and OUT/bench-json.tar (one JSON report per
# benchmark), two files, since the device tool returns only a few.
#
# Every row carries its kernel path and its ratio to the minimal Gaussian sum timed in the same
# run (`frflow bench`'s yardstick), so the figures say how close frflow is to the card's limit
# with or without a ceiling. The `torus-images-sfu` kernel row times the images' exponentials on
# the special-function unit against `torus-images` (exp2_fma on the FMA pipe, the engines'
# default), and the d3-A-sfu run times variant-A steps with `image_exponentials = "sfu"`: the
# cost model predicts the special-function unit about 1.7 times faster on an H100 (README); if the
# card agrees, the default should change. A software adapter is refused (--hardware-only): a
# silent fallback to lavapipe would take hours at these sizes.
#
# Ceilings (pair evaluations per second, the special-function unit's exp2 rate and instruction
# issue): wgpu does not report a card's clock or unit count, so they come from the environment,
# CEILING_D12 (d ≤ 2) and CEILING_D3 (d ≥ 3), with H100/H200 values (DESIGN.md) when the adapter
# is one of those and no ceiling otherwise; the ratio to the minimal kernel is printed anyway.
set -uo pipefail  # no -e: one failing benchmark must not lose the others
bin=${1:?usage: gpu-bench.sh FRFLOW_BINARY OUT_DIR}
final=${2:?usage: gpu-bench.sh FRFLOW_BINARY OUT_DIR}
out=$(mktemp -d)
mkdir -p "$final"
trap 'tar -cf "$final/bench-json.tar" -C "$out" .' EXIT
exec > >(tee "$final/tables.txt") 2>&1
"$bin" info
adapter=$("$bin" info | sed -n 's/^\[0\] //p')
case "$adapter" in
  *H100*|*H200*) d12=${CEILING_D12:-4.2e12}; d3=${CEILING_D3:-3.9e12} ;;
  *) d12=${CEILING_D12:-}; d3=${CEILING_D3:-} ;;
esac
ceiling() { # the --ceiling flag for dimension $1, or nothing
  local c; if [ "$1" -le 2 ]; then c=$d12; else c=$d3; fi
  [ -n "$c" ] && echo "--ceiling $c"
}
run() { # NAME ARGS...: one benchmark, its JSON kept, its wall time printed
  local name=$1; shift
  local start; start=$(date +%s)
  "$bin" bench --hardware-only "$@" --json "$out/bench-$name.json"
  echo "[$name: $(( $(date +%s) - start )) s]"
}
# d = 3 at N = 2^20: the minimal kernel, every kernel path, and variant A and B steps.
run d3-AB --n 1048576 --d 3 --variant A,B --repeats 3 $(ceiling 3)
# The same variant-A step with the images' exponentials on the special-function unit.
run d3-A-sfu --n 1048576 --d 3 --variant A --image-exponentials sfu --repeats 3 --kernel-paths none $(ceiling 3)
# The two-pass and quadrature variants at sizes where a step takes well under a second.
# Each later run times the kernel paths it is about, not all seven again (--kernel-paths).
run d3-C --n 262144 --d 3 --variant C --repeats 3 --kernel-paths none $(ceiling 3)
run d3-D --n 65536 --d 3 --variant D --repeats 3 --kernel-paths none $(ceiling 3)
# Small N: launch-bound steps, with and without the diagnostics readback every 10 steps.
run d3-small --n 16384,65536 --d 3 --variant A,B --kernel-paths torus-images $(ceiling 3)
# Dimension dependence of every path (ceilings per d).
for d in 1 2; do run "d$d" --n 1048576 --d "$d" --variant A --repeats 3 $(ceiling "$d"); done
for d in 5 8; do run "d$d" --n 262144 --d "$d" --variant A --repeats 3 $(ceiling "$d"); done
# The kernel-sum workgroup size (and source tile), alone and in steps (default 128).
for wg in 64 256; do
  run "d3-wg$wg" --n 1048576 --d 3 --variant A --workgroup-size "$wg" --repeats 3 \
    --kernel-paths euclidean-f32,torus-images $(ceiling 3)
done
# Each energy with variant A (M = 65536 data points for the data-driven ones), and one Sinkhorn pass.
for e in interaction mmd two-layer-net npmle; do
  run "d3-$e" --n 262144 --d 3 --variant A --energy "$e" --m 65536 --repeats 3 --kernel-paths none $(ceiling 3)
done
run d3-sinkhorn --n 65536,1048576 --d 3 --variant A --sinkhorn --repeats 3 --kernel-paths none $(ceiling 3)
