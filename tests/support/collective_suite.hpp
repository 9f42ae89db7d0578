// One round of every collective and point-to-point call on a communicator,
// checked exactly against a serial reference: the suite every transport
// runs (threads over inproc, processes over shm and tcp, and verbs inside
// the soft-RoCE VM).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <stdexcept>
#include <vector>

#include <tutti/communicator.hpp>

namespace tutti::test {

// Rank r's contribution to element i: distinct per rank and element.
inline std::int64_t value(int rank, std::size_t i) { return static_cast<std::int64_t>(i % 1000) * 31 + rank * 7 - 3; }

inline void expect(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}

// One round of every collective with `count` elements, checked exactly.
inline void exercise(tutti::communicator& comm, std::size_t count) {
  const int n = comm.size();
  const int me = comm.rank();
  std::vector<std::int64_t> in(count), out(count);
  for (std::size_t i = 0; i < count; ++i) in[i] = value(me, i);

  comm.all_reduce(std::span<const std::int64_t>(in), std::span<std::int64_t>(out));
  for (std::size_t i = 0; i < count; ++i) {
    std::int64_t sum = 0;
    for (int r = 0; r < n; ++r) sum += value(r, i);
    expect(out[i] == sum, "all_reduce sum");
  }
  auto inout = in;
  comm.all_reduce(std::span<std::int64_t>(inout), tutti::max{});
  for (std::size_t i = 0; i < count; ++i) expect(inout[i] == value(n - 1, i), "all_reduce max in place");

  for (int root = 0; root < n; root += std::max(1, n / 3)) {
    std::vector<std::int64_t> b = me == root ? in : std::vector<std::int64_t>(count, -1);
    comm.broadcast(std::span<std::int64_t>(b), root);
    for (std::size_t i = 0; i < count; ++i) expect(b[i] == value(root, i), "broadcast");
  }

  std::vector<std::int64_t> gathered(count * static_cast<std::size_t>(n));
  comm.all_gather(std::span<const std::int64_t>(in), std::span<std::int64_t>(gathered));
  for (int r = 0; r < n; ++r) {
    for (std::size_t i = 0; i < count; ++i) {
      expect(gathered[static_cast<std::size_t>(r) * count + i] == value(r, i), "all_gather");
    }
  }

  std::vector<std::int64_t> blocks(count * static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i] = value(me, i);
  std::vector<std::int64_t> mine(count);
  comm.reduce_scatter(std::span<const std::int64_t>(blocks), std::span<std::int64_t>(mine));
  for (std::size_t i = 0; i < count; ++i) {
    std::int64_t sum = 0;
    for (int r = 0; r < n; ++r) sum += value(r, static_cast<std::size_t>(me) * count + i);
    expect(mine[i] == sum, "reduce_scatter");
  }
  // The rest of the API, on the same data.
  const auto blocks_of = [&](std::size_t c) { return c * static_cast<std::size_t>(n); };
  for (int root = 0; root < n; root += std::max(1, n / 2)) {
    std::vector<std::int64_t> reduced(me == root ? count : 0);
    comm.reduce(std::span<const std::int64_t>(in), std::span<std::int64_t>(reduced), root);
    for (std::size_t i = 0; i < reduced.size(); ++i) expect(reduced[i] == out[i], "reduce");

    std::vector<std::int64_t> at_root(me == root ? blocks_of(count) : 0);
    comm.gather(std::span<const std::int64_t>(in), std::span<std::int64_t>(at_root), root);
    for (std::size_t i = 0; i < at_root.size(); ++i) expect(at_root[i] == gathered[i], "gather");

    std::vector<std::int64_t> piece(count);
    comm.scatter(std::span<const std::int64_t>(me == root ? gathered : std::vector<std::int64_t>{}),
                 std::span<std::int64_t>(piece), root);
    for (std::size_t i = 0; i < count; ++i) expect(piece[i] == value(me, i), "scatter");
  }

  std::vector<std::int64_t> exchanged(blocks_of(count));
  comm.all_to_all(std::span<const std::int64_t>(blocks), std::span<std::int64_t>(exchanged));
  for (int r = 0; r < n; ++r) {
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t at = static_cast<std::size_t>(r) * count + i;
      expect(exchanged[at] == value(r, static_cast<std::size_t>(me) * count + i), "all_to_all");
    }
  }

  // Uneven: rank r contributes r % 3 + count / 2 elements.
  std::vector<std::size_t> counts(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) counts[static_cast<std::size_t>(r)] = static_cast<std::size_t>(r % 3) + count / 2;
  std::vector<std::int64_t> mine_v(counts[static_cast<std::size_t>(me)]);
  for (std::size_t i = 0; i < mine_v.size(); ++i) mine_v[i] = value(me, i);
  std::vector<std::int64_t> gathered_v(std::accumulate(counts.begin(), counts.end(), std::size_t{0}));
  comm.all_gather_v(std::span<const std::int64_t>(mine_v), std::span<std::int64_t>(gathered_v), counts);
  std::size_t at = 0;
  for (int r = 0; r < n; ++r) {
    for (std::size_t i = 0; i < counts[static_cast<std::size_t>(r)]; ++i) {
      expect(gathered_v[at++] == value(r, i), "all_gather_v");
    }
  }

  // Point to point around a ring, then everyone waits for everyone.
  if (n > 1) {
    std::vector<std::int64_t> incoming(count);
    const int right = (me + 1) % n;
    const int left = (me + n - 1) % n;
    if (me % 2 == 0) {
      comm.send(std::span<const std::int64_t>(in), right);
      comm.recv(std::span<std::int64_t>(incoming), left);
    } else {
      comm.recv(std::span<std::int64_t>(incoming), left);
      comm.send(std::span<const std::int64_t>(in), right);
    }
    for (std::size_t i = 0; i < count; ++i) expect(incoming[i] == value(left, i), "send/recv");
  }
  comm.barrier();
}

}  // namespace tutti::test
