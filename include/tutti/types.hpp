// Element types of collectives: the dtype enum that travels in headers and
// selects byte-level kernels, its traits, and the 16-bit floating types
// bfloat16 and half (IEEE binary16) that training frameworks reduce.
#pragma once

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace tutti {

// Conversions round to nearest, ties to even; NaN stays NaN (quieted, sign and
// leading payload bits kept), infinities and subnormals are preserved.
class bfloat16 {
 public:
  bfloat16() = default;
  constexpr explicit bfloat16(float value) noexcept : bits_(from_float(value)) {}
  constexpr explicit operator float() const noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits_) << 16);
  }

  static constexpr bfloat16 from_bits(std::uint16_t bits) noexcept {
    bfloat16 value;
    value.bits_ = bits;
    return value;
  }
  [[nodiscard]] constexpr std::uint16_t bits() const noexcept { return bits_; }

  // IEEE comparison (NaN unequal to everything, -0 == +0); use bits() for identity.
  friend constexpr bool operator==(bfloat16 a, bfloat16 b) noexcept {
    return static_cast<float>(a) == static_cast<float>(b);
  }

 private:
  // bfloat16 is the top half of a binary32, so rounding is an integer add on
  // the discarded half; written without branches so loops over it vectorise.
  static constexpr std::uint16_t from_float(float value) noexcept {
    const auto u = std::bit_cast<std::uint32_t>(value);
    const bool is_nan = (u & 0x7fff'ffffu) > 0x7f80'0000u;
    const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const std::uint32_t quiet_nan = (u >> 16) | 0x0040u;
    return static_cast<std::uint16_t>(is_nan ? quiet_nan : rounded);
  }

  std::uint16_t bits_ = 0;
};

class half {
 public:
  half() = default;
  constexpr explicit half(float value) noexcept : bits_(from_float(value)) {}
  constexpr explicit operator float() const noexcept { return to_float(bits_); }

  static constexpr half from_bits(std::uint16_t bits) noexcept {
    half value;
    value.bits_ = bits;
    return value;
  }
  [[nodiscard]] constexpr std::uint16_t bits() const noexcept { return bits_; }

  friend constexpr bool operator==(half a, half b) noexcept { return static_cast<float>(a) == static_cast<float>(b); }

 private:
  static constexpr std::uint32_t float_bias_minus_half_bias = 127 - 15;

  static constexpr std::uint16_t from_float(float value) noexcept {
    const auto u = std::bit_cast<std::uint32_t>(value);
    const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
    const std::uint32_t magnitude = u & 0x7fff'ffffu;
    std::uint32_t out = 0;
    if (magnitude > 0x7f80'0000u) {  // NaN
      out = 0x7e00u | ((magnitude >> 13) & 0x03ffu);
    } else if (magnitude >= 0x477f'f000u) {  // >= 65520 rounds to infinity
      out = 0x7c00u;
    } else if (magnitude >= 0x3880'0000u) {  // normal in binary16 (>= 2^-14)
      const std::uint32_t rebiased = magnitude - (float_bias_minus_half_bias << 23);
      out = (rebiased + 0x0fffu + ((rebiased >> 13) & 1u)) >> 13;
    } else {
      // Subnormal or zero: adding 0.5f puts the value in units of 2^-24 (the
      // binary16 subnormal step) into the low mantissa bits, and the FPU does
      // the round-to-nearest-even. A carry to 0x400 is the smallest normal.
      const float shifted = std::bit_cast<float>(magnitude) + 0.5f;
      out = std::bit_cast<std::uint32_t>(shifted) - std::bit_cast<std::uint32_t>(0.5f);
    }
    return static_cast<std::uint16_t>(sign | out);
  }

  static constexpr float to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1fu;
    const std::uint32_t mantissa = h & 0x03ffu;
    if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f80'0000u | (mantissa << 13));
    if (exponent != 0) {
      return std::bit_cast<float>(sign | ((exponent + float_bias_minus_half_bias) << 23) | (mantissa << 13));
    }
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;  // exact
    return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(magnitude));
  }

  std::uint16_t bits_ = 0;
};

// The element type of a buffer as it travels in message headers and selects
// byte-level kernels.
enum class dtype : std::uint8_t {
  int8,
  uint8,
  int16,
  uint16,
  int32,
  uint32,
  int64,
  uint64,
  float16,
  bfloat16,
  float32,
  float64,
};

inline constexpr std::size_t dtype_count = 12;

constexpr std::size_t size_of(dtype type) noexcept {
  switch (type) {
    case dtype::int8:
    case dtype::uint8: return 1;
    case dtype::int16:
    case dtype::uint16:
    case dtype::float16:
    case dtype::bfloat16: return 2;
    case dtype::int32:
    case dtype::uint32:
    case dtype::float32: return 4;
    case dtype::int64:
    case dtype::uint64:
    case dtype::float64: return 8;
  }
  return 0;
}

constexpr bool is_floating(dtype type) noexcept {
  return type == dtype::float16 || type == dtype::bfloat16 || type == dtype::float32 || type == dtype::float64;
}

constexpr std::string_view to_string(dtype type) noexcept {
  constexpr std::string_view names[] = {"int8",  "uint8",  "int16",   "uint16",   "int32",   "uint32",
                                        "int64", "uint64", "float16", "bfloat16", "float32", "float64"};
  const auto index = static_cast<std::size_t>(type);
  return index < dtype_count ? names[index] : "unknown";
}

namespace detail {

template <class T>
constexpr dtype integral_dtype() noexcept {
  constexpr bool is_signed = std::is_signed_v<T>;
  if constexpr (sizeof(T) == 1) return is_signed ? dtype::int8 : dtype::uint8;
  if constexpr (sizeof(T) == 2) return is_signed ? dtype::int16 : dtype::uint16;
  if constexpr (sizeof(T) == 4) return is_signed ? dtype::int32 : dtype::uint32;
  if constexpr (sizeof(T) == 8) return is_signed ? dtype::int64 : dtype::uint64;
}

}  // namespace detail

// Maps a C++ type to its dtype. Every integer type of 1 to 8 bytes except bool
// (so both long and long long map to int64 on LP64), float, double, half and
// bfloat16 are elements.
template <class T>
struct dtype_traits {};

template <std::integral T>
requires(!std::same_as<T, bool> && sizeof(T) <= 8) struct dtype_traits<T> {
  static constexpr dtype value = detail::integral_dtype<T>();
};
template <>
struct dtype_traits<float> {
  static constexpr dtype value = dtype::float32;
};
template <>
struct dtype_traits<double> {
  static constexpr dtype value = dtype::float64;
};
template <>
struct dtype_traits<half> {
  static constexpr dtype value = dtype::float16;
};
template <>
struct dtype_traits<bfloat16> {
  static constexpr dtype value = dtype::bfloat16;
};

template <class T>
concept element = requires {
  dtype_traits<std::remove_cv_t<T>>::value;
};

template <element T>
inline constexpr dtype dtype_of = dtype_traits<std::remove_cv_t<T>>::value;

// Floating elements include the 16-bit types, which std::floating_point does not.
template <class T>
concept floating_element = element<T> && is_floating(dtype_of<T>);

template <class T>
concept integral_element = element<T> && !is_floating(dtype_of<T>);

}  // namespace tutti
