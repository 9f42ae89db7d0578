// What each rank tells every other rank at rendezvous: who it is, where it
// runs, and how to reach it.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/detail/env.hpp>
#include <tutti/detail/wire.hpp>
#include <tutti/error.hpp>
#include <tutti/version.hpp>

namespace tutti {

struct address_card {
  int rank = 0;
  int world_size = 0;
  // Identifies the machine: ranks with equal host ids share memory (shm).
  // Hostname plus kernel boot id, so a reused hostname or a container with
  // the same name on another machine does not pass as the same host.
  std::string host_id;
  std::string hostname;
  std::int64_t pid = 0;
  // The rail of the NIC this rank uses between hosts; -1: unknown (the
  // cluster view then takes its local rank).
  int rail = -1;
  version_info library{};
  // (transport name, address) pairs this rank can be reached by.
  std::vector<std::pair<std::string, std::string>> endpoints;

  // The address published for `transport`, or null.
  [[nodiscard]] const std::string* endpoint_of(std::string_view transport) const noexcept {
    for (const auto& [name, address] : endpoints) {
      if (name == transport) return &address;
    }
    return nullptr;
  }

  [[nodiscard]] std::string serialize() const {
    detail::wire::writer out;
    out.u32(static_cast<std::uint32_t>(rank))
        .u32(static_cast<std::uint32_t>(world_size))
        .str(host_id)
        .str(hostname)
        .i64(pid)
        .i64(rail)
        .u32(static_cast<std::uint32_t>(library.major))
        .u32(static_cast<std::uint32_t>(library.minor))
        .u32(static_cast<std::uint32_t>(library.patch))
        .u32(static_cast<std::uint32_t>(endpoints.size()));
    for (const auto& [transport, address] : endpoints) out.str(transport).str(address);
    const auto frame = std::move(out).finish();
    return {reinterpret_cast<const char*>(frame.data()) + 4, frame.size() - 4};
  }

  // `owner` names the store key the card came from, for error messages.
  static address_card parse(std::string_view text, std::string_view owner) {
    const std::string context = detail::concat("address card ", owner);
    detail::wire::reader in(std::as_bytes(std::span(text.data(), text.size())), context);
    constexpr std::size_t max_field = 4096;
    address_card card;
    card.rank = static_cast<int>(in.u32());
    card.world_size = static_cast<int>(in.u32());
    card.host_id = in.str(max_field);
    card.hostname = in.str(max_field);
    card.pid = in.i64();
    const std::int64_t rail = in.i64();
    if (rail < -1 || rail > 4096) in.malformed(detail::concat("rail ", rail));
    card.rail = static_cast<int>(rail);
    card.library.major = static_cast<int>(in.u32());
    card.library.minor = static_cast<int>(in.u32());
    card.library.patch = static_cast<int>(in.u32());
    const std::uint32_t count = in.u32();
    if (count > 64) in.malformed(detail::concat(count, " endpoints"));
    for (std::uint32_t i = 0; i < count; ++i) {
      auto transport = in.str(max_field);
      auto address = in.str(max_field);
      card.endpoints.emplace_back(std::move(transport), std::move(address));
    }
    in.expect_end();
    return card;
  }

  [[nodiscard]] std::string describe() const { return detail::concat("pid ", pid, " on ", hostname); }

  // This process's card for `rank` of `world_size`, without endpoints.
  static address_card local(int rank, int world_size);
};

namespace detail {

inline std::string local_hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  return name;
}

// TUTTI_HOST_ID overrides the machine identity, so tests on one machine can
// pose as several hosts.
inline std::string local_host_id(const env_lookup& env = process_env) {
  if (auto forced = env("TUTTI_HOST_ID")) return *std::move(forced);
  std::string boot_id;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot_id;
  return local_hostname() + "/" + boot_id;
}

}  // namespace detail

inline address_card address_card::local(int rank, int world_size) {
  address_card card;
  card.rank = rank;
  card.world_size = world_size;
  card.host_id = detail::local_host_id();
  card.hostname = detail::local_hostname();
  card.pid = ::getpid();
  card.library = version;
  return card;
}

}  // namespace tutti
