// What the tcp transport puts on the wire: the connector's handshake and the
// header in front of every message. A part of its own because both ends of a
// connection, and tests that speak the protocol by hand, must agree on it.
//
// Handshake: the connector's first 32 bytes are magic "TTCP", version,
// connector rank, acceptor rank, world size, zero, acceptor's nonce (u32s and
// a u64). There is no reply: the connector's first message follows in the
// same write.
//
// Framing: each message is an 8-byte length followed by the payload, both
// little-endian bytes on the wire.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

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

}  // namespace tutti::detail::tcp
