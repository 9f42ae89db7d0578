// The TCP transport: non-blocking sockets, one connection per pair of ranks,
// for hosts without RDMA and for multi-host tests across network namespaces.
//
// Listening. The constructor binds a non-blocking listener to a free port on
// one address of the interface chosen by detail/net_interface.hpp
// (TUTTI_SOCKET_IFNAME, else the first up non-loopback interface that is not a
// docker/virbr bridge, else loopback). endpoint() is "address:port/nonce"
// ("[v6]:port/nonce"), the nonce being 64 random bits in hex, so a connection
// from another job or tool that happens to reach the port is told apart.
//
// Connections are made lazily, on the first post to a peer. Of each pair the
// higher rank connects and the lower accepts (in progress(), which accepts
// while a channel waits for its peer or after wait_for_activity saw the
// listener readable), so a pair ends up with exactly one connection whoever
// posts first. Refused or unreachable attempts are retried with backoff (1 ms
// doubling to 100 ms) for ctx.config.timeout after the first; then the channel
// fails with errc::timeout naming the peer's rank and address.
//
// Handshake: the connector's first 32 bytes are magic "TTCP", version,
// connector rank, acceptor rank, world size, zero, acceptor's nonce (u32s and
// a u64). The acceptor checks every field and that the connector's channel is
// still unconnected; a connection that fails, or sends no handshake within
// the timeout, is closed with a warning and the transport carries on. There
// is no reply: the connector's first message follows in the same write.
//
// Framing: each message is an 8-byte length followed by the payload, both
// little-endian bytes on the wire. Sends gather headers and payloads of
// queued messages into one sendmsg (a send posted on an idle connection is
// tried at once). Receives are read only once posted: readv scatters each
// header into the operation and the payload straight into the posted buffer,
// several posted receives per call, so nothing is buffered in user space and
// the kernel's socket buffers are the flow control. A header that disagrees
// with the posted size fails the channel with errc::mismatch naming both
// sizes. progress() makes one system call per direction and busy channel
// (more only while each call completes everything it asked for), so a
// message of several GiB moves in pieces while other channels keep moving;
// a channel that found nothing to move is probed again 1 us later rather
// than on every call, so that a spinning waiter makes few system calls.
//
// Failure: end of stream, ECONNRESET, EPIPE or another socket error fails the
// channel with errc::remote_failure naming the peer (the kernel closes a
// killed process's sockets, so this is immediate); the socket is closed and
// queued operations are dropped, so nothing more is read into or sent from
// user buffers, and other channels carry on. A peer that never connects
// surfaces as errc::timeout from wait_sent/wait_received.
//
// Environment: TUTTI_SOCKET_IFNAME (interface to listen on). The timeout is
// ctx.config.timeout (TUTTI_TIMEOUT); logging follows TUTTI_LOG.
#pragma once

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/detail/env.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/detail/net_interface.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::detail::tcp {

inline constexpr std::uint32_t magic = 0x50435454;  // "TTCP" as little-endian bytes
inline constexpr std::uint32_t protocol_version = 1;
inline constexpr std::size_t header_size = sizeof(std::uint64_t);

struct hello {
  std::uint32_t magic = 0;
  std::uint32_t version = 0;
  std::uint32_t connector = 0;
  std::uint32_t acceptor = 0;
  std::uint32_t world_size = 0;
  std::uint32_t reserved = 0;
  std::uint64_t nonce = 0;  // the acceptor's
};
inline constexpr std::size_t hello_size = 32;
static_assert(sizeof(hello) == hello_size, "the handshake has no padding");

// The wire format is the in-memory one: tutti assumes little-endian hosts
// (see detail/wire.hpp).
inline std::array<std::byte, hello_size> encode(const hello& h) noexcept {
  std::array<std::byte, hello_size> out{};
  std::memcpy(out.data(), &h, hello_size);
  return out;
}

inline hello decode(const std::array<std::byte, hello_size>& bytes) noexcept {
  hello h;
  std::memcpy(&h, bytes.data(), hello_size);
  return h;
}

// Why an acceptor of rank `rank` refuses `h`; empty when the fields are right.
inline std::string refusal(const hello& h, int rank, int world_size, std::uint64_t nonce) {
  if (h.magic != magic) return "it is not a tutti tcp handshake";
  if (h.version != protocol_version) return concat("protocol version ", h.version, " (this is ", protocol_version, ")");
  if (h.nonce != nonce) return "wrong nonce (the connection is meant for another transport or job)";
  if (h.acceptor != static_cast<std::uint32_t>(rank)) return concat("it is meant for rank ", h.acceptor);
  if (h.world_size != static_cast<std::uint32_t>(world_size)) return concat("world size ", h.world_size);
  if (h.connector <= static_cast<std::uint32_t>(rank) || h.connector >= static_cast<std::uint32_t>(world_size)) {
    return concat("rank ", h.connector, " does not connect to rank ", rank);
  }
  return {};
}

inline std::uint64_t random_nonce() {
  std::uint64_t out = 0;
  auto* bytes = reinterpret_cast<unsigned char*>(&out);
  std::size_t filled = 0;
  while (filled < sizeof out) {
    const ssize_t n = ::getrandom(bytes + filled, sizeof out - filled, 0);
    if (n < 0 && errno != EINTR) fail(errc::internal, "getrandom: ", errno_text(errno));
    if (n > 0) filled += static_cast<std::size_t>(n);
  }
  return out;
}

inline std::string format_endpoint(const endpoint& where, std::uint64_t nonce) {
  char hex[16];
  for (int i = 15; i >= 0; --i, nonce >>= 4U) hex[i] = "0123456789abcdef"[nonce & 15U];
  return concat(where.to_string(), '/', std::string_view(hex, sizeof hex));
}

struct peer_address {
  endpoint where;
  std::uint64_t nonce = 0;
};

// Parses what format_endpoint wrote; the host must be a numeric address, so
// that connecting never waits on a name service.
inline peer_address parse_endpoint(std::string_view text, int rank) {
  const auto bad = [&](std::string_view why) {
    fail(errc::invalid_argument, "tcp: rank ", rank, " published endpoint '", text, "', not address:port/nonce (", why,
         ")");
  };
  const auto slash = text.rfind('/');
  if (slash == std::string_view::npos) bad("no nonce");
  const std::string_view hex = text.substr(slash + 1);
  peer_address out;
  const auto [end, status] = std::from_chars(hex.data(), hex.data() + hex.size(), out.nonce, 16);
  if (hex.empty() || hex.size() > 16 || status != std::errc{} || end != hex.data() + hex.size()) bad("nonce");
  out.where = parse_tcp_url(concat("tcp://", text.substr(0, slash)), concat("tcp endpoint of rank ", rank));
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (::getaddrinfo(out.where.host.c_str(), std::to_string(out.where.port).c_str(), &hints, &list) != 0) {
    bad("the address is not numeric");
  }
  ::freeaddrinfo(list);
  return out;
}

// "host:port" of a socket address, for messages.
inline std::string describe(const sockaddr_storage& address) {
  char host[NI_MAXHOST] = {};
  char port[NI_MAXSERV] = {};
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&address), sizeof address, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "an unknown address";
  }
  return std::string(host).find(':') != std::string::npos ? concat('[', host, "]:", port) : concat(host, ':', port);
}

