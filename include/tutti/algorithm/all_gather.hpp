// all_gather and all_gather_v schedules. Each works on per-rank block sizes,
// so the _v form is the same algorithm with uneven blocks.
//
// - ring: size - 1 steps, each forwarding the block received last, chunked
//   so forwarding overlaps receiving. Bandwidth-optimal; for large messages.
// - recursive_doubling: log2(size) rounds, each doubling the window of blocks
//   a rank holds. Needs a power-of-two size: on other sizes it builds the
//   bruck schedule, which has the same number of rounds.
// - bruck: ceil(log2(size)) rounds on any size, at the cost of working in a
//   rotated scratch copy and one local rotation into place at the end.
//
// Input is read by the copy into this rank's block of the output and by the
// first sends of that block (which so need not wait for the copy), and
// nothing else writes that block: so the input may be the block itself (in
// place), the copy then being one onto itself.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::all_gather {

inline constexpr std::size_t default_chunk_bytes = std::size_t{256} << 10;

inline schedule ring(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const int n = a.size;
  const int r = a.rank;
  const auto sizes = block_sizes(a);
  const auto offsets = offsets_of(sizes);
  const region in{buffer::input, 0};
  const region out{buffer::output, 0};
  const std::size_t per_chunk = chunk_elements(a, default_chunk_bytes);
  const std::size_t chunks = chunk_count(largest(offsets), per_chunk);
  for (int s = 0; s + 1 < n; ++s) {
    const int send_block = wrap(r - s, n);
    const int recv_block = wrap(r - s - 1, n);
    // This rank's own block goes out from the input, so it need not wait
    // for the copy into the output.
    const region send_base = s == 0 ? in : at(out, offsets[uz(send_block)] * es);
    for (std::size_t c = 0; c < chunks; ++c) {
      const piece out_piece = chunk_of(sizes[uz(send_block)], per_chunk, c);
      send_some(b, wrap(r + 1, n), at(send_base, out_piece.first * es), out_piece.length * es);
      const piece in_piece = chunk_of(sizes[uz(recv_block)], per_chunk, c);
      recv_some(b, wrap(r - 1, n), at(out, (offsets[uz(recv_block)] + in_piece.first) * es), in_piece.length * es);
    }
  }
  // No step reads this rank's block of the output, so the copy into it comes
  // last: it runs once the first messages are posted.
  b.copy(at(out, offsets[uz(r)] * es), in, sizes[uz(r)] * es);
  return std::move(b).finish();
}

inline schedule bruck(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const int n = a.size;
  const int r = a.rank;
  const auto sizes = block_sizes(a);
  const auto offsets = offsets_of(sizes);
  const region out{buffer::output, 0};
  if (n == 1) {
    b.copy(out, {buffer::input, 0}, sizes[0] * es);
    return std::move(b).finish();
  }
  // Block i of the work buffer is rank r + i's, so every round sends a
  // prefix and receives right after what it already has.
  std::vector<std::size_t> rotated(uz(n));
  for (int i = 0; i < n; ++i) rotated[uz(i)] = sizes[uz(wrap(r + i, n))];
  const auto work_offsets = offsets_of(rotated);
  const region in{buffer::input, 0};
  const region work = b.allocate_scratch(offsets[uz(n)] * es);
  for (int k = 1; k < n; k *= 2) {
    const int blocks = std::min(k, n - k);
    // The first round sends this rank's block alone, from the input, and
    // the copy into the work buffer follows its posts.
    send_some(b, wrap(r - k, n), k == 1 ? in : work, work_offsets[uz(blocks)] * es);
    recv_some(b, wrap(r + k, n), at(work, work_offsets[uz(k)] * es),
              (work_offsets[uz(k + blocks)] - work_offsets[uz(k)]) * es);
    if (k == 1) b.copy(work, in, sizes[uz(r)] * es);
  }
  // Ranks r..n-1 come first in the work buffer, then 0..r-1.
  const std::size_t tail = work_offsets[uz(n - r)];
  b.copy(at(out, offsets[uz(r)] * es), work, tail * es);
  b.copy(out, at(work, tail * es), (offsets[uz(n)] - tail) * es);
  return std::move(b).finish();
}

inline schedule recursive_doubling(const collective_args& a) {
  using namespace detail;
  if (!is_pow2(a.size)) return bruck(a);
  schedule_builder b;
  const std::size_t es = a.element_size;
  const auto offsets = offsets_of(block_sizes(a));
  const region out{buffer::output, 0};
  doubling_all_gather(b, fold(a.size), a.rank, {buffer::input, 0}, out, offsets, es);
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::all_gather
