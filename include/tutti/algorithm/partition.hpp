// Shared arithmetic of the algorithms: splitting elements into blocks and
// chunks, rank arithmetic, the power-of-two fold, binary trees, and the
// phases several algorithms share. Blocks are counted in elements and turned
// into bytes only at the end, so no element is ever split across two
// messages.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::detail {

inline std::size_t uz(int value) noexcept { return static_cast<std::size_t>(value); }

// a mod n in [0, n), for the negative offsets ring arithmetic produces.
inline int wrap(int a, int n) noexcept { return ((a % n) + n) % n; }

// The largest power of two not above n (n >= 1).
inline int floor_pow2(int n) noexcept {
  int p = 1;
  while (p <= n / 2) p *= 2;
  return p;
}

inline bool is_pow2(int n) noexcept { return n > 0 && (n & (n - 1)) == 0; }

// ceil(log2(n)) for n >= 1.
inline int ceil_log2(int n) noexcept {
  int rounds = 0;
  while ((1 << rounds) < n) ++rounds;
  return rounds;
}

inline region at(region base, std::size_t byte_offset) noexcept { return {base.where, base.offset + byte_offset}; }

// Element offsets of `parts` blocks splitting `count` as evenly as possible
// (the first count % parts get one more), with the total at the end.
inline std::vector<std::size_t> even_offsets(std::size_t count, int parts) {
  const std::size_t n = uz(parts);
  std::vector<std::size_t> offsets(n + 1);
  for (std::size_t i = 0; i <= n; ++i) offsets[i] = i * (count / n) + std::min(i, count % n);
  return offsets;
}

// Element offsets of blocks of the given sizes, with the total at the end.
inline std::vector<std::size_t> offsets_of(std::span<const std::size_t> sizes) {
  std::vector<std::size_t> offsets(sizes.size() + 1, 0);
  for (std::size_t i = 0; i < sizes.size(); ++i) offsets[i + 1] = offsets[i] + sizes[i];
  return offsets;
}

// Per-rank block sizes: counts for the *_v collectives, count for the rest.
inline std::vector<std::size_t> block_sizes(const collective_args& a) {
  if (is_v(a.kind)) return a.counts;
  return std::vector<std::size_t>(uz(a.size), a.count);
}

inline std::size_t largest(std::span<const std::size_t> offsets) noexcept {
  std::size_t most = 0;
  for (std::size_t i = 0; i + 1 < offsets.size(); ++i) most = std::max(most, offsets[i + 1] - offsets[i]);
  return most;
}

// Elements per pipelining chunk: at least one, never a split element.
inline std::size_t chunk_elements(const collective_args& a, std::size_t default_bytes) noexcept {
  const std::size_t bytes = a.chunk_bytes != 0 ? a.chunk_bytes : default_bytes;
  return std::max<std::size_t>(1, bytes / a.element_size);
}

inline std::size_t chunk_count(std::size_t elements, std::size_t per_chunk) noexcept {
  return (elements + per_chunk - 1) / per_chunk;
}

// Chunk c of a block: first element (relative to the block) and length,
// empty past the block's end, so blocks of different sizes can be walked
// with one chunk counter.
struct piece {
  std::size_t first = 0;
  std::size_t length = 0;
};

inline piece chunk_of(std::size_t block_length, std::size_t per_chunk, std::size_t c) noexcept {
  const std::size_t first = c * per_chunk;
  if (first >= block_length) return {first, 0};
  return {first, std::min(per_chunk, block_length - first)};
}

// The fold that lets power-of-two algorithms run on any size: among the
// first 2 * extra ranks, each even rank hands its data to the odd rank above
// it and sits out, getting the result back at the end. The remaining
// `active` ranks (a power of two) are renumbered 0..active-1.
struct fold {
  int active = 1;
  int extra = 0;

  explicit fold(int size) noexcept : active(floor_pow2(size)), extra(size - floor_pow2(size)) {}

  [[nodiscard]] bool sits_out(int rank) const noexcept { return rank < 2 * extra && rank % 2 == 0; }
  [[nodiscard]] bool absorbs(int rank) const noexcept { return rank < 2 * extra && rank % 2 == 1; }
  [[nodiscard]] int virtual_rank(int rank) const noexcept { return rank < 2 * extra ? rank / 2 : rank - extra; }
  [[nodiscard]] int real_rank(int virtual_rank) const noexcept {
    return virtual_rank < extra ? 2 * virtual_rank + 1 : virtual_rank + extra;
  }
};

