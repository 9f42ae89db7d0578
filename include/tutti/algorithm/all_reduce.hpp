// all_reduce schedules.
//
// - ring: reduce-scatter then all-gather around the ring, 2 (size - 1)
//   steps each moving count / size elements: bandwidth-optimal, latency
//   linear in size. Each block is cut into chunks so that forwarding one
//   chunk overlaps receiving the next. The choice for large messages.
// - recursive_doubling: log2 rounds, each exchanging the whole vector:
//   latency-optimal, for small messages.
// - rabenseifner: recursive halving reduce-scatter, then recursive doubling
//   all-gather: log2 rounds, about 2 count bytes sent in total. For medium
//   and large messages when latency matters too.
// - double_binary_tree (as NCCL's): half the vector is reduced up one binary
//   tree to its root and broadcast back down, the other half over a second
//   tree, both pipelined in chunks so that reducing chunk c + 1 overlaps
//   broadcasting chunk c. One tree alone would waste half the bandwidth: its
//   leaves (half the ranks) only send up and receive down, while interior
//   ranks move three times as much. The second tree is the first shifted by
//   one rank, so every interior rank of one is a leaf of the other (see
//   detail::in_order_tree) and every rank moves about the same: in total
//   about 2 count bytes in and 2 count bytes out, like the ring. Cost:
//   about 2 log2(size) alpha to fill and drain the pipeline (up and down a
//   tree of depth floor(log2(size))), plus the chunks streaming at full link
//   bandwidth behind it: latency logarithmic in size, unlike the ring's
//   linear, at the ring's bandwidth for large messages. For medium and large
//   messages on many ranks.
//
// The two power-of-two algorithms fold a non-power-of-two world first (see
// detail::fold), costing two extra full-vector messages on the folded ranks.
// None but the double binary tree copies input to output first: the first
// step that writes a part of the output reads that part of the input (dst =
// op(input, received)), and later steps work in output. Every builder
// declares that input may be output (schedule_builder::
// input_may_alias_output), so a write to output also waits for earlier reads
// of that input (recursive doubling's first send), and the schedules are
// correct in place too.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::all_reduce {

// Large enough that per-message overhead is small next to its transfer, small
// enough that a ring of 8 ranks has a few chunks in flight at 16 MiB.
inline constexpr std::size_t default_chunk_bytes = std::size_t{256} << 10;

// Smaller than the ring's: a chunk crosses 2 log2(size) hops, so the
// pipeline fills only when the message has several times that many chunks.
inline constexpr std::size_t tree_chunk_bytes = std::size_t{64} << 10;

inline schedule ring(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  b.input_may_alias_output(0);
  const std::size_t es = a.element_size;
  const region in{buffer::input, 0};
  const region out{buffer::output, 0};
  if (a.size == 1 || a.count == 0) {
    b.copy(out, in, a.count * es);
    return std::move(b).finish();
  }

  const auto offsets = even_offsets(a.count, a.size);
  const std::size_t per_chunk = chunk_elements(a, default_chunk_bytes);
  // On a cluster of several hosts the ring is rail-aligned: it crosses
  // between hosts once per host, always on one rail.
  ring_view ring = flat_ring(a.rank, a.size);
  if (a.cluster && a.cluster->host_count() > 1) {
    const auto order = a.cluster->rail_aligned_order();
    ring = ring_through(order, position_of(order, a.rank));
  }
  // Afterwards position p holds all of block p + 1; each step of the
  // all-gather forwards the block received last.
  ring_reduce_scatter(b, ring, in, out, offsets, es, per_chunk);
  ring_all_gather(b, ring, out, offsets, es, per_chunk);
  return std::move(b).finish();
}

inline schedule recursive_doubling(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  b.input_may_alias_output(0);
  const std::size_t bytes = a.count * a.element_size;
  const region in{buffer::input, 0};
  const region out{buffer::output, 0};
  running_sum sum(in, out);
  if (a.size == 1 || bytes == 0) {
    sum.settle(b, bytes);
    return std::move(b).finish();
  }

  const fold f(a.size);
  const int r = a.rank;
  if (f.sits_out(r)) {
    b.send(r + 1, in, bytes);
    b.recv(r + 1, out, bytes);
    return std::move(b).finish();
  }
  // One staging buffer: each round's receive must wait for the previous
  // round's reduce anyway, since the round's send needs that result.
  const region staging = b.allocate_scratch(bytes);
  if (f.absorbs(r)) {
    b.recv(r - 1, staging, bytes);
    sum.combine(b, staging, bytes);
  }
  const int vrank = f.virtual_rank(r);
  for (int mask = 1; mask < f.active; mask *= 2) {
    const int partner = f.real_rank(vrank ^ mask);
    b.send(partner, sum.current(), bytes);
    b.recv(partner, staging, bytes);
    sum.combine(b, staging, bytes);
  }
  if (f.absorbs(r)) b.send(r - 1, out, bytes);
  return std::move(b).finish();
}