// A FIFO of operations over a ring that only grows, so that posting does not
// allocate once a channel has seen its deepest queue.
template <class T>
class fifo {
 public:
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  T& front() noexcept { return slots_[head_]; }
  T& operator[](std::size_t i) noexcept { return slots_[(head_ + i) & (slots_.size() - 1)]; }
  void push_back(const T& value) {
    if (count_ == slots_.size()) grow();
    slots_[(head_ + count_) & (slots_.size() - 1)] = value;
    ++count_;
  }
  void pop_front() noexcept {
    head_ = (head_ + 1) & (slots_.size() - 1);
    --count_;
  }
  void clear() noexcept { head_ = count_ = 0; }

 private:
  void grow() {
    std::vector<T> bigger(std::max<std::size_t>(16, slots_.size() * 2));
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = (*this)[i];
    slots_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<T> slots_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
};

}  // namespace tutti::detail::tcp

namespace tutti::transport {

class tcp_transport final : public transport {
 public:
  explicit tcp_transport(const context& ctx) : tcp_transport(ctx, tutti::detail::process_env) {}

  // `env` replaces the process environment (TUTTI_SOCKET_IFNAME), for tests.
  tcp_transport(const context& ctx, const tutti::detail::env_lookup& env)
      : rank_(ctx.rank),
        size_(ctx.size),
        timeout_(ctx.config.timeout),
        interface_((validate(ctx), tutti::detail::select_interface(env))),
        listener_(tutti::detail::listen_on({interface_.address, 0})),
        nonce_(tutti::detail::tcp::random_nonce()) {
    tutti::detail::set_nonblocking(listener_.get());
    endpoint_ =
        tutti::detail::tcp::format_endpoint({interface_.address, tutti::detail::bound_port(listener_.get())}, nonce_);
    tutti::detail::log(tutti::detail::log_level::info, "tcp: rank ", rank_, " listens on ", endpoint_, " (interface ",
                       interface_.interface, ")");
  }