// Sends and receives skip empty ranges: both ends derive the same sizes from
// the same arguments, so they skip the same messages.
inline void send_some(schedule_builder& b, int peer, region src, std::size_t bytes) {
  if (bytes != 0) b.send(peer, src, bytes);
}
inline void recv_some(schedule_builder& b, int peer, region dst, std::size_t bytes) {
  if (bytes != 0) b.recv(peer, dst, bytes);
}

// A rank's running reduction of a whole vector: it starts as the rank's own
// contribution where that lies (usually input) and moves to its destination
// with the first combine, which writes dst = op(own, received). So no
// schedule copies its input before reducing: that copy was a whole extra
// pass over memory, a quarter of a large all_reduce's time.
//
// It records whether the sum has moved rather than overwriting the region:
// GCC 12 at -O1 and above with -fsanitize=thread dropped that store (the
// member assignment after the builder call), so sends went on reading the
// input (a ten-line reproduction failed the same way).
class running_sum {
 public:
  running_sum(region own, region destination) noexcept : own_(own), destination_(destination) {}

  // Where the sum so far lies: what a rank sends on.
  [[nodiscard]] region current() const noexcept { return moved_ ? destination_ : own_; }

  // current = op(current, src), written to the destination.
  void combine(schedule_builder& b, region src, std::size_t bytes) {
    b.reduce(destination_, current(), src, bytes);
    moved_ = true;
  }

  // Moves the sum to its destination if nothing was combined yet.
  void settle(schedule_builder& b, std::size_t bytes) {
    b.copy(destination_, current(), bytes);
    moved_ = true;
  }

 private:
  region own_;
  region destination_;
  bool moved_ = false;
};

// A ring of `size` members, this rank at `position`, its neighbours by
// real rank: the whole world in rank order, or a subgroup (a host's local
// ranks, one rail of hosts, a rail-aligned order of the world).
struct ring_view {
  int position = 0;
  int size = 1;
  int left = 0;
  int right = 0;
};

inline ring_view flat_ring(int rank, int size) noexcept {
  return {rank, size, wrap(rank - 1, size), wrap(rank + 1, size)};
}

// Where `rank` is among `members`; -1 if it is not one.
inline int position_of(std::span<const int> members, int rank) noexcept {
  const auto found = std::find(members.begin(), members.end(), rank);
  return found == members.end() ? -1 : static_cast<int>(found - members.begin());
}

// The ring through `members` (real ranks, in ring order) at `position`.
inline ring_view ring_through(std::span<const int> members, int position) {
  const int size = static_cast<int>(members.size());
  return {position, size, members[uz(wrap(position - 1, size))], members[uz(wrap(position + 1, size))]};
}

// Ring reduce-scatter: `own` holds this rank's contribution and `work`
// receives the partial sums, both cut into `ring.size` blocks by `offsets`
// (size + 1 element offsets), block i belonging to ring position i. After
// size - 1 steps, each sending one block right and adding the one from the
// left, block position + 1 of `work` holds the reduction over the ring and
// the other blocks but position's hold partial sums; block position of
// `work` is never written. Each block of `own` is read once, by the step
// that first writes it to `work` (or, for block position, by the first
// send), so `own` may be `work` itself or, for an all_reduce in place, alias
// it. Blocks are cut into chunks of `per_chunk` elements, so forwarding one
// chunk overlaps receiving the next.
inline void ring_reduce_scatter(schedule_builder& b, const ring_view& ring, region own, region work,
                                std::span<const std::size_t> offsets, std::size_t element_size, std::size_t per_chunk) {
  const std::size_t es = element_size;
  const int size = ring.size;
  const std::size_t block_max = largest(offsets);
  const std::size_t chunks = chunk_count(block_max, per_chunk);
  auto length = [&](int block) { return offsets[uz(block) + 1] - offsets[uz(block)]; };
  if (size == 1) {  // the reduction over one member is its contribution
    b.copy(at(work, offsets[0] * es), at(own, offsets[0] * es), length(0) * es);
    return;
  }
  // A few chunk-sized staging slots, used in turn: a chunk is reduced soon
  // after it lands, so its slot is still in cache, and the slots in use
  // bound how far receiving runs ahead of reducing.
  constexpr std::size_t slot_count = 4;
  const std::size_t slot_bytes = std::min(per_chunk, block_max) * es;
  region slots[slot_count];
  for (region& slot : slots) slot = b.allocate_scratch(slot_bytes);
  std::size_t next_slot = 0;
  // After step s, block position - s - 1 holds the contributions of s + 2 members.
  for (int s = 0; s + 1 < size; ++s) {
    const int send_block = wrap(ring.position - s, size);
    const int recv_block = wrap(ring.position - s - 1, size);
    const region send_from = s == 0 ? own : work;
    for (std::size_t c = 0; c < chunks; ++c) {
      const piece out_piece = chunk_of(length(send_block), per_chunk, c);
      const std::size_t out_at = (offsets[uz(send_block)] + out_piece.first) * es;
      send_some(b, ring.right, at(send_from, out_at), out_piece.length * es);
      const piece in_piece = chunk_of(length(recv_block), per_chunk, c);
      if (in_piece.length == 0) continue;
      const region staging = slots[next_slot++ % slot_count];
      const std::size_t in_at = (offsets[uz(recv_block)] + in_piece.first) * es;
      b.recv(ring.left, staging, in_piece.length * es);
      b.reduce(at(work, in_at), at(own, in_at), staging, in_piece.length * es);
    }
  }
}

