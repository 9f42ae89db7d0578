// reduce schedules: only the root's output is written; other ranks
// accumulate in scratch.
//
// - binomial: ceil(log2(size)) rounds; each rank combines its subtree's
//   partial results, in a fixed order, and passes the sum towards the root.
//   Every round moves the whole vector: for small messages.
// - ring: the ring reduce-scatter of all_reduce's ring (size - 1 chunked
//   steps of count / size elements), after which each rank sends the block
//   it completed straight to the root. Every rank sends about count bytes
//   and the root receives about 2 count (binomial: log2(size) count), so no
//   link carries much more than the message: bandwidth-optimal, latency
//   linear in size. For large messages.
#pragma once

#include <cstddef>
#include <utility>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::reduce {

// As all_reduce's ring, whose first phase this is.
inline constexpr std::size_t default_chunk_bytes = std::size_t{256} << 10;

inline schedule binomial(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t bytes = a.count * a.element_size;
  const int n = a.size;
  if (bytes == 0) return std::move(b).finish();
  const bool root = a.rank == a.root;
  const int vrank = wrap(a.rank - a.root, n);
  // Children are vrank + 1, + 2, + 4, ... below vrank's lowest set bit; a
  // leaf sends its input as it is, so only inner ranks need scratch.
  const bool inner = vrank % 2 == 0 && vrank + 1 < n;
  const region in{buffer::input, 0};
  running_sum sum(in, root ? region{buffer::output, 0} : inner ? b.allocate_scratch(bytes) : in);
  for (int mask = 1; mask < n; mask *= 2) {
    if ((vrank & mask) != 0) {
      b.send(wrap(vrank - mask + a.root, n), sum.current(), bytes);
      break;
    }
    if (vrank + mask >= n) continue;
    // Each child gets its own staging buffer so their messages can land
    // concurrently; they are combined in a fixed order all the same.
    const region staging = b.allocate_scratch(bytes);
    b.recv(wrap(vrank + mask + a.root, n), staging, bytes);
    sum.combine(b, staging, bytes);
  }
  if (root) sum.settle(b, bytes);
  return std::move(b).finish();
}

inline schedule ring(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const std::size_t bytes = a.count * es;
  const int n = a.size;
  const int r = a.rank;
  if (bytes == 0) return std::move(b).finish();
  const bool root = r == a.root;
  const region in{buffer::input, 0};
  const region work = root ? region{buffer::output, 0} : b.allocate_scratch(bytes);
  if (n == 1) {
    b.copy(work, in, bytes);
    return std::move(b).finish();
  }
  const auto offsets = even_offsets(a.count, n);
  ring_reduce_scatter(b, flat_ring(r, n), in, work, offsets, es, chunk_elements(a, default_chunk_bytes));
  // Rank p now holds the sum of block p + 1; the root has its own already.
  auto block = [&](int p) {
    const int j = wrap(p + 1, n);
    return std::pair{at(work, offsets[uz(j)] * es), (offsets[uz(j) + 1] - offsets[uz(j)]) * es};
  };
  if (!root) {
    const auto [where, length] = block(r);
    send_some(b, a.root, where, length);
    return std::move(b).finish();
  }
  for (int p = 0; p < n; ++p) {
    if (p == r) continue;
    const auto [where, length] = block(p);
    recv_some(b, p, where, length);
  }
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::reduce
