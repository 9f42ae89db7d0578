// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), enough for bootstrap peers
// to prove they hold the shared token without the token crossing the wire.
// Written for a few hashes per connection: clear rather than fast, and no
// dependency on a crypto library that the embedding program may not link.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include <tutti/error.hpp>

namespace tutti::detail {

using sha256_digest = std::array<std::uint8_t, 32>;

// Incremental SHA-256: update() with any split of the input gives the same
// digest as hashing it whole. finish() ends the hash; a finished object
// rejects update() and finish() with errc::internal, since either would be a
// bug in the caller (the padding has already been consumed).
class sha256 {
 public:
  static constexpr std::size_t block_size = 64;

  sha256() = default;

  void update(std::span<const std::byte> data) {
    if (finished_) fail(errc::internal, "sha256: update() after finish()");
    total_ += data.size();
    while (!data.empty()) {
      // Whole blocks skip the buffer; only a leftover tail is copied.
      if (used_ == 0 && data.size() >= block_size) {
        compress(data.first<block_size>());
        data = data.subspan(block_size);
        continue;
      }
      const std::size_t take = std::min(block_size - used_, data.size());
      std::copy_n(data.begin(), take, buffer_.begin() + static_cast<std::ptrdiff_t>(used_));
      used_ += take;
      data = data.subspan(take);
      if (used_ == block_size) {
        compress(buffer_);
        used_ = 0;
      }
    }
  }

  void update(std::string_view text) { update(std::as_bytes(std::span(text.data(), text.size()))); }

  [[nodiscard]] sha256_digest finish() {
    if (finished_) fail(errc::internal, "sha256: finish() called twice");
    // Padding: a 1 bit, zeros up to 8 bytes short of a block boundary, then
    // the message length in bits, big-endian. Lengths wrap at 2^64 bits,
    // beyond the limit FIPS 180-4 sets on the message anyway.
    const std::uint64_t bit_length = static_cast<std::uint64_t>(total_) * 8u;
    std::array<std::byte, block_size + 8> tail{};
    tail[0] = std::byte{0x80};
    const std::size_t zeros_end = (used_ < block_size - 8 ? block_size - 8 : 2 * block_size - 8) - used_;
    for (std::size_t i = 0; i < 8; ++i) {
      tail[zeros_end + i] = static_cast<std::byte>(bit_length >> (56 - 8 * i));
    }
    update(std::span(tail).first(zeros_end + 8));
    finished_ = true;

    sha256_digest digest{};
    for (std::size_t i = 0; i < digest.size(); ++i) {
      digest[i] = static_cast<std::uint8_t>(state_[i / 4] >> (24 - 8 * (i % 4)));
    }
    return digest;
  }

 private:
  // First 32 bits of the fractional parts of the cube roots of the first 64
  // primes (FIPS 180-4, 4.2.2).
  static constexpr std::array<std::uint32_t, 64> round_constants{
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  };

