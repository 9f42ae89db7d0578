// Deterministic message contents for transport tests: a message's bytes are
// a function of a seed and their position, so a receiver can check what it
// got without the sender's copy. Made a word at a time so that filling and
// checking 64 MiB stays cheap in a sanitized debug build.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <tutti/error.hpp>

namespace tutti::test {

// Word `i` of the pattern for `seed`.
inline std::uint64_t pattern_word(std::uint64_t seed, std::size_t i) {
  std::uint64_t x = (seed + 1) * std::uint64_t{0x9E3779B97F4A7C15} + i * std::uint64_t{0xBF58476D1CE4E5B9};
  return x ^ (x >> 29U);
}

// The seed of message `index` from rank `from` to rank `to`.
inline std::uint64_t seed_of(int from, int to, std::size_t index) {
  return static_cast<std::uint64_t>(from) * std::uint64_t{1'000'003} +
         static_cast<std::uint64_t>(to) * std::uint64_t{10'007} + index;
}

// Writes the pattern for `seed` over `out`.
inline void fill_pattern(std::span<std::byte> out, std::uint64_t seed) {
  if (out.empty()) return;
  const std::size_t words = out.size() / 8;
  for (std::size_t i = 0; i < words; ++i) {
    const std::uint64_t w = pattern_word(seed, i);
    std::memcpy(out.data() + i * 8, &w, 8);
  }
  const std::uint64_t tail = pattern_word(seed, words);
  std::memcpy(out.data() + words * 8, &tail, out.size() - words * 8);
}

// `bytes` bytes of the pattern for `seed`.
inline std::vector<std::byte> pattern(std::size_t bytes, std::uint64_t seed) {
  std::vector<std::byte> out(bytes);
  fill_pattern(out, seed);
  return out;
}

// Empty when `got` holds the pattern for `seed`; else where it first differs.
inline std::string pattern_mismatch(std::span<const std::byte> got, std::uint64_t seed) {
  constexpr std::size_t words_per_chunk = 8192;
  std::vector<std::byte> expected(words_per_chunk * 8);
  for (std::size_t at = 0; at < got.size(); at += expected.size()) {
    const std::size_t n = std::min(expected.size(), got.size() - at);
    for (std::size_t i = 0; i < (n + 7) / 8; ++i) {
      const std::uint64_t w = pattern_word(seed, at / 8 + i);
      std::memcpy(expected.data() + i * 8, &w, 8);
    }
    if (std::memcmp(got.data() + at, expected.data(), n) != 0) {
      for (std::size_t i = 0; i < n; ++i) {
        if (got[at + i] != expected[i]) return tutti::detail::concat("byte ", at + i, " of ", got.size(), " differs");
      }
    }
  }
  return {};
}

}  // namespace tutti::test
