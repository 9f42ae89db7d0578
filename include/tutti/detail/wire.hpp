// Length-prefixed little-endian serialization shared by the store protocol
// and the address cards: a writer that builds a frame (u32 body length, then
// the body) and a reader that validates every length against the bytes
// actually present before allocating, so a malformed or hostile message costs
// at most its own bounded size and ends in tutti::error(invalid_argument).
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

#include <tutti/error.hpp>

namespace tutti::detail::wire {

// Appends fields; finish() fills in the frame length.
// The largest frame body either side accepts.
inline constexpr std::size_t max_frame = std::size_t{64} << 20;

class writer {
 public:
  writer() { bytes_.resize(4); }

  writer& u8(std::uint8_t v) { return put(v); }
  writer& u16(std::uint16_t v) { return put(v); }
  writer& u32(std::uint32_t v) { return put(v); }
  writer& i64(std::int64_t v) { return put(v); }
  writer& raw(std::span<const std::uint8_t> data) {
    const auto* p = reinterpret_cast<const std::byte*>(data.data());
    bytes_.insert(bytes_.end(), p, p + data.size());
    return *this;
  }
  writer& str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    bytes_.insert(bytes_.end(), p, p + s.size());
    return *this;
  }
  writer& strings(const std::vector<std::string>& list) {
    u32(static_cast<std::uint32_t>(list.size()));
    for (const auto& s : list) str(s);
    return *this;
  }

  std::vector<std::byte> finish() && {
    const std::size_t body = bytes_.size() - 4;
    if (body > max_frame) fail(errc::invalid_argument, "message of ", body, " bytes exceeds ", max_frame);
    const auto length = static_cast<std::uint32_t>(body);
    std::memcpy(bytes_.data(), &length, 4);  // little-endian hosts only, checked below
    return std::move(bytes_);
  }

 private:
  static_assert(std::endian::native == std::endian::little, "tutti's wire format assumes a little-endian host");

  template <class T>
  writer& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof v);
    return *this;
  }
  std::vector<std::byte> bytes_;
};

// Reads fields from one frame body, throwing on any overrun.
class reader {
 public:
  // `context` prefixes error messages, e.g. "store" or "address card of rank 3".
  reader(std::span<const std::byte> body, std::string_view context) : rest_(body), context_(context) {}

  std::uint8_t u8() { return get<std::uint8_t>("u8"); }
  std::uint16_t u16() { return get<std::uint16_t>("u16"); }
  std::uint32_t u32() { return get<std::uint32_t>("u32"); }
  std::int64_t i64() { return get<std::int64_t>("i64"); }
  template <std::size_t N>
  std::array<std::uint8_t, N> raw() {
    need(N, "fixed field");
    std::array<std::uint8_t, N> out{};
    std::memcpy(out.data(), rest_.data(), N);
    rest_ = rest_.subspan(N);
    return out;
  }
  std::string str(std::size_t max_length) {
    const std::uint32_t length = u32();
    if (length > max_length) malformed(concat("string of ", length, " bytes exceeds ", max_length));
    need(length, "string");
    std::string out(reinterpret_cast<const char*>(rest_.data()), length);
    rest_ = rest_.subspan(length);
    return out;
  }
  std::vector<std::string> strings(std::size_t max_length) {
    const std::uint32_t count = u32();
    // Each string needs at least its 4-byte length: bound the count by the
    // bytes present before reserving anything.
    if (count > rest_.size() / 4) malformed(concat(count, " strings cannot fit in ", rest_.size(), " bytes"));
    std::vector<std::string> out;
    out.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) out.push_back(str(max_length));
    return out;
  }
  void expect_end() const {
    if (!rest_.empty()) malformed(concat(rest_.size(), " trailing bytes"));
  }

  [[noreturn]] void malformed(const std::string& why) const {
    fail(errc::invalid_argument, context_, ": malformed message: ", why);
  }

 private:
  void need(std::size_t n, const char* what) const {
    if (rest_.size() < n) malformed(concat(what, " needs ", n, " bytes, ", rest_.size(), " left"));
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v{};
    std::memcpy(&v, rest_.data(), sizeof v);
    rest_ = rest_.subspan(sizeof v);
    return v;
  }
  std::span<const std::byte> rest_;
  std::string_view context_;
};

}  // namespace tutti::detail::wire
