// What an algorithm is asked to build: which collective, for which rank of
// how many, over how many elements of what size. Everything an algorithm
// needs is here, so algorithms stay pure functions of these arguments and
// every rank, given the same arguments, builds matching schedules.
//
// Buffer layout contract (sizes in elements; bytes = elements x element_size;
// blocks are in rank order):
//
//   collective        input                        output
//   all_reduce        count                        count
//   reduce            count                        count at root, none elsewhere
//   broadcast         none                         count (root's data starts here)
//   all_gather        count                        count * size, rank r's at r * count
//   all_gather_v      counts[rank]                 sum(counts), rank r's after counts[0..r)
//   reduce_scatter    count * size                 count: the reduction of block rank
//   reduce_scatter_v  sum(counts)                  counts[rank]: the reduction of block rank
//   gather            count                        count * size at root, none elsewhere
//   scatter           count * size at root only    count: block rank of root's input
//   all_to_all        count * size, block p to p   count * size, block p from p
//   all_to_all_v      sum(counts), counts[p] to p  sum(recv_counts), recv_counts[p] from p
//   barrier           none                         none
//
// Aliasing: all_reduce may be run in place (input and output the same
// memory). Its builders declare so (schedule_builder::
// input_may_alias_output), which orders every write of output after the
// earlier reads of the input it may be. all_gather may be run with its input
// being its own block of the output: its algorithms read input only in a
// copy to that block and in sends of it, and write that block only by the
// copy. For every other collective input and output
// must not overlap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string_view>
#include <vector>

#include <tutti/error.hpp>
#include <tutti/topology/cluster.hpp>

