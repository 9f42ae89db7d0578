// all_to_all and all_to_all_v schedules.
//
// - pairwise: size - 1 steps; at step k rank r sends to r + k and receives
//   from r - k, so every rank has exactly one message in and one out per
//   step and no link is oversubscribed. all_to_all_v always sends its
//   messages, empty ones included, so ranks that disagree on the counts get a
//   size mismatch rather than a hang. Latency and bandwidth linear in size:
//   the choice for large blocks.
// - bruck (all_to_all only): ceil(log2(size)) rounds on any size. Index the
//   blocks of rank r by distance, block i being the one for rank r + i (the
//   local rotation). In round k every rank sends to r + 2^k, packed into one
//   message, the blocks whose index has bit k set, and receives the same
//   indices from r - 2^k; a block has travelled its whole distance once all
//   its bits are done, and block i then holds what rank r - i sent to r (the
//   inverse rotation). The rotations cost no pass of their own: packing reads
//   a block from the input until it has moved and from a scratch copy after,
//   and unpacking writes a block straight to its place in the output once
//   its last bit is done. Each rank sends about size / 2 blocks per round, so
//   log2(size) alpha + (size / 2) log2(size) block beta, against pairwise's
//   (size - 1) (alpha + block beta): for small blocks, where alpha dominates.
#pragma once

#include <algorithm>
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
  for (int k = 1; k < n; ++k) {
    const auto to = uz(wrap(r + k, n));
    const auto from = uz(wrap(r - k, n));
    if (v || a.count != 0) {
      b.send(static_cast<int>(to), at(in, send_offsets[to] * es), sends[to] * es);
      b.recv(static_cast<int>(from), at(out, recv_offsets[from] * es), recvs[from] * es);
    }
  }
  // This rank's own block last: the copy runs once the messages are posted.
  b.copy(at(out, recv_offsets[uz(r)] * es), at(in, send_offsets[uz(r)] * es), sends[uz(r)] * es);
  return std::move(b).finish();
}

inline schedule bruck(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  const std::size_t block = a.count * a.element_size;
  const int n = a.size;
  const int r = a.rank;
  const region in{buffer::input, 0};
  const region out{buffer::output, 0};
  b.copy(at(out, uz(r) * block), at(in, uz(r) * block), block);
  if (n == 1 || block == 0) return std::move(b).finish();

  // Round k moves the indices in [0, size) with bit k set: runs of 2^k
  // starting at 2^k, 3 * 2^k, and so on. Every rank moves the same ones.
  auto moved_in_round = [&](int distance) {
    std::size_t blocks = 0;
    for (int lo = distance; lo < n; lo += 2 * distance) blocks += uz(std::min(lo + distance, n) - lo);
    return blocks;
  };
  std::size_t most = 0;
  for (int distance = 1; distance < n; distance *= 2) most = std::max(most, moved_in_round(distance));
  const region packed = b.allocate_scratch(most * block);
  const region unpacked = b.allocate_scratch(most * block);
  // Block i between its first and its last move, at i * block.
  const region moving = b.allocate_scratch(uz(n) * block);
  for (int distance = 1; distance < n; distance *= 2) {
    const std::size_t blocks = moved_in_round(distance);
    // The first index of a run has no lower bit set, so it has not moved
    // yet and is still in the input; the rest of the run has.
    std::size_t j = 0;
    for (int lo = distance; lo < n; lo += 2 * distance) {
      const int hi = std::min(lo + distance, n);
      b.copy(at(packed, j * block), at(in, uz(wrap(r + lo, n)) * block), block);
      b.copy(at(packed, (j + 1) * block), at(moving, uz(lo + 1) * block), uz(hi - lo - 1) * block);
      j += uz(hi - lo);
    }
    b.send(wrap(r + distance, n), packed, blocks * block);
    b.recv(wrap(r - distance, n), unpacked, blocks * block);
    // Indices below 2 * distance have no higher bit: this was their last
    // move, and block i came from rank r - i.
    j = 0;
    for (int lo = distance; lo < n; lo += 2 * distance) {
      const int hi = std::min(lo + distance, n);
      if (lo == distance) {
        for (int i = lo; i < hi; ++i) {
          b.copy(at(out, uz(wrap(r - i, n)) * block), at(unpacked, (j + uz(i - lo)) * block), block);
        }
      } else {
        b.copy(at(moving, uz(lo) * block), at(unpacked, j * block), uz(hi - lo) * block);
      }
      j += uz(hi - lo);
    }
  }
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::all_to_all
