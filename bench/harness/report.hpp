// Results of the collective benchmarks: one row per case, printed as
// nccl-tests prints them, written and read as CSV in the columns of
// ../shared/peers (lib,op,ranks,bytes,iters,time_us,algbw_GBps,busbw_GBps),
// and set side by side with another library's rows.
#pragma once

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "cases.hpp"

namespace tutti::bench {

struct result {
  std::string lib;
  operation op = operation::all_reduce;
  int ranks = 0;
  std::size_t bytes = 0;  // S
  std::size_t count = 0;  // elements of S
  std::string dtype;
  std::string redop;      // "-" for operations that do not reduce
  int root = -1;          // -1 for rootless operations
  std::string algorithm;  // what ran ("-" when the library does not say)
  long long iterations = 0;
  double time_us = 0;
  long long wrong = -1;  // -1: not checked

  [[nodiscard]] double algbw_gbps() const { return time_us > 0 ? static_cast<double>(bytes) / time_us / 1e3 : 0; }
  [[nodiscard]] double busbw_gbps() const { return algbw_gbps() * bus_factor(op, ranks); }
};

// nccl-tests' layout, one block per (operation, forced algorithm).
inline void print_table(std::FILE* out, const std::vector<result>& rows, std::string_view title) {
  std::fprintf(out, "# %.*s\n", static_cast<int>(title.size()), title.data());
  std::string block;
  for (const auto& r : rows) {
    const std::string key = std::string(name_of(r.op)) + " " + std::to_string(r.ranks) + " ranks, " + r.dtype;
    if (key != block) {
      block = key;
      std::fprintf(out,
                   "#\n# %s\n"
                   "#%12s %13s %9s %7s %6s %10s %8s %8s %7s  %s\n"
                   "#%12s %13s %9s %7s %6s %10s %8s %8s %7s\n",
                   key.c_str(), "size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong",
                   "algorithm", "(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "");
    }
    const std::string wrong = r.wrong < 0 ? "N/A" : std::to_string(r.wrong);
    std::fprintf(out, " %12zu %13zu %9s %7s %6d %10.2f %8.2f %8.2f %7s  %s\n", r.bytes, r.count, r.dtype.c_str(),
                 r.redop.c_str(), r.root, r.time_us, r.algbw_gbps(), r.busbw_gbps(), wrong.c_str(),
                 r.algorithm.c_str());
  }
  std::fflush(out);
}

inline bool write_csv(const std::string& path, const std::vector<result>& rows) {
  std::ofstream out(path);
  out << "lib,op,ranks,bytes,iters,time_us,algbw_GBps,busbw_GBps\n";
  for (const auto& r : rows) {
    char line[256];
    std::snprintf(line, sizeof line, "%s,%s,%d,%zu,%lld,%.3f,%.4f,%.4f\n", r.lib.c_str(),
                  std::string(csv_name_of(r.op)).c_str(), r.ranks, r.bytes, r.iterations, r.time_us, r.algbw_gbps(),
                  r.busbw_gbps());
    out << line;
  }
  return static_cast<bool>(out);
}

// Rows of a CSV in those columns (another library's, or one of ours); lines
// that do not parse are skipped.
inline std::vector<result> read_csv(const std::string& path) {
  std::vector<result> rows;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string lib, op, ranks, bytes, iters, time;
    if (!std::getline(fields, lib, ',') || !std::getline(fields, op, ',') || !std::getline(fields, ranks, ',') ||
        !std::getline(fields, bytes, ',') || !std::getline(fields, iters, ',') || !std::getline(fields, time, ',')) {
      continue;
    }
    const auto kind = operation_named(op);
    if (!kind) continue;
    result r;
    r.lib = lib;
    r.op = *kind;
    try {
      r.ranks = std::stoi(ranks);
      r.bytes = std::stoull(bytes);
      r.iterations = std::stoll(iters);
      r.time_us = std::stod(time);
    } catch (const std::exception&) {
      continue;
    }
    rows.push_back(r);
  }
  return rows;
}

// Ours beside theirs for every (operation, ranks, size) both measured:
// times, bus bandwidths, and theirs / ours (above 1: ours is faster).
inline void print_comparison(std::FILE* out, const std::vector<result>& ours, const std::vector<result>& theirs) {
  std::map<std::tuple<operation, int, std::size_t>, const result*> by_case;
  for (const auto& t : theirs) by_case[{t.op, t.ranks, t.bytes}] = &t;
  std::string block;
  for (const auto& o : ours) {
    const auto found = by_case.find({o.op, o.ranks, o.bytes});
    if (found == by_case.end()) continue;
    const result& t = *found->second;
    const std::string key = std::string(name_of(o.op)) + ", " + std::to_string(o.ranks) + " ranks";
    if (key != block) {
      block = key;
      std::fprintf(out,
                   "#\n# %s: %s against %s\n"
                   "#%12s %11s %11s %9s %11s %11s\n"
                   "#%12s %11s %11s %9s %11s %11s\n",
                   key.c_str(), o.lib.c_str(), t.lib.c_str(), "size", o.lib.c_str(), t.lib.c_str(), "speedup",
                   (o.lib + " bus").c_str(), (t.lib + " bus").c_str(), "(B)", "(us)", "(us)", "(x)", "(GB/s)",
                   "(GB/s)");
    }
    const double speedup = o.time_us > 0 ? t.time_us / o.time_us : 0;
    std::fprintf(out, " %12zu %11.2f %11.2f %9.2f %11.2f %11.2f\n", o.bytes, o.time_us, t.time_us, speedup,
                 o.busbw_gbps(), t.busbw_gbps());
  }
  std::fflush(out);
}

}  // namespace tutti::bench
