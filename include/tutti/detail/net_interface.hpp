// Choosing the network interface, and the address on it, that a socket
// transport listens on.
//
// TUTTI_SOCKET_IFNAME names the interface (eth0, ib0, veth1); a name that is
// not present is errc::invalid_argument listing the interfaces that are.
// Otherwise the first interface (in the kernel's order) that is up, is not
// loopback, has an address, and is not a host-local virtual bridge (docker*,
// virbr*: other hosts cannot reach their addresses) wins; veth interfaces are
// kept, since a container's or a test namespace's own interface is often one
// and carries real traffic. With no such interface, loopback.
//
// On the chosen interface an IPv4 address is preferred, then a global IPv6
// address, then a link-local one (written with its %interface scope).
#pragma once

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/detail/env.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/error.hpp>

namespace tutti::detail {

struct interface_address {
  std::string interface;  // e.g. "eth0"
  std::string address;    // numeric; IPv6 link-local carries "%interface"
  int family = AF_UNSPEC;
};

namespace net_interface_detail {

class interface_list {
 public:
  interface_list() {
    if (::getifaddrs(&head_) != 0) fail(errc::transport, "getifaddrs: ", errno_text(errno));
  }
  interface_list(const interface_list&) = delete;
  interface_list& operator=(const interface_list&) = delete;
  ~interface_list() {
    if (head_ != nullptr) ::freeifaddrs(head_);
  }
  [[nodiscard]] const ifaddrs* head() const noexcept { return head_; }

 private:
  ifaddrs* head_ = nullptr;
};

// Lower is better: IPv4, global IPv6, link-local IPv6; 0 = not usable.
inline int address_rank(const sockaddr* a) noexcept {
  if (a == nullptr) return 0;
  if (a->sa_family == AF_INET) return 3;
  if (a->sa_family != AF_INET6) return 0;
  sockaddr_in6 v6{};
  std::memcpy(&v6, a, sizeof v6);
  return IN6_IS_ADDR_LINKLOCAL(&v6.sin6_addr) ? 1 : 2;
}

inline std::string numeric_host(const sockaddr* a) {
  char host[NI_MAXHOST] = {};
  const socklen_t length = a->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (const int rc = ::getnameinfo(a, length, host, sizeof host, nullptr, 0, NI_NUMERICHOST); rc != 0) {
    fail(errc::transport, "getnameinfo: ", ::gai_strerror(rc));
  }
  return host;
}

// The best address of interface `name`, if it has one.
inline std::optional<interface_address> best_address(const interface_list& list, std::string_view name) {
  const ifaddrs* best = nullptr;
  int best_rank = 0;
  for (const ifaddrs* i = list.head(); i != nullptr; i = i->ifa_next) {
    if (name != i->ifa_name) continue;
    const int rank = address_rank(i->ifa_addr);
    if (rank > best_rank) {
      best = i;
      best_rank = rank;
    }
  }
  if (best == nullptr) return std::nullopt;
  return interface_address{best->ifa_name, numeric_host(best->ifa_addr), best->ifa_addr->sa_family};
}

inline bool host_local_bridge(std::string_view name) noexcept {
  return name.starts_with("docker") || name.starts_with("virbr");
}

}  // namespace net_interface_detail

// Every interface name present, in the kernel's order, without repeats.
inline std::vector<std::string> interface_names() {
  const net_interface_detail::interface_list list;
  std::vector<std::string> names;
  for (const ifaddrs* i = list.head(); i != nullptr; i = i->ifa_next) {
    bool seen = false;
    for (const auto& n : names) seen = seen || n == i->ifa_name;
    if (!seen) names.emplace_back(i->ifa_name);
  }
  return names;
}

// The interface and address to listen on, by the rule at the top of this file.
inline interface_address select_interface(const env_lookup& env = process_env) {
  using namespace net_interface_detail;
  const interface_list list;
  if (const auto wanted = env("TUTTI_SOCKET_IFNAME")) {
    if (auto found = best_address(list, *wanted)) return *std::move(found);
    std::string present;
    bool exists = false;
    for (const auto& n : interface_names()) {
      present += (present.empty() ? "" : ", ") + n;
      exists = exists || n == *wanted;
    }
    fail(errc::invalid_argument, "TUTTI_SOCKET_IFNAME='", *wanted,
         "': ", exists ? "the interface has no IPv4 or IPv6 address" : "no such interface",
         "; interfaces present: ", present.empty() ? "none" : present);
  }
  std::optional<std::string> loopback;
  for (const ifaddrs* i = list.head(); i != nullptr; i = i->ifa_next) {
    if (address_rank(i->ifa_addr) == 0 || (i->ifa_flags & IFF_UP) == 0) continue;
    if ((i->ifa_flags & IFF_LOOPBACK) != 0) {
      if (!loopback) loopback = i->ifa_name;
      continue;
    }
    if (host_local_bridge(i->ifa_name)) continue;
    if (auto found = best_address(list, i->ifa_name)) return *std::move(found);
  }
  if (loopback) {
    if (auto found = best_address(list, *loopback)) return *std::move(found);
  }
  return {"lo", "127.0.0.1", AF_INET};
}

}  // namespace tutti::detail
