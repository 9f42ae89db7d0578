// Hierarchical schedules: collectives that move most bytes over the fast
// links inside a host and cross between hosts on all rails at once, as
// NCCL does on multi-GPU hosts. They read the cluster view
// (collective_args::cluster): H hosts of L ranks each; rail group j is local
// rank j of every host. Without a cluster view all ranks count as one host.
// Hosts with different numbers of ranks are rejected: rail groups would not
// line up.
//
// - all_reduce: ring reduce-scatter inside each host (local rank j ends
//   with the host's sum of block j + 1 of L), then an all_reduce of that
//   block among rail group j (ring; double binary tree for
//   hierarchical_tree, latency logarithmic in H; Rabenseifner for
//   hierarchical_rabenseifner, 2 log2 H messages and bandwidth-optimal),
//   then ring all-gather inside each host. Each NIC carries 2 (H-1)/H of
//   m/L bytes, so the L rails together run at L times one NIC's bandwidth.
//   Rabenseifner's rounds each wait for the last, so that variant cuts the
//   vector into slices and pipelines them through the three phases: the
//   rails work on one slice while the hosts reduce the next.
// - all_gather: all-gather of the inputs among each rail group, then inside
//   each host every local rank passes on the H blocks its rail brought.
// - reduce_scatter: the mirror image: inside each host a reduce-scatter per
//   remote host of that host's blocks, then a reduce-scatter among each
//   rail group.
// - broadcast: binomial from the root among the root's rail group, then
//   binomial inside every host from the rank that rail reached.
//
// The phases are flat algorithms spliced in (splice.hpp), so their
// dependencies on each other are derived per block: a host starts sending
// a block on its rail as soon as its local phase finished that block.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include <tutti/algorithm/all_gather.hpp>
#include <tutti/algorithm/all_reduce.hpp>
#include <tutti/algorithm/broadcast.hpp>
#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/reduce_scatter.hpp>
#include <tutti/algorithm/schedule.hpp>
#include <tutti/algorithm/splice.hpp>
#include <tutti/error.hpp>

namespace tutti::algorithm::hierarchical {

namespace detail {

using algorithm::detail::uz;

// This rank's place among H hosts of L ranks.
class host_grid {
 public:
  explicit host_grid(const collective_args& a) : cluster_(a.cluster) {
    if (!cluster_) {
      per_host_ = a.size;
      local_ = a.rank;
      return;
    }
    per_host_ = cluster_->ranks_per_host();
    if (per_host_ == 0) {
      tutti::detail::fail(errc::invalid_argument, to_string(a.kind),
                          ": hierarchical algorithms need the same number of ranks on every host; host 0 has ",
                          cluster_->ranks_on(0).size(), ", host ", uneven_host(), " has ",
                          cluster_->ranks_on(uneven_host()).size());
    }
    hosts_ = cluster_->host_count();
    host_ = cluster_->host_of(a.rank);
    local_ = cluster_->local_rank(a.rank);
  }

  [[nodiscard]] int hosts() const noexcept { return hosts_; }
  [[nodiscard]] int per_host() const noexcept { return per_host_; }
  [[nodiscard]] int host() const noexcept { return host_; }
  [[nodiscard]] int local() const noexcept { return local_; }
  [[nodiscard]] int rank_of(int host, int local) const {
    return cluster_ ? cluster_->ranks_on(host)[uz(local)] : local;
  }
  // The ranks of `host`, by local rank.
  [[nodiscard]] std::vector<int> host_members(int host) const {
    std::vector<int> out;
    for (int j = 0; j < per_host_; ++j) out.push_back(rank_of(host, j));
    return out;
  }
  // Rail group `local`: local rank `local` of every host, by host.
  [[nodiscard]] std::vector<int> rail_members(int local) const {
    std::vector<int> out;
    for (int h = 0; h < hosts_; ++h) out.push_back(rank_of(h, local));
    return out;
  }

 private:
  [[nodiscard]] int uneven_host() const {
    int h = 1;
    while (cluster_->ranks_on(h).size() == cluster_->ranks_on(0).size()) ++h;
    return h;
  }

