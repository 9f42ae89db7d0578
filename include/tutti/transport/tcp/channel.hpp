// One peer's channel of the tcp transport: its connection's state from the
// first post to a failure, and the message protocol over it. A part of its
// own because this is the hot path; the transport around it sets up
// connections and polls.
//
// Sends gather headers and payloads of queued messages into one sendmsg (a
// send posted on an idle connection is tried at once). Receives are read only
// once posted: readv scatters each header into the operation and the payload
// straight into the posted buffer, several posted receives per call, so
// nothing is buffered in user space and the kernel's socket buffers are the
// flow control. A header that disagrees with the posted size fails the
// channel with errc::mismatch naming both sizes. progress() makes one system
// call per direction and busy channel (more only while each call completes
// everything it asked for), so a message of several GiB moves in pieces while
// other channels keep moving; a channel that found nothing to move is probed
// again 1 us later rather than on every call, so that a spinning waiter makes
// few system calls.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/detail/log.hpp>
#include <tutti/detail/op_queue.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/tcp/connection.hpp>
#include <tutti/transport/tcp/endpoint.hpp>
#include <tutti/transport/tcp/wire.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::detail::tcp {

inline constexpr std::size_t max_iov = 64;
inline constexpr int max_rounds = 8;
// How soon a channel that had nothing to move is looked at again by
// progress(). A probe is a system call (~0.3 us); a waiter spins ~256
// times before it yields and sleeps (wait.hpp), and probing on every spin
// would stretch that phase to ~100 us of a core that a rank sharing it
// needs. wait_for_activity() clears it: after a sleep, look at once.
inline constexpr std::chrono::nanoseconds recheck_interval{1000};

struct send_op {
  const std::byte* data;
  std::uint64_t bytes;
  std::uint64_t header;
};
struct recv_op {
  std::byte* data;
  std::uint64_t bytes;
  std::uint64_t header;  // filled in from the wire
};

struct iov_batch {
  std::array<iovec, max_iov> iov;
  std::size_t count = 0;
  std::size_t bytes = 0;
  void add(const void* base, std::size_t n) noexcept {
    if (n == 0) return;
    iov[count++] = {const_cast<void*>(base), n};
    bytes += n;
  }
  [[nodiscard]] bool has_room_for_message() const noexcept { return count + 2 <= max_iov; }
};

// Header bytes still to move at `offset` into a message, then payload bytes.
template <class Op>
void add_message(iov_batch& batch, Op& op, std::size_t offset) noexcept {
  if (offset < header_size) batch.add(reinterpret_cast<const std::byte*>(&op.header) + offset, header_size - offset);
  const std::size_t from = offset > header_size ? offset - header_size : 0;
  if (op.bytes > from) batch.add(op.data + from, op.bytes - from);
}

enum class link_state { idle, retrying, connecting, awaiting_peer, connected, closed };

class peer_channel;

// What the channels of a transport share with it, owned by the transport and
// reached through a plain reference.
struct transport_state {
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
  int accept_wanted = 0;              // channels with operations waiting for their peer to connect
  std::vector<peer_channel*> active;  // channels with work: operations or a handshake to send
};

class peer_channel final : public tutti::transport::channel {
 public:
  peer_channel(transport_state& owner, int peer, peer_address address)
      : channel(peer),
        owner_(owner),
        who_(concat("rank ", peer, " (", address.where.to_string(), ")")),
        connector_(std::move(address.where)),
        nonce_(address.nonce) {}

  // Nothing to do until the next post: no operations, no handshake to send.
  [[nodiscard]] bool quiet() const noexcept {
    return state == link_state::closed || (sends_.empty() && recvs_.empty() && hello_left_ == 0);
  }

  void progress(steady_clock::time_point now) {
    switch (state) {
      case link_state::connected: {
        bool moved = false;
        if (hello_left_ != 0 || !sends_.empty()) moved = pump_sends();
        if (state == link_state::connected && !recvs_.empty()) moved = pump_recvs() || moved;
        // Found nothing to move: look again a little later rather than on
        // every spin of a waiter, so that spinning costs few system calls.
        if (!moved) idle_until = now + recheck_interval;
        break;
      }
      case link_state::connecting: connect_step(connector_.check(fd, now, who_)); break;
      case link_state::retrying:
        if (now >= connector_.retry_at()) connect_step(connector_.attempt(fd, who_));
        break;
      default: break;
    }
  }

