// The schedule: what one rank does for one collective, as a short program of
// steps over three byte buffers (input, output, scratch). Algorithms are
// pure functions that build schedules; the executor (runtime/) runs them
// over channels and the simulator (sim/) over a model, so both see exactly
// the same program.
//
// Steps are send, recv, reduce (dst = op(lhs, src), lhs often dst itself)
// and copy. Sends to one
// peer match that peer's receives from this rank in program order (channels
// are FIFO, like RC queue pairs), so no tags are needed. Beyond that order,
// a step waits only for its explicit dependencies, so the executor may keep
// many steps in flight: chunks of a ring pipeline by themselves.
//
// Algorithms do not write dependencies by hand: schedule_builder derives
// them from the byte ranges each step reads and writes (read after write,
// write after read, write after write), so an algorithm reads like the
// sequential program it is, and is still correct when run concurrently.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory_resource>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/error.hpp>

namespace tutti::algorithm {

enum class buffer : std::uint8_t { input, output, scratch };

constexpr std::string_view to_string(buffer b) noexcept {
  switch (b) {
    case buffer::input: return "input";
    case buffer::output: return "output";
    case buffer::scratch: return "scratch";
  }
  return "unknown";
}

// A byte offset into one of the three buffers.
struct region {
  buffer where = buffer::output;
  std::size_t offset = 0;

  friend constexpr bool operator==(region, region) = default;
};

enum class step_kind : std::uint8_t { send, recv, reduce, copy };

struct step {
  step_kind kind = step_kind::copy;
  int peer = -1;  // send and recv only
  region src{};   // send: the bytes sent; reduce, copy: the source
  region dst{};   // recv: where they land; reduce: dst = op(lhs, src); copy: the target
  region lhs{};   // reduce only: the left operand, dst itself or disjoint from it
  std::size_t bytes = 0;
  std::uint32_t first_dependency = 0;  // into schedule::dependencies
  std::uint32_t dependency_count = 0;
};

struct schedule {
  std::vector<step> steps;
  // Indices of earlier steps, referenced by each step's range.
  std::vector<std::uint32_t> dependencies;
  std::size_t scratch_bytes = 0;

  [[nodiscard]] std::span<const std::uint32_t> dependencies_of(const step& s) const {
    return std::span<const std::uint32_t>(dependencies).subspan(s.first_dependency, s.dependency_count);
  }
};

// Builds a schedule, deriving dependencies from the byte ranges steps touch.
class schedule_builder {
 public:
  void send(int peer, region src, std::size_t bytes) {
    add({.kind = step_kind::send, .peer = peer, .src = src, .bytes = bytes});
  }
  void recv(int peer, region dst, std::size_t bytes) {
    add({.kind = step_kind::recv, .peer = peer, .dst = dst, .bytes = bytes});
  }
  // dst = op(dst, src).
  void reduce(region dst, region src, std::size_t bytes) { reduce(dst, dst, src, bytes); }
  // dst = op(lhs, src): combining into a fresh destination needs no copy of
  // lhs into it first. Like every operand, lhs is dst's range or disjoint.
  void reduce(region dst, region lhs, region src, std::size_t bytes) {
    add({.kind = step_kind::reduce, .src = src, .dst = dst, .lhs = lhs, .bytes = bytes});
  }
  void copy(region dst, region src, std::size_t bytes) {
    if (dst != src) add({.kind = step_kind::copy, .src = src, .dst = dst, .bytes = bytes});
  }
  // Declares that the input may be the output itself, from byte
  // `output_offset` on (an all_reduce in place). Dependencies then treat an
  // input range as the output range it may be, so a step that overwrites
  // output waits for every earlier step reading that input, and vice versa.
  void input_may_alias_output(std::size_t output_offset) { input_alias_ = output_offset; }

