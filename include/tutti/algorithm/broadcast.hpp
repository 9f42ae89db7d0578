// broadcast schedules. The root's data starts in its output buffer.
//
// - binomial: ceil(log2(size)) rounds, the whole message per hop: for small
//   and medium messages.
// - chain: ranks in a line from the root, the message cut into chunks so
//   every hop is busy at once: size - 1 + chunks steps of one chunk each,
//   close to one message time for large messages.
#pragma once

#include <cstddef>
#include <utility>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::broadcast {

// Smaller than the ring's: a chain's latency grows with the chunk size times
// its length, and it has no per-block split to shrink its chunks.
inline constexpr std::size_t default_chunk_bytes = std::size_t{64} << 10;

inline schedule binomial(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t bytes = a.count * a.element_size;
  const int n = a.size;
  if (n == 1 || bytes == 0) return std::move(b).finish();
  const region out{buffer::output, 0};
  const int vrank = wrap(a.rank - a.root, n);
  auto real = [&](int v) { return wrap(v + a.root, n); };
  // A rank hears from the rank that differs in its lowest set bit, then
  // serves the ranks below that bit, farthest first so that the largest
  // subtrees start earliest.
  int mask = 1;
  while (mask < n) {
    if ((vrank & mask) != 0) {
      b.recv(real(vrank - mask), out, bytes);
      break;
    }
    mask *= 2;
  }
  for (mask /= 2; mask > 0; mask /= 2) {
    if (vrank + mask < n) b.send(real(vrank + mask), out, bytes);
  }
  return std::move(b).finish();
}

inline schedule chain(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const int n = a.size;
  if (n == 1 || a.count == 0) return std::move(b).finish();
  const region out{buffer::output, 0};
  const int vrank = wrap(a.rank - a.root, n);
  const int previous = wrap(a.rank - 1, n);
  const int next = wrap(a.rank + 1, n);
  const std::size_t per_chunk = chunk_elements(a, default_chunk_bytes);
  for (std::size_t c = 0; c < chunk_count(a.count, per_chunk); ++c) {
    const piece p = chunk_of(a.count, per_chunk, c);
    if (vrank > 0) b.recv(previous, at(out, p.first * es), p.length * es);
    if (vrank + 1 < n) b.send(next, at(out, p.first * es), p.length * es);
  }
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::broadcast
