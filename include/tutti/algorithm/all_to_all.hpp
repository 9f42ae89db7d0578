// all_to_all and all_to_all_v schedules.
//
// - pairwise: size - 1 steps; at step k rank r sends to r + k and receives
//   from r - k, so every rank has exactly one message in and one out per
//   step and no link is oversubscribed. all_to_all_v always sends its
//   messages, empty ones included, so ranks that disagree on the counts get a
//   size mismatch rather than a hang.
#pragma once

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::all_to_all {

inline schedule pairwise(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const int n = a.size;
  const int r = a.rank;
  const bool v = a.kind == collective::all_to_all_v;
  const auto uniform = std::vector<std::size_t>(uz(n), a.count);
  const std::vector<std::size_t>& sends = v ? a.counts : uniform;
  const std::vector<std::size_t>& recvs = v ? a.recv_counts : uniform;
  const auto send_offsets = offsets_of(sends);
  const auto recv_offsets = offsets_of(recvs);
  const region in{buffer::input, 0};
  const region out{buffer::output, 0};
  b.copy(at(out, recv_offsets[uz(r)] * es), at(in, send_offsets[uz(r)] * es), sends[uz(r)] * es);
  for (int k = 1; k < n; ++k) {
    const auto to = uz(wrap(r + k, n));
    const auto from = uz(wrap(r - k, n));
    if (v || a.count != 0) {
      b.send(static_cast<int>(to), at(in, send_offsets[to] * es), sends[to] * es);
      b.recv(static_cast<int>(from), at(out, recv_offsets[from] * es), recvs[from] * es);
    }
  }
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::all_to_all