inline schedule rabenseifner(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  b.input_may_alias_output(0);
  const std::size_t es = a.element_size;
  const std::size_t bytes = a.count * es;
  const region in{buffer::input, 0};
  const region out{buffer::output, 0};
  if (a.size == 1 || bytes == 0) {
    b.copy(out, in, bytes);
    return std::move(b).finish();
  }

  const fold f(a.size);
  const int r = a.rank;
  if (f.sits_out(r)) {
    b.send(r + 1, in, bytes);
    b.recv(r + 1, out, bytes);
    return std::move(b).finish();
  }
  running_sum sum(in, out);
  if (f.absorbs(r)) {
    const region staging = b.allocate_scratch(bytes);
    b.recv(r - 1, staging, bytes);
    sum.combine(b, staging, bytes);
  }
  const int vrank = f.virtual_rank(r);
  const auto offsets = even_offsets(a.count, f.active);
  const int window = doubling_window(bytes, f.active);
  halving_reduce_scatter(b, f, vrank, sum.current(), out, offsets, es, window);
  doubling_window_all_reduce(b, f, vrank, window < f.active ? out : sum.current(), out, offsets, es, window);
  doubling_all_gather(b, f, vrank, at(out, offsets[uz(vrank)] * es), out, offsets, es, window);
  if (f.absorbs(r)) b.send(r - 1, out, bytes);
  return std::move(b).finish();
}

inline schedule double_binary_tree(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  b.input_may_alias_output(0);
  const std::size_t es = a.element_size;
  const region out{buffer::output, 0};
  b.copy(out, {buffer::input, 0}, a.count * es);
  if (a.size == 1 || a.count == 0) return std::move(b).finish();

  const int n = a.size;
  const auto halves = even_offsets(a.count, 2);
  const std::size_t per_chunk = chunk_elements(a, tree_chunk_bytes);
  const std::size_t chunks = chunk_count(largest(halves), per_chunk);
  // Tree t carries half t; this rank is node rank + t of it, so the trees
  // are one rank apart.
  struct tree {
    int parent = -1;
    int children[2] = {-1, -1};
    region slots[2][2]{};  // per child, two staging chunks: receive c + 1 while reducing c
    std::size_t first = 0;
    std::size_t length = 0;
  };
  tree trees[2];
  for (int t = 0; t < 2; ++t) {
    tree& tr = trees[t];
    const tree_node node = in_order_tree(n, wrap(a.rank + t, n));
    auto rank_of = [&](int index) { return index < 0 ? -1 : wrap(index - t, n); };
    tr.parent = rank_of(node.parent);
    tr.first = halves[uz(t)];
    tr.length = halves[uz(t) + 1] - tr.first;
    for (int k = 0; k < 2; ++k) {
      tr.children[k] = rank_of(node.children[k]);
      if (tr.children[k] < 0) continue;
      for (region& slot : tr.slots[k]) slot = b.allocate_scratch(std::min(per_chunk, tr.length) * es);
    }
  }
  // Up: combine the children's sums of chunk c into this rank's and pass the
  // result to the parent (the root's is final). Children in a fixed order, so
  // every run combines alike.
  auto up = [&](const tree& tr, std::size_t c) {
    const piece p = chunk_of(tr.length, per_chunk, c);
    const region mine = at(out, (tr.first + p.first) * es);
    for (int k = 0; k < 2; ++k) {
      if (tr.children[k] < 0 || p.length == 0) continue;
      const region slot = tr.slots[k][c % 2];
      b.recv(tr.children[k], slot, p.length * es);
      b.reduce(mine, slot, p.length * es);
    }
    if (tr.parent >= 0) send_some(b, tr.parent, mine, p.length * es);
  };
  // Down: the final chunk c from the parent, on to the children.
  auto down = [&](const tree& tr, std::size_t c) {
    const piece p = chunk_of(tr.length, per_chunk, c);
    const region mine = at(out, (tr.first + p.first) * es);
    if (tr.parent >= 0) recv_some(b, tr.parent, mine, p.length * es);
    for (const int child : tr.children) {
      if (child >= 0) send_some(b, child, mine, p.length * es);
    }
  };
  // A rank's parent in one tree may be its child in the other (for some
  // leaves it always is), so one channel can carry one tree's sums up and
  // the other's results down, and a channel posts in program order. Chunk c comes back down about a round trip
  // (2 log2(size) hops) after it went up, so its down steps are placed after
  // the up steps of chunk c + lag: the up stream never waits behind a result
  // not yet back. Any one order on both sides matches messages; this one
  // keeps the pipeline full.
  const std::size_t lag = 2 * uz(ceil_log2(n));
  for (std::size_t s = 0; s < chunks + lag; ++s) {
    for (const tree& tr : trees) {
      if (s < chunks) up(tr, s);
    }
    for (const tree& tr : trees) {
      if (s >= lag) down(tr, s - lag);
    }
  }
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::all_reduce
