// half and bfloat16 conversions against references derived from the value
// lattice of each format (computed in double with ldexp), not from the bit
// manipulation the library uses.
#include <tutti/types.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

struct format {
  int mantissa_bits;
  int exponent_bits;
  [[nodiscard]] int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  [[nodiscard]] std::uint32_t exponent_mask() const { return (1u << exponent_bits) - 1; }
};

constexpr format binary16{10, 5};
constexpr format bfloat16_format{7, 8};

bool is_nan_bits(format f, std::uint16_t bits) {
  const std::uint32_t exponent = (static_cast<std::uint32_t>(bits) >> f.mantissa_bits) & f.exponent_mask();
  const std::uint32_t mantissa = bits & ((1u << f.mantissa_bits) - 1);
  return exponent == f.exponent_mask() && mantissa != 0;
}

// The value a bit pattern encodes, by the textbook formula.
double decode(format f, std::uint16_t bits) {
  const bool negative = (bits >> 15) != 0;
  const int exponent = static_cast<int>((static_cast<std::uint32_t>(bits) >> f.mantissa_bits) & f.exponent_mask());
  const int mantissa = static_cast<int>(bits & ((1u << f.mantissa_bits) - 1));
  double magnitude = 0;
  if (exponent == static_cast<int>(f.exponent_mask())) {
    magnitude = mantissa == 0 ? INFINITY : NAN;
  } else if (exponent == 0) {
    magnitude = std::ldexp(mantissa, 1 - f.bias() - f.mantissa_bits);
  } else {
    magnitude = std::ldexp((1 << f.mantissa_bits) + mantissa, exponent - f.bias() - f.mantissa_bits);
  }
  return negative ? -magnitude : magnitude;
}

// Nearest representable value, ties to the even pattern, found by searching
// the sorted list of every non-negative finite value of the format. The value
// one step past the largest finite one stands for infinity (IEEE rounding).
class nearest {
 public:
  explicit nearest(format f) : format_(f) {
    for (std::uint32_t bits = 0; bits < 0x8000; ++bits) {
      const double v = decode(f, static_cast<std::uint16_t>(bits));
      if (std::isfinite(v)) values_.push_back(v);
    }
    const double max_finite = values_.back();
    const double step = max_finite - values_[values_.size() - 2];
    overflow_ = max_finite + step;  // what the next pattern would encode
  }

  [[nodiscard]] std::uint16_t round(float x) const {
    const double magnitude = std::fabs(static_cast<double>(x));
    const auto sign = static_cast<std::uint16_t>(std::signbit(x) ? 0x8000 : 0);
    const auto infinity = static_cast<std::uint16_t>(format_.exponent_mask() << format_.mantissa_bits);
    if (magnitude >= overflow_) return static_cast<std::uint16_t>(sign | infinity);
    const auto upper = std::lower_bound(values_.begin(), values_.end(), magnitude);
    if (upper == values_.end()) {  // between max finite and overflow threshold
      const double below = values_.back();
      const double gap_below = magnitude - below;
      const double gap_above = overflow_ - magnitude;
      const auto max_bits = static_cast<std::uint16_t>(values_.size() - 1);
      if (gap_below < gap_above) return static_cast<std::uint16_t>(sign | max_bits);
      if (gap_above < gap_below) return static_cast<std::uint16_t>(sign | infinity);
      return static_cast<std::uint16_t>(sign | ((max_bits & 1) == 0 ? max_bits : infinity));
    }
    const auto hi = static_cast<std::uint16_t>(upper - values_.begin());
    if (*upper == magnitude || hi == 0) return static_cast<std::uint16_t>(sign | hi);
    const auto lo = static_cast<std::uint16_t>(hi - 1);
    const double gap_lo = magnitude - values_[lo];
    const double gap_hi = *upper - magnitude;
    if (gap_lo < gap_hi) return static_cast<std::uint16_t>(sign | lo);
    if (gap_hi < gap_lo) return static_cast<std::uint16_t>(sign | hi);
    return static_cast<std::uint16_t>(sign | ((lo & 1) == 0 ? lo : hi));
  }

 private:
  format format_;
  std::vector<double> values_;
  double overflow_ = 0;
};

template <class T>
std::uint16_t to_bits(float x) {
  return T(x).bits();
}

template <class T>
void check_all_patterns(format f) {
  const nearest reference(f);
  for (std::uint32_t pattern = 0; pattern <= 0xffff; ++pattern) {
    const auto bits = static_cast<std::uint16_t>(pattern);
    const float widened = static_cast<float>(T::from_bits(bits));
    const double expected = decode(f, bits);
    INFO("pattern 0x" << std::hex << pattern);

    if (is_nan_bits(f, bits)) {
      REQUIRE(std::isnan(widened));
      REQUIRE(std::signbit(widened) == ((bits >> 15) != 0));
      // Narrowing a NaN keeps sign and leading payload and sets the quiet bit.
      const std::uint16_t quiet_bit = static_cast<std::uint16_t>(1u << (f.mantissa_bits - 1));
      REQUIRE(to_bits<T>(widened) == (bits | quiet_bit));
      continue;
    }
    // Widening is exact, including infinities, subnormals and signed zero.
    REQUIRE(static_cast<double>(widened) == expected);
    REQUIRE(std::signbit(widened) == std::signbit(expected));
    REQUIRE(to_bits<T>(widened) == bits);
    REQUIRE(reference.round(widened) == bits);

    // Between this value and the next one up in magnitude: the exact midpoint
    // (a tie) and the floats on either side of it.
    const bool is_infinity = std::isinf(expected);
    const bool is_largest_magnitude = (bits & 0x7fff) == 0x7fff;
    if (is_infinity || is_largest_magnitude) continue;
    const auto next = static_cast<std::uint16_t>(bits + 1);
    const double next_value = decode(f, next);
    if (std::isinf(next_value)) continue;  // the overflow side is covered below
    const auto midpoint = static_cast<float>((expected + next_value) / 2);
    REQUIRE(static_cast<double>(midpoint) == (expected + next_value) / 2);  // exact in float
    REQUIRE(to_bits<T>(midpoint) == reference.round(midpoint));
    REQUIRE(to_bits<T>(midpoint) == ((bits & 1) == 0 ? bits : next));
    const float toward_zero = std::nextafter(midpoint, 0.0f);
    const float away = std::nextafter(midpoint, midpoint * 2);
    REQUIRE(to_bits<T>(toward_zero) == bits);
    REQUIRE(to_bits<T>(away) == next);
  }
}

