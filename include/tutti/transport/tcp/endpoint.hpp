// The tcp transport's addresses: the endpoint a rank publishes in its address
// card, "address:port/nonce" ("[v6]:port/nonce"), what a peer reads back from
// it, and socket addresses as messages name them. The nonce is 64 random bits
// in hex, so that a connection from another job or tool that happens to reach
// the port is told apart.
#pragma once

#include <netdb.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include <tutti/detail/socket.hpp>
#include <tutti/error.hpp>

namespace tutti::detail::tcp {

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

}  // namespace tutti::detail::tcp
