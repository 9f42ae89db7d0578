// What the faulty transport does to the messages it carries, from
// TUTTI_FAULTY ("hold=3,seed=7,fail_send=40"):
//   hold=N       each send waits 0..N progress rounds (pseudo-random) before
//                it goes on, so messages of different channels complete in
//                other orders than they were posted (default 3; 0: none)
//   seed=S       seeds the rounds; each rank mixes in its own (default 1)
//   fail_send=K  the K-th send this rank posts (from 0) fails its channel
//                with errc::transport instead of going out (default: none)
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include <tutti/detail/env.hpp>
#include <tutti/detail/list_text.hpp>
#include <tutti/error.hpp>

namespace tutti::detail::faulty {

struct plan {
  std::uint32_t hold = 3;
  std::uint64_t seed = 1;
  std::optional<std::uint64_t> fail_send;

  static plan from(const env_lookup& env) {
    plan out;
    const auto text = env("TUTTI_FAULTY");
    if (!text) return out;
    for_each_item(*text, [&](std::string_view item) {
      const auto [key, value] = split_assignment(item, "TUTTI_FAULTY", "key=value");
      constexpr auto most = std::numeric_limits<std::int64_t>::max();
      if (key == "hold") {
        out.hold = static_cast<std::uint32_t>(parse_env_int("TUTTI_FAULTY hold", value, 0, 1000));
      } else if (key == "seed") {
        out.seed = static_cast<std::uint64_t>(parse_env_int("TUTTI_FAULTY seed", value, 0, most));
      } else if (key == "fail_send") {
        out.fail_send = static_cast<std::uint64_t>(parse_env_int("TUTTI_FAULTY fail_send", value, 0, most));
      } else {
        fail(errc::invalid_argument, "TUTTI_FAULTY: unknown key '", key, "' (known: hold, seed, fail_send)");
      }
    });
    return out;
  }
};

// splitmix64: a tiny, well-mixed sequence, so that each rank's rounds are
// reproducible from the seed.
class rounds {
 public:
  rounds(std::uint64_t seed, int rank, std::uint32_t most) noexcept
      : state_(seed * golden + static_cast<std::uint32_t>(rank)), most_(most) {}

  std::uint32_t next() noexcept {
    if (most_ == 0) return 0;
    std::uint64_t z = (state_ += golden);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return static_cast<std::uint32_t>(z % (most_ + 1));
  }

 private:
  static constexpr std::uint64_t golden = 0x9e3779b97f4a7c15;
  std::uint64_t state_;
  std::uint32_t most_;
};

}  // namespace tutti::detail::faulty