  std::shared_ptr<const topology::cluster> cluster_;
  int hosts_ = 1;
  int per_host_ = 1;
  int host_ = 0;
  int local_ = 0;
};

// The arguments of a flat phase among `size` members, this rank being
// member `rank`: block sizes go in counts (the _v forms), so uneven blocks
// need no special case.
inline collective_args phase_args(const collective_args& a, collective kind, int rank, int size,
                                  std::vector<std::size_t> counts = {}) {
  collective_args out;
  out.kind = kind;
  out.rank = rank;
  out.size = size;
  out.element_size = a.element_size;
  out.chunk_bytes = a.chunk_bytes;
  out.counts = std::move(counts);
  return out;
}

// The slices a hierarchical all_reduce pipelines over when its rail phase
// is not pipelined by itself (rabenseifner's rounds each wait for the
// last): one per chunk of each rank's block, at most 16. The first slice
// is reduced inside the host before any rail works and the last gathered
// after the rails are done, so more slices shorten those waits, while each
// slice adds its rail phase's latency-bound rounds. In tutti-sim on 512
// hosts of 8 (256 MiB), 4, 8 and 16 slices kept the NICs 82%, 89% and 92%
// busy, 32 slices 81%. One for the ring and the tree, whose chunks already
// stream through the rail phase.
inline std::size_t pipeline_slices(std::size_t bytes, int per_host, std::size_t chunk_bytes, bool pipelined_rail) {
  constexpr std::size_t most = 16;
  if (pipelined_rail) return 1;
  return std::clamp<std::size_t>(bytes / uz(per_host) / chunk_bytes, 1, most);
}

// Where `slices` slices of `count` elements start, and the end: all but
// the last of one length, a multiple of `unit` elements (so that their
// blocks split evenly among every host's ranks and every rail's hosts), the
// last taking the rest. Consecutive slices overlap on the NICs, one
// finishing its rail phase while the next starts; slices even one element
// apart (as even_offsets cuts them) shift each other's messages and make
// them compete for links instead of taking turns: in tutti-sim on 64 hosts
// of 8, 256 MiB plus 64 bytes kept the NICs 76% busy cut evenly, 90% cut
// this way.
inline std::vector<std::size_t> slice_offsets(std::size_t count, std::size_t slices, std::size_t unit) {
  const std::size_t length = (count / slices + unit - 1) / unit * unit;
  if (slices == 1 || length * (slices - 1) >= count) {
    return algorithm::detail::even_offsets(count, static_cast<int>(slices));
  }
  std::vector<std::size_t> offsets;
  for (std::size_t s = 0; s < slices; ++s) offsets.push_back(s * length);
  offsets.push_back(count);
  return offsets;
}

// The block sizes of `members`, in their order.
inline std::vector<std::size_t> sizes_of(const std::vector<int>& members, const std::vector<std::size_t>& sizes) {
  std::vector<std::size_t> out;
  out.reserve(members.size());
  for (const int r : members) out.push_back(sizes[uz(r)]);
  return out;
}

inline std::size_t sum_of(const std::vector<std::size_t>& counts) {
  std::size_t total = 0;
  for (const std::size_t c : counts) total += c;
  return total;
}

// An order of `size` phase members (an involution: its own inverse) in
// which a recursive halving or doubling phase meets its partners in the
// reverse order: the virtual ranks of the power-of-two fold bit-reversed,
// ranks that sit out left in place. Consecutive slices of a sliced rail
// phase alternate it, so one slice's last messages to a peer (its
// all-gather's final round) are not the next slice's first (its
// reduce-scatter's first round): a channel is FIFO, so the next slice would
// otherwise wait for the whole of the last one, and the rail would idle
// between slices.
inline std::vector<int> mirrored_order(int size) {
  const algorithm::detail::fold f(size);
  std::vector<int> order(uz(size));
  for (int r = 0; r < size; ++r) order[uz(r)] = r;
  int bits = 0;
  while ((1 << bits) < f.active) ++bits;
  for (int v = 0; v < f.active; ++v) {
    int reversed = 0;
    for (int k = 0; k < bits; ++k) reversed |= ((v >> k) & 1) << (bits - 1 - k);
    order[uz(f.real_rank(v))] = f.real_rank(reversed);
  }
  return order;
}

// A flat algorithm's builder, e.g. all_reduce::ring.
using flat_algorithm = schedule (*)(const collective_args&);

// Builds `algorithm` for `args` and splices it into `b` among `members`,
// its scratch in a region of b's own.
inline void run_phase(schedule_builder& b, flat_algorithm algorithm, const collective_args& args,
                      const std::vector<int>& members, region_map input, region_map output) {
  validate(args);
  const schedule inner = algorithm(args);
  const region scratch = b.allocate_scratch(inner.scratch_bytes);
  splice(b, inner, members, {std::move(input), std::move(output), region_map::linear(scratch)});
}

// Maps inner blocks of `counts` elements to the outer places `at` gives.
template <class Place>
region_map block_map(const std::vector<std::size_t>& counts, std::size_t element_size, Place at) {
  std::vector<std::size_t> offsets{0};
  std::vector<region> targets;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    offsets.push_back(offsets.back() + counts[i] * element_size);
    targets.push_back(at(static_cast<int>(i)));
  }
  return region_map::blocks(std::move(offsets), std::move(targets));
}

}  // namespace detail

