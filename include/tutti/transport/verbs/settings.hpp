// The verbs transport's tunables, read from the environment once per
// transport: TUTTI_IB_EAGER_LIMIT (the largest eager message and so the
// ring slot size), TUTTI_IB_SLOTS (ring slots per peer), TUTTI_IB_CHUNK_BYTES
// (the RDMA WRITEs a rendezvous is cut into), TUTTI_IB_REG_CACHE and
// TUTTI_IB_REG_CACHE_BYTES (verbs/memory.hpp), TUTTI_IB_TIMEOUT and
// TUTTI_IB_RETRY_CNT (how long a silent peer takes to become a completion
// error). A part of its own so that the variables, their defaults and their
// bounds are in one place.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <tutti/detail/env.hpp>
#include <tutti/transport/verbs/wire.hpp>

namespace tutti::detail::verbs {

struct settings {
  std::size_t eager_limit = 8192;
  std::uint32_t slots = 16;
  std::size_t chunk_bytes = std::size_t{1} << 20;
  bool cache_registrations = false;
  std::size_t cache_budget = std::size_t{1} << 30;
  // The local ACK timeout exponent (4.096 us x 2^timeout per try) and the
  // retries before a silent peer is a completion error: 14 and 6 detect a
  // dead peer in about half a second. Not 7 retries: soft-RoCE reads a
  // retry count of 7 as "retry forever", as the spec does only for RNR.
  std::uint8_t ack_timeout = 14;
  std::uint8_t retry_count = 6;

  static settings from(const env_lookup& env) {
    settings s;
    if (auto v = env("TUTTI_IB_EAGER_LIMIT")) {
      s.eager_limit = static_cast<std::size_t>(parse_env_int("TUTTI_IB_EAGER_LIMIT", *v, 64, 1 << 20));
    }
    if (auto v = env("TUTTI_IB_SLOTS"))
      s.slots = static_cast<std::uint32_t>(parse_env_int("TUTTI_IB_SLOTS", *v, 2, 256));
    if (auto v = env("TUTTI_IB_CHUNK_BYTES")) {
      s.chunk_bytes = static_cast<std::size_t>(parse_env_int("TUTTI_IB_CHUNK_BYTES", *v, 4096, std::int64_t{1} << 30));
    }
    if (auto v = env("TUTTI_IB_REG_CACHE")) s.cache_registrations = parse_env_int("TUTTI_IB_REG_CACHE", *v, 0, 1) == 1;
    if (auto v = env("TUTTI_IB_REG_CACHE_BYTES")) {
      s.cache_budget = static_cast<std::size_t>(
          parse_env_int("TUTTI_IB_REG_CACHE_BYTES", *v, 0, std::numeric_limits<std::int64_t>::max()));
    }
    if (auto v = env("TUTTI_IB_TIMEOUT"))
      s.ack_timeout = static_cast<std::uint8_t>(parse_env_int("TUTTI_IB_TIMEOUT", *v, 1, 31));
    if (auto v = env("TUTTI_IB_RETRY_CNT"))
      s.retry_count = static_cast<std::uint8_t>(parse_env_int("TUTTI_IB_RETRY_CNT", *v, 0, 7));
    // The slot must also hold a control message.
    s.eager_limit = std::max(s.eager_limit, sizeof(control));
    return s;
  }
};

}  // namespace tutti::detail::verbs
