// The shm transport's tunables and their TUTTI_SHM_* environment variables:
// a part of its own so that configuration code can name them without the
// transport's setup and protocol.
//
// Environment variables (read by the transport's constructor that takes no
// options):
//   TUTTI_SHM_EAGER_LIMIT  bytes; larger messages take the single-copy path
//                          (default 32768)
//   TUTTI_SHM_RING_BYTES   bytes of slots per peer pair, a power of two from
//                          8192 to 2^30 (default 262144: 64 slots)
//   TUTTI_SHM_CHUNK_BYTES  largest single-copy chunk, 65536 to 2^30
//                          (default 262144)
//   TUTTI_SHM_CMA          0 turns the single-copy path off: large messages go
//                          through the ring (default 1)
#pragma once

#include <cstddef>

#include <tutti/detail/env.hpp>
#include <tutti/error.hpp>

namespace tutti::transport {

struct shm_options {
  // Messages up to this many bytes go through the ring (two copies, no system
  // call); larger ones are copied once through the kernel (TUTTI_SHM_EAGER_LIMIT).
  std::size_t eager_limit = 32768;
  // Bytes of each per-pair ring, a power of two from 8 KiB to 1 GiB: that
  // many divided by 4 KiB slots (TUTTI_SHM_RING_BYTES).
  std::size_t ring_bytes = std::size_t{256} << 10U;
  // Single-copy transfers move in chunks of half the message, at least 64 KiB
  // and at most this many bytes (TUTTI_SHM_CHUNK_BYTES, 64 KiB to 1 GiB).
  std::size_t chunk_bytes = std::size_t{256} << 10U;
  // false: no single-copy path, large messages are pipelined through the ring
  // (TUTTI_SHM_CMA=0).
  bool single_copy = true;

  [[nodiscard]] static shm_options from_env(const tutti::detail::env_lookup& env = tutti::detail::process_env) {
    shm_options out;
    if (auto value = env("TUTTI_SHM_EAGER_LIMIT")) {
      out.eager_limit =
          static_cast<std::size_t>(tutti::detail::parse_env_int("TUTTI_SHM_EAGER_LIMIT", *value, 0, 1LL << 30));
    }
    if (auto value = env("TUTTI_SHM_RING_BYTES")) {
      out.ring_bytes =
          static_cast<std::size_t>(tutti::detail::parse_env_int("TUTTI_SHM_RING_BYTES", *value, 8192, 1LL << 30));
    }
    if (auto value = env("TUTTI_SHM_CHUNK_BYTES")) {
      out.chunk_bytes =
          static_cast<std::size_t>(tutti::detail::parse_env_int("TUTTI_SHM_CHUNK_BYTES", *value, 65536, 1LL << 30));
    }
    if (auto value = env("TUTTI_SHM_CMA")) {
      out.single_copy = tutti::detail::parse_env_int("TUTTI_SHM_CMA", *value, 0, 1) != 0;
    }
    out.validate();
    return out;
  }

  void validate() const {
    if (ring_bytes < 8192 || ring_bytes > (std::size_t{1} << 30U) || (ring_bytes & (ring_bytes - 1)) != 0) {
      tutti::detail::fail(errc::invalid_argument, "shm: ring size ", ring_bytes,
                          " (TUTTI_SHM_RING_BYTES) is not a power of two from 8192 to 2^30");
    }
    if (chunk_bytes < 65536 || chunk_bytes > (std::size_t{1} << 30U)) {
      tutti::detail::fail(errc::invalid_argument, "shm: chunk size ", chunk_bytes,
                          " (TUTTI_SHM_CHUNK_BYTES) is not from 65536 to 2^30");
    }
  }
};

}  // namespace tutti::transport
