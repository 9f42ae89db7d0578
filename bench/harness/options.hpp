// Command-line options of the collective benchmarks, in nccl-tests' spirit.
// tutti-bench and tutti-bench-mpi take the same ones (the MPI driver ignores
// what only tutti has: --ranks, --threads, --transport, --algo, --compare);
// Google Benchmark's own --benchmark_* flags are taken out before these are
// read.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "cases.hpp"

namespace tutti::bench {

struct options {
  std::vector<operation> operations{operation::all_reduce};
  std::size_t min_bytes = 8;
  std::size_t max_bytes = std::size_t{64} << 20;
  std::size_t step_factor = 2;
  int ranks = 2;
  bool threads = false;
  std::string transport = "auto";
  std::vector<std::string> algorithms{"auto"};
  std::string dtype = "float";
  std::string op = "sum";
  bool check = false;
  int iterations = 0;  // 0: by size (cases.hpp's plan_for)
  std::string csv;
  std::string compare;  // "mpi": also run the MPI driver and print both
};

inline constexpr std::string_view options_help =
    "  -c, --collective LIST  all_reduce (default), all_gather, reduce_scatter, broadcast, reduce,\n"
    "                         all_to_all, send_recv, or all; comma-separated\n"
    "  -b, --min-bytes N      smallest size S in bytes (default 8; K, M, G suffixes)\n"
    "  -e, --max-bytes N      largest size (default 64M)\n"
    "  -f, --step-factor N    multiply the size by N each step (default 2)\n"
    "  -n, --ranks N          ranks to start on this host (default 2)\n"
    "      --threads          ranks are threads of one process (default: processes)\n"
    "      --transport NAME   auto (default) or a transport by name, as TUTTI_TRANSPORT takes it\n"
    "      --algo LIST        auto (the cost model's choice), an algorithm name, or all; comma-separated\n"
    "  -d, --dtype NAME       float (default), double, int32, int64, half, bfloat16\n"
    "  -o, --op NAME          sum (default), prod, min, max\n"
    "      --check            verify every case's result once before timing it (#wrong column)\n"
    "      --iters N          time N operations per case (default: by size, up to 3200)\n"
    "      --csv FILE         also write lib,op,ranks,bytes,iters,time_us,algbw_GBps,busbw_GBps\n"
    "      --compare mpi      run the same cases through Open MPI and print both side by side\n";

[[noreturn]] inline void usage_error(std::string_view program, std::string_view why) {
  std::fprintf(stderr, "%.*s: %.*s\nusage: %.*s [options] [--benchmark_format=console|json|csv]\n%.*s",
               static_cast<int>(program.size()), program.data(), static_cast<int>(why.size()), why.data(),
               static_cast<int>(program.size()), program.data(), static_cast<int>(options_help.size()),
               options_help.data());
  std::exit(2);
}

// "64", "8K", "64M", "1G" (powers of 1024).
inline std::size_t parse_bytes(std::string_view program, std::string_view flag, std::string_view text) {
  std::size_t value = 0;
  const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string_view suffix(end, static_cast<std::size_t>(text.data() + text.size() - end));
  const int shift = suffix.empty()                   ? 0
                    : suffix == "K" || suffix == "k" ? 10
                    : suffix == "M" || suffix == "m" ? 20
                    : suffix == "G" || suffix == "g" ? 30
                                                     : -1;
  if (text.empty() || status != std::errc{} || shift < 0) {
    usage_error(program,
                std::string(flag) + " needs a number (K, M, G suffixes allowed), not '" + std::string(text) + "'");
  }
  return value << shift;
}

inline std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    if (comma != 0) out.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

inline bool known_dtype(std::string_view d) {
  return d == "float" || d == "double" || d == "int32" || d == "int64" || d == "half" || d == "bfloat16";
}

// Reads argv[1..argc) (Google Benchmark's flags already removed).
inline options parse_options(int argc, char** argv) {
  const std::string_view program = argc > 0 ? argv[0] : "tutti-bench";
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage_error(program, std::string(flag) + " needs a value");
      return argv[++i];
    };
    if (flag == "-c" || flag == "--collective") {
      o.operations.clear();
      for (const auto& name : split_list(value())) {
        if (name == "all") {
          o.operations.assign(std::begin(all_operations), std::end(all_operations));
        } else if (const auto op = operation_named(name)) {
          o.operations.push_back(*op);
        } else {
          usage_error(program, "unknown collective '" + name + "'");
        }
      }
      if (o.operations.empty()) usage_error(program, "--collective names none");
    } else if (flag == "-b" || flag == "--min-bytes") {
      o.min_bytes = parse_bytes(program, flag, value());
    } else if (flag == "-e" || flag == "--max-bytes") {
      o.max_bytes = parse_bytes(program, flag, value());
    } else if (flag == "-f" || flag == "--step-factor") {
      o.step_factor = parse_bytes(program, flag, value());
      if (o.step_factor < 2) usage_error(program, "--step-factor must be at least 2");
    } else if (flag == "-n" || flag == "--ranks") {
      o.ranks = static_cast<int>(parse_bytes(program, flag, value()));  // plain numbers parse alike
      if (o.ranks < 1 || o.ranks > 1024) usage_error(program, "--ranks must be 1 to 1024");
    } else if (flag == "--threads") {
      o.threads = true;
    } else if (flag == "--transport") {
      o.transport = value();
    } else if (flag == "--algo") {
      o.algorithms = split_list(value());
      if (o.algorithms.empty()) usage_error(program, "--algo names none");
    } else if (flag == "-d" || flag == "--dtype") {
      o.dtype = value();
      if (!known_dtype(o.dtype)) usage_error(program, "unknown dtype '" + o.dtype + "'");
    } else if (flag == "-o" || flag == "--op") {
      o.op = value();
      if (o.op != "sum" && o.op != "prod" && o.op != "min" && o.op != "max") {
        usage_error(program, "--op is sum, prod, min or max, not '" + o.op + "'");
      }
    } else if (flag == "--check") {
      o.check = true;
    } else if (flag == "--iters") {
      o.iterations = static_cast<int>(parse_bytes(program, flag, value()));
      if (o.iterations < 1) usage_error(program, "--iters must be at least 1");
    } else if (flag == "--csv") {
      o.csv = value();
    } else if (flag == "--compare") {
      o.compare = value();
      if (o.compare != "mpi") usage_error(program, "--compare takes mpi");
    } else if (flag == "-h" || flag == "--help") {
      usage_error(program, "collective benchmarks");
    } else {
      usage_error(program, "unknown option '" + std::string(flag) + "'");
    }
  }
  if (o.min_bytes > o.max_bytes) usage_error(program, "--min-bytes is larger than --max-bytes");
  return o;
}

// The argv that gives a rank (or the MPI driver) the same options.
inline std::vector<std::string> options_argv(const options& o) {
  std::vector<std::string> out;
  std::string ops;
  for (const operation op : o.operations) ops += (ops.empty() ? "" : ",") + std::string(name_of(op));
  std::string algos;
  for (const auto& a : o.algorithms) algos += (algos.empty() ? "" : ",") + a;
  out.insert(out.end(),
             {"--collective", ops, "--min-bytes", std::to_string(o.min_bytes), "--max-bytes",
              std::to_string(o.max_bytes), "--step-factor", std::to_string(o.step_factor), "--ranks",
              std::to_string(o.ranks), "--transport", o.transport, "--algo", algos, "--dtype", o.dtype, "--op", o.op});
  if (o.check) out.emplace_back("--check");
  if (o.iterations > 0) out.insert(out.end(), {"--iters", std::to_string(o.iterations)});
  return out;
}

}  // namespace tutti::bench
