// Who last wrote, and who has read since, every byte of one buffer: what
// schedule_builder derives a step's dependencies from. A read waits for
// the last write of each byte it reads; a write waits for the reads since
// that write, or for the write itself where there were none (each such read
// already waits for it).
//
// Bytes are kept as disjoint segments of equal history, keyed by their
// first byte. A write makes its range one segment; a read that ends or
// starts inside a segment splits it. So a segment map follows the blocks
// an algorithm works in (a ring schedule at 4096 ranks keeps one segment
// per block) and, once they exist, an access looks one up and changes it
// in place: no node is allocated or freed. A multimap of every live access,
// as this was before, inserted and erased several nodes per step, and
// building schedules was most of a 4096-rank proof.
//
// Readers are cons lists in one pool: a split segment shares its list with
// its other half, and a read prepends to its own. Lists are dropped by a
// write, not freed; the pool lives as long as the schedule being built.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <memory_resource>
#include <vector>

namespace tutti::algorithm {

class access_log {
 public:
  static constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();

  // Readers of every buffer's log go to one pool (the builder's).
  struct reader {
    std::uint32_t step;
    std::uint32_t next;  // the reader before it, or none
  };
  using reader_pool = std::vector<reader>;

  access_log(std::pmr::memory_resource* nodes, reader_pool* readers) : segments_(nodes), readers_(readers) {}
  // last_ points into segments_, which a copy or move would not follow.
  access_log(const access_log&) = delete;
  access_log& operator=(const access_log&) = delete;

  // Step `step` accesses bytes [begin, end): calls wait_for(s) for every
  // earlier step s it must wait for, in byte order (a step may come more
  // than once), and records the access.
  template <class WaitFor>
  void access(std::size_t begin, std::size_t end, std::uint32_t step, bool writes, WaitFor wait_for) {
    if (begin >= end) return;
    auto it = segment_at(begin);
    std::size_t at = begin;
    auto written = segments_.end();  // a write's one segment, once made
    while (at < end) {
      if (it == segments_.end() || it->first > at) {  // never accessed: nothing to wait for
        const std::size_t gap_end = it == segments_.end() ? end : std::min(end, it->first);
        it = segments_.emplace_hint(it, at, segment{gap_end, none, none});
      }
      segment& s = it->second;
      if (s.end > end) {  // keep [end, s.end) as it was
        segments_.emplace_hint(std::next(it), end, s);
        s.end = end;
      }
      at = s.end;
      if (writes && s.readers != none) {
        for (std::uint32_t r = s.readers; r != none; r = (*readers_)[r].next) {
          if ((*readers_)[r].step != step) wait_for((*readers_)[r].step);
        }
      } else if (s.writer != none && s.writer != step) {
        wait_for(s.writer);
      }
      if (!writes) {
        readers_->push_back({step, s.readers});
        s.readers = static_cast<std::uint32_t>(readers_->size() - 1);
        ++it;
      } else if (written == segments_.end()) {
        written = it;
        s.writer = step;
        s.readers = none;
        ++it;
      } else {  // the write's range becomes one segment
        written->second.end = s.end;
        it = segments_.erase(it);
      }
    }
    last_ = written != segments_.end() ? written : std::prev(it);
  }

 private:
  struct segment {
    std::size_t end;
    std::uint32_t writer;   // none: never written
    std::uint32_t readers;  // since that write: a list in the pool, or none
  };
  using segment_map = std::pmr::map<std::size_t, segment>;

  // The segment starting at `begin`, splitting one that straddles it, or
  // the first one after it.
  segment_map::iterator segment_at(std::size_t begin) {
    auto before = holding(begin);
    if (before == segments_.end()) {
      const auto after = segments_.upper_bound(begin);
      if (after == segments_.begin()) return after;
      before = std::prev(after);
      if (before->second.end <= begin) return after;
    }
    if (before->first == begin) return before;
    segment tail = before->second;
    before->second.end = begin;
    return segments_.emplace_hint(std::next(before), begin, tail);
  }

  // The segment holding byte `at` if it is the last one accessed or next to
  // it, else end(). Algorithms walk blocks in order, forwards or backwards,
  // so this spares most lookups a walk down the tree.
  segment_map::iterator holding(std::size_t at) {
    const auto holds = [&](segment_map::iterator it) { return it->first <= at && at < it->second.end; };
    if (last_ == segments_.end()) return last_;
    if (holds(last_)) return last_;
    if (const auto next = std::next(last_); next != segments_.end() && holds(next)) return next;
    if (last_ != segments_.begin()) {
      if (const auto previous = std::prev(last_); holds(previous)) return previous;
    }
    return segments_.end();
  }

  segment_map segments_;
  segment_map::iterator last_ = segments_.end();  // the segment an access last ended in
  reader_pool* readers_;
};

}  // namespace tutti::algorithm