// `inter` is the flat all_reduce among each rail group; `rail_pipelines`
// says whether it streams chunks by itself (else the vector is sliced).
inline schedule all_reduce(const collective_args& a, detail::flat_algorithm inter, bool rail_pipelines) {
  using namespace algorithm::detail;
  schedule_builder b;
  b.input_may_alias_output(0);
  const std::size_t es = a.element_size;
  const region in{buffer::input, 0};
  const region out{buffer::output, 0};
  const detail::host_grid grid(a);
  if (a.size == 1 || a.count == 0) {
    b.copy(out, in, a.count * es);
    return std::move(b).finish();
  }
  const int per_host = grid.per_host();
  const std::size_t per_chunk = chunk_elements(a, algorithm::all_reduce::default_chunk_bytes);
  const ring_view local_ring = ring_through(grid.host_members(grid.host()), grid.local());
  // The vector in slices, each cut into per_host blocks: slice s's rail
  // phase runs while later slices are reduced inside the host and earlier
  // ones gathered, so NICs and intra-host links work at once. Each phase
  // goes through the slices in turn, so a channel carries one phase's
  // messages in slice order and never holds a later slice behind a phase
  // still waiting on the rail.
  const std::size_t slices = detail::pipeline_slices(a.count * es, per_host, per_chunk * es, rail_pipelines);
  const auto slice_starts = detail::slice_offsets(a.count, slices, uz(per_host) * uz(grid.hosts()));
  std::vector<std::vector<std::size_t>> blocks(slices);
  for (std::size_t s = 0; s < slices; ++s) {
    blocks[s] = even_offsets(slice_starts[s + 1] - slice_starts[s], per_host);
    for (std::size_t& offset : blocks[s]) offset += slice_starts[s];
  }
  for (const auto& offsets : blocks) ring_reduce_scatter(b, local_ring, in, out, offsets, es, per_chunk);
  // This rank's block of each slice now holds its host's sum; its rail
  // adds the other hosts'.
  const int block = wrap(grid.local() + 1, per_host);
  const auto rail = grid.rail_members(grid.local());
  const auto mirrored = detail::mirrored_order(grid.hosts());
  std::vector<int> mirrored_rail;
  for (const int h : mirrored) mirrored_rail.push_back(rail[uz(h)]);
  for (std::size_t s = 0; s < slices; ++s) {
    const auto& offsets = blocks[s];
    const std::size_t length = offsets[uz(block) + 1] - offsets[uz(block)];
    if (grid.hosts() == 1 || length == 0) continue;
    const bool mirror = s % 2 == 1;
    auto args =
        detail::phase_args(a, collective::all_reduce, mirror ? mirrored[uz(grid.host())] : grid.host(), grid.hosts());
    args.count = length;
    const region mine = at(out, offsets[uz(block)] * es);
    detail::run_phase(b, inter, args, mirror ? mirrored_rail : rail, region_map::linear(mine),
                      region_map::linear(mine));
  }
  for (const auto& offsets : blocks) ring_all_gather(b, local_ring, out, offsets, es, per_chunk);
  return std::move(b).finish();
}