  tcp_transport(const tcp_transport&) = delete;
  tcp_transport& operator=(const tcp_transport&) = delete;
  ~tcp_transport() override = default;

  [[nodiscard]] std::string_view name() const noexcept override { return "tcp"; }
  [[nodiscard]] std::string endpoint() const override { return endpoint_; }
  // The interface the listener is on, e.g. "eth0".
  [[nodiscard]] const std::string& interface_name() const noexcept { return interface_.interface; }

  void attach(std::span<const address_card> cards, std::span<const int> peers) override {
    std::vector<std::unique_ptr<peer_channel>> channels(static_cast<std::size_t>(size_));
    for (const int peer : peers) {
      if (peer < 0 || peer >= size_ || peer == rank_) {
        tutti::detail::fail(errc::invalid_argument, "tcp: rank ", rank_, " cannot serve peer ", peer, " in a world of ",
                            size_);
      }
      const address_card* card = nullptr;
      for (const auto& c : cards) {
        if (c.rank == peer) card = &c;
      }
      if (card == nullptr) tutti::detail::fail(errc::invalid_argument, "tcp: no address card for rank ", peer);
      const std::string* text = card->endpoint_of(name());
      if (text == nullptr) {
        tutti::detail::fail(errc::unavailable, "tcp: rank ", peer, " (", card->describe(), ") has no tcp endpoint");
      }
      channels[static_cast<std::size_t>(peer)] =
          std::make_unique<peer_channel>(*this, peer, tutti::detail::tcp::parse_endpoint(*text, peer));
    }
    channels_ = std::move(channels);
    active_.clear();
    active_.reserve(peers.size());
    pollfds_.reserve(peers.size() + 1 + max_pending_handshakes);
    attached_ = true;
  }

  channel& to(int peer) override {
    if (peer < 0 || peer >= static_cast<int>(channels_.size()) || !channels_[static_cast<std::size_t>(peer)]) {
      tutti::detail::fail(errc::invalid_argument, "tcp: rank ", peer, " is not a peer of rank ", rank_, "'s transport");
    }
    return *channels_[static_cast<std::size_t>(peer)];
  }

  // Connected peers, and the kernel's socket buffers for them: tcp keeps
  // nothing of its own (receives land in the posted buffers).
  [[nodiscard]] footprint held() const override {
    footprint out;
    for (const auto& c : channels_) {
      if (!c || c->state != link_state::connected) continue;
      ++out.connections;
      for (const int option : {SO_SNDBUF, SO_RCVBUF}) {
        int bytes = 0;
        socklen_t length = sizeof bytes;
        if (::getsockopt(c->fd.get(), SOL_SOCKET, option, &bytes, &length) == 0 && bytes > 0) {
          out.memory_bytes += static_cast<std::size_t>(bytes);
        }
      }
    }
    return out;
  }

  void progress() override {
    if (!attached_) return;
    if (accept_wanted_ > 0 || listener_ready_) accept_connections();
    if (!handshakes_.empty() && (accept_wanted_ > 0 || handshakes_ready_)) service_handshakes();
    const auto now = clock::now();
    for (std::size_t i = 0; i < active_.size();) {
      peer_channel& c = *active_[i];
      if (now < c.idle_until) {
        ++i;
        continue;
      }
      c.progress(now);
      if (c.quiet()) {
        c.active = false;
        active_[i] = active_.back();
        active_.pop_back();
      } else {
        ++i;
      }
    }
  }

