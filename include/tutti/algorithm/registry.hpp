// The algorithm table: every algorithm named once, with the collectives it
// builds, its schedule builder, its cost formula (costs.hpp) and the chunk
// its schedule cuts messages into. The selector (select.hpp), the
// TUTTI_ALGO override, tutti-bench --algo, tutti-sim, the tests that force
// every algorithm in turn and the README's table all read it; nothing else
// compares algorithm names.
//
// Adding an algorithm: write its builder (a pure function of
// collective_args, in the collective's header) and its formula (costs.hpp),
// then add one entry below, in the place its collective's candidates should
// be tried (the usual large-message choice first; ties go to the earlier).
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/algorithm/all_gather.hpp>
#include <tutti/algorithm/all_reduce.hpp>
#include <tutti/algorithm/all_to_all.hpp>
#include <tutti/algorithm/barrier.hpp>
#include <tutti/algorithm/broadcast.hpp>
#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/cost_model.hpp>
#include <tutti/algorithm/costs.hpp>
#include <tutti/algorithm/gather_scatter.hpp>
#include <tutti/algorithm/hierarchical.hpp>
#include <tutti/algorithm/reduce.hpp>
#include <tutti/algorithm/reduce_scatter.hpp>
#include <tutti/algorithm/schedule.hpp>
#include <tutti/error.hpp>

namespace tutti::algorithm {

// A set of collectives, one bit each.
class collective_set {
 public:
  constexpr collective_set(std::initializer_list<collective> kinds) noexcept {
    for (const collective kind : kinds) bits_ |= bit(kind);
  }
  [[nodiscard]] constexpr bool contains(collective kind) const noexcept { return (bits_ & bit(kind)) != 0; }

