// One buffer's symbolic contents for the symbolic simulator: which ranks'
// contributions each byte holds and which byte of their data it is.
//
// Contents are runs ("segments"): bytes [begin, end) hold the set of ranks
// `set`, and byte begin + i is byte source + i of their data. Writes merge
// a segment with its neighbours when it continues them (same set, source
// continuing), so a fully reduced vector is one segment however it was
// assembled, and memory follows the structure of the data, not its size.
// Bytes no segment covers are undefined.
//
// The segments live in a map whose nodes come from a pool shared by every
// buffer of a world: a 4096-rank ring holds one segment per block on every
// rank mid-run (16M of them), and a node per malloc was a third of the run.
//
// When a world's buffers are small, cell_map keeps the same contents as one
// cell per `granule` bytes instead (every step of the world reads and writes
// whole cells): a lookup is an index, not a walk down a tree of thousands of
// segments, which at 4096 ranks waited on memory for most of each step.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <memory_resource>
#include <span>
#include <utility>
#include <vector>

#include <tutti/error.hpp>
#include <tutti/sim/rank_sets.hpp>

namespace tutti::sim {

// A run of `length` bytes: set `set` (rank_sets::empty: undefined) starting
// at byte `source` of the contributors' data.
struct piece {
  std::uint64_t length = 0;
  set_id set = rank_sets::empty;
  std::uint64_t source = 0;
};

class segment_map {
 public:
  explicit segment_map(std::pmr::memory_resource* pool) : segments_(pool) {}

  // The contents of [begin, begin + length) as pieces in order, undefined
  // gaps included, appended to `out`.
  void read(std::uint64_t begin, std::uint64_t length, std::vector<piece>& out) const {
    const std::uint64_t end = begin + length;
    std::uint64_t at = begin;
    auto it = segments_.upper_bound(begin);
    if (it != segments_.begin()) {
      const auto before = std::prev(it);
      if (before->second.end > begin) it = before;
    }
    for (; it != segments_.end() && it->first < end && at < end; ++it) {
      const std::uint64_t seg_begin = it->first;
      const segment& s = it->second;
      if (seg_begin > at) {
        out.push_back({seg_begin - at, rank_sets::empty, 0});
        at = seg_begin;
      }
      const std::uint64_t stop = s.end < end ? s.end : end;
      out.push_back({stop - at, s.set, s.source + (at - seg_begin)});
      at = stop;
    }
    if (at < end) out.push_back({end - at, rank_sets::empty, 0});
  }

  // Writes `pieces` from `begin` on (undefined pieces make bytes undefined).
  void write(std::uint64_t begin, std::span<const piece> pieces) {
    std::uint64_t total = 0;
    for (const piece& p : pieces) total += p.length;
    if (total == 0) return;
    erase(begin, begin + total);
    std::uint64_t at = begin;
    auto last = segments_.end();
    for (const piece& p : pieces) {
      if (p.set != rank_sets::empty && p.length != 0) {
        if (last != segments_.end() && last->second.end == at && continues(last, p.set, p.source)) {
          last->second.end = at + p.length;
        } else {
          last = segments_.emplace_hint(segments_.lower_bound(at), at, segment{at + p.length, p.set, p.source});
          last = merge_left(last);
        }
      }
      at += p.length;
    }
    if (last != segments_.end()) {
      const auto after = std::next(last);
      if (after != segments_.end() && after->first == last->second.end &&
          continues(last, after->second.set, after->second.source)) {
        last->second.end = after->second.end;
        segments_.erase(after);
      }
    }
  }

  void fill(std::uint64_t begin, std::uint64_t length, set_id set, std::uint64_t source) {
    const piece p{length, set, source};
    write(begin, std::span<const piece>(&p, 1));
  }

  [[nodiscard]] std::size_t size() const noexcept { return segments_.size(); }

 private:
  struct segment {
    std::uint64_t end;
    set_id set;
    std::uint64_t source;
  };
  using map_type = std::pmr::map<std::uint64_t, segment>;

  // Whether a run of (set, source) right after `it` continues it.
  static bool continues(map_type::const_iterator it, set_id set, std::uint64_t source) {
    return it->second.set == set && it->second.source + (it->second.end - it->first) == source;
  }

  map_type::iterator merge_left(map_type::iterator it) {
    if (it == segments_.begin()) return it;
    const auto before = std::prev(it);
    if (before->second.end != it->first || !continues(before, it->second.set, it->second.source)) return it;
    before->second.end = it->second.end;
    segments_.erase(it);
    return before;
  }

  // Makes [begin, end) undefined, cutting segments that straddle its ends.
  void erase(std::uint64_t begin, std::uint64_t end) {
    auto it = segments_.lower_bound(begin);
    if (it != segments_.begin()) {
      const auto before = std::prev(it);  // starts before `begin`
      segment& s = before->second;
      if (s.end > begin) {
        if (s.end > end) {
          const segment tail{s.end, s.set, s.source + (end - before->first)};
          s.end = begin;
          segments_.emplace_hint(it, end, tail);
          return;
        }
        s.end = begin;
      }
    }
    while (it != segments_.end() && it->first < end) {
      if (it->second.end <= end) {
        it = segments_.erase(it);
        continue;
      }
      // Straddles the end: keep its tail.
      const segment tail{it->second.end, it->second.set, it->second.source + (end - it->first)};
      it = segments_.erase(it);
      segments_.emplace_hint(it, end, tail);
      break;
    }
  }

