// A loopback port that was free a moment ago, for tests whose rank 0 hosts a
// store at an address the test must name before starting the ranks.
#pragma once

#include <cstdint>
#include <string>

#include <tutti/detail/socket.hpp>

namespace tutti::test {

inline std::uint16_t free_port() {
  const detail::fd_handle probe = detail::listen_on({"127.0.0.1", 0});
  return detail::bound_port(probe.get());
}

inline std::string free_store_address() { return "tcp://127.0.0.1:" + std::to_string(free_port()); }

}  // namespace tutti::test