  void wait_for_activity(clock::time_point deadline) override {
    pollfds_.clear();
    pollfds_.push_back({listener_.get(), POLLIN, 0});
    for (const auto& p : handshakes_) {
      pollfds_.push_back({p.fd.get(), POLLIN, 0});
      deadline = std::min(deadline, p.deadline);
    }
    for (const peer_channel* c : active_) {
      short events = 0;
      switch (c->state) {
        case link_state::connected:
          if (c->hello_left != 0 || !c->sends.empty()) events |= POLLOUT;
          if (!c->recvs.empty()) events |= POLLIN;
          break;
        case link_state::connecting:
          events = POLLOUT;
          deadline = std::min(deadline, c->connect_deadline);
          break;
        case link_state::retrying: deadline = std::min(deadline, c->retry_at); break;
        default: break;
      }
      if (events != 0) pollfds_.push_back({c->fd.get(), events, 0});
    }
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - clock::now()).count();
    if (left > 0) {
      const auto capped = std::min<std::int64_t>(left, std::int64_t{3600} * 1'000'000'000);
      const timespec wait{static_cast<time_t>(capped / 1'000'000'000), static_cast<long>(capped % 1'000'000'000)};
      if (::ppoll(pollfds_.data(), pollfds_.size(), &wait, nullptr) > 0 && pollfds_[0].revents != 0) {
        listener_ready_ = true;
      }
    }
    for (peer_channel* c : active_) c->idle_until = {};
    // A pending handshake that became readable or expired is looked at next.
    const auto now = clock::now();
    for (std::size_t i = 0; i < handshakes_.size(); ++i) {
      if (pollfds_[i + 1].revents != 0 || now >= handshakes_[i].deadline) handshakes_ready_ = true;
    }
  }

 private:
  static constexpr std::size_t max_iov = 64;
  static constexpr int max_rounds = 8;
  static constexpr std::size_t max_pending_handshakes = 64;
  // How soon a channel that had nothing to move is looked at again by
  // progress(). A probe is a system call (~0.3 us); a waiter spins ~256
  // times before it yields and sleeps (wait.hpp), and probing on every spin
  // would stretch that phase to ~100 us of a core that a rank sharing it
  // needs. wait_for_activity() clears it: after a sleep, look at once.
  static constexpr std::chrono::nanoseconds recheck_interval{1000};

  enum class link_state { idle, retrying, connecting, awaiting_peer, connected, closed };

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
  static void add_message(iov_batch& batch, Op& op, std::size_t offset) noexcept {
    if (offset < tutti::detail::tcp::header_size) {
      batch.add(reinterpret_cast<const std::byte*>(&op.header) + offset, tutti::detail::tcp::header_size - offset);
    }
    const std::size_t from = offset > tutti::detail::tcp::header_size ? offset - tutti::detail::tcp::header_size : 0;
    if (op.bytes > from) batch.add(op.data + from, op.bytes - from);
  }

  class peer_channel final : public channel {
   public:
    peer_channel(tcp_transport& owner, int peer, tutti::detail::tcp::peer_address address)
        : channel(peer), owner_(owner), address_(std::move(address)), where_(address_.where.to_string()) {}

    // Nothing to do until the next post: no operations, no handshake to send.
    [[nodiscard]] bool quiet() const noexcept {
      return state == link_state::closed || (sends.empty() && recvs.empty() && hello_left == 0);
    }

    void progress(clock::time_point now) {
      switch (state) {
        case link_state::connected: {
          bool moved = false;
          if (hello_left != 0 || !sends.empty()) moved = pump_sends();
          if (state == link_state::connected && !recvs.empty()) moved = pump_recvs() || moved;
          // Found nothing to move: look again a little later rather than on
          // every spin of a waiter, so that spinning costs few system calls.
          if (!moved) idle_until = now + recheck_interval;
          break;
        }
        case link_state::connecting: check_connect(now); break;
        case link_state::retrying:
          if (now >= retry_at) try_connect();
          break;
        default: break;
      }
    }

    // The acceptor's side: the peer connected and passed the handshake.
    void adopt(tutti::detail::fd_handle socket, const std::string& from) {
      if (state == link_state::awaiting_peer) --owner_.accept_wanted_;
      tutti::detail::set_nodelay(socket.get());
      fd = std::move(socket);
      state = link_state::connected;
      tutti::detail::log(tutti::detail::log_level::debug, "tcp: rank ", owner_.rank_, " accepted rank ", peer(),
                         " from ", from);
      if (!quiet()) owner_.activate(*this);
    }

    // Read by the transport's poll set and acceptor.
    link_state state = link_state::idle;
    bool active = false;
    tutti::detail::fd_handle fd;
    std::size_t hello_left = 0;
    clock::time_point connect_deadline{};
    clock::time_point retry_at{};
    clock::time_point idle_until{};  // progress() skips the channel until then
    tutti::detail::tcp::fifo<send_op> sends;
    tutti::detail::tcp::fifo<recv_op> recvs;

