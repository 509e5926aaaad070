#!/usr/bin/env bash
# One prepared device run with every figure the README's benchmark table needs (a few minutes
# on an H100). On a machine with the GPU, after `bash ../shared/gpu/fetch-vulkan-loader.sh` and
# `cargo build --release` here:
#   .gl/run bash scripts/gpu-bench.sh target/release/frflow "$OUT"
# Writes OUT/tables.txt (everything printed) and OUT/bench-json.tar (one JSON report per
# benchmark), two files, since the device tool returns only a few.
set -uo pipefail  # no -e: one failing benchmark must not lose the others
bin=${1:?usage: gpu-bench.sh FRFLOW_BINARY OUT_DIR}
final=${2:?usage: gpu-bench.sh FRFLOW_BINARY OUT_DIR}
ceiling=${CEILING:-3.9e12}   # pair evaluations per second on an H100 (DESIGN.md)
out=$(mktemp -d)
mkdir -p "$final"
trap 'tar -cf "$final/bench-json.tar" -C "$out" .' EXIT
exec > >(tee "$final/tables.txt") 2>&1
"$bin" info
# The kernel-sum pass and the variant-A step, d = 3, from launch-bound to saturated sizes.
"$bin" bench --n 65536,262144,1048576 --d 3 --variant A --ceiling "$ceiling" --json "$out/bench-A.json"
# One Sinkhorn pass (entropic W₂ in chaos sweeps), host packing and transfers included.
"$bin" bench --n 65536,1048576 --d 3 --variant A --sinkhorn --ceiling "$ceiling" --json "$out/bench-sinkhorn.json"
# The bounds-checked shader module at the largest size, for the cost of runtime checks.
"$bin" bench --n 1048576 --d 3 --variant A --checked --ceiling "$ceiling" --json "$out/bench-A-checked.json"
# The kernel-sum passes' workgroup size (and source tile), alone and in steps (default 128).
for wg in 64 256 512; do
  "$bin" bench --n 1048576 --d 3 --variant A --workgroup-size "$wg" --ceiling "$ceiling" --json "$out/bench-A-wg$wg.json"
done
# The other kernelizations (C: two passes; D, D′: (N·Q)×N passes with Q = 27 at d = 3).
"$bin" bench --n 262144 --d 3 --variant C --ceiling "$ceiling" --json "$out/bench-C.json"
"$bin" bench --n 65536 --d 3 --variant D --ceiling "$ceiling" --json "$out/bench-D.json"
# Each energy with variant A (M = 65536 data points for the data-driven ones).
for e in interaction mmd two-layer-net npmle; do
  "$bin" bench --n 262144 --d 3 --variant A --energy "$e" --m 65536 --ceiling "$ceiling" --json "$out/bench-$e.json"
done
# Dimension dependence of the kernel pass.
for d in 1 2 5 8; do
  "$bin" bench --n 262144 --d "$d" --variant A --ceiling "$ceiling" --json "$out/bench-A-d$d.json"
done
# Issue 5's largest sweep point: the T2 chaos sweep on the GPU engine up to N = 2^20 (two
# replicates per N), with its wall time.
start=$(date +%s)
"$bin" chaos examples/chaos_t2_gpu.toml --out "$out/chaos-t2-gpu"
echo "chaos sweep to N = 2^20: $(( $(date +%s) - start )) s"