  // What the transport's poll waits for on fd (0: nothing); brings
  // `deadline` forward to when connecting must be looked at again.
  [[nodiscard]] short poll_events(steady_clock::time_point& deadline) const noexcept {
    short events = 0;
    switch (state) {
      case link_state::connected:
        if (hello_left_ != 0 || !sends_.empty()) events |= POLLOUT;
        if (!recvs_.empty()) events |= POLLIN;
        break;
      case link_state::connecting:
        events = POLLOUT;
        deadline = std::min(deadline, connector_.deadline());
        break;
      case link_state::retrying: deadline = std::min(deadline, connector_.retry_at()); break;
      default: break;
    }
    return events;
  }

  // The acceptor's side: the peer connected and passed the handshake.
  void adopt(fd_handle socket, const std::string& from) {
    if (state == link_state::awaiting_peer) --owner_.accept_wanted;
    set_nodelay(socket.get());
    fd = std::move(socket);
    state = link_state::connected;
    log(log_level::debug, "tcp: rank ", owner_.rank, " accepted rank ", peer(), " from ", from);
    if (!quiet()) activate();
  }

  // Read by the transport's poll set and acceptor.
  link_state state = link_state::idle;
  bool active = false;
  fd_handle fd;
  steady_clock::time_point idle_until{};  // progress() skips the channel until then

 protected:
  void enqueue_send(const void* data, std::size_t bytes) override {
    sends_.push_back({static_cast<const std::byte*>(data), bytes, bytes});
    idle_until = {};
    if (state == link_state::connected) {
      // An idle connection: try at once, so a small message costs one call.
      if (sends_.size() == 1 && hello_left_ == 0) pump_sends();
    } else if (state == link_state::idle) {
      start();
    }
    if (!quiet()) activate();
  }

  void enqueue_recv(void* data, std::size_t bytes) override {
    recvs_.push_back({static_cast<std::byte*>(data), bytes, 0});
    idle_until = {};
    if (state == link_state::idle) start();
    if (!quiet()) activate();
  }

 private:
  void activate() {
    if (active) return;
    active = true;
    owner_.active.push_back(this);
  }

  void start() {
    if (owner_.rank > peer()) {
      connector_.start(steady_clock::now(), owner_.timeout);
      connect_step(connector_.attempt(fd, who_));
    } else {
      state = link_state::awaiting_peer;
      ++owner_.accept_wanted;
    }
  }

  void connect_step(connector::outcome step) {
    switch (step) {
      case connector::outcome::connecting: state = link_state::connecting; break;
      case connector::outcome::connected: established(); break;
      case connector::outcome::retrying: state = link_state::retrying; break;
      case connector::outcome::failed: fail(connector_.failure_code(), connector_.failure()); break;
    }
  }

  void established() {
    state = link_state::connected;
    hello_ = encode({magic, protocol_version, static_cast<std::uint32_t>(owner_.rank),
                     static_cast<std::uint32_t>(peer()), static_cast<std::uint32_t>(owner_.size), 0, nonce_});
    hello_left_ = hello_.size();
    log(log_level::debug, "tcp: rank ", owner_.rank, " connected to ", who_, " after ", connector_.attempts(),
        " attempt(s)");
    pump_sends();
  }

  // Whether any byte moved.
  bool pump_sends() {
    bool moved = false;
    for (int round = 0; round < max_rounds; ++round) {
      iov_batch batch;
      if (hello_left_ != 0) batch.add(hello_.data() + (hello_.size() - hello_left_), hello_left_);
      for (std::size_t i = 0, offset = send_offset_; i < sends_.size() && batch.has_room_for_message(); ++i) {
        add_message(batch, sends_[i], offset);
        offset = 0;
      }
      if (batch.count == 0) return moved;
      msghdr message{};
      message.msg_iov = batch.iov.data();
      message.msg_iovlen = batch.count;
      const ssize_t sent = ::sendmsg(fd.get(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) fail_io("sending to", errno);
        return moved;
      }
      moved = true;
      advance_sends(static_cast<std::size_t>(sent));
      if (static_cast<std::size_t>(sent) < batch.bytes) return moved;  // the socket buffer is full
    }
    return moved;
  }

