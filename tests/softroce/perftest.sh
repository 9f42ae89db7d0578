#!/usr/bin/env bash
# Proves the two-host soft-RoCE setup of run-vm.sh and measures perftest's
# reference figures, rxe_b in tutti_b against rxe_a in tutti_a:
#   ib_write_lat  8 B, the typical (median) one-way latency
#   ib_write_bw   4 MiB messages, the average bandwidth
# With --tutti BENCH it then runs tutti-bench-p2p (BENCH) between the same two
# hosts over the verbs transport, in the same boot, and prints tutti's
# figures as ratios to perftest's (absolute figures under emulation mean
# little). The targets: latency <= 1.5 x ib_write_lat, bandwidth >= 0.8 x
# ib_write_bw; --enforce makes missing one an error.
# Run it inside the VM:
#   tests/softroce/run-vm.sh --cache DIR -- tests/softroce/perftest.sh [--tutti BENCH [--enforce]]
# The last lines are machine-readable:
#   softroce.perftest: write_lat_typical_usec=N write_bw_MiBps=N
#   softroce.verbs_ratio: latency_usec=N ratio=R (target <= 1.5) bandwidth_MiBps=N ratio=R (target >= 0.8)
set -euo pipefail

usage="usage: $0 [--tutti BENCH [--enforce]]"
bench="" enforce=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tutti) bench=${2:?$usage}; shift 2 ;;
    --enforce) enforce=1; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
if [ "${TUTTI_SOFTROCE:-}" != 1 ]; then
  echo "perftest.sh: runs inside the soft-RoCE VM: tests/softroce/run-vm.sh --cache DIR -- $0" >&2
  exit 2
fi
ns_a=$TUTTI_SOFTROCE_NETNS_A ns_b=$TUTTI_SOFTROCE_NETNS_B
hca_a=$TUTTI_SOFTROCE_HCA_A hca_b=$TUTTI_SOFTROCE_HCA_B
addr_a=$TUTTI_SOFTROCE_ADDR_A addr_b=$TUTTI_SOFTROCE_ADDR_B

