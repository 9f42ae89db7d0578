#!/usr/bin/env bash
# bench/compare_builds.sh [-r REPEATS] REF OTHER... [-- tutti-bench options]
#
# tutti-bench binaries (say, release builds before and after a change) on
# the same cases, interleaved REPEATS times (default 5; the order rotates
# each repeat), then per case the best time of each and the ratio REF/OTHER
# for each other: >= 1 means that build is as fast or faster. Best against
# best, because a case here swings up to 4x between repeats on every side
# (whether the ranks land on different cores). Pass a copy of REF as one of
# the others to see how far the same binary strays from itself. Default
# cases: 2 ranks, all_reduce, all_gather and send/recv from 8 B to 64 MiB.
set -euo pipefail

repeats=5
if [ "${1:-}" = "-r" ]; then repeats=$2; shift 2; fi
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do bins+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#bins[@]} -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(-n 2 -c all_reduce,all_gather,send_recv -b 8 -e 64M)
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "compare_builds.sh: $b is not executable" >&2; exit 2; }; done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=${#bins[@]}
for ((k = 0; k < repeats; ++k)); do
  for ((j = 0; j < n; ++j)); do
    i=$(((j + k) % n))
    echo "# repeat $((k + 1)) of $repeats: ${bins[i]}" >&2
    "${bins[i]}" "${cases[@]}" --csv "$work/$i.$k.csv" >/dev/null
  done
done

python3 - "$work" "${bins[@]}" <<'PY'
import csv, glob, math, os, sys
work, bins = sys.argv[1], sys.argv[2:]
best = {}
for path in glob.glob(os.path.join(work, "*.csv")):
    side = int(os.path.basename(path).split(".")[0])
    with open(path) as f:
        for row in csv.DictReader(f):
            key = (row["op"], int(row["ranks"]), int(row["bytes"]))
            t = float(row["time_us"])
            slot = best.setdefault(key, {})
            slot[side] = min(t, slot.get(side, t))
for i, b in enumerate(bins):
    print(f"# [{i}] {b}")
head = f"{'op':<12} {'ranks':>5} {'bytes':>10}" + "".join(f" {'['+str(i)+'] us':>10}" for i in range(len(bins)))
print(head + "".join(f" {'[0]/['+str(i)+']':>9}" for i in range(1, len(bins))))
ratios = {i: [] for i in range(1, len(bins))}
for key in sorted(best):
    s = best[key]
    if len(s) != len(bins):
        continue
    line = f"{key[0]:<12} {key[1]:>5} {key[2]:>10}" + "".join(f" {s[i]:>10.2f}" for i in range(len(bins)))
    for i in range(1, len(bins)):
        r = s[0] / s[i] if s[i] > 0 else float("inf")
        ratios[i].append((r, key))
        line += f" {r:>9.3f}"
    print(line)
for i, rs in ratios.items():
    if not rs:
        continue
    low = min(rs)
    geo = math.exp(sum(math.log(r) for r, _ in rs) / len(rs))
    print(f"[0]/[{i}]: lowest {low[0]:.3f} ({low[1][0]} {low[1][2]} B), geometric mean {geo:.3f} over {len(rs)} cases")
PY