  map_type segments_;
};

// The same contents, one cell per `granule` bytes: for buffers every access
// to which starts and ends on a cell boundary (see symbolic.hpp). A cell is
// 12 bytes, its source counted in cells: a 4096-rank ring all_reduce proof
// holds 34M of them. A buffer filled whole and never written (every
// all_reduce's input) keeps that fill instead of cells.
class cell_map {
 public:
  cell_map(std::uint64_t bytes, std::uint64_t granule) : granule_(granule), count_(bytes / granule) {}

  // One division per read, not per cell: messages of a hierarchical
  // schedule span dozens of cells.
  void read(std::uint64_t begin, std::uint64_t length, std::vector<piece>& out) const {
    const std::uint64_t end = begin + length;
    const std::uint64_t stop = std::min(end, count_ * granule_);
    std::uint64_t at = begin;
    if (at < stop && cells_.empty()) {
      const bool defined = whole_.set != rank_sets::empty;
      append(out, {stop - at, whole_.set, defined ? whole_.source + at : 0});
      at = stop;
    }
    if (at < stop) {
      const cell* c = cells_.data() + at / granule_;
      std::uint64_t within = at % granule_;
      piece run{};  // the cells read since the last that did not continue
      for (; at < stop; ++c, within = 0) {
        const set_id set = c->set();
        const std::uint64_t take = std::min(granule_ - within, stop - at);
        const std::uint64_t source = set == rank_sets::empty ? 0 : c->source * granule_ + within;
        if (run.length != 0 && continues(run, set, source)) {
          run.length += take;
        } else {
          if (run.length != 0) append(out, run);
          run = {take, set, source};
        }
        at += take;
      }
      append(out, run);
    }
    if (at < end) append(out, {end - at, rank_sets::empty, 0});
  }

  void write(std::uint64_t begin, std::span<const piece> pieces) {
    if (cells_.empty()) {
      cells_.resize(count_);
      if (whole_.set != rank_sets::empty) put(0, std::exchange(whole_, piece{}));
    }
    std::uint64_t at = begin;
    for (const piece& p : pieces) {
      put(at, p);
      at += p.length;
    }
  }

  void fill(std::uint64_t begin, std::uint64_t length, set_id set, std::uint64_t source) {
    if (cells_.empty() && begin == 0 && length == count_ * granule_ && length != 0) {
      whole_ = {length, set, source};
      return;
    }
    const piece p{length, set, source};
    write(begin, std::span<const piece>(&p, 1));
  }

 private:
  void put(std::uint64_t at, const piece& p) {
    const bool defined = p.set != rank_sets::empty;
    if (at % granule_ != 0 || p.length % granule_ != 0 || (defined && p.source % granule_ != 0)) {
      tutti::detail::fail(errc::internal, "sim: a write of bytes [", at, ", ", at + p.length, ") from byte ", p.source,
                          " is not whole cells of ", granule_, " bytes");
    }
    const std::uint64_t first = defined ? p.source / granule_ : 0;
    const std::uint64_t count = p.length / granule_;
    if (first + count > std::numeric_limits<std::uint32_t>::max()) {
      tutti::detail::fail(errc::internal, "sim: byte ", p.source + p.length, " is beyond what a cell records");
    }
    cell* c = cells_.data() + at / granule_;
    for (std::uint64_t k = 0; k < count; ++k, ++c) {
      c->set_halves[0] = static_cast<std::uint32_t>(p.set);
      c->set_halves[1] = static_cast<std::uint32_t>(p.set >> 32);
      c->source = defined ? static_cast<std::uint32_t>(first + k) : 0;
    }
  }

  // A set_id in two halves, so that a cell packs into 12 bytes.
  struct cell {
    std::uint32_t set_halves[2] = {0, 0};
    std::uint32_t source = 0;  // in cells

    [[nodiscard]] set_id set() const noexcept { return set_halves[0] | (set_id{set_halves[1]} << 32); }
  };
  static_assert(sizeof(cell) == 12 && rank_sets::empty == 0);

  // Whether bytes of (set, source) right after `run` continue it.
  static bool continues(const piece& run, set_id set, std::uint64_t source) {
    return run.set == set && (set == rank_sets::empty || run.source + run.length == source);
  }

  // Appends `p`, extending the last piece when `p` continues it.
  static void append(std::vector<piece>& out, const piece& p) {
    if (!out.empty() && continues(out.back(), p.set, p.source)) {
      out.back().length += p.length;
      return;
    }
    out.push_back(p);
  }

  std::uint64_t granule_;
  std::uint64_t count_;      // cells the buffer spans
  std::vector<cell> cells_;  // empty until the first write: whole_ holds it all
  piece whole_;              // a fill of the whole buffer, before any write
};

}  // namespace tutti::sim