  void compress(std::span<const std::byte, block_size> block) noexcept {
    std::array<std::uint32_t, 64> schedule{};
    for (std::size_t t = 0; t < 16; ++t) {
      schedule[t] =
          std::to_integer<std::uint32_t>(block[4 * t]) << 24 | std::to_integer<std::uint32_t>(block[4 * t + 1]) << 16 |
          std::to_integer<std::uint32_t>(block[4 * t + 2]) << 8 | std::to_integer<std::uint32_t>(block[4 * t + 3]);
    }
    for (std::size_t t = 16; t < 64; ++t) {
      const std::uint32_t w15 = schedule[t - 15];
      const std::uint32_t w2 = schedule[t - 2];
      const std::uint32_t sigma0 = std::rotr(w15, 7) ^ std::rotr(w15, 18) ^ (w15 >> 3);
      const std::uint32_t sigma1 = std::rotr(w2, 17) ^ std::rotr(w2, 19) ^ (w2 >> 10);
      schedule[t] = sigma1 + schedule[t - 7] + sigma0 + schedule[t - 16];
    }

    auto [a, b, c, d, e, f, g, h] = state_;
    for (std::size_t t = 0; t < 64; ++t) {
      const std::uint32_t big_sigma1 = std::rotr(e, 6) ^ std::rotr(e, 11) ^ std::rotr(e, 25);
      const std::uint32_t choose = (e & f) ^ (~e & g);
      const std::uint32_t t1 = h + big_sigma1 + choose + round_constants[t] + schedule[t];
      const std::uint32_t big_sigma0 = std::rotr(a, 2) ^ std::rotr(a, 13) ^ std::rotr(a, 22);
      const std::uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
      const std::uint32_t t2 = big_sigma0 + majority;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    const std::array<std::uint32_t, 8> working{a, b, c, d, e, f, g, h};
    for (std::size_t i = 0; i < state_.size(); ++i) state_[i] += working[i];
  }

  // First 32 bits of the fractional parts of the square roots of the first 8
  // primes (FIPS 180-4, 5.3.3).
  std::array<std::uint32_t, 8> state_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<std::byte, block_size> buffer_{};
  std::size_t used_ = 0;   // bytes of buffer_ holding input
  std::size_t total_ = 0;  // bytes of input so far, for the length in the padding
  bool finished_ = false;
};

[[nodiscard]] inline sha256_digest sha256_of(std::string_view data) {
  sha256 hash;
  hash.update(data);
  return hash.finish();
}

// HMAC over the concatenation of parts, so a challenge-response can MAC
// nonce || nonce || label without building the joined string.
[[nodiscard]] inline sha256_digest hmac_sha256(std::string_view key, std::initializer_list<std::string_view> parts) {
  // RFC 2104: a key longer than a block is replaced by its hash; shorter keys
  // are zero-padded to a block.
  std::array<std::byte, sha256::block_size> block_key{};
  if (key.size() > block_key.size()) {
    const sha256_digest hashed = sha256_of(key);
    std::copy_n(std::as_bytes(std::span(hashed)).begin(), hashed.size(), block_key.begin());
  } else {
    std::copy_n(std::as_bytes(std::span(key.data(), key.size())).begin(), key.size(), block_key.begin());
  }

  const auto keyed = [&](std::byte pad) {
    std::array<std::byte, sha256::block_size> padded{};
    for (std::size_t i = 0; i < padded.size(); ++i) padded[i] = block_key[i] ^ pad;
    sha256 hash;
    hash.update(padded);
    return hash;
  };

  sha256 inner = keyed(std::byte{0x36});
  for (const std::string_view part : parts) inner.update(part);
  const sha256_digest inner_digest = inner.finish();

  sha256 outer = keyed(std::byte{0x5c});
  outer.update(std::as_bytes(std::span(inner_digest)));
  return outer.finish();
}

[[nodiscard]] inline sha256_digest hmac_sha256(std::string_view key, std::string_view message) {
  return hmac_sha256(key, {message});
}

// For comparing MACs: the loop always runs to the end, so the time taken does
// not tell an attacker how many leading bytes of a forged MAC were right.
// Lengths are not secret, so a mismatch returns at once.
[[nodiscard]] inline bool constant_time_equal(std::span<const std::uint8_t> a,
                                              std::span<const std::uint8_t> b) noexcept {
  if (a.size() != b.size()) return false;
  std::uint8_t difference = 0;
  for (std::size_t i = 0; i < a.size(); ++i) difference = static_cast<std::uint8_t>(difference | (a[i] ^ b[i]));
  return difference == 0;
}

// Lowercase, two digits a byte, as sha256sum prints.
[[nodiscard]] inline std::string to_hex(std::span<const std::uint8_t> bytes) {
  constexpr std::string_view digits = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * bytes.size());
  for (const std::uint8_t byte : bytes) {
    hex += digits[byte / 16u];
    hex += digits[byte % 16u];
  }
  return hex;
}

}  // namespace tutti::detail