 private:
  static constexpr unsigned bit(collective kind) noexcept { return 1U << static_cast<unsigned>(kind); }
  unsigned bits_ = 0;
};

struct algorithm_entry {
  std::string_view name;  // as TUTTI_ALGO, tutti-bench --algo and tutti-sim --algo take it
  collective_set kinds;   // the collectives it builds
  schedule (*build)(const collective_args&);
  detail::costs::formula cost;
  // What the schedule cuts its messages into unless collective_args::
  // chunk_bytes says otherwise; 0 for schedules that do not chunk. The
  // selector picks a chunk size for the ones that do.
  std::size_t chunk_bytes;
  std::string_view summary;  // one line, for the README's table and tutti-sim --list
};

namespace detail {

// The hierarchical all_reduce over the flat all_reduce `Rail` among each
// rail group; `Sliced` when the rail algorithm does not stream chunks by
// itself, so the vector is cut into slices that pipeline through the phases.
template <schedule (*Rail)(const collective_args&), bool Sliced>
schedule hierarchical_all_reduce(const collective_args& a) {
  return hierarchical::all_reduce(a, Rail, !Sliced);
}

}  // namespace detail

namespace costs = detail::costs;
inline constexpr std::array algorithm_table{
    algorithm_entry{"ring",
                    {collective::all_reduce},
                    all_reduce::ring,
                    costs::all_reduce_ring,
                    all_reduce::default_chunk_bytes,
                    "reduce-scatter then all-gather around a ring, chunks pipelined; bandwidth-optimal"},
    algorithm_entry{"recursive_doubling",
                    {collective::all_reduce},
                    all_reduce::recursive_doubling,
                    costs::all_reduce_recursive_doubling,
                    0,
                    "log2 n exchanges of the whole vector; for small messages"},
    algorithm_entry{"rabenseifner",
                    {collective::all_reduce},
                    all_reduce::rabenseifner,
                    costs::all_reduce_rabenseifner,
                    0,
                    "recursive halving reduce-scatter, then recursive doubling all-gather"},
    algorithm_entry{"double_binary_tree",
                    {collective::all_reduce},
                    all_reduce::double_binary_tree,
                    costs::all_reduce_double_binary_tree,
                    all_reduce::tree_chunk_bytes,
                    "two complementary binary trees, each reducing and broadcasting half, pipelined"},
    algorithm_entry{"hierarchical",
                    {collective::all_reduce},
                    detail::hierarchical_all_reduce<all_reduce::ring, false>,
                    costs::hierarchical_all_reduce<costs::all_reduce_ring, all_reduce::default_chunk_bytes, false>,
                    all_reduce::default_chunk_bytes,
                    "reduce-scatter inside each host, ring all_reduce per rail, all-gather inside each host"},
    algorithm_entry{
        "hierarchical_tree",
        {collective::all_reduce},
        detail::hierarchical_all_reduce<all_reduce::double_binary_tree, false>,
        costs::hierarchical_all_reduce<costs::all_reduce_double_binary_tree, all_reduce::tree_chunk_bytes, false>,
        all_reduce::default_chunk_bytes,
        "hierarchical, with a double binary tree per rail"},
    algorithm_entry{"hierarchical_rabenseifner",
                    {collective::all_reduce},
                    detail::hierarchical_all_reduce<all_reduce::rabenseifner, true>,
                    costs::hierarchical_all_reduce<costs::all_reduce_rabenseifner, 0, true>,
                    all_reduce::default_chunk_bytes,
                    "hierarchical, with Rabenseifner per rail on up to 16 pipelined slices"},
    algorithm_entry{"binomial",
                    {collective::reduce},
                    reduce::binomial,
                    costs::reduce_binomial,
                    0,
                    "binomial tree towards the root"},
    algorithm_entry{"ring",
                    {collective::reduce},
                    reduce::ring,
                    costs::reduce_ring,
                    reduce::default_chunk_bytes,
                    "ring reduce-scatter, then every block to the root"},
    algorithm_entry{"binomial",
                    {collective::broadcast},
                    broadcast::binomial,
                    costs::broadcast_binomial,
                    0,
                    "binomial tree from the root"},
    algorithm_entry{"chain",
                    {collective::broadcast},
                    broadcast::chain,
                    costs::broadcast_chain,
                    broadcast::default_chunk_bytes,
                    "chunks pipelined down a chain of ranks"},
    algorithm_entry{"hierarchical",
                    {collective::broadcast},
                    hierarchical::broadcast,
                    costs::hierarchical_broadcast,
                    0,
                    "binomial among the root's rail group, then binomial inside every host"},
    algorithm_entry{"ring",
                    {collective::all_gather, collective::all_gather_v},
                    all_gather::ring,
                    costs::all_gather_ring,
                    all_gather::default_chunk_bytes,
                    "each block passed around a ring"},
    algorithm_entry{"recursive_doubling",
                    {collective::all_gather, collective::all_gather_v},
                    all_gather::recursive_doubling,
                    costs::all_gather_doubling,
                    0,
                    "log2 n exchanges of doubling size (bruck's off powers of two)"},
    algorithm_entry{"bruck",
                    {collective::all_gather, collective::all_gather_v},
                    all_gather::bruck,
                    costs::all_gather_doubling,
                    0,
                    "ceil(log2 n) rounds at distances 1, 2, 4..., then a local rotation"},
    algorithm_entry{"hierarchical",
                    {collective::all_gather, collective::all_gather_v},
                    hierarchical::all_gather,
                    costs::hierarchical_all_gather,
                    all_gather::default_chunk_bytes,
                    "all-gather per rail, then inside each host"},
    algorithm_entry{"ring",
                    {collective::reduce_scatter, collective::reduce_scatter_v},
                    reduce_scatter::ring,
                    costs::reduce_scatter_ring,
                    reduce_scatter::default_chunk_bytes,
                    "each block reduced around a ring, chunks pipelined"},
    algorithm_entry{"recursive_halving",
                    {collective::reduce_scatter, collective::reduce_scatter_v},
                    reduce_scatter::recursive_halving,
                    costs::reduce_scatter_recursive_halving,
                    0,
                    "log2 n exchanges of halving size"},
    algorithm_entry{"hierarchical",
                    {collective::reduce_scatter, collective::reduce_scatter_v},
                    hierarchical::reduce_scatter,
                    costs::hierarchical_reduce_scatter,
                    reduce_scatter::default_chunk_bytes,
                    "reduce-scatter inside each host per remote host, then per rail"},
    algorithm_entry{"binomial",
                    {collective::gather},
                    gather::binomial,
                    costs::gather_scatter_binomial,
                    0,
                    "binomial tree towards the root"},
    algorithm_entry{"binomial",
                    {collective::scatter},
                    scatter::binomial,
                    costs::gather_scatter_binomial,
                    0,
                    "binomial tree from the root"},
    algorithm_entry{"pairwise",
                    {collective::all_to_all, collective::all_to_all_v},
                    all_to_all::pairwise,
                    costs::all_to_all_pairwise,
                    0,
                    "n - 1 steps, step k sending to rank + k and receiving from rank - k"},
    algorithm_entry{"bruck",
                    {collective::all_to_all},
                    all_to_all::bruck,
                    costs::all_to_all_bruck,
                    0,
                    "ceil(log2 n) rounds of combined blocks; for small blocks"},
    algorithm_entry{"dissemination",
                    {collective::barrier},
                    barrier::dissemination,
                    costs::barrier_dissemination,
                    0,
                    "ceil(log2 n) rounds of signals at distances 1, 2, 4..."},
};

// The entry that builds `kind` under `name`, or null.
inline const algorithm_entry* find_algorithm(collective kind, std::string_view name) noexcept {
  for (const auto& entry : algorithm_table) {
    if (entry.name == name && entry.kinds.contains(kind)) return &entry;
  }
  return nullptr;
}

// The algorithms that can build `kind`, in the table's order.
inline std::vector<std::string_view> algorithms_for(collective kind) {
  std::vector<std::string_view> names;
  for (const auto& entry : algorithm_table) {
    if (entry.kinds.contains(kind)) names.push_back(entry.name);
  }
  return names;
}

// Whether `algorithm` cuts its messages into chunks of collective_args::
// chunk_bytes, so that choose() picks a chunk size for it.
inline bool is_chunked(collective kind, std::string_view algorithm) noexcept {
  const algorithm_entry* entry = find_algorithm(kind, algorithm);
  return entry != nullptr && entry->chunk_bytes != 0;
}

namespace detail {

// "a, b, c": the algorithms of `kind`, for error messages.
inline std::string algorithm_list(collective kind) {
  std::string out;
  for (const std::string_view name : algorithms_for(kind)) out += tutti::detail::concat(out.empty() ? "" : ", ", name);
  return out;
}

// The model's time for `algorithm` (nothing if the table has no such
// algorithm for a.kind, or its formula does not apply). `a` must have
// passed validate().
inline std::optional<double> time_us(std::string_view algorithm, const collective_args& a, const cost_model& model,
                                     std::size_t chunk_bytes) {
  const algorithm_entry* entry = find_algorithm(a.kind, algorithm);
  if (entry == nullptr) return std::nullopt;
  return costs::time_us(entry->cost, entry->chunk_bytes, a, model, chunk_bytes);
}

}  // namespace detail

// This rank's schedule for `a` with the named algorithm. Checks the
// arguments first, so a bad call fails before any byte moves.
inline schedule build(std::string_view algorithm, const collective_args& a) {
  validate(a);
  const algorithm_entry* entry = find_algorithm(a.kind, algorithm);
  if (entry == nullptr) {
    tutti::detail::fail(errc::invalid_argument, "unknown ", to_string(a.kind), " algorithm '", algorithm,
                        "'; valid: ", detail::algorithm_list(a.kind));
  }
  return entry->build(a);
}

// The model's time for `algorithm` to run `a`, in microseconds, with
// `chunk_bytes` for the chunked algorithms (0: what build() would use, i.e.
// a.chunk_bytes, else the algorithm's default; ignored by the others).
// Fails with invalid_argument on bad arguments or an algorithm the model
// has no formula for.
inline double predict(std::string_view algorithm, const collective_args& a, const cost_model& model,
                      std::size_t chunk_bytes) {
  validate(a);
  if (const auto us = detail::time_us(algorithm, a, model, chunk_bytes)) return *us;
  tutti::detail::fail(errc::invalid_argument, "cost model: no formula for ", to_string(a.kind), " algorithm '",
                      algorithm, "'");
}

}  // namespace tutti::algorithm
