// tutti::request: a collective or exchange issued with an *_async call.
//
//   auto r = comm.all_reduce_async(std::span<float>(grads));
//   prepare_next_batch();   // may call r.test() now and then
//   r.wait();               // rethrows the operation's tutti::error, if any
//
// Operations of one communicator run one after another in issue order, so
// requests complete in issue order. They progress whenever the program
// enters the communicator: test(), wait(), or any further call on it (as
// MPI's nonblocking collectives without an async progress thread). A
// communicator and its requests are used from one thread at a time; use
// several communicators (dup, split) for concurrency. The buffers of an
// operation must stay valid until its request is done.
#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <utility>

#include <tutti/transport/transport.hpp>

namespace tutti {

namespace detail {

struct request_state;

// What moves requests forward: the communicator's operation queue.
class request_driver {
 public:
  // Progresses until `r` is done or `until` passes.
  virtual void wait_for(request_state& r, transport::clock::time_point until) = 0;

 protected:
  ~request_driver() = default;
};

struct request_state {
  bool done = false;
  std::exception_ptr failure;
  request_driver* driver = nullptr;  // null once done or once the communicator is gone
};

}  // namespace detail

class request {
 public:
  // An empty request: already done.
  request() = default;
  explicit request(std::shared_ptr<detail::request_state> state) noexcept : state_(std::move(state)) {}

  // Progresses the communicator without blocking; true once the operation
  // is done. Throws its error if it failed.
  [[nodiscard]] bool test() { return wait_until(transport::clock::time_point::min()); }

  // Waits until the operation is done and throws its error if it failed. The
  // communicator's timeout bounds the wait: an operation that stalls fails
  // with errc::timeout.
  void wait() { wait_until(transport::clock::time_point::max()); }

  // Waits at most `timeout`; false if the operation is still running.
  template <class Rep, class Period>
  [[nodiscard]] bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(transport::clock::now() + std::chrono::duration_cast<transport::clock::duration>(timeout));
  }

 private:
  bool wait_until(transport::clock::time_point until) {
    if (!state_) return true;
    if (!state_->done && state_->driver != nullptr) state_->driver->wait_for(*state_, until);
    if (state_->failure) std::rethrow_exception(state_->failure);
    return state_->done;
  }

  std::shared_ptr<detail::request_state> state_;
};

}  // namespace tutti
