// What a rank holds during a symbolic proof (symbolic_run.hpp): its three
// buffers and, for each peer it receives from, a FIFO channel of the
// messages sent to it and not yet received. A part of its own: how a
// channel keeps its memory small (drop_received) matters at 4096 ranks and
// is nothing the run has to know about.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <utility>
#include <vector>

#include <tutti/sim/program.hpp>
#include <tutti/sim/rank_sets.hpp>
#include <tutti/sim/segments.hpp>

namespace tutti::sim::detail {

// A message sent and not yet received: its pieces are [first_piece,
// first_piece + pieces) of its channel's (or mailbox's) pieces.
struct symbolic_message {
  std::uint32_t step;
  std::uint32_t bytes;
  std::uint32_t first_piece;
  std::uint32_t pieces;
  set_id knowledge;
};

// Messages from one peer, in order; their pieces in one vector.
struct symbolic_channel {
  explicit symbolic_channel(std::pmr::memory_resource* pool) : queue(pool), pieces(pool) {}
  std::pmr::vector<symbolic_message> queue;
  std::pmr::vector<piece> pieces;
  std::size_t head = 0;
  std::uint32_t parked = no_step;  // a receive waiting for a message

  [[nodiscard]] bool empty() const noexcept { return head == queue.size(); }

  // Forgets the messages received once they are half the queue: a sender
  // that stays ahead keeps a channel from ever draining, and its queue
  // would otherwise hold every message of the run. A drained channel
  // keeps room for a few messages only, and gives the rest back to its
  // thread's pool: in a ring's first turns rank k gets k messages at
  // once, and every channel keeping room for its largest backlog held
  // 400 MB at 4096 ranks, while the backlogs come one after another.
  void drop_received() {
    constexpr std::size_t kept = 64;
    if (empty()) {
      if (queue.capacity() > kept) {
        std::pmr::vector<symbolic_message>(queue.get_allocator()).swap(queue);
        std::pmr::vector<piece>(pieces.get_allocator()).swap(pieces);
      } else {
        queue.clear();
        pieces.clear();
      }
      head = 0;
      return;
    }
    if (head < 16 || 2 * head < queue.size()) return;
    const std::uint32_t first = queue[head].first_piece;
    queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(head));
    pieces.erase(pieces.begin(), pieces.begin() + first);
    for (symbolic_message& m : queue) m.first_piece -= first;
    head = 0;
  }
};

// Buffer is segment_map or cell_map (segments.hpp). Only the thread that
// runs the rank touches it.
template <class Buffer>
struct symbolic_rank {
  symbolic_rank(Buffer input, Buffer output, Buffer scratch, std::size_t channels, std::pmr::memory_resource* pool)
      : buffers{std::move(input), std::move(output), std::move(scratch)} {
    inbound.reserve(channels);
    for (std::size_t c = 0; c < channels; ++c) inbound.emplace_back(pool);
  }
  Buffer buffers[3];
  std::vector<symbolic_channel> inbound;
  std::size_t done = 0;
};

}  // namespace tutti::sim::detail
