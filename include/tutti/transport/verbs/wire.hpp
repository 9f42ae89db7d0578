// What the verbs transport puts on the wire and publishes: the immediate
// every RDMA WRITE WITH IMMEDIATE carries, the control messages of the
// rendezvous, the queue pair record exchanged through the store and the
// port address in the address card. A part of its own because both ends
// must agree on these encodings, and the tests round-trip them.
#pragma once

#include <arpa/inet.h>
#include <infiniband/verbs.h>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include <tutti/error.hpp>
#include <tutti/transport/verbs/device.hpp>

namespace tutti::detail::verbs {

// The immediate, 32 bits on the wire (network order): the type (2 bits),
// the ring slots the writer returns with it (9 bits: every message carries
// the credits its sender owes, so a conversation needs no credit messages of
// its own), and the length of a slot message (21 bits).
enum class imm_type : std::uint32_t { data = 0, credit = 1, control = 2, finish = 3 };
inline constexpr std::uint32_t max_imm_credits = (1U << 9) - 1;
inline constexpr std::uint32_t max_imm_length = (1U << 21) - 1;
struct immediate {
  imm_type type = imm_type::data;
  std::uint32_t credits = 0;
  std::uint32_t length = 0;

  [[nodiscard]] std::uint32_t encode() const noexcept {
    return htonl((static_cast<std::uint32_t>(type) << 30) | ((credits & max_imm_credits) << 21) |
                 (length & max_imm_length));
  }
  static immediate decode(std::uint32_t wire) noexcept {
    const std::uint32_t host = ntohl(wire);
    return {static_cast<imm_type>(host >> 30), (host >> 21) & max_imm_credits, host & max_imm_length};
  }
};

// A control message, carried in a ring slot.
struct control {
  static constexpr std::uint32_t ready_to_send = 1;
  static constexpr std::uint32_t clear_to_send = 2;
  // The announced size does not match the posted receive (`bytes`): the
  // sender fails with a mismatch instead of waiting for clear to send.
  static constexpr std::uint32_t reject = 3;
  std::uint32_t kind = 0;
  std::uint32_t rkey = 0;
  std::uint64_t address = 0;
  std::uint64_t bytes = 0;
};

// What a rank publishes for one peer's queue pair.
struct qp_info {
  std::uint32_t qpn = 0;
  std::uint32_t psn = 0;
  std::uint64_t ring_address = 0;
  std::uint32_t ring_rkey = 0;
  std::uint32_t slots = 0;
  std::uint64_t slot_bytes = 0;

  [[nodiscard]] std::string encode() const {
    return concat(qpn, ',', psn, ',', ring_address, ',', ring_rkey, ',', slots, ',', slot_bytes);
  }
  static qp_info decode(std::string_view text, int peer) {
    qp_info out;
    const auto malformed = [&] {
      fail(errc::remote_failure, "verbs: rank ", peer, " published a malformed queue pair record");
    };
    std::uint64_t fields[6] = {};
    std::size_t n = 0;
    for (;;) {
      const auto comma = text.find(',');
      const std::string_view item = text.substr(0, comma);
      if (n == 6) malformed();
      const auto [end, status] = std::from_chars(item.data(), item.data() + item.size(), fields[n]);
      if (item.empty() || status != std::errc{} || end != item.data() + item.size()) malformed();
      ++n;
      if (comma == std::string_view::npos) break;
      text.remove_prefix(comma + 1);
    }
    if (n != 6) malformed();
    out.qpn = static_cast<std::uint32_t>(fields[0]);
    out.psn = static_cast<std::uint32_t>(fields[1]);
    out.ring_address = fields[2];
    out.ring_rkey = static_cast<std::uint32_t>(fields[3]);
    out.slots = static_cast<std::uint32_t>(fields[4]);
    out.slot_bytes = fields[5];
    return out;
  }
};

// The port a rank publishes in its address card: "device:port/lid/gid/mtu/roce".
struct port_address {
  std::uint16_t lid = 0;
  std::array<std::uint8_t, 16> gid{};
  int mtu = IBV_MTU_1024;
  bool roce = false;

  static std::string encode(const port_choice& p) {
    std::string hex;
    for (const auto b : p.gid) hex += concat("0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 15]);
    return concat(p.device, ':', p.port, '/', p.lid, '/', hex, '/', static_cast<int>(p.active_mtu), '/',
                  p.roce ? 1 : 0);
  }
  static port_address decode(std::string_view text, int peer) {
    auto bad = [&] { fail(errc::remote_failure, "verbs: rank ", peer, " published endpoint '", text, "', not valid"); };
    std::string_view parts[5];
    for (auto& part : parts) {
      const auto slash = text.find('/');
      part = text.substr(0, slash);
      text = slash == std::string_view::npos ? std::string_view{} : text.substr(slash + 1);
    }
    port_address out;
    auto number = [&](std::string_view s, auto& into) {
      const auto [end, status] = std::from_chars(s.data(), s.data() + s.size(), into);
      if (s.empty() || status != std::errc{} || end != s.data() + s.size()) bad();
    };
    number(parts[1], out.lid);
    if (parts[2].size() != 32) bad();
    for (std::size_t i = 0; i < 16; ++i) {
      const std::string_view byte = parts[2].substr(2 * i, 2);
      const auto [end, status] = std::from_chars(byte.data(), byte.data() + 2, out.gid[i], 16);
      if (status != std::errc{} || end != byte.data() + 2) bad();
    }
    int roce = 0;
    number(parts[3], out.mtu);
    number(parts[4], roce);
    out.roce = roce == 1;
    return out;
  }
};

}  // namespace tutti::detail::verbs