   protected:
    void enqueue_send(const void* data, std::size_t bytes) override {
      sends.push_back({static_cast<const std::byte*>(data), bytes, bytes});
      idle_until = {};
      if (state == link_state::connected) {
        // An idle connection: try at once, so a small message costs one call.
        if (sends.size() == 1 && hello_left == 0) pump_sends();
      } else if (state == link_state::idle) {
        start();
      }
      if (!quiet()) owner_.activate(*this);
    }

    void enqueue_recv(void* data, std::size_t bytes) override {
      recvs.push_back({static_cast<std::byte*>(data), bytes, 0});
      idle_until = {};
      if (state == link_state::idle) start();
      if (!quiet()) owner_.activate(*this);
    }

   private:
    [[nodiscard]] std::string who() const { return tutti::detail::concat("rank ", peer(), " (", where_, ")"); }

    void start() {
      if (owner_.rank_ > peer()) {
        connect_deadline = clock::now() + owner_.timeout_;
        try_connect();
      } else {
        state = link_state::awaiting_peer;
        ++owner_.accept_wanted_;
      }
    }

    void try_connect() {
      ++attempts_;
      if (resolved_length_ == 0 && !resolve()) return;
      tutti::detail::fd_handle socket(
          ::socket(resolved_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
      if (!socket.valid()) {
        fail(errc::transport, tutti::detail::concat("cannot create a socket to connect to ", who(), ": ",
                                                    tutti::detail::errno_text(errno)));
        return;
      }
      tutti::detail::set_nodelay(socket.get());
      const int rc = ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&resolved_), resolved_length_);
      const int code = rc == 0 ? 0 : errno;
      if (rc == 0 || code == EINPROGRESS || code == EINTR) {
        fd = std::move(socket);
        state = link_state::connecting;
        if (rc == 0) established();
        return;
      }
      connect_failed(code);
    }

    bool resolve() {
      addrinfo hints{};
      hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* list = nullptr;
      const int rc =
          ::getaddrinfo(address_.where.host.c_str(), std::to_string(address_.where.port).c_str(), &hints, &list);
      if (rc != 0 || list == nullptr || list->ai_addrlen > sizeof resolved_) {
        fail(errc::invalid_argument,
             tutti::detail::concat("cannot connect to ", who(), ": ", rc != 0 ? ::gai_strerror(rc) : "no address"));
        if (list != nullptr) ::freeaddrinfo(list);
        return false;
      }
      std::memcpy(&resolved_, list->ai_addr, list->ai_addrlen);
      resolved_length_ = list->ai_addrlen;
      ::freeaddrinfo(list);
      return true;
    }

    void check_connect(clock::time_point now) {
      pollfd p{fd.get(), POLLOUT, 0};
      const int ready = ::poll(&p, 1, 0);
      if (ready <= 0) {  // still in progress (or interrupted: look again)
        if (now >= connect_deadline) connect_failed(ETIMEDOUT);
        return;
      }
      int code = 0;
      socklen_t length = sizeof code;
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &code, &length) != 0) code = errno;
      if (code == 0) {
        established();
      } else {
        connect_failed(code);
      }
    }

