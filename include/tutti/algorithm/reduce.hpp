// reduce schedules: only the root's output is written; other ranks
// accumulate in scratch.
//
// - binomial: ceil(log2(size)) rounds; each rank combines its subtree's
//   partial results, in a fixed order, and passes the sum towards the root.
#pragma once

#include <cstddef>
#include <utility>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::reduce {

inline schedule binomial(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t bytes = a.count * a.element_size;
  const int n = a.size;
  if (bytes == 0) return std::move(b).finish();
  const bool root = a.rank == a.root;
  const region sum = root ? region{buffer::output, 0} : b.allocate_scratch(bytes);
  b.copy(sum, {buffer::input, 0}, bytes);
  const int vrank = wrap(a.rank - a.root, n);
  for (int mask = 1; mask < n; mask *= 2) {
    if ((vrank & mask) != 0) {
      b.send(wrap(vrank - mask + a.root, n), sum, bytes);
      break;
    }
    // Each child gets its own staging buffer so their messages can land
    // concurrently; they are combined in a fixed order all the same.
    if (vrank + mask < n) b.recv_reduce(wrap(vrank + mask + a.root, n), sum, bytes);
  }
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::reduce
