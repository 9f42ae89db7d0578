// The handshake of the TCP store (tcp_store.hpp), which its server and its
// client both run: nonces and the HMAC proofs each side gives that it knows
// the token. A part of its own so that both sides build the proofs with
// the very same code.
#pragma once

#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <tutti/detail/sha256.hpp>
#include <tutti/detail/socket.hpp>
#include <tutti/detail/store_protocol.hpp>
#include <tutti/error.hpp>

namespace tutti::detail {

inline detail::store_wire::nonce random_nonce() {
  detail::store_wire::nonce out{};
  std::size_t filled = 0;
  while (filled < out.size()) {
    const ssize_t n = ::getrandom(out.data() + filled, out.size() - filled, 0);
    if (n < 0 && errno != EINTR) fail(errc::internal, "getrandom: ", errno_text(errno));
    if (n > 0) filled += static_cast<std::size_t>(n);
  }
  return out;
}

inline std::string_view as_text(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The proofs of the handshake; `role` keeps a client proof from being replayed
// as a server proof.
inline detail::store_wire::mac handshake_proof(std::string_view token, std::string_view role,
                                               const detail::store_wire::nonce& first,
                                               const detail::store_wire::nonce& second) {
  return hmac_sha256(token, {role, as_text(first), as_text(second)});
}

}  // namespace tutti::detail
