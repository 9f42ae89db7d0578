#!/usr/bin/python3
"""Plots collective benchmark results: bus bandwidth and time per operation
against message size, log scales, one line per library and collective.

    bench/plot.py --out results.png tutti.csv [more.csv ...]

Reads CSVs in tutti-bench's columns (those of ../shared/peers):
lib,op,ranks,bytes,iters,time_us,algbw_GBps,busbw_GBps. Rows of one
(lib, op, ranks) form a line; with several rank counts the label says which.
"""
import argparse
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only: no display on a build machine
import matplotlib.pyplot as plt  # noqa: E402


def size_label(value, _position=None):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if value >= 1 << shift:
            return f"{value / (1 << shift):g}{unit}"
    return f"{value:g}"


def read_rows(paths):
    lines = defaultdict(list)
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    key = (row["lib"], row["op"], int(row["ranks"]))
                    point = (int(row["bytes"]), float(row["time_us"]), float(row["busbw_GBps"]))
                except (KeyError, ValueError):
                    continue
                lines[key].append(point)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default="collectives", help="the figure's title")
    parser.add_argument("csv", nargs="+")
    args = parser.parse_args()

    lines = read_rows(args.csv)
    if not lines:
        sys.exit(f"plot.py: no rows in {', '.join(args.csv)}")
    rank_counts = {ranks for (_, _, ranks) in lines}
    figure, (bandwidth, latency) = plt.subplots(1, 2, figsize=(13, 5))
    for (lib, op, ranks), points in sorted(lines.items()):
        points.sort()
        sizes = [p[0] for p in points]
        label = f"{lib} {op}" + (f" ({ranks} ranks)" if len(rank_counts) > 1 else "")
        style = "-" if lib == "tutti" else "--"
        bandwidth.plot(sizes, [p[2] for p in points], style, marker=".", label=label)
        latency.plot(sizes, [p[1] for p in points], style, marker=".", label=label)
    for axes, what in ((bandwidth, "bus bandwidth (GB/s)"), (latency, "time per operation (us)")):
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(size_label))
        axes.set_xlabel("size (bytes)")
        axes.set_ylabel(what)
        axes.grid(True, which="major", alpha=0.3)
    bandwidth.legend(fontsize="small")
    ranks_text = ", ".join(str(r) for r in sorted(rank_counts))
    figure.suptitle(f"{args.title}: {ranks_text} ranks")
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