write_size=4194304
# A few hundred MiB: enough for a steady figure at the tens of MB/s that
# emulation gives, short enough to keep the test within a minute or two.
write_iters=64
lat_size=8
lat_iters=1000
# No step should take more than this, even on a loaded machine; a hang fails
# here with a message rather than at the VM's timeout.
step_timeout=120

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# wait_listening NS PORT PID: waits until the server PID listens on TCP PORT
# in NS (perftest's client does not retry its out-of-band connection).
wait_listening() {
  local ns=$1 port=$2 pid=$3 _
  for _ in $(seq $((step_timeout * 5))); do
    if ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if [ -n "$(ip netns exec "$ns" ss -Htln "sport = :$port")" ]; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# perftest NAME PORT SERVER_ARGS... -- CLIENT_ARGS...: runs perftest program
# NAME as a server on rxe_a in tutti_a and as a client on rxe_b in tutti_b,
# leaves the client's output in $work/NAME.client; fails with both outputs.
perftest() {
  local name=$1 port=$2
  shift 2
  local server_args=()
  while [ "$1" != "--" ]; do
    server_args+=("$1")
    shift
  done
  shift
  local server=$work/$name.server client=$work/$name.client
  timeout "$step_timeout" ip netns exec "$ns_a" \
    "$name" -d "$hca_a" -x "$gid_a" -p "$port" -F "${server_args[@]}" >"$server" 2>&1 &
  local server_pid=$!
  local ok=1
  if ! wait_listening "$ns_a" "$port" "$server_pid"; then
    echo "perftest.sh: $name server in $ns_a never listened on port $port" >&2
    ok=0
  elif ! timeout "$step_timeout" ip netns exec "$ns_b" \
    "$name" -d "$hca_b" -x "$gid_b" -p "$port" -F "$@" "$addr_a" >"$client" 2>&1; then
    echo "perftest.sh: $name client in $ns_b failed" >&2
    ok=0
  fi
  if ! wait "$server_pid"; then
    echo "perftest.sh: $name server in $ns_a failed" >&2
    ok=0
  fi
  if [ "$ok" -eq 0 ]; then
    echo "--- $name server ($ns_a, $hca_a):" >&2
    cat "$server" >&2
    if [ -f "$client" ]; then
      echo "--- $name client ($ns_b, $hca_b):" >&2
      cat "$client" >&2
    fi
    return 1
  fi
}

# result_line FILE SIZE: perftest's header and result line for SIZE bytes.
result_line() {
  awk -v size="$2" '$1 == "#bytes" { header = $0 } $1 == size && header != "" { print header; print; found = 1 }
                    END { exit !found }' "$1"
}

# run-vm.sh found each address's RoCE v2 GID index (perftest's -x needs it).
gid_a=$TUTTI_SOFTROCE_GID_INDEX_A
gid_b=$TUTTI_SOFTROCE_GID_INDEX_B
echo "perftest.sh: $hca_a ($ns_a, $addr_a, GID index $gid_a) <- $hca_b ($ns_b, $addr_b, GID index $gid_b), RoCE v2"

# measure NAME PORT SIZE ITERS COLUMN: runs perftest program NAME with SIZE
# B messages ITERS times, shows its result line and sets `figure` to the
# line's COLUMN.
measure() {
  local name=$1 port=$2 size=$3 iters=$4 column=$5 result
  echo "$name: $size B x $iters"
  perftest "$name" "$port" -s "$size" -n "$iters" -- -s "$size" -n "$iters"
  result=$(result_line "$work/$name.client" "$size") ||
    { echo "perftest.sh: no result line in $name's output:" >&2; cat "$work/$name.client" >&2; exit 1; }
  echo "$result"
  figure=$(tail -n 1 <<<"$result" | awk -v c="$column" '{ print $c }')
}
# ib_write_bw's columns: #bytes #iterations BW_peak BW_average MsgRate.
measure ib_write_bw 18515 "$write_size" "$write_iters" 4
write_bw=$figure
# ib_write_lat's: #bytes #iterations t_min t_max t_typical t_avg t_stdev p99 p99.9.
measure ib_write_lat 18516 "$lat_size" "$lat_iters" 5
lat_typical=$figure

# A zero or missing figure means perftest ran but moved nothing.
awk -v bw="$write_bw" -v lat="$lat_typical" 'BEGIN { exit !(bw + 0 > 0 && lat + 0 > 0) }' ||
  { echo "perftest.sh: implausible figures: bandwidth '$write_bw', latency '$lat_typical'" >&2; exit 1; }
# An emulated CPU waiting for a busy host's scheduler makes every round trip
# take a host tick (4 ms seen); say so rather than hand on such a reference.
if awk -v lat="$lat_typical" 'BEGIN { exit !(lat + 0 >= 1000) }'; then
  echo "perftest.sh: warning: ib_write_lat's typical latency is $lat_typical us, a host scheduler tick:" \
    "the host's CPUs were busy and these figures are no reference" >&2
fi
echo "softroce.perftest: write_lat_typical_usec=$lat_typical write_bw_MiBps=$write_bw"
[ -n "$bench" ] || exit 0

# tutti-bench-p2p as two ranks, rank 0 on host A (hosting the store), rank 1
# on host B, over the verbs transport only.
echo "tutti-bench-p2p: $lat_size B ping-pong x $lat_iters, $write_size B x $write_iters streamed"
store="tcp://$addr_a:18517"
bench_args=(--latency-bytes "$lat_size" --latency-iters "$lat_iters" --bandwidth-bytes "$write_size"
  --bandwidth-messages "$write_iters")
common=(TUTTI_TRANSPORT=verbs TUTTI_WORLD_SIZE=2 TUTTI_STORE="$store" TUTTI_TIMEOUT="$step_timeout")
timeout "$step_timeout" ip netns exec "$ns_b" env "${common[@]}" TUTTI_RANK=1 TUTTI_IB_HCA="=$hca_b" \
  TUTTI_SOCKET_IFNAME=veth_b "$bench" "${bench_args[@]}" >"$work/bench.1" 2>&1 &
rank1=$!
ok=1
timeout "$step_timeout" ip netns exec "$ns_a" env "${common[@]}" TUTTI_RANK=0 TUTTI_IB_HCA="=$hca_a" \
  TUTTI_SOCKET_IFNAME=veth_a "$bench" "${bench_args[@]}" >"$work/bench.0" 2>&1 || ok=0
wait "$rank1" || ok=0
cat "$work/bench.0"
if [ "$ok" -eq 0 ]; then
  echo "perftest.sh: tutti-bench-p2p failed; rank 1 said:" >&2
  cat "$work/bench.1" >&2
  exit 1
fi
field() { sed -n "s/^tutti-bench-p2p: $1 .*$2=\([0-9.]*\).*/\1/p" "$work/bench.0"; }
tutti_lat=$(field latency typical_us)
tutti_bw=$(field bandwidth MiBps)
[ -n "$tutti_lat" ] && [ -n "$tutti_bw" ] || { echo "perftest.sh: no figures from tutti-bench-p2p" >&2; exit 1; }
verdict=$(awk -v tl="$tutti_lat" -v pl="$lat_typical" -v tb="$tutti_bw" -v pb="$write_bw" 'BEGIN {
  lr = tl / pl; br = tb / pb
  printf "latency_usec=%s ratio=%.2f (target <= 1.5) bandwidth_MiBps=%s ratio=%.2f (target >= 0.8)", tl, lr, tb, br
  exit !(lr <= 1.5 && br >= 0.8) }') && met=1 || met=0
echo "softroce.verbs_ratio: $verdict"
if [ "$met" -eq 0 ]; then
  echo "perftest.sh: tutti missed a target against perftest in this boot" >&2
  [ "$enforce" -eq 0 ] || exit 1
fi
