// What the collective benchmarks measure, shared by tutti-bench and its MPI
// counterpart so that both run exactly the same cases: the operations, their
// geometry at a given size, nccl-tests' bus bandwidth factors, the iteration
// plan, and the data patterns that --check verifies.
//
// Sizes follow nccl-tests: S is the total array size in bytes, the output of
// all_gather, the input of reduce_scatter, the whole send buffer of
// all_to_all, the one buffer of all_reduce, broadcast and reduce, and the
// message of send/recv (a ping-pong between ranks 0 and 1 whose time is half
// the round trip). S is rounded down so that every rank gets whole elements.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tutti::bench {

enum class operation : std::uint8_t {
  all_reduce,
  all_gather,
  reduce_scatter,
  broadcast,
  reduce,
  all_to_all,
  send_recv
};

inline constexpr operation all_operations[] = {operation::all_reduce, operation::all_gather, operation::reduce_scatter,
                                               operation::broadcast,  operation::reduce,     operation::all_to_all,
                                               operation::send_recv};

// tutti's names, and the CSV's (those of ../shared/peers, so that its
// results compare row by row).
inline std::string_view name_of(operation op) {
  constexpr std::string_view names[] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast",
                                        "reduce",     "all_to_all", "send_recv"};
  return names[static_cast<int>(op)];
}
inline std::string_view csv_name_of(operation op) {
  constexpr std::string_view names[] = {"allreduce", "allgather", "reduce_scatter", "bcast",
                                        "reduce",    "alltoall",  "pingpong"};
  return names[static_cast<int>(op)];
}
inline std::optional<operation> operation_named(std::string_view name) {
  for (const operation op : all_operations) {
    if (name == name_of(op) || name == csv_name_of(op)) return op;
  }
  return std::nullopt;
}

inline bool reduces(operation op) {
  return op == operation::all_reduce || op == operation::reduce_scatter || op == operation::reduce;
}

// nccl-tests' bus bandwidth: the bytes each rank's link must carry relative
// to S, so that busbw is comparable across rank counts.
inline double bus_factor(operation op, int ranks) {
  const double n = ranks;
  switch (op) {
    case operation::all_reduce: return 2 * (n - 1) / n;
    case operation::all_gather:
    case operation::reduce_scatter:
    case operation::all_to_all: return (n - 1) / n;
    case operation::broadcast:
    case operation::reduce:
    case operation::send_recv: return 1;
  }
  return 1;
}

// Element counts of one case: `block` elements per rank block, `in` and
// `out` the buffers each rank passes.
struct geometry {
  std::size_t bytes = 0;  // S after rounding
  std::size_t block = 0;
  std::size_t in = 0;
  std::size_t out = 0;
};

inline geometry geometry_of(operation op, std::size_t requested_bytes, std::size_t element_size, int ranks) {
  const auto n = static_cast<std::size_t>(ranks);
  const std::size_t elements = requested_bytes / element_size;
  geometry g;
  switch (op) {
    case operation::all_reduce:
    case operation::broadcast:
    case operation::reduce:
    case operation::send_recv:
      g.block = g.in = g.out = elements;
      g.bytes = elements * element_size;
      break;
    case operation::all_gather:
      g.block = g.in = elements / n;
      g.out = g.block * n;
      g.bytes = g.out * element_size;
      break;
    case operation::reduce_scatter:
      g.block = g.out = elements / n;
      g.in = g.block * n;
      g.bytes = g.in * element_size;
      break;
    case operation::all_to_all:
      g.block = elements / n;
      g.in = g.out = g.block * n;
      g.bytes = g.in * element_size;
      break;
  }
  return g;
}

// min, min*factor, ... up to max (nccl-tests' -b, -e, -f).
inline std::vector<std::size_t> sizes_between(std::size_t min_bytes, std::size_t max_bytes, std::size_t factor) {
  std::vector<std::size_t> out;
  for (std::size_t s = std::max<std::size_t>(min_bytes, 1); s <= max_bytes; s *= std::max<std::size_t>(factor, 2)) {
    out.push_back(s);
    if (s > max_bytes / std::max<std::size_t>(factor, 2)) break;
  }
  return out;
}

// How a case is timed: `iterations` timed batches of `batch` operations run
// back to back (as nccl-tests and ../shared/peers time them), each batch
// timed on every rank and taken as the slowest rank's time. Fixed by the
// size alone, so every rank (and every library) runs the same number.
struct iteration_plan {
  int batch = 1;
  int iterations = 1;
  int warmup = 1;  // batches before timing
  [[nodiscard]] long long operations() const { return static_cast<long long>(batch) * iterations; }
};

// `operations`, when not 0, sets the number of timed operations instead
// (--iters: quick runs, or long ones for a profiler).
inline iteration_plan plan_for(std::size_t bytes, int operations = 0) {
  iteration_plan p;
  const std::size_t b = std::max<std::size_t>(bytes, 1);
  // Batches of about 64 KiB of traffic (at most 64 operations), and about
  // 256 MiB in all (5 to 50 batches): a few hundred ms per case at a few
  // GB/s, and enough operations at small sizes for a stable mean.
  p.batch = static_cast<int>(std::clamp<std::size_t>((std::size_t{64} << 10) / b, 1, 64));
  const std::size_t per_batch = b * static_cast<std::size_t>(p.batch);
  p.iterations = static_cast<int>(std::clamp<std::size_t>((std::size_t{256} << 20) / per_batch, 5, 50));
  p.warmup = 2;
  if (operations > 0) {
    p.batch = std::min(p.batch, operations);
    p.iterations = std::max(1, operations / p.batch);
    p.warmup = 1;
  }
  return p;
}

// --- data patterns for --check -------------------------------------------------
// Small integers, exact in every element type: sums stay below 2^11 (half's
// mantissa) up to about 50 ranks, and products are powers of two no larger
// than 2^10.

// What rank `rank` puts at index `i` of its input; `reduce_op` (sum, prod,
// min, max) matters for the reducing operations only.
inline int input_value(operation op, std::string_view reduce_op, int rank, std::size_t i) {
  switch (op) {
    case operation::all_gather: return (rank * 7 + static_cast<int>(i % 13)) % 64;
    case operation::all_to_all: return (rank * 5 + static_cast<int>(i % 11)) % 64;
    default: break;
  }
  if (reduces(op) && reduce_op == "prod") return i % 3 == 0 && rank < 10 ? 2 : 1;
  return rank + 1 + static_cast<int>(i % 7);
}

// The reduction over `ranks` ranks of input_value at index `i`.
inline int reduced_value(std::string_view reduce_op, int ranks, std::size_t i) {
  const int base = static_cast<int>(i % 7);
  if (reduce_op == "min") return 1 + base;
  if (reduce_op == "max") return ranks + base;
  if (reduce_op == "prod") return i % 3 == 0 ? 1 << std::min(ranks, 10) : 1;
  return ranks * (ranks + 1) / 2 + ranks * base;
}

}  // namespace tutti::bench
