// reduce_scatter and reduce_scatter_v schedules. Both work on per-rank block
// sizes, so the _v form is the same algorithm with uneven blocks.
//
// - ring: size - 1 steps; each rank adds its own contribution to the partial
//   block arriving from the left and forwards it, chunked so forwarding
//   overlaps receiving. Bandwidth-optimal; for large messages.
// - recursive_halving: log2 rounds, each halving the range a rank is
//   responsible for. Non-power-of-two sizes fold first (detail::fold): a
//   folded pair's blocks travel together, and the absorbing rank hands its
//   partner's block back at the end.
//
// Input is never written, so it is read directly rather than copied.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::reduce_scatter {

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
  if (n == 1) {
    b.copy(out, in, sizes[0] * es);
    return std::move(b).finish();
  }
  const std::size_t per_chunk = chunk_elements(a, default_chunk_bytes);
  const std::size_t block_max = largest(offsets);
  const std::size_t chunks = chunk_count(block_max, per_chunk);
  // The partial block received at step s is forwarded at step s + 1, while
  // step s + 1's arrives in the other slot.
  const region slots[2] = {b.allocate_scratch(block_max * es), b.allocate_scratch(block_max * es)};
  // Block j starts at rank j + 1 and travels right; rank j is last to add.
  for (int s = 0; s + 1 < n; ++s) {
    const int send_block = wrap(r - s - 1, n);
    const int recv_block = wrap(r - s - 2, n);
    const bool last = s + 2 == n;  // recv_block is this rank's own
    for (std::size_t c = 0; c < chunks; ++c) {
      const piece out_piece = chunk_of(sizes[uz(send_block)], per_chunk, c);
      const region source = s == 0 ? at(in, (offsets[uz(send_block)] + out_piece.first) * es)
                                   : at(slots[(s - 1) % 2], out_piece.first * es);
      send_some(b, wrap(r + 1, n), source, out_piece.length * es);
      const piece in_piece = chunk_of(sizes[uz(recv_block)], per_chunk, c);
      const region target = last ? at(out, in_piece.first * es) : at(slots[s % 2], in_piece.first * es);
      recv_some(b, wrap(r - 1, n), target, in_piece.length * es);
      b.reduce(target, at(in, (offsets[uz(recv_block)] + in_piece.first) * es), in_piece.length * es);
    }
  }
  return std::move(b).finish();
}

inline schedule recursive_halving(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const int n = a.size;
  const int r = a.rank;
  const auto sizes = block_sizes(a);
  const auto offsets = offsets_of(sizes);
  const std::size_t total = offsets[uz(n)] * es;
  const region in{buffer::input, 0};
  const region out{buffer::output, 0};
  if (n == 1) {
    b.copy(out, in, total);
    return std::move(b).finish();
  }
  const fold f(n);
  if (f.sits_out(r)) {
    send_some(b, r + 1, in, total);
    recv_some(b, r + 1, out, sizes[uz(r)] * es);
    return std::move(b).finish();
  }
  const region work = b.allocate_scratch(total);
  region own = in;
  if (f.absorbs(r)) {
    recv_some(b, r - 1, work, total);
    b.reduce(work, in, total);
    own = work;
  }
  // A virtual rank's block spans the real blocks of the ranks it stands for.
  std::vector<std::size_t> virtual_offsets(uz(f.active) + 1);
  for (int v = 0; v < f.active; ++v) virtual_offsets[uz(v)] = offsets[uz(v < f.extra ? 2 * v : v + f.extra)];
  virtual_offsets[uz(f.active)] = offsets[uz(n)];
  halving_reduce_scatter(b, f, f.virtual_rank(r), own, work, virtual_offsets, es);
  if (f.absorbs(r)) send_some(b, r - 1, at(work, offsets[uz(r - 1)] * es), sizes[uz(r - 1)] * es);
  b.copy(out, at(work, offsets[uz(r)] * es), sizes[uz(r)] * es);
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::reduce_scatter