namespace tutti::algorithm {

enum class collective : std::uint8_t {
  all_reduce,
  reduce,
  broadcast,
  all_gather,
  all_gather_v,
  reduce_scatter,
  reduce_scatter_v,
  gather,
  scatter,
  all_to_all,
  all_to_all_v,
  barrier,
};

constexpr std::string_view to_string(collective kind) noexcept {
  switch (kind) {
    case collective::all_reduce: return "all_reduce";
    case collective::reduce: return "reduce";
    case collective::broadcast: return "broadcast";
    case collective::all_gather: return "all_gather";
    case collective::all_gather_v: return "all_gather_v";
    case collective::reduce_scatter: return "reduce_scatter";
    case collective::reduce_scatter_v: return "reduce_scatter_v";
    case collective::gather: return "gather";
    case collective::scatter: return "scatter";
    case collective::all_to_all: return "all_to_all";
    case collective::all_to_all_v: return "all_to_all_v";
    case collective::barrier: return "barrier";
  }
  return "unknown";
}

struct collective_args {
  collective kind = collective::all_reduce;
  int rank = 0;
  int size = 1;
  std::size_t count = 0;  // elements; unused by the *_v collectives and barrier
  std::size_t element_size = 1;
  int root = 0;  // reduce, broadcast, gather, scatter
  // all_gather_v, reduce_scatter_v: every rank's block, in elements (the same
  // vector on every rank). all_to_all_v: what this rank sends to each peer.
  std::vector<std::size_t> counts;
  // all_to_all_v: what this rank receives from each peer.
  std::vector<std::size_t> recv_counts;
  // Pipelining granularity for the chunked algorithms; 0 picks their default.
  std::size_t chunk_bytes = 0;
  // Which ranks share a host (the same view on every rank). Null: unknown,
  // planned as one host. The hierarchical algorithms are built from it.
  std::shared_ptr<const topology::cluster> cluster;
};

namespace detail {

inline bool is_v(collective kind) noexcept {
  return kind == collective::all_gather_v || kind == collective::reduce_scatter_v || kind == collective::all_to_all_v;
}

}  // namespace detail

// Rejects arguments no algorithm can build a schedule for.
inline void validate(const collective_args& a) {
  const std::string_view name = to_string(a.kind);
  if (a.size < 1) tutti::detail::fail(errc::invalid_argument, name, ": size ", a.size, " is not positive");
  if (a.rank < 0 || a.rank >= a.size) {
    tutti::detail::fail(errc::invalid_argument, name, ": rank ", a.rank, " is outside [0, ", a.size, ")");
  }
  if (a.element_size == 0) tutti::detail::fail(errc::invalid_argument, name, ": element_size is 0");
  if (a.root < 0 || a.root >= a.size) {
    tutti::detail::fail(errc::invalid_argument, name, ": root ", a.root, " is outside [0, ", a.size, ")");
  }
  if (a.cluster && a.cluster->size() != a.size) {
    tutti::detail::fail(errc::invalid_argument, name, ": the cluster view has ", a.cluster->size(),
                        " ranks for a world of ", a.size);
  }
  const auto ranks = static_cast<std::size_t>(a.size);
  if (detail::is_v(a.kind) && a.counts.size() != ranks) {
    tutti::detail::fail(errc::invalid_argument, name, ": counts has ", a.counts.size(), " entries for ", a.size,
                        " ranks");
  }
  if (a.kind == collective::all_to_all_v) {
    if (a.recv_counts.size() != ranks) {
      tutti::detail::fail(errc::invalid_argument, name, ": recv_counts has ", a.recv_counts.size(), " entries for ",
                          a.size, " ranks");
    }
    const auto self = static_cast<std::size_t>(a.rank);
    if (a.counts[self] != a.recv_counts[self]) {
      tutti::detail::fail(errc::invalid_argument, name, ": rank ", a.rank, " sends itself ", a.counts[self],
                          " elements but expects to receive ", a.recv_counts[self]);
    }
  }
}

namespace detail {

inline std::size_t total(const std::vector<std::size_t>& counts) noexcept {
  return std::accumulate(counts.begin(), counts.end(), std::size_t{0});
}

// Like counts[rank], but 0 where validate() would reject the arguments, so
// the size helpers never read out of bounds.
inline std::size_t own(const std::vector<std::size_t>& counts, int rank) noexcept {
  const auto index = static_cast<std::size_t>(rank);
  return rank >= 0 && index < counts.size() ? counts[index] : 0;
}

}  // namespace detail

// Bytes of the input buffer this rank passes, per the contract above.
inline std::size_t input_bytes(const collective_args& a) noexcept {
  const auto ranks = static_cast<std::size_t>(a.size > 0 ? a.size : 0);
  std::size_t elements = 0;
  switch (a.kind) {
    case collective::all_reduce:
    case collective::reduce:
    case collective::all_gather:
    case collective::gather: elements = a.count; break;
    case collective::broadcast:
    case collective::barrier: elements = 0; break;
    case collective::all_gather_v: elements = detail::own(a.counts, a.rank); break;
    case collective::reduce_scatter:
    case collective::all_to_all: elements = a.count * ranks; break;
    case collective::reduce_scatter_v:
    case collective::all_to_all_v: elements = detail::total(a.counts); break;
    case collective::scatter: elements = a.rank == a.root ? a.count * ranks : 0; break;
  }
  return elements * a.element_size;
}

// Bytes of the output buffer this rank passes, per the contract above.
inline std::size_t output_bytes(const collective_args& a) noexcept {
  const auto ranks = static_cast<std::size_t>(a.size > 0 ? a.size : 0);
  std::size_t elements = 0;
  switch (a.kind) {
    case collective::all_reduce:
    case collective::broadcast:
    case collective::reduce_scatter:
    case collective::scatter: elements = a.count; break;
    case collective::reduce: elements = a.rank == a.root ? a.count : 0; break;
    case collective::barrier: elements = 0; break;
    case collective::all_gather:
    case collective::all_to_all: elements = a.count * ranks; break;
    case collective::all_gather_v: elements = detail::total(a.counts); break;
    case collective::reduce_scatter_v: elements = detail::own(a.counts, a.rank); break;
    case collective::gather: elements = a.rank == a.root ? a.count * ranks : 0; break;
    case collective::all_to_all_v: elements = detail::total(a.recv_counts); break;
  }
  return elements * a.element_size;
}

}  // namespace tutti::algorithm