// Ring all-gather in place: `work` is cut into `ring.size` blocks by
// `offsets`, and position p starts with block p + 1 complete (what
// ring_reduce_scatter leaves). After size - 1 steps, each forwarding the
// block received last, every block is complete everywhere.
inline void ring_all_gather(schedule_builder& b, const ring_view& ring, region work,
                            std::span<const std::size_t> offsets, std::size_t element_size, std::size_t per_chunk) {
  const std::size_t es = element_size;
  const int size = ring.size;
  const std::size_t chunks = chunk_count(largest(offsets), per_chunk);
  auto length = [&](int block) { return offsets[uz(block) + 1] - offsets[uz(block)]; };
  for (int s = 0; s + 1 < size; ++s) {
    const int send_block = wrap(ring.position + 1 - s, size);
    const int recv_block = wrap(ring.position - s, size);
    for (std::size_t c = 0; c < chunks; ++c) {
      const piece out_piece = chunk_of(length(send_block), per_chunk, c);
      send_some(b, ring.right, at(work, (offsets[uz(send_block)] + out_piece.first) * es), out_piece.length * es);
      const piece in_piece = chunk_of(length(recv_block), per_chunk, c);
      recv_some(b, ring.left, at(work, (offsets[uz(recv_block)] + in_piece.first) * es), in_piece.length * es);
    }
  }
}

// A node's neighbours in a binary tree, as indices; -1 where there is none.
struct tree_node {
  int parent = -1;
  int children[2] = {-1, -1};
};

// Node `index` of the in-order binary tree over indices 0..n-1: the root of
// every subtree is the index i of its range with the most trailing zero bits
// in i + 1. So the odd indices are exactly the interior nodes (floor(n / 2)
// of them) and the even ones the leaves, the depth is floor(log2(n)), and
// every subtree is a range of consecutive indices. Two such trees whose
// indices are shifted by one rank have no interior node in common (double
// binary tree, see all_reduce.hpp).
inline tree_node in_order_tree(int n, int index) {
  // Positions are index + 1, in [lo, hi]; the subtree root is the one with
  // the highest power of two dividing it (unique within any range).
  auto root_of = [](int lo, int hi) {
    int bit = floor_pow2(hi);
    while (hi / bit * bit < lo) bit /= 2;
    return hi / bit * bit;
  };
  const int position = index + 1;
  int lo = 1;
  int hi = n;
  tree_node node;
  for (int root = root_of(lo, hi); root != position; root = root_of(lo, hi)) {
    node.parent = root - 1;
    if (position < root) {
      hi = root - 1;
    } else {
      lo = root + 1;
    }
  }
  if (lo < position) node.children[0] = root_of(lo, position - 1) - 1;
  if (position < hi) node.children[1] = root_of(position + 1, hi) - 1;
  return node;
}

// Halving and doubling rounds send a window of blocks to a partner that
// passes half of it on in its next round. Sent as one message, that next
// round waits for the whole window to arrive (and, halving, be reduced), so
// the link idles for a latency and a reduction every round; a pipeline of
// such rounds (hierarchical all_reduce's rail phase) idles as often. So a
// window whose halves are both at least this long goes as two messages, the
// half the receiver passes on first: its next round starts while the other
// half is still arriving. Shorter halves would pay a second message's
// latency for less overlap than that latency.
inline constexpr std::size_t round_split_bytes = std::size_t{64} << 10;