    void connect_failed(int code) {
      fd.reset();
      if (code == EACCES || code == EPERM || code == EAFNOSUPPORT || code == EINVAL) {
        fail(errc::transport,
             tutti::detail::concat("cannot connect to ", who(), ": ", tutti::detail::errno_text(code)));
        return;
      }
      const auto now = clock::now();
      if (now + backoff_ >= connect_deadline) {
        const std::chrono::duration<double> spent = now - (connect_deadline - owner_.timeout_);
        fail(errc::timeout, tutti::detail::concat("cannot connect to ", who(), ": ", attempts_, " attempts in ",
                                                  spent.count(), " s, the last: ", tutti::detail::errno_text(code)));
        return;
      }
      state = link_state::retrying;
      retry_at = now + backoff_;
      backoff_ = std::min(backoff_ * 2, std::chrono::microseconds(100'000));
    }

    void established() {
      state = link_state::connected;
      hello_ = tutti::detail::tcp::encode({tutti::detail::tcp::magic, tutti::detail::tcp::protocol_version,
                                           static_cast<std::uint32_t>(owner_.rank_), static_cast<std::uint32_t>(peer()),
                                           static_cast<std::uint32_t>(owner_.size_), 0, address_.nonce});
      hello_left = hello_.size();
      tutti::detail::log(tutti::detail::log_level::debug, "tcp: rank ", owner_.rank_, " connected to ", who(),
                         " after ", attempts_, " attempt(s)");
      pump_sends();
    }

    // Whether any byte moved.
    bool pump_sends() {
      bool moved = false;
      for (int round = 0; round < max_rounds; ++round) {
        iov_batch batch;
        if (hello_left != 0) batch.add(hello_.data() + (hello_.size() - hello_left), hello_left);
        for (std::size_t i = 0, offset = send_offset_; i < sends.size() && batch.has_room_for_message(); ++i) {
          add_message(batch, sends[i], offset);
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
      const std::size_t of_hello = std::min(moved, hello_left);
      hello_left -= of_hello;
      moved -= of_hello;
      std::uint64_t done = 0;
      while (moved > 0) {
        const send_op& op = sends.front();
        const std::size_t left = tutti::detail::tcp::header_size + op.bytes - send_offset_;
        if (moved < left) {
          send_offset_ += moved;
          break;
        }
        moved -= left;
        send_offset_ = 0;
        sends.pop_front();
        ++done;
      }
      if (done != 0) complete_sends(done);
    }

    // Whether any byte moved (or the channel failed).
    bool pump_recvs() {
      bool moved = false;
      for (int round = 0; round < max_rounds; ++round) {
        iov_batch batch;
        for (std::size_t i = 0, offset = recv_offset_; i < recvs.size() && batch.has_room_for_message(); ++i) {
          add_message(batch, recvs[i], offset);
          offset = 0;
        }
        const ssize_t got = ::readv(fd.get(), batch.iov.data(), static_cast<int>(batch.count));
        if (got == 0) {
          fail(errc::remote_failure, tutti::detail::concat(who(), " closed the connection (exited or killed?) with ",
                                                           recvs.size(), " receive(s) from it pending"));
          return true;
        }
        if (got < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK) fail_io("receiving from", errno);
          return moved;
        }
        moved = true;
        if (!advance_recvs(static_cast<std::size_t>(got))) return true;
        if (static_cast<std::size_t>(got) < batch.bytes || recvs.empty()) return true;
      }
      return moved;
    }

    // False when a header did not match its receive (the channel has failed).
    bool advance_recvs(std::size_t moved) {
      constexpr std::size_t header = tutti::detail::tcp::header_size;
      std::uint64_t done = 0;
      while (moved > 0) {
        const recv_op& op = recvs.front();
        const std::size_t before = recv_offset_;
        recv_offset_ += std::min<std::size_t>(moved, header + op.bytes - before);
        moved -= recv_offset_ - before;
        if (before < header && recv_offset_ >= header && op.header != op.bytes) {
          if (done != 0) complete_recvs(done);
          fail(errc::mismatch,
               tutti::detail::concat("receive from rank ", peer(), " was posted with ", op.bytes, " bytes but rank ",
                                     peer(), " sent a message of ", op.header, " bytes"));
          return false;
        }
        if (recv_offset_ < header + op.bytes) break;
        recv_offset_ = 0;
        recvs.pop_front();
        ++done;
      }
      if (done != 0) complete_recvs(done);
      return true;
    }

    void fail_io(std::string_view doing, int code) {
      const bool local = code == ENOMEM || code == ENOBUFS || code == EFAULT || code == EBADF;
      fail(local ? errc::transport : errc::remote_failure,
           tutti::detail::concat(doing, ' ', who(), " failed: ", tutti::detail::errno_text(code),
                                 code == ECONNRESET || code == EPIPE ? " (the peer exited or was killed?)" : ""));
    }

    void on_abandon() override { fail(errc::aborted, "abandoned after an error"); }

    // Ends the channel: the socket is closed and queued operations dropped,
    // so no byte moves into or out of a user buffer from here on.
    void fail(errc code, const std::string& message) {
      tutti::detail::log(tutti::detail::log_level::debug, "tcp: rank ", owner_.rank_, ": channel to rank ", peer(),
                         " failed: ", message);
      fail_with(code, message);
      if (state == link_state::awaiting_peer) --owner_.accept_wanted_;
      state = link_state::closed;
      fd.reset();
      sends.clear();
      recvs.clear();
      hello_left = 0;
    }

    tcp_transport& owner_;
    tutti::detail::tcp::peer_address address_;
    std::string where_;
    std::array<std::byte, tutti::detail::tcp::hello_size> hello_{};
    std::size_t send_offset_ = 0;  // bytes of the front send (header included) on the wire
    std::size_t recv_offset_ = 0;  // bytes of the front receive (header included) read
    sockaddr_storage resolved_{};
    socklen_t resolved_length_ = 0;
    int attempts_ = 0;
    std::chrono::microseconds backoff_{1000};
  };

  struct pending_connection {
    tutti::detail::fd_handle fd;
    std::string from;
    clock::time_point deadline;
    std::array<std::byte, tutti::detail::tcp::hello_size> bytes{};
    std::size_t received = 0;
  };

  static void validate(const context& ctx) {
    if (ctx.size < 1 || ctx.rank < 0 || ctx.rank >= ctx.size) {
      tutti::detail::fail(errc::invalid_argument, "tcp: rank ", ctx.rank, " in a world of ", ctx.size);
    }
  }

  void activate(peer_channel& c) {
    if (c.active) return;
    c.active = true;
    active_.push_back(&c);
  }

  void accept_connections() {
    listener_ready_ = false;
    while (true) {
      sockaddr_storage from{};
      socklen_t length = sizeof from;
      const int accepted =
          ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&from), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (accepted < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          tutti::detail::log(tutti::detail::log_level::warn, "tcp: rank ", rank_,
                             ": accept: ", tutti::detail::errno_text(errno));
        }
        return;
      }
      if (handshakes_.size() >= max_pending_handshakes) {
        tutti::detail::log(tutti::detail::log_level::warn, "tcp: rank ", rank_, " closes a connection from ",
                           handshakes_.front().from, ": too many connections without a handshake");
        handshakes_.erase(handshakes_.begin());
      }
      handshakes_.push_back(
          {tutti::detail::fd_handle(accepted), tutti::detail::tcp::describe(from), clock::now() + timeout_, {}, 0});
      handshakes_ready_ = true;
    }
  }