template <class T>
void check_random_floats(format f) {
  const nearest reference(f);
  std::mt19937 rng(20261128);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  for (int i = 0; i < (1 << 20); ++i) {
    const auto x = std::bit_cast<float>(any_bits(rng));
    if (std::isnan(x)) {
      REQUIRE(is_nan_bits(f, to_bits<T>(x)));
      continue;
    }
    INFO("float bits 0x" << std::hex << std::bit_cast<std::uint32_t>(x));
    REQUIRE(to_bits<T>(x) == reference.round(x));
  }
}

}  // namespace

TEST_CASE("half - all 65536 patterns widen exactly and round-trip and their neighbours round to nearest even",
          "[types][half]") {
  check_all_patterns<tutti::half>(binary16);
}

TEST_CASE("bfloat16 - all 65536 patterns widen exactly and round-trip and their neighbours round to nearest even",
          "[types][bfloat16]") {
  check_all_patterns<tutti::bfloat16>(bfloat16_format);
}

TEST_CASE("half - random floats round like the reference", "[types][half]") {
  check_random_floats<tutti::half>(binary16);
}

TEST_CASE("bfloat16 - random floats round like the reference", "[types][bfloat16]") {
  check_random_floats<tutti::bfloat16>(bfloat16_format);
}

TEST_CASE("overflow and underflow boundaries", "[types]") {
  CHECK(tutti::half(65504.0f).bits() == 0x7bff);
  CHECK(tutti::half(65519.99f).bits() == 0x7bff);
  CHECK(tutti::half(65520.0f).bits() == 0x7c00);  // tie rounds to even: infinity
  CHECK(tutti::half(-1e10f).bits() == 0xfc00);
  CHECK(tutti::half(0x1p-25f).bits() == 0x0000);  // tie between 0 and 2^-24: even is 0
  CHECK(tutti::half(std::nextafter(0x1p-25f, 1.0f)).bits() == 0x0001);
  CHECK(tutti::half(-0.0f).bits() == 0x8000);
  CHECK(tutti::bfloat16(3.4028235e38f).bits() == 0x7f80);  // FLT_MAX rounds up to infinity
  CHECK(tutti::bfloat16(-0.0f).bits() == 0x8000);
  CHECK(tutti::bfloat16(1e-45f).bits() == 0x0000);  // smallest float subnormal
}

TEST_CASE("conversions are usable in constant expressions", "[types]") {
  static_assert(tutti::half(1.0f).bits() == 0x3c00);
  static_assert(tutti::bfloat16(1.0f).bits() == 0x3f80);
  static_assert(static_cast<float>(tutti::half::from_bits(0x0001)) == 0x1p-24f);
  SUCCEED();
}

TEST_CASE("dtype traits", "[types]") {
  using tutti::dtype;
  STATIC_REQUIRE(tutti::dtype_of<std::int8_t> == dtype::int8);
  STATIC_REQUIRE(tutti::dtype_of<unsigned char> == dtype::uint8);
  STATIC_REQUIRE(tutti::dtype_of<long> == dtype::int64);
  STATIC_REQUIRE(tutti::dtype_of<long long> == dtype::int64);
  STATIC_REQUIRE(tutti::dtype_of<const std::uint32_t> == dtype::uint32);
  STATIC_REQUIRE(tutti::dtype_of<tutti::half> == dtype::float16);
  STATIC_REQUIRE(tutti::dtype_of<tutti::bfloat16> == dtype::bfloat16);
  STATIC_REQUIRE(tutti::dtype_of<double> == dtype::float64);
  STATIC_REQUIRE(!tutti::element<bool>);
  STATIC_REQUIRE(!tutti::element<long double>);
  STATIC_REQUIRE(!tutti::element<void*>);
  STATIC_REQUIRE(tutti::floating_element<tutti::half>);
  STATIC_REQUIRE(tutti::integral_element<std::uint16_t>);
  for (std::size_t i = 0; i < tutti::dtype_count; ++i) {
    const auto type = static_cast<dtype>(i);
    CHECK(tutti::to_string(type) != "unknown");
    CHECK(tutti::size_of(type) > 0);
  }
  CHECK(tutti::size_of(dtype::bfloat16) == 2);
  CHECK(tutti::to_string(dtype::float16) == "float16");
}