// Blocks [lo, hi) of `offsets`, in the order a round sends them: `first`
// then `second` (empty unless the window is split).
struct window_parts {
  int first_lo = 0;
  int first_hi = 0;
  int second_lo = 0;
  int second_hi = 0;
};

// The window of `blocks` blocks from `lo` (a power of two), split at its
// middle with the half starting at block `lead` first, when both halves are
// long enough.
inline window_parts split_window(int lo, int blocks, int lead, std::span<const std::size_t> offsets,
                                 std::size_t element_size) {
  const int half = blocks / 2;
  const int mid = lo + half;
  const int hi = lo + blocks;
  const auto bytes = [&](int from, int to) { return (offsets[uz(to)] - offsets[uz(from)]) * element_size; };
  if (half == 0 || bytes(lo, mid) < round_split_bytes || bytes(mid, hi) < round_split_bytes) {
    return {lo, hi, hi, hi};
  }
  const int other = lead == lo ? mid : lo;
  return {lead, lead + half, other, other + half};
}

// Recursive halving among `f.active` virtual ranks over the blocks given by
// `offsets` (active + 1 element offsets): afterwards this rank's block of
// `work` holds the reduction over all active ranks. `own` is this rank's
// contribution, read in the first round only (it may be `work`; see
// ring_reduce_scatter). Each round keeps the half of the current window this
// rank's bit selects and hands the other half to the partner, so bytes sent
// halve every round. Long windows go in two parts (see round_split_bytes),
// first the half the receiver hands on next. With `window` > 1 it stops
// when this rank's window has that many blocks (a power of two), holding
// their sum over the ranks that differ from it in the higher bits.
inline void halving_reduce_scatter(schedule_builder& b, const fold& f, int vrank, region own, region work,
                                   std::span<const std::size_t> offsets, std::size_t element_size, int window = 1) {
  const auto bytes = [&](int from, int to) { return (offsets[uz(to)] - offsets[uz(from)]) * element_size; };
  // Rounds receive into two staging areas in turn, so a round's receives
  // need not wait for the previous round's reductions. Every later round
  // keeps part of what the one two rounds before kept, so the larger half
  // and the largest quarter bound them.
  const int active = f.active;
  std::size_t largest[2] = {0, 0};
  for (int parts = 2, area = 0; parts <= 4 && parts <= active; parts *= 2, ++area) {
    for (int q = 0; q < parts; ++q)
      largest[area] = std::max(largest[area], bytes(q * active / parts, (q + 1) * active / parts));
  }
  const region staging[2] = {b.allocate_scratch(largest[0]), b.allocate_scratch(largest[1])};
  int lo = 0;
  region source = own;
  for (int mask = active / 2, round = 0; mask >= window; mask /= 2, ++round) {
    const int partner = f.real_rank(vrank ^ mask);
    const bool keep_low = (vrank & mask) == 0;
    const int keep_lo = keep_low ? lo : lo + mask;
    const int give_lo = keep_low ? lo + mask : lo;
    // Next round this rank and the partner (whose bit there is the same)
    // each hand on the half of what they keep now that their bit does not
    // select.
    const int next = mask / 2;
    const auto parts_of = [&](int first) {
      if (next < window) return window_parts{first, first + mask, first + mask, first + mask};  // no next halving
      const int lead = (vrank & next) == 0 ? first + next : first;
      return split_window(first, mask, lead, offsets, element_size);
    };
    const window_parts give = parts_of(give_lo);
    send_some(b, partner, at(source, offsets[uz(give.first_lo)] * element_size), bytes(give.first_lo, give.first_hi));
    send_some(b, partner, at(source, offsets[uz(give.second_lo)] * element_size),
              bytes(give.second_lo, give.second_hi));
    const window_parts keep = parts_of(keep_lo);
    std::size_t staged = 0;
    for (const auto& [from, to] :
         {std::pair{keep.first_lo, keep.first_hi}, std::pair{keep.second_lo, keep.second_hi}}) {
      const std::size_t length = bytes(from, to);
      if (length == 0) continue;
      const region landed = at(staging[round % 2], staged);
      const std::size_t keep_at = offsets[uz(from)] * element_size;
      b.recv(partner, landed, length);
      b.reduce(at(work, keep_at), at(source, keep_at), landed, length);
      staged += length;
    }
    source = work;
    lo = keep_lo;
  }
}

