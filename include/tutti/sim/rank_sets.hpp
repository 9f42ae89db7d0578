// Sets of ranks, as the symbolic simulator tracks contributors: which ranks'
// data a byte holds. Ring, recursive-doubling and tree schedules combine
// ranges of neighbouring ranks, so a set is kept as its sorted, disjoint,
// non-adjacent intervals, and almost every set a schedule makes has one or
// two of them.
//
// A set is a 64-bit handle, canonical for its contents, so two equal sets
// always have the same handle and comparing sets is comparing handles. Sets
// of at most two intervals of ranks below 2^15 are encoded in the handle
// itself: a ring of 4096 ranks makes about 4096^2 distinct partial sums, each
// made once, and interning every one of them (a hash table entry and a
// cached union each) was most of a 4096-rank proof's memory. Larger sets are
// interned in a table, and unions involving them are cached, since tree and
// hierarchical schedules build the same large sets on many ranks.
//
// A symbolic run may make and unite sets on several threads at once: sets
// encoded in their handle need nothing shared, and the table of interned
// ones, with its cache, is behind a mutex.
//
// Sets are kept over labels, not ranks: a cluster's rail-aligned ring visits
// hosts in turn and walks every other host's ranks backwards, so its partial
// sums are runs of that order but scattered ranks. Labelling ranks by their
// place in that order (relabel) keeps them one or two intervals, encoded in
// the handle. Host blocks stay runs of labels, so the other schedules'
// sets (recursive halves, trees, rails of hosts) stay compact too.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <tutti/error.hpp>

namespace tutti::sim {

using set_id = std::uint64_t;

// Ranks lo..hi, both included.
struct rank_interval {
  int lo = 0;
  int hi = 0;

  friend bool operator==(const rank_interval&, const rank_interval&) = default;
};

class rank_sets {
 public:
  static constexpr set_id empty = 0;
  // What unite() returns when the sets share a rank.
  static constexpr set_id overlap = ~set_id{0};

  // Labels ranks by `order` (rank order[i] gets label i); empty: by rank.
  void relabel(std::span<const int> order) {
    label_of_.assign(order.size(), 0);
    rank_of_.assign(order.begin(), order.end());
    for (std::size_t i = 0; i < order.size(); ++i) label_of_[static_cast<std::size_t>(order[i])] = static_cast<int>(i);
  }

  [[nodiscard]] set_id single(int rank) {
    const int label = label_of_.empty() ? rank : label_of_[static_cast<std::size_t>(rank)];
    return range(label, label);
  }

  // Labels lo..hi; range(0, n - 1) is every rank, however labelled.
  [[nodiscard]] set_id range(int lo, int hi) {
    const rank_interval one{lo, hi};
    return make(std::span<const rank_interval>(&one, 1));
  }

  // The union of two disjoint sets, or `overlap` when they share a rank
  // (a contribution counted twice). With allow_overlap, the plain union.
  [[nodiscard]] set_id unite(set_id a, set_id b, bool allow_overlap = false) {
    if (a == empty) return b;
    if (b == empty) return a;
    if (a == overlap || b == overlap) return overlap;
    if (!is_interned(a) && !is_interned(b)) {  // the common case, without the lock
      rank_interval left[2];
      rank_interval right[2];
      rank_interval merged[4];
      bool shared = false;
      const std::size_t count =
          merge(std::span(left, decode_inline(a, left)), std::span(right, decode_inline(b, right)), merged, shared);
      if (shared && !allow_overlap) return overlap;
      return make(std::span<const rank_interval>(merged, count));
    }
    const std::lock_guard lock(mutex_);
    const cache_key key{std::min(a, b), std::max(a, b), allow_overlap};
    if (const auto found = unions_.find(key); found != unions_.end()) return found->second;
    std::vector<rank_interval>& left = scratch_[0];
    std::vector<rank_interval>& right = scratch_[1];
    decode(a, left);
    decode(b, right);
    std::vector<rank_interval>& merged = scratch_[2];
    merged.resize(left.size() + right.size());
    bool shared = false;
    merged.resize(merge(left, right, merged.data(), shared));
    const set_id out = shared && !allow_overlap ? overlap
                       : fits_inline(merged)    ? encode_inline(merged)
                                                : intern(merged);
    unions_.emplace(key, out);
    return out;
  }

  // The ranks of `s`, as sorted disjoint intervals of ranks.
  [[nodiscard]] std::vector<rank_interval> intervals(set_id s) const {
    std::vector<rank_interval> out;
    {
      const std::lock_guard lock(mutex_);
      decode(s, out);
    }
    if (rank_of_.empty()) return out;
    std::vector<int> ranks;
    for (const rank_interval i : out) {
      for (int label = i.lo; label <= i.hi; ++label) ranks.push_back(rank_of_[static_cast<std::size_t>(label)]);
    }
    std::sort(ranks.begin(), ranks.end());
    out.clear();
    for (const int r : ranks) {
      if (!out.empty() && out.back().hi + 1 == r) {
        out.back().hi = r;
      } else {
        out.push_back({r, r});
      }
    }
    return out;
  }

  [[nodiscard]] bool contains(set_id s, int rank) const {
    const auto parts = intervals(s);
    return std::any_of(parts.begin(), parts.end(), [&](rank_interval i) { return i.lo <= rank && rank <= i.hi; });
  }

  // "{0-3,7}" (ranks), with at most `shown` intervals and a count of the rest.
  [[nodiscard]] std::string describe(set_id s, std::size_t shown = 6) const {
    if (s == overlap) return "{overlapping}";
    const auto parts = intervals(s);
    std::ostringstream out;
    out << '{';
    for (std::size_t k = 0; k < parts.size() && k < shown; ++k) {
      if (k != 0) out << ',';
      out << parts[k].lo;
      if (parts[k].hi != parts[k].lo) out << '-' << parts[k].hi;
    }
    if (parts.size() > shown) out << ",... " << parts.size() - shown << " more intervals";
    out << '}';
    return std::move(out).str();
  }

