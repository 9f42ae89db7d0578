#!/usr/bin/env bash
# bench/targets.sh [BUILD_DIR] [REPEATS]
#
# Measures the performance targets of the benchmark issue in one session on
# this host, each against its reference in the same run:
#   shm, 2 ranks      send/recv 8 B one way and all_reduce 8 B latency,
#                     all_reduce 1 MiB and all_gather 8 MiB busbw, all
#                     against Open MPI (btl self,vader); all_reduce 64 MiB
#                     busbw against the same binary's single-thread memcpy
#   shm, 4 ranks      all_reduce 8 B latency against Open MPI (oversubscribed
#                     on 2 cores)
#   tcp, 2 ranks      all_reduce busbw at 1 MiB and 64 MiB against Gloo, run
#                     by the peers harness (../shared/peers) when it is there
# Each line is one measurement: the figure, the reference's, and the ratio
# oriented so that >= the target meets it. Timings on small VMs are noisy:
# every case runs REPEATS times (default 3), interleaved, and all are shown.
#
# BUILD_DIR defaults to build/release; it needs tutti-bench and
# tutti-bench-mpi (Debian's libopenmpi-dev).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/release}
repeats=${2:-3}
bench=$build/bench/tutti-bench
[ -x "$bench" ] || { echo "targets.sh: $bench not built" >&2; exit 2; }
[ -x "$build/bench/tutti-bench-mpi" ] || { echo "targets.sh: tutti-bench-mpi not built (libopenmpi-dev)" >&2; exit 2; }

# The side-by-side rows of `tutti-bench --compare mpi`:
# size, tutti us, mpi us, speedup, tutti busbw, mpi busbw.
compare() { "$bench" "$@" --compare mpi 2>&1 | awk '/tutti against/ {on = 1} on && $1 ~ /^[0-9]+$/'; }

# label, tutti figure, reference figure, ratio, target
row() { printf '%-34s %12s %12s %8s   (target %s)\n' "$1" "$2" "$3" "$4" "$5"; }

printf '%-34s %12s %12s %8s\n' "# target" "tutti" "reference" "ratio"
for ((k = 1; k <= repeats; ++k)); do
  echo "# run $k of $repeats"
  compare -n 2 -c send_recv -b 8 -e 8 |
    while read -r _ t m s _ _; do row "shm 2: send/recv 8 B (us)" "$t" "$m" "$s" ">= 1.0"; done
  compare -n 2 -c all_reduce -b 8 -e 8 |
    while read -r _ t m s _ _; do row "shm 2: all_reduce 8 B (us)" "$t" "$m" "$s" ">= 1.0"; done
  compare -n 2 -c all_reduce -b 1M -e 1M |
    while read -r _ _ _ s tb mb; do row "shm 2: all_reduce 1 MiB (GB/s)" "$tb" "$mb" "$s" ">= 1.0"; done
  compare -n 2 -c all_gather -b 8M -e 8M |
    while read -r _ _ _ s tb mb; do row "shm 2: all_gather 8 MiB (GB/s)" "$tb" "$mb" "$s" ">= 1.0"; done
  out=$("$bench" -n 2 -c all_reduce -b 64M -e 64M 2>&1)
  memcpy=$(awk '/single-thread memcpy/ {print $(NF-1)}' <<<"$out")
  busbw=$(awk '$1 == 67108864 {print $8}' <<<"$out")
  row "shm 2: all_reduce 64 MiB (GB/s)" "$busbw" "$memcpy" "$(awk -v a="$busbw" -v b="$memcpy" 'BEGIN {printf "%.2f", a / b}')" \
    ">= 0.4 x memcpy"
  compare -n 4 -c all_reduce -b 8 -e 8 |
    while read -r _ t m s _ _; do row "shm 4: all_reduce 8 B (us)" "$t" "$m" "$s" ">= 1.0"; done
done

peers=$root/../shared/peers
if [ -x "$peers/run.sh" ]; then
  # The harness writes into a copy of itself, away from the shared folder.
  work=$(mktemp -d)
  cp -r "$peers/." "$work/"
  (cd "$work" && LIBS=gloo EXTRAS=0 REPEATS=1 ./run.sh 2 >"$work/run.log" 2>&1) ||
    { echo "targets.sh: the Gloo run failed; see $work/run.log" >&2; exit 1; }
  gloo() { awk -F, -v b="$1" '$1 == "gloo" && $2 == "allreduce" && $4 == b {print $8}' "$work/results/gloo-2.csv"; }
  gloo_1m=$(gloo 1048576)
  gloo_64m=$(gloo 67108864)
  for ((k = 1; k <= repeats; ++k)); do
    "$bench" -n 2 --transport tcp -c all_reduce -b 1M -e 64M -f 64 2>&1 | awk '$1 ~ /^[0-9]+$/ {print $1, $8}' |
      while read -r size busbw; do
        ref=$([ "$size" = 1048576 ] && echo "$gloo_1m" || echo "$gloo_64m")
        row "tcp 2: all_reduce $((size >> 20)) MiB (GB/s)" "$busbw" "$ref" \
          "$(awk -v a="$busbw" -v b="$ref" 'BEGIN {printf "%.2f", a / b}')" ">= 1.5 x Gloo"
      done
  done
  rm -rf "$work"
else
  echo "# tcp against Gloo: skipped, no peers harness at $peers"
fi