// Recursive doubling all-gather among `f.active` virtual ranks: this rank
// ends with every block of `work`. Its own block starts in `own`: its block
// of `work`, or the input, which the first round sends as it is and which is
// copied into `work` right after that round is posted, so the peer fetches
// it while the copy runs. Each round swaps the aligned window of blocks each
// side has, doubling it. A long window goes in two parts (see
// round_split_bytes), first the half its sender already had before the
// last round: that half is ready while the last round's is still arriving.
// With `window` > 1 this rank starts with the whole aligned window of that
// many blocks around its own in `work` and the first round swaps it.
inline void doubling_all_gather(schedule_builder& b, const fold& f, int vrank, region own, region work,
                                std::span<const std::size_t> offsets, std::size_t element_size, int window = 1) {
  const auto bytes = [&](int from, int to) { return (offsets[uz(to)] - offsets[uz(from)]) * element_size; };
  const region own_block = at(work, offsets[uz(vrank)] * element_size);
  const std::size_t own_bytes = bytes(vrank, vrank + 1);
  // The window of `mask` blocks holding virtual rank v, its half from
  // before the last round first.
  const auto parts_of = [&](int v, int mask) {
    const int half = std::max(mask / 2, 1);
    return split_window(v & ~(mask - 1), mask, v & ~(half - 1), offsets, element_size);
  };
  for (int mask = window; mask < f.active; mask *= 2) {
    const int partner_v = vrank ^ mask;
    const int partner = f.real_rank(partner_v);
    const window_parts mine = parts_of(vrank, mask);
    const window_parts theirs = parts_of(partner_v, mask);
    const region from = mask == 1 ? own : work;
    const std::size_t from_base = mask == 1 ? offsets[uz(vrank)] * element_size : 0;
    const auto from_at = [&](int block) { return at(from, offsets[uz(block)] * element_size - from_base); };
    send_some(b, partner, from_at(mine.first_lo), bytes(mine.first_lo, mine.first_hi));
    send_some(b, partner, from_at(mine.second_lo), bytes(mine.second_lo, mine.second_hi));
    recv_some(b, partner, at(work, offsets[uz(theirs.first_lo)] * element_size),
              bytes(theirs.first_lo, theirs.first_hi));
    recv_some(b, partner, at(work, offsets[uz(theirs.second_lo)] * element_size),
              bytes(theirs.second_lo, theirs.second_hi));
    if (mask == 1) b.copy(own_block, own, own_bytes);
  }
  if (f.active == 1) b.copy(own_block, own, own_bytes);  // no rounds
}

// Halving rounds whose windows are this short are bound by latency, not
// bandwidth: below it, Rabenseifner hands its window to recursive doubling
// (doubling_window_all_reduce), one round per level instead of two, for a
// few more bytes than the halving and doubling rounds would have sent.
inline constexpr std::size_t doubling_window_bytes = std::size_t{32} << 10;

// The window, in blocks of `bytes` / `active`, at which Rabenseifner stops
// halving: the largest power of two whose windows average at most
// doubling_window_bytes (every rank derives the same one).
inline int doubling_window(std::size_t bytes, int active) {
  int window = 1;
  while (window < active && bytes / uz(active) * uz(2 * window) <= doubling_window_bytes) window *= 2;
  return window;
}

// Recursive doubling all-reduce of this rank's aligned window of `window`
// blocks among the `window` ranks that share it (those that differ from it
// only in the lower bits): each round swaps the whole window with a partner
// and adds it in. `source` holds this rank's partial sums of the window
// (`work` once halving rounds ran, else this rank's own contribution); the
// result is in `work`.
inline void doubling_window_all_reduce(schedule_builder& b, const fold& f, int vrank, region source, region work,
                                       std::span<const std::size_t> offsets, std::size_t element_size, int window) {
  if (window == 1) return;
  const int lo = vrank & ~(window - 1);
  const std::size_t first = offsets[uz(lo)] * element_size;
  const std::size_t bytes = (offsets[uz(lo + window)] - offsets[uz(lo)]) * element_size;
  const region staging = b.allocate_scratch(bytes);
  for (int mask = 1; mask < window; mask *= 2) {
    const int partner = f.real_rank(vrank ^ mask);
    send_some(b, partner, at(source, first), bytes);
    recv_some(b, partner, staging, bytes);
    b.reduce(at(work, first), at(source, first), staging, bytes);
    source = work;
  }
}

}  // namespace tutti::algorithm::detail
