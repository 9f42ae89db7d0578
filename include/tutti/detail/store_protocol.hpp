// The TCP store's wire format. Every message is a frame: a little-endian u32
// body length, then the body. Requests and responses each have one generic
// layout, so one encoder and one validating decoder cover every operation:
//
//   request  = u8 opcode, u32 timeout_ms, i64 number, u32 n, n x string (keys),
//              u32 m, m x string (values)
//   response = u8 status, i64 number, u32 n, n x string (items)
//   string   = u32 length, bytes
//
// Handshake (before any request): server_hello = u32 magic, u16 version,
// u8 auth_required, 32-byte nonce; client_hello = u32 magic, u16 version,
// 32-byte nonce, 32-byte HMAC; verdict = u8 accepted, 32-byte HMAC.
//
// Decoding goes through wire::reader, which validates every length first.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/detail/wire.hpp>
#include <tutti/error.hpp>

namespace tutti::detail::store_wire {

inline constexpr std::uint32_t magic = 0x5453'5454;  // "TTST"
inline constexpr std::uint16_t version = 1;
using wire::max_frame;
using wire::reader;
using wire::writer;
inline constexpr std::size_t max_key = 4096;
inline constexpr std::size_t nonce_size = 32;
inline constexpr std::size_t mac_size = 32;

enum class opcode : std::uint8_t { set = 1, multi_get, add, compare_set, wait, contains, erase };
enum class status : std::uint8_t { ok = 0, timeout = 1, error = 2 };

struct request {
  opcode op = opcode::set;
  std::uint32_t timeout_ms = 0;
  std::int64_t number = 0;
  std::vector<std::string> keys;
  std::vector<std::string> values;
};

struct response {
  status code = status::ok;
  std::int64_t number = 0;
  std::vector<std::string> items;
};

using nonce = std::array<std::uint8_t, nonce_size>;
using mac = std::array<std::uint8_t, mac_size>;

struct server_hello {
  bool auth_required = false;
  nonce server_nonce{};
};

struct client_hello {
  nonce client_nonce{};
  mac proof{};
};

struct verdict {
  bool accepted = false;
  mac proof{};
};

// The frame length from its 4-byte prefix, validated before the body is read.
[[noreturn]] inline void malformed(const std::string& why) { reader({}, "store").malformed(why); }

inline std::size_t frame_length(std::span<const std::byte, 4> prefix) {
  std::uint32_t length = 0;
  std::memcpy(&length, prefix.data(), 4);
  if (length > max_frame) malformed(concat("frame of ", length, " bytes exceeds ", max_frame));
  return length;
}

inline std::vector<std::byte> encode(const request& r) {
  return std::move(writer{}
                       .u8(static_cast<std::uint8_t>(r.op))
                       .u32(r.timeout_ms)
                       .i64(r.number)
                       .strings(r.keys)
                       .strings(r.values))
      .finish();
}

// How many keys and values each operation takes: the decoder rejects any
// other shape, so the server never indexes past what it received.
struct request_shape {
  std::size_t min_keys, max_keys, values;
};

inline request_shape shape_of(opcode op) {
  constexpr std::size_t many = std::size_t{1} << 20;
  switch (op) {
    case opcode::set: return {1, 1, 1};
    case opcode::multi_get:
    case opcode::wait:
    case opcode::contains: return {1, many, 0};
    case opcode::add:
    case opcode::erase: return {1, 1, 0};
    case opcode::compare_set: return {1, 1, 2};
  }
  malformed("unknown opcode");
}

inline request decode_request(std::span<const std::byte> body) {
  reader in(body, "store");
  request r;
  const std::uint8_t op = in.u8();
  if (op < static_cast<std::uint8_t>(opcode::set) || op > static_cast<std::uint8_t>(opcode::erase)) {
    malformed(concat("unknown opcode ", static_cast<unsigned>(op)));
  }
  r.op = static_cast<opcode>(op);
  r.timeout_ms = in.u32();
  r.number = in.i64();
  r.keys = in.strings(max_key);
  r.values = in.strings(max_frame);
  in.expect_end();
  const auto shape = shape_of(r.op);
  if (r.keys.size() < shape.min_keys || r.keys.size() > shape.max_keys || r.values.size() != shape.values) {
    malformed(concat("opcode ", static_cast<unsigned>(op), " with ", r.keys.size(), " keys and ", r.values.size(),
                     " values"));
  }
  return r;
}

inline std::vector<std::byte> encode(const response& r) {
  return std::move(writer{}.u8(static_cast<std::uint8_t>(r.code)).i64(r.number).strings(r.items)).finish();
}

inline response decode_response(std::span<const std::byte> body) {
  reader in(body, "store");
  response r;
  const std::uint8_t code = in.u8();
  if (code > static_cast<std::uint8_t>(status::error)) malformed(concat("unknown status ", unsigned{code}));
  r.code = static_cast<status>(code);
  r.number = in.i64();
  r.items = in.strings(max_frame);
  in.expect_end();
  return r;
}

inline std::vector<std::byte> encode(const server_hello& h) {
  return std::move(writer{}.u32(magic).u16(version).u8(h.auth_required ? 1 : 0).raw(h.server_nonce)).finish();
}

// Checks magic and version first, so a client that reached something other
// than a tutti store of this protocol version says so plainly.
inline void check_magic_and_version(reader& in, std::string_view who) {
  if (in.u32() != magic) malformed(concat(who, " does not speak the tutti store protocol (bad magic)"));
  if (const auto v = in.u16(); v != version) {
    fail(errc::mismatch, "store: ", who, " speaks protocol version ", v, ", this process ", version);
  }
}

inline server_hello decode_server_hello(std::span<const std::byte> body) {
  reader in(body, "store");
  check_magic_and_version(in, "the server");
  server_hello h;
  h.auth_required = in.u8() != 0;
  h.server_nonce = in.raw<nonce_size>();
  in.expect_end();
  return h;
}

inline std::vector<std::byte> encode(const client_hello& h) {
  return std::move(writer{}.u32(magic).u16(version).raw(h.client_nonce).raw(h.proof)).finish();
}

inline client_hello decode_client_hello(std::span<const std::byte> body) {
  reader in(body, "store");
  check_magic_and_version(in, "the client");
  client_hello h;
  h.client_nonce = in.raw<nonce_size>();
  h.proof = in.raw<mac_size>();
  in.expect_end();
  return h;
}

inline std::vector<std::byte> encode(const verdict& v) {
  return std::move(writer{}.u8(v.accepted ? 1 : 0).raw(v.proof)).finish();
}

inline verdict decode_verdict(std::span<const std::byte> body) {
  reader in(body, "store");
  verdict v;
  v.accepted = in.u8() != 0;
  v.proof = in.raw<mac_size>();
  in.expect_end();
  return v;
}

}  // namespace tutti::detail::store_wire