inline schedule all_gather(const collective_args& a) {
  using namespace algorithm::detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const detail::host_grid grid(a);
  const auto sizes = block_sizes(a);
  const auto offsets = offsets_of(sizes);
  const region out{buffer::output, 0};
  auto block_of = [&](int rank) { return at(out, offsets[uz(rank)] * es); };
  // Among the rail: every member's input into its block of the output.
  const auto rail = grid.rail_members(grid.local());
  const auto rail_counts = detail::sizes_of(rail, sizes);
  detail::run_phase(b, algorithm::all_gather::ring,
                    detail::phase_args(a, collective::all_gather_v, grid.host(), grid.hosts(), rail_counts), rail,
                    region_map::linear({buffer::input, 0}),
                    detail::block_map(rail_counts, es, [&](int h) { return block_of(rail[uz(h)]); }));
  // Inside the host, for every host h: each local rank passes on the block
  // of h's rank on its rail.
  const auto local = grid.host_members(grid.host());
  for (int h = 0; h < grid.hosts(); ++h) {
    const auto counts = detail::sizes_of(grid.host_members(h), sizes);
    detail::run_phase(b, algorithm::all_gather::ring,
                      detail::phase_args(a, collective::all_gather_v, grid.local(), grid.per_host(), counts), local,
                      region_map::linear(block_of(grid.rank_of(h, grid.local()))),
                      detail::block_map(counts, es, [&](int j) { return block_of(grid.rank_of(h, j)); }));
  }
  return std::move(b).finish();
}

inline schedule reduce_scatter(const collective_args& a) {
  using namespace algorithm::detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const detail::host_grid grid(a);
  const auto sizes = block_sizes(a);
  const auto offsets = offsets_of(sizes);
  const region in{buffer::input, 0};
  // Partial sums, one per host h: this host's sum of the block of h's rank
  // on this rank's rail, in host order, as the rail's phase takes them.
  const auto rail = grid.rail_members(grid.local());
  const auto rail_counts = detail::sizes_of(rail, sizes);
  const region partial = b.allocate_scratch(detail::sum_of(rail_counts) * es);
  const auto local = grid.host_members(grid.host());
  std::size_t partial_at = 0;
  for (int h = 0; h < grid.hosts(); ++h) {
    const auto counts = detail::sizes_of(grid.host_members(h), sizes);
    detail::run_phase(
        b, algorithm::reduce_scatter::ring,
        detail::phase_args(a, collective::reduce_scatter_v, grid.local(), grid.per_host(), counts), local,
        detail::block_map(counts, es, [&](int j) { return at(in, offsets[uz(grid.rank_of(h, j))] * es); }),
        region_map::linear(at(partial, partial_at)));
    partial_at += rail_counts[uz(h)] * es;
  }
  detail::run_phase(b, algorithm::reduce_scatter::ring,
                    detail::phase_args(a, collective::reduce_scatter_v, grid.host(), grid.hosts(), rail_counts), rail,
                    region_map::linear(partial), region_map::linear({buffer::output, 0}));
  return std::move(b).finish();
}

inline schedule broadcast(const collective_args& a) {
  using namespace algorithm::detail;
  schedule_builder b;
  const detail::host_grid grid(a);
  const region out{buffer::output, 0};
  if (a.count == 0 || a.size == 1) return std::move(b).finish();
  const int root_host = a.cluster ? a.cluster->host_of(a.root) : 0;
  const int root_local = a.cluster ? a.cluster->local_rank(a.root) : a.root;
  if (grid.local() == root_local) {
    auto args = detail::phase_args(a, collective::broadcast, grid.host(), grid.hosts());
    args.count = a.count;
    args.root = root_host;
    detail::run_phase(b, algorithm::broadcast::binomial, args, grid.rail_members(root_local), region_map::linear(out),
                      region_map::linear(out));
  }
  auto args = detail::phase_args(a, collective::broadcast, grid.local(), grid.per_host());
  args.count = a.count;
  args.root = root_local;
  detail::run_phase(b, algorithm::broadcast::binomial, args, grid.host_members(grid.host()), region_map::linear(out),
                    region_map::linear(out));
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::hierarchical
