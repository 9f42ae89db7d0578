// The operations of one communicator, run one after another in issue order:
// collectives on the executor, point-to-point batches on p2p_batch. Async
// calls queue an operation and return a request; blocking calls finish what
// is queued and then run theirs directly, allocating nothing once warm.
//
// Only the operation at the head runs, so every channel carries one
// operation's messages at a time, in the same order on every rank, and the
// one scratch buffer serves them all. An operation's timeout counts from
// when it starts, not from when it was queued.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/algorithm/schedule.hpp>
#include <tutti/error.hpp>
#include <tutti/p2p.hpp>
#include <tutti/request.hpp>
#include <tutti/runtime/call_check.hpp>
#include <tutti/runtime/executor.hpp>
#include <tutti/runtime/p2p_batch.hpp>
#include <tutti/runtime/reduce_kernel.hpp>

namespace tutti::runtime {

struct operation {
  std::string_view name;  // static: "all_reduce", "exchange", ...
  // A collective: its cached schedule, buffers (scratch is filled in at
  // start), reduction and check signature.
  const algorithm::schedule* schedule = nullptr;
  buffers io;
  std::optional<detail::reduction> reduce;
  std::shared_ptr<const void> op_storage;  // a stateful op the reduction refers to
  std::optional<call_signature> check;
  // Run after success on the output (avg divides by the contributors).
  void (*finalize)(void* out, std::size_t elements, std::size_t contributors) = nullptr;
  std::size_t out_elements = 0;
  std::size_t contributors = 0;
  // A point-to-point batch, when schedule is null.
  std::vector<p2p_op> batch;
};

class operation_queue final : public detail::request_driver {
 public:
  operation_queue() = default;
  operation_queue(const operation_queue&) = delete;
  operation_queue& operator=(const operation_queue&) = delete;

  // Fails whatever is still queued: the communicator is going away and its
  // channels with it.
  ~operation_queue() {
    if (pending_.empty()) return;
    const char* why = "the communicator was destroyed while this operation was pending";
    if (head_running_) head_is_collective() ? executor_.abandon(why) : batch_.abandon(why);
    while (!pending_.empty()) {
      blame where;
      where.rank = rank_;
      where.collective = std::string(pending_.front().op.name);
      finish_head(std::make_exception_ptr(error(errc::aborted, why, std::move(where))));
    }
  }

  // Where operations run: this rank, its routes (which must outlive the
  // queue) and the timeout of each operation.
  void bind(std::span<const route> routes, int rank, std::chrono::milliseconds timeout) {
    routes_ = routes;
    rank_ = rank;
    timeout_ = timeout;
  }

  // Queues `op` and gives it one round of progress.
  request submit(operation op) {
    auto state = std::make_shared<detail::request_state>();
    state->driver = this;
    pending_.push_back({std::move(op), state});
    wait_for(*state, transport::clock::time_point::min());
    return request(std::move(state));
  }

  // Runs `op` to completion after everything queued; throws its error.
  void run(operation& op) {
    drain();
    start(op);
    while (!poll(op)) idle(op, transport::clock::time_point::max());
    if (op.finalize != nullptr) op.finalize(op.io.output, op.out_elements, op.contributors);
  }

  // Completes every queued operation; their errors stay in their requests.
  void drain() {
    while (!pending_.empty()) wait_for(*pending_.back().request, transport::clock::time_point::max());
  }

  [[nodiscard]] std::size_t pending() const noexcept { return pending_.size(); }

  void wait_for(detail::request_state& r, transport::clock::time_point until) override {
    while (!r.done) {
      if (advance_head()) continue;
      if (r.done || transport::clock::now() >= until) return;
      idle_head(until);
    }
  }

 private:
  struct entry {
    operation op;
    std::shared_ptr<detail::request_state> request;
  };

  [[nodiscard]] bool head_is_collective() const { return pending_.front().op.schedule != nullptr; }

  void start(operation& op) {
    const transport::lazy_deadline deadline(timeout_);
    if (op.schedule == nullptr) {
      batch_.start(op.batch, routes_, deadline, op.name, rank_);
      return;
    }
    if (scratch_.size() < op.schedule->scratch_bytes) scratch_.resize(op.schedule->scratch_bytes);
    op.io.scratch = scratch_.data();
    executor_.start(*op.schedule, op.io, routes_, op.reduce ? &*op.reduce : nullptr, deadline, op.name, rank_,
                    op.check ? &*op.check : nullptr);
  }

  bool poll(const operation& op) { return op.schedule != nullptr ? executor_.poll() : batch_.poll(); }

  void idle(const operation& op, transport::clock::time_point until) {
    op.schedule != nullptr ? executor_.idle(until) : batch_.idle(until);
  }

  // Starts or polls the head; true if it finished (well or not).
  bool advance_head() {
    if (pending_.empty()) return false;
    auto& head = pending_.front();
    try {
      if (!head_running_) {
        head_running_ = true;
        start(head.op);
      }
      if (!poll(head.op)) return false;
      if (head.op.finalize != nullptr) head.op.finalize(head.op.io.output, head.op.out_elements, head.op.contributors);
      finish_head(nullptr);
    } catch (const error&) {
      finish_head(std::current_exception());
    }
    return true;
  }

  void idle_head(transport::clock::time_point until) {
    if (pending_.empty()) return;
    try {
      idle(pending_.front().op, until);
    } catch (const error&) {
      finish_head(std::current_exception());
    }
  }

  void finish_head(std::exception_ptr failure) {
    auto& r = *pending_.front().request;
    r.done = true;
    r.failure = std::move(failure);
    r.driver = nullptr;
    pending_.pop_front();
    head_running_ = false;
  }

  std::deque<entry> pending_;
  bool head_running_ = false;
  executor executor_;
  p2p_batch batch_;
  std::vector<std::byte> scratch_;  // grows to the largest schedule's need, then is reused
  std::span<const route> routes_;
  int rank_ = 0;
  std::chrono::milliseconds timeout_{};
};

}  // namespace tutti::runtime