  void service_handshakes() {
    handshakes_ready_ = false;
    const auto now = clock::now();
    std::erase_if(handshakes_, [&](pending_connection& p) { return !read_handshake(p, now); });
  }

  // False once the connection is settled: adopted by its channel, or closed.
  bool read_handshake(pending_connection& p, clock::time_point now) {
    auto reject = [&](const auto&... why) {
      tutti::detail::log(tutti::detail::log_level::warn, "tcp: rank ", rank_, " rejects a connection from ", p.from,
                         ": ", why...);
      return false;
    };
    while (p.received < p.bytes.size()) {
      const ssize_t n = ::recv(p.fd.get(), p.bytes.data() + p.received, p.bytes.size() - p.received, MSG_DONTWAIT);
      if (n > 0) {
        p.received += static_cast<std::size_t>(n);
      } else if (n == 0) {
        return reject("it closed before completing the handshake");
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (now >= p.deadline)
          return reject("no handshake within ", std::chrono::duration<double>(timeout_).count(), " s");
        return true;
      } else if (errno != EINTR) {
        return reject(tutti::detail::errno_text(errno));
      }
    }
    const auto h = tutti::detail::tcp::decode(p.bytes);
    if (auto why = tutti::detail::tcp::refusal(h, rank_, size_, nonce_); !why.empty()) return reject(why);
    peer_channel* c = channels_[h.connector].get();
    if (c == nullptr) return reject("rank ", h.connector, " is not a peer of this transport");
    if (c->state == link_state::connected) return reject("rank ", h.connector, " is already connected");
    if (c->state == link_state::closed) return reject("the channel to rank ", h.connector, " has already failed");
    c->adopt(std::move(p.fd), p.from);
    return false;
  }

  int rank_;
  int size_;
  std::chrono::milliseconds timeout_;
  tutti::detail::interface_address interface_;
  tutti::detail::fd_handle listener_;
  std::uint64_t nonce_;
  std::string endpoint_;
  bool attached_ = false;
  bool listener_ready_ = false;
  bool handshakes_ready_ = false;
  int accept_wanted_ = 0;  // channels with operations waiting for their peer to connect
  std::vector<std::unique_ptr<peer_channel>> channels_;
  std::vector<peer_channel*> active_;  // channels with work: operations or a handshake to send
  std::vector<pending_connection> handshakes_;
  std::vector<pollfd> pollfds_;
};

}  // namespace tutti::transport