  // Makes every later step wait for every step added so far. Zero-byte
  // messages (a barrier's tokens) touch no bytes, so ranges alone cannot
  // order them; a fence can. Only the steps since the previous fence are
  // recorded: they already wait for everything before it.
  void fence() {
    if (fence_begin_ == steps_.size()) return;
    fenced_.clear();
    for (auto i = fence_begin_; i < steps_.size(); ++i) fenced_.push_back(static_cast<std::uint32_t>(i));
    fence_begin_ = steps_.size();
  }

  // Reserves scratch bytes for the algorithm's own use (aligned to 64).
  region allocate_scratch(std::size_t bytes) {
    const region r{buffer::scratch, scratch_bytes_};
    scratch_bytes_ += (bytes + 63) & ~std::size_t{63};
    return r;
  }

  schedule finish() && {
    schedule out;
    out.steps = std::move(steps_);
    out.dependencies = std::move(dependencies_);
    out.scratch_bytes = scratch_bytes_;
    return out;
  }

 private:
  // One access to a byte range by a step, filed by buffer, by length class
  // and under its first byte. `order` numbers accesses as they are recorded,
  // so lookups across classes list them as one map by first byte would.
  struct access {
    std::size_t end;
    std::uint64_t order;
    std::uint32_t step;
    bool writes;
  };
  // Nodes come from the builder's own pool: a ring schedule at 4096 ranks
  // records and drops tens of thousands of accesses, a malloc and a free
  // each otherwise.
  using access_map = std::pmr::multimap<std::size_t, access>;

  // The live accesses of one buffer, by length class: class k holds lengths
  // in [2^k, 2^(k+1)), so an access of class k overlapping [b, e) starts
  // after b - 2^(k+1), and a lookup visits only that neighbourhood in each
  // class in use. A flat list made building a ring schedule quadratic in the
  // world size (134 ms per rank at 4096 ranks); one map bounded by the
  // longest access ever recorded was quadratic again as soon as one long
  // access lived on (the double binary tree's whole-vector copy).
  static constexpr int length_classes = 64;
  struct buffer_accesses {
    explicit buffer_accesses(std::pmr::memory_resource* pool)
        : by_class(maps_on(pool, std::make_index_sequence<length_classes>())) {}
    std::array<access_map, length_classes> by_class;
    std::uint64_t used = 0;  // bit k: class k may be non-empty

   private:
    template <std::size_t... K>
    static std::array<access_map, sizeof...(K)> maps_on(std::pmr::memory_resource* pool, std::index_sequence<K...>) {
      return {((void)K, access_map(pool))...};
    }
  };

  // A conflicting access found by depend_on, for sorting.
  struct found_access {
    std::size_t begin;
    std::uint64_t order;
    std::uint32_t step;
  };

  static int length_class(std::size_t bytes) noexcept {
    int k = 0;
    while (k + 1 < length_classes && (bytes >> (k + 1)) != 0) ++k;
    return k;
  }

  void add(step s) {
    if (s.bytes == 0 && s.kind != step_kind::send && s.kind != step_kind::recv) return;
    const auto index = static_cast<std::uint32_t>(steps_.size());
    s.first_dependency = static_cast<std::uint32_t>(dependencies_.size());
    const bool reads_src = s.kind != step_kind::recv;
    const bool writes_dst = s.kind != step_kind::send;
    // A reduce whose lhs is dst reads dst too: the write covers that read.
    const bool reads_lhs = s.kind == step_kind::reduce && s.lhs != s.dst;
    for (const std::uint32_t f : fenced_) dependencies_.push_back(f);
    if (reads_src) depend_on(s.src, s.bytes, false, s.first_dependency);
    if (reads_lhs) depend_on(s.lhs, s.bytes, false, s.first_dependency);
    if (writes_dst) depend_on(s.dst, s.bytes, true, s.first_dependency);
    s.dependency_count = static_cast<std::uint32_t>(dependencies_.size()) - s.first_dependency;
    if (s.bytes != 0) {
      if (reads_src) record(s.src, s.bytes, index, false);
      if (reads_lhs) record(s.lhs, s.bytes, index, false);
      if (writes_dst) {
        // Accesses inside the range this step writes are now reached through
        // it (it depends on all of them), so they need not be looked at again.
        const region written = tracked(s.dst);
        buffer_accesses& live = accesses_of(written.where);
        const std::size_t end = written.offset + s.bytes;
        for (std::uint64_t classes = live.used; classes != 0; classes &= classes - 1) {
          const int k = std::countr_zero(classes);
          access_map& m = live.by_class[static_cast<std::size_t>(k)];
          for (auto it = m.lower_bound(written.offset); it != m.end() && it->first < end;) {
            it = it->second.end <= end && it->second.step != index ? m.erase(it) : std::next(it);
          }
          if (m.empty()) live.used &= ~(std::uint64_t{1} << k);
        }
        record(s.dst, s.bytes, index, true);
      }
    }
    steps_.push_back(s);
  }

