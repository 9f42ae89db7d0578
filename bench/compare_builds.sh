#!/usr/bin/env bash
# bench/compare_builds.sh OLD_BENCH NEW_BENCH [REPEATS] [-- tutti-bench options]
#
# Two tutti-bench binaries (say, the release builds before and after a
# change) on the same cases, interleaved REPEATS times (default 5, the
# order alternating), then per case the best time of each side and their
# ratio old/new: >= 1 means the new build is as fast or faster. Best
# against best, because a case here swings up to 4x between repeats on
# both sides (whether the ranks land on different cores). Default cases:
# 2 ranks, all_reduce, all_gather and send/recv from 8 B to 64 MiB.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
old=$1 new=$2
shift 2
repeats=5
if [ $# -gt 0 ] && [ "$1" != "--" ]; then repeats=$1; shift; fi
[ "${1:-}" = "--" ] && shift
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(-n 2 -c all_reduce,all_gather,send_recv -b 8 -e 64M)
for b in "$old" "$new"; do [ -x "$b" ] || { echo "compare_builds.sh: $b is not executable" >&2; exit 2; }; done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for ((k = 1; k <= repeats; ++k)); do
  first=old second=new
  if ((k % 2 == 0)); then first=new second=old; fi
  for side in $first $second; do
    bin=$old
    [ "$side" = new ] && bin=$new
    echo "# repeat $k of $repeats: $side" >&2
    "$bin" "${cases[@]}" --csv "$work/$side.$k.csv" >/dev/null
  done
done

python3 - "$work" <<'PY'
import csv, glob, os, sys
best = {}
for path in glob.glob(os.path.join(sys.argv[1], "*.csv")):
    side = os.path.basename(path).split(".")[0]
    with open(path) as f:
        for row in csv.DictReader(f):
            key = (row["op"], int(row["ranks"]), int(row["bytes"]))
            t = float(row["time_us"])
            slot = best.setdefault(key, {})
            slot[side] = min(t, slot.get(side, t))
print(f"{'op':<16} {'ranks':>5} {'bytes':>10} {'old us':>11} {'new us':>11} {'old/new':>8}")
worst = None
for key in sorted(best):
    s = best[key]
    if "old" not in s or "new" not in s:
        continue
    ratio = s["old"] / s["new"] if s["new"] > 0 else float("inf")
    worst = ratio if worst is None else min(worst, ratio)
    print(f"{key[0]:<16} {key[1]:>5} {key[2]:>10} {s['old']:>11.2f} {s['new']:>11.2f} {ratio:>8.3f}")
print(f"lowest old/new: {worst:.3f}")
PY
