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
//
// The two power-of-two algorithms fold a non-power-of-two world first (see
// detail::fold), costing two extra full-vector messages on the folded ranks.
// All of them copy input to output first and then work in output only, so
// they are correct in place (see collective.hpp).
#pragma once

#include <cstddef>
#include <utility>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::all_reduce {

// Large enough that per-message overhead is small next to its transfer, small
// enough that a ring of 8 ranks has a few chunks in flight at 16 MiB.
inline constexpr std::size_t default_chunk_bytes = std::size_t{256} << 10;

inline schedule ring(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const region out{buffer::output, 0};
  b.copy(out, {buffer::input, 0}, a.count * es);
  if (a.size == 1 || a.count == 0) return std::move(b).finish();

  const int n = a.size;
  const int r = a.rank;
  const int right = wrap(r + 1, n);
  const int left = wrap(r - 1, n);
  const auto offsets = even_offsets(a.count, n);
  const std::size_t per_chunk = chunk_elements(a, default_chunk_bytes);
  const std::size_t block_max = largest(offsets);
  const std::size_t chunks = chunk_count(block_max, per_chunk);
  // Two staging slots, so receiving step s + 1 overlaps reducing step s.
  const region slots[2] = {b.allocate_scratch(block_max * es), b.allocate_scratch(block_max * es)};
  auto length = [&](int block) { return offsets[uz(block) + 1] - offsets[uz(block)]; };

  // After step s, block r - s - 1 holds the contributions of s + 2 ranks;
  // after n - 1 steps rank r holds all of block r + 1.
  for (int s = 0; s + 1 < n; ++s) {
    const int send_block = wrap(r - s, n);
    const int recv_block = wrap(r - s - 1, n);
    const region slot = slots[s % 2];
    for (std::size_t c = 0; c < chunks; ++c) {
      const piece out_piece = chunk_of(length(send_block), per_chunk, c);
      send_some(b, right, at(out, (offsets[uz(send_block)] + out_piece.first) * es), out_piece.length * es);
      const piece in_piece = chunk_of(length(recv_block), per_chunk, c);
      const region staging = at(slot, in_piece.first * es);
      recv_some(b, left, staging, in_piece.length * es);
      b.reduce(at(out, (offsets[uz(recv_block)] + in_piece.first) * es), staging, in_piece.length * es);
    }
  }
  for (int s = 0; s + 1 < n; ++s) {
    const int send_block = wrap(r + 1 - s, n);
    const int recv_block = wrap(r - s, n);
    for (std::size_t c = 0; c < chunks; ++c) {
      const piece out_piece = chunk_of(length(send_block), per_chunk, c);
      send_some(b, right, at(out, (offsets[uz(send_block)] + out_piece.first) * es), out_piece.length * es);
      const piece in_piece = chunk_of(length(recv_block), per_chunk, c);
      recv_some(b, left, at(out, (offsets[uz(recv_block)] + in_piece.first) * es), in_piece.length * es);
    }
  }
  return std::move(b).finish();
}

inline schedule recursive_doubling(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t bytes = a.count * a.element_size;
  const region out{buffer::output, 0};
  b.copy(out, {buffer::input, 0}, bytes);
  if (a.size == 1 || bytes == 0) return std::move(b).finish();

  const fold f(a.size);
  const int r = a.rank;
  if (f.sits_out(r)) {
    b.send(r + 1, out, bytes);
    b.recv(r + 1, out, bytes);
    return std::move(b).finish();
  }
  // One staging buffer: each round's receive must wait for the previous
  // round's reduce anyway, since the round's send needs that result.
  const region staging = b.allocate_scratch(bytes);
  if (f.absorbs(r)) {
    b.recv(r - 1, staging, bytes);
    b.reduce(out, staging, bytes);
  }
  const int vrank = f.virtual_rank(r);
  for (int mask = 1; mask < f.active; mask *= 2) {
    const int partner = f.real_rank(vrank ^ mask);
    b.send(partner, out, bytes);
    b.recv(partner, staging, bytes);
    b.reduce(out, staging, bytes);
  }
  if (f.absorbs(r)) b.send(r - 1, out, bytes);
  return std::move(b).finish();
}

inline schedule rabenseifner(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t es = a.element_size;
  const std::size_t bytes = a.count * es;
  const region out{buffer::output, 0};
  b.copy(out, {buffer::input, 0}, bytes);
  if (a.size == 1 || bytes == 0) return std::move(b).finish();

  const fold f(a.size);
  const int r = a.rank;
  if (f.sits_out(r)) {
    b.send(r + 1, out, bytes);
    b.recv(r + 1, out, bytes);
    return std::move(b).finish();
  }
  if (f.absorbs(r)) b.recv_reduce(r - 1, out, bytes);
  const int vrank = f.virtual_rank(r);
  const auto offsets = even_offsets(a.count, f.active);
  halving_reduce_scatter(b, f, vrank, out, offsets, es);
  doubling_all_gather(b, f, vrank, out, offsets, es);
  if (f.absorbs(r)) b.send(r - 1, out, bytes);
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::all_reduce
