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

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/algorithm/access_log.hpp>
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

namespace detail {

// The vectors of a schedule handed back by recycle(), kept with their
// capacity for the next builder on the same thread: the simulator builds
// thousands of schedules in a row, and growing each from nothing copied
// every step at each doubling, into memory not yet in cache.
inline schedule& spare_schedule() noexcept {
  thread_local schedule spare;
  return spare;
}

// Takes `from`'s storage, emptied.
template <class T>
std::vector<T> reuse(std::vector<T>& from) noexcept {
  std::vector<T> out = std::move(from);
  out.clear();
  return out;
}

}  // namespace detail

// Hands a schedule no longer needed to this thread's next schedule_builder,
// which fills the same memory.
inline void recycle(schedule&& s) noexcept { detail::spare_schedule() = std::move(s); }

// Builds a schedule, deriving dependencies from the byte ranges steps touch.
class schedule_builder {
 public:
  schedule_builder() noexcept
      : steps_(detail::reuse(detail::spare_schedule().steps)),
        dependencies_(detail::reuse(detail::spare_schedule().dependencies)) {}
  schedule_builder(const schedule_builder&) = delete;
  schedule_builder& operator=(const schedule_builder&) = delete;

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
  void add(const step& proto) {
    if (proto.bytes == 0 && proto.kind != step_kind::send && proto.kind != step_kind::recv) return;
    const auto index = static_cast<std::uint32_t>(steps_.size());
    step& s = steps_.emplace_back(proto);
    s.first_dependency = static_cast<std::uint32_t>(dependencies_.size());
    listed_.push_back(0);
    // Lists each step it waits for once: listed_[d] is the index of the
    // last step that listed d, plus one.
    auto wait_for = [&](std::uint32_t d) {
      if (listed_[d] == index + 1) return;
      listed_[d] = index + 1;
      dependencies_.push_back(d);
    };
    for (const std::uint32_t f : fenced_) wait_for(f);
    if (s.bytes != 0) {
      // A reduce whose lhs is dst reads dst too: the write covers that read.
      if (s.kind != step_kind::recv) access(s.src, s.bytes, index, false, wait_for);
      if (s.kind == step_kind::reduce && s.lhs != s.dst) access(s.lhs, s.bytes, index, false, wait_for);
      if (s.kind != step_kind::send) access(s.dst, s.bytes, index, true, wait_for);
    }
    s.dependency_count = static_cast<std::uint32_t>(dependencies_.size()) - s.first_dependency;
  }

  template <class WaitFor>
  void access(region where, std::size_t bytes, std::uint32_t step, bool writes, WaitFor& wait_for) {
    const region r = tracked(where);
    logs_[static_cast<std::size_t>(r.where)].access(r.offset, r.offset + bytes, step, writes, wait_for);
  }

  // The range dependencies are tracked in: the output range an input range
  // may be, if declared so.
  [[nodiscard]] region tracked(region r) const noexcept {
    if (r.where != buffer::input || !input_alias_) return r;
    return {buffer::output, *input_alias_ + r.offset};
  }

  std::vector<step> steps_;
  std::vector<std::uint32_t> dependencies_;
  std::vector<std::uint32_t> listed_;  // by step: see add()
  std::optional<std::size_t> input_alias_;
  std::pmr::unsynchronized_pool_resource pool_;  // before the logs that use it
  access_log::reader_pool readers_;
  std::array<access_log, 3> logs_{access_log(&pool_, &readers_), access_log(&pool_, &readers_),
                                  access_log(&pool_, &readers_)};  // input, output, scratch
  std::vector<std::uint32_t> fenced_;                              // steps between the last two fences
  std::size_t fence_begin_ = 0;                                    // first step after the last fence
  std::size_t scratch_bytes_ = 0;
};

}  // namespace tutti::algorithm