  void advance_sends(std::size_t moved) noexcept {
    const std::size_t of_hello = std::min(moved, hello_left_);
    hello_left_ -= of_hello;
    moved -= of_hello;
    std::uint64_t done = 0;
    while (moved > 0) {
      const send_op& op = sends_.front();
      const std::size_t left = header_size + op.bytes - send_offset_;
      if (moved < left) {
        send_offset_ += moved;
        break;
      }
      moved -= left;
      send_offset_ = 0;
      sends_.pop_front();
      ++done;
    }
    if (done != 0) complete_sends(done);
  }

  // Whether any byte moved (or the channel failed).
  bool pump_recvs() {
    bool moved = false;
    for (int round = 0; round < max_rounds; ++round) {
      iov_batch batch;
      for (std::size_t i = 0, offset = recv_offset_; i < recvs_.size() && batch.has_room_for_message(); ++i) {
        add_message(batch, recvs_[i], offset);
        offset = 0;
      }
      const ssize_t got = ::readv(fd.get(), batch.iov.data(), static_cast<int>(batch.count));
      if (got == 0) {
        fail(errc::remote_failure, concat(who_, " closed the connection (exited or killed?) with ", recvs_.size(),
                                          " receive(s) from it pending"));
        return true;
      }
      if (got < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) fail_io("receiving from", errno);
        return moved;
      }
      moved = true;
      if (!advance_recvs(static_cast<std::size_t>(got))) return true;
      if (static_cast<std::size_t>(got) < batch.bytes || recvs_.empty()) return true;
    }
    return moved;
  }

  // False when a header did not match its receive (the channel has failed).
  bool advance_recvs(std::size_t moved) {
    std::uint64_t done = 0;
    while (moved > 0) {
      const recv_op& op = recvs_.front();
      const std::size_t before = recv_offset_;
      recv_offset_ += std::min<std::size_t>(moved, header_size + op.bytes - before);
      moved -= recv_offset_ - before;
      if (before < header_size && recv_offset_ >= header_size && op.header != op.bytes) {
        if (done != 0) complete_recvs(done);
        fail(errc::mismatch, concat("receive from rank ", peer(), " was posted with ", op.bytes, " bytes but rank ",
                                    peer(), " sent a message of ", op.header, " bytes"));
        return false;
      }
      if (recv_offset_ < header_size + op.bytes) break;
      recv_offset_ = 0;
      recvs_.pop_front();
      ++done;
    }
    if (done != 0) complete_recvs(done);
    return true;
  }

  void fail_io(std::string_view doing, int code) {
    const bool local = code == ENOMEM || code == ENOBUFS || code == EFAULT || code == EBADF;
    fail(local ? errc::transport : errc::remote_failure,
         concat(doing, ' ', who_, " failed: ", errno_text(code),
                code == ECONNRESET || code == EPIPE ? " (the peer exited or was killed?)" : ""));
  }

  void on_abandon() override { fail(errc::aborted, "abandoned after an error"); }

  // Ends the channel: the socket is closed and queued operations dropped,
  // so no byte moves into or out of a user buffer from here on.
  void fail(errc code, const std::string& message) {
    log(log_level::debug, "tcp: rank ", owner_.rank, ": channel to rank ", peer(), " failed: ", message);
    fail_with(code, message);
    if (state == link_state::awaiting_peer) --owner_.accept_wanted;
    state = link_state::closed;
    fd.reset();
    sends_.clear();
    recvs_.clear();
    hello_left_ = 0;
  }

  transport_state& owner_;
  std::string who_;  // "rank N (address)", for messages
  connector connector_;
  std::uint64_t nonce_;  // the peer's, which our handshake presents
  std::array<std::byte, hello_size> hello_{};
  std::size_t hello_left_ = 0;
  std::size_t send_offset_ = 0;  // bytes of the front send (header included) on the wire
  std::size_t recv_offset_ = 0;  // bytes of the front receive (header included) read
  op_queue<send_op> sends_;
  op_queue<recv_op> recvs_;
};

}  // namespace tutti::detail::tcp