  void record(region where, std::size_t bytes, std::uint32_t step, bool writes) {
    const region r = tracked(where);
    buffer_accesses& live = accesses_of(r.where);
    const int k = length_class(bytes);
    live.by_class[static_cast<std::size_t>(k)].emplace(r.offset, access{r.offset + bytes, next_order_++, step, writes});
    live.used |= std::uint64_t{1} << k;
  }

  buffer_accesses& accesses_of(buffer b) noexcept { return accesses_[static_cast<std::size_t>(b)]; }

  // Adds, once each, the earlier steps this access conflicts with: any
  // earlier write to an overlapping range, and for a write any earlier read,
  // in the order of their first byte (then of recording). `first` is where
  // this step's dependencies start, so a step that both reads and writes a
  // conflicting range lists it once.
  void depend_on(region where, std::size_t bytes, bool writes, std::size_t first) {
    if (bytes == 0) return;
    const region r = tracked(where);
    const buffer_accesses& live = accesses_of(r.where);
    const std::size_t end = r.offset + bytes;
    found_.clear();
    int classes = 0;
    for (std::uint64_t used = live.used; used != 0; used &= used - 1) {
      const int k = std::countr_zero(used);
      const access_map& m = live.by_class[static_cast<std::size_t>(k)];
      const std::size_t reach = std::size_t{2} << k;  // longer than any access of the class
      const std::size_t from = r.offset > reach ? r.offset - reach : 0;
      const std::size_t before = found_.size();
      for (auto it = m.lower_bound(from); it != m.end() && it->first < end; ++it) {
        const access& a = it->second;
        if (a.end <= r.offset || !(a.writes || writes)) continue;
        found_.push_back({it->first, a.order, a.step});
      }
      if (found_.size() != before) ++classes;
    }
    if (classes > 1) {
      std::sort(found_.begin(), found_.end(), [](const found_access& x, const found_access& y) {
        return x.begin != y.begin ? x.begin < y.begin : x.order < y.order;
      });
    }
    for (const found_access& f : found_) {
      const auto already =
          std::find(dependencies_.begin() + static_cast<std::ptrdiff_t>(first), dependencies_.end(), f.step);
      if (already == dependencies_.end()) dependencies_.push_back(f.step);
    }
  }

  // The range dependencies are tracked in: the output range an input range
  // may be, if declared so.
  [[nodiscard]] region tracked(region r) const noexcept {
    if (r.where != buffer::input || !input_alias_) return r;
    return {buffer::output, *input_alias_ + r.offset};
  }

  std::vector<step> steps_;
  std::vector<std::uint32_t> dependencies_;
  std::optional<std::size_t> input_alias_;
  std::pmr::unsynchronized_pool_resource pool_;  // before the maps that use it
  std::array<buffer_accesses, 3> accesses_{buffer_accesses(&pool_), buffer_accesses(&pool_),
                                           buffer_accesses(&pool_)};  // input, output, scratch
  std::vector<found_access> found_;                                   // depend_on's, kept for its capacity
  std::uint64_t next_order_ = 0;
  std::vector<std::uint32_t> fenced_;  // steps between the last two fences
  std::size_t fence_begin_ = 0;        // first step after the last fence
  std::size_t scratch_bytes_ = 0;
};

}  // namespace tutti::algorithm