  [[nodiscard]] std::size_t interned() const {
    const std::lock_guard lock(mutex_);
    return starts_.size();
  }

 private:
  static constexpr set_id interned_bit = set_id{1} << 63;
  static constexpr int inline_bits = 15;
  static constexpr int inline_limit = 1 << inline_bits;
  static constexpr set_id field_mask = (set_id{1} << inline_bits) - 1;

  struct cache_key {
    set_id a;
    set_id b;
    bool allow_overlap;
    friend bool operator==(const cache_key&, const cache_key&) = default;
  };
  struct cache_hash {
    std::size_t operator()(const cache_key& k) const noexcept {
      const std::uint64_t h = k.a * 0x9e3779b97f4a7c15ULL ^ (k.b + 0x632be59bd9b4e019ULL + (k.a << 6) + (k.a >> 2));
      return static_cast<std::size_t>(h ^ (k.allow_overlap ? 0x5bd1e995U : 0U));
    }
  };

  static bool is_interned(set_id s) noexcept { return (s & interned_bit) != 0 && s != overlap; }

  static set_id field(set_id s, int index) noexcept { return (s >> (index * inline_bits)) & field_mask; }

  static bool fits_inline(std::span<const rank_interval> parts) noexcept {
    return parts.size() <= 2 && parts.back().hi < inline_limit;
  }

  static set_id encode_inline(std::span<const rank_interval> parts) noexcept {
    set_id out = set_id{parts.size()} << 60;
    for (std::size_t k = 0; k < parts.size(); ++k) {
      out |= static_cast<set_id>(parts[k].lo) << (2 * k * inline_bits);
      out |= static_cast<set_id>(parts[k].hi) << ((2 * k + 1) * inline_bits);
    }
    return out;
  }

  // The intervals of a set encoded in its handle; returns how many.
  static std::size_t decode_inline(set_id s, rank_interval* out) noexcept {
    const auto count = static_cast<std::size_t>(s >> 60);
    for (std::size_t k = 0; k < count; ++k) {
      out[k] = {static_cast<int>(field(s, static_cast<int>(2 * k))),
                static_cast<int>(field(s, static_cast<int>(2 * k + 1)))};
    }
    return count;
  }

  // Merges two canonical interval lists into `out` (room for both);
  // returns its length and sets `shared` if they overlap.
  static std::size_t merge(std::span<const rank_interval> left, std::span<const rank_interval> right,
                           rank_interval* out, bool& shared) noexcept {
    std::size_t count = 0;
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < left.size() || j < right.size()) {
      const bool take_left = j == right.size() || (i < left.size() && left[i].lo < right[j].lo);
      const rank_interval next = take_left ? left[i++] : right[j++];
      if (count != 0 && next.lo <= out[count - 1].hi) {
        shared = true;
        out[count - 1].hi = std::max(out[count - 1].hi, next.hi);
      } else if (count != 0 && next.lo == out[count - 1].hi + 1) {
        out[count - 1].hi = next.hi;
      } else {
        out[count++] = next;
      }
    }
    return count;
  }

  // With mutex_ held for an interned set.
  void decode(set_id s, std::vector<rank_interval>& out) const {
    out.clear();
    if (s == overlap) return;
    if (is_interned(s)) {
      const auto index = static_cast<std::size_t>(s & ~interned_bit);
      const std::size_t end = index + 1 < starts_.size() ? starts_[index + 1] : pool_.size();
      out.assign(pool_.begin() + static_cast<std::ptrdiff_t>(starts_[index]),
                 pool_.begin() + static_cast<std::ptrdiff_t>(end));
      return;
    }
    rank_interval parts[2];
    out.assign(parts, parts + decode_inline(s, parts));
  }

  // The handle of a canonical interval list (sorted, disjoint, non-adjacent).
  set_id make(std::span<const rank_interval> parts) {
    for (const rank_interval p : parts) {
      if (p.lo < 0 || p.hi < p.lo) tutti::detail::fail(errc::invalid_argument, "rank set: bad interval");
    }
    if (parts.empty()) return empty;
    if (fits_inline(parts)) return encode_inline(parts);
    const std::lock_guard lock(mutex_);
    return intern(parts);
  }

  // With mutex_ held: the handle of a set too long to encode in one.
  set_id intern(std::span<const rank_interval> parts) {
    std::string key(reinterpret_cast<const char*>(parts.data()), parts.size_bytes());
    const auto [it, fresh] = index_.emplace(std::move(key), starts_.size());
    if (fresh) {
      starts_.push_back(pool_.size());
      pool_.insert(pool_.end(), parts.begin(), parts.end());
    }
    return interned_bit | static_cast<set_id>(it->second);
  }

  std::vector<rank_interval> pool_;  // every interned set's intervals, one after another
  std::vector<std::size_t> starts_;  // per interned set, where its intervals start in pool_
  std::unordered_map<std::string, std::size_t> index_;
  std::unordered_map<cache_key, set_id, cache_hash> unions_;
  std::vector<rank_interval> scratch_[3];  // unite's, with mutex_ held
  // Guards the interned sets, the cache and the scratch: a symbolic run
  // may unite sets on several threads. Sets encoded in their handle need
  // no lock.
  mutable std::mutex mutex_;
  std::vector<int> label_of_;  // by rank; empty: labels are ranks
  std::vector<int> rank_of_;   // by label
};

}  // namespace tutti::sim
