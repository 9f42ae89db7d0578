// The shared-memory transport's segment layout: what lies where in the
// segment each rank owns, and the record format of its rings. See
// transport.hpp for the protocol that uses them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tutti::detail::shm {

inline constexpr std::size_t cache_line = 64;
inline constexpr std::size_t page_bytes = 4096;
// "tuttishm" in ASCII: a mapping that does not start with it is not ours.
inline constexpr std::uint64_t segment_magic = 0x7475747469736d31ULL;
// Bumped whenever the layout or a record format changes.
inline constexpr std::uint32_t layout_version = 1;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared-memory atomics must be lock-free");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "shared-memory atomics must be lock-free");
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "the doorbell is a futex word");

constexpr std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment) noexcept {
  return (value + alignment - 1) / alignment * alignment;
}

// At offset 0 of every segment. Each group of fields has its own cache line,
// so the words peers poll are never next to words someone else writes.
struct segment_header {
  // Written once by the owner before it announces the segment.
  std::uint64_t magic = 0;
  std::uint32_t version = 0;
  std::int32_t rank = 0;
  std::int64_t pid = 0;
  // Where the owner mapped this segment: the address a peer reads with
  // process_vm_readv to learn whether the kernel lets it into our memory.
  std::uint64_t owner_address = 0;
  std::uint64_t segment_bytes = 0;
  std::uint64_t ring_bytes = 0;
  std::uint32_t slot_bytes = 0;
  std::uint32_t ring_count = 0;

  // The futex word peers bump to wake the owner, and the owner's "I am about
  // to sleep" flag that tells them whether to.
  alignas(cache_line) std::atomic<std::uint32_t> doorbell{0};
  std::atomic<std::uint32_t> sleeping{0};

  // Set by the owner's destructor: it will neither read nor write again.
  alignas(cache_line) std::atomic<std::uint32_t> closed{0};
};

// Why a side gave up on a pair, published so the other side learns it
// without waiting for its timeout.
enum class fault_code : std::uint32_t { none = 0, mismatch = 1, transport = 2, protocol = 3 };

// The control block of the ring that carries one peer's messages to the
// segment's owner (the peer produces, the owner consumes). The slots follow
// it directly. There is no head counter: a slot's stamp says whether it
// holds a new record (see slot_header).
struct ring_control {
  // Consumer's line: slots consumed so far (monotonic), and single-copy
  // messages the consumer has finished (the producer's send completions).
  alignas(cache_line) std::atomic<std::uint64_t> tail{0};
  std::atomic<std::uint64_t> acks{0};

  // Written at setup, then only when a side fails the pair.
  alignas(cache_line) std::atomic<std::uint32_t> single_copy{0};  // consumer can reach producer's memory
  std::atomic<std::uint32_t> fault{0};                            // a fault_code, first writer wins
  std::atomic<std::uint64_t> fault_expected{0};                   // for mismatch: the posted size...
  std::atomic<std::uint64_t> fault_actual{0};                     // ...and the incoming one

  // The single-copy transfer in progress, set up by the consumer. Both sides
  // claim chunks through `claim` = (transfer number << 32) | next chunk, so a
  // stale claim for an earlier transfer fails its compare-exchange.
  alignas(cache_line) std::atomic<std::uint64_t> claim{0};
  std::atomic<std::uint64_t> copied{0};  // bytes of claimed chunks finished (or abandoned)
  std::atomic<std::uint64_t> target{0};  // consumer's destination address
  std::atomic<std::uint64_t> chunk_bytes{0};
  std::atomic<std::uint64_t> message_bytes{0};
};

static_assert(sizeof(segment_header) % cache_line == 0);
static_assert(sizeof(ring_control) % cache_line == 0);

// Rings are arrays of fixed slots, each starting on a cache line. A message
// takes one slot, or several when it is larger than a slot's payload (first,
// more, more...); a large message sent by single copy takes one slot that
// carries the sender's address.
inline constexpr std::uint64_t slot_bytes = 4096;

enum class record_kind : std::uint32_t { first = 1, more = 2, single_copy = 3 };

// At the start of each slot. `stamp` is the slot's sequence number on its
// ring plus one, stored last (release) by the producer: the consumer, which
// expects sequence number `tail`, knows the slot is complete when it loads
// (acquire) tail + 1. Stamps of earlier laps differ, and a slot's first word
// is only ever a stamp, so no payload can pass for one. It is accessed only
// through std::atomic_ref.
struct slot_header {
  std::uint64_t stamp = 0;
  std::uint32_t kind = 0;
  std::uint32_t payload_bytes = 0;  // payload in this slot
  std::uint64_t message_bytes = 0;  // the whole message's size
};

static_assert(std::is_trivially_copyable_v<slot_header> && sizeof(slot_header) == 24);
inline constexpr std::uint64_t slot_payload = slot_bytes - sizeof(slot_header);

// Where things are in a segment with `ring_count` rings of `ring_bytes`:
// the header, a table of the producer's rank of each ring, then the rings,
// each on its own pages (`ring_bytes` of slots after the control block).
struct geometry {
  std::uint64_t ring_bytes = 0;
  std::uint32_t ring_count = 0;

  [[nodiscard]] static constexpr std::uint64_t table_offset() noexcept { return sizeof(segment_header); }
  [[nodiscard]] constexpr std::uint64_t rings_offset() const noexcept {
    return align_up(table_offset() + sizeof(std::int32_t) * ring_count, page_bytes);
  }
  [[nodiscard]] constexpr std::uint64_t ring_stride() const noexcept {
    return align_up(sizeof(ring_control) + ring_bytes, page_bytes);
  }
  [[nodiscard]] constexpr std::uint64_t slot_count() const noexcept { return ring_bytes / slot_bytes; }
  [[nodiscard]] constexpr std::uint64_t ring_offset(std::uint32_t index) const noexcept {
    return rings_offset() + ring_stride() * index;
  }
  [[nodiscard]] constexpr std::uint64_t total_bytes() const noexcept {
    return rings_offset() + ring_stride() * ring_count;
  }
};

}  // namespace tutti::detail::shm
