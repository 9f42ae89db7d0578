// gather and scatter schedules.
//
// - binomial: ceil(log2(size)) rounds over ranks renumbered relative to the
//   root. A rank's subtree is a contiguous run of relative ranks, so each
//   hop moves one contiguous range: scatter halves it on the way down,
//   gather doubles it on the way up. The root pays one local rotation
//   between relative and real rank order (none when the root is rank 0).
//   Compared with a linear gather, the root handles log2(size) messages
//   instead of size - 1, at the cost of forwarding data through
//   intermediate ranks.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm {
namespace detail {

// Relative ranks vrank..vrank + subtree - 1 are served through vrank.
inline int subtree_of(int vrank, int size) noexcept {
  const int lowest = vrank == 0 ? floor_pow2(size) * 2 : (vrank & -vrank);
  return std::min(lowest, size - vrank);
}

}  // namespace detail

namespace gather {

inline schedule binomial(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t block = a.count * a.element_size;
  const int n = a.size;
  if (block == 0) return std::move(b).finish();
  const int vrank = wrap(a.rank - a.root, n);
  auto real = [&](int v) { return wrap(v + a.root, n); };
  const region out{buffer::output, 0};
  // Blocks in relative rank order; at rank 0 relative and real order agree.
  const bool direct = a.root == 0 && vrank == 0;
  const region work = direct ? out : b.allocate_scratch(uz(subtree_of(vrank, n)) * block);
  b.copy(work, {buffer::input, 0}, block);
  for (int mask = 1; mask < n; mask *= 2) {
    if ((vrank & mask) != 0) {
      b.send(real(vrank - mask), work, uz(subtree_of(vrank, n)) * block);
      break;
    }
    if (vrank + mask < n)
      b.recv(real(vrank + mask), at(work, uz(mask) * block), uz(subtree_of(vrank + mask, n)) * block);
  }
  if (vrank == 0 && !direct) {
    const std::size_t first = uz(n - a.root) * block;  // ranks root..n-1
    b.copy(at(out, uz(a.root) * block), work, first);
    b.copy(out, at(work, first), uz(a.root) * block);
  }
  return std::move(b).finish();
}

}  // namespace gather

namespace scatter {

inline schedule binomial(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t block = a.count * a.element_size;
  const int n = a.size;
  if (block == 0) return std::move(b).finish();
  const int vrank = wrap(a.rank - a.root, n);
  auto real = [&](int v) { return wrap(v + a.root, n); };
  const region in{buffer::input, 0};
  const int subtree = subtree_of(vrank, n);
  region work = in;
  if (vrank == 0 && a.root != 0) {
    // Relative order: ranks root..n-1, then 0..root-1.
    work = b.allocate_scratch(uz(n) * block);
    const std::size_t first = uz(n - a.root) * block;
    b.copy(work, at(in, uz(a.root) * block), first);
    b.copy(at(work, first), in, uz(a.root) * block);
  } else if (vrank != 0) {
    work = b.allocate_scratch(uz(subtree) * block);
    b.recv(real(vrank - (vrank & -vrank)), work, uz(subtree) * block);
  }
  for (int mask = floor_pow2(subtree); mask > 0; mask /= 2) {
    if (mask < subtree) b.send(real(vrank + mask), at(work, uz(mask) * block), uz(subtree_of(vrank + mask, n)) * block);
  }
  b.copy({buffer::output, 0}, work, block);
  return std::move(b).finish();
}

}  // namespace scatter
}  // namespace tutti::algorithm
