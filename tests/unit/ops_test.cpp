#include <tutti/ops.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

// Modular reference in 64-bit unsigned arithmetic, independent of the ops'
// own promotion rules.
template <class T>
T modular(std::uint64_t value) {
  return static_cast<T>(value);
}

template <class T>
std::vector<T> integer_edges() {
  using limits = std::numeric_limits<T>;
  return {limits::min(), static_cast<T>(limits::min() + 1), T(-1),        T(0), T(1), T(2), T(3),
          T(100),        static_cast<T>(limits::max() - 1), limits::max()};
}

}  // namespace

TEMPLATE_TEST_CASE("integer ops wrap and order exactly", "[ops]", std::int8_t, std::uint8_t, std::int16_t,
                   std::uint16_t, std::int32_t, std::uint32_t, std::int64_t, std::uint64_t) {
  using T = TestType;
  for (T a : integer_edges<T>()) {
    for (T b : integer_edges<T>()) {
      INFO(+a << " op " << +b);
      const auto ua = static_cast<std::uint64_t>(a);
      const auto ub = static_cast<std::uint64_t>(b);
      CHECK(tutti::sum{}(a, b) == modular<T>(ua + ub));
      CHECK(tutti::prod{}(a, b) == modular<T>(ua * ub));
      CHECK(tutti::min{}(a, b) == (a < b ? a : b));
      CHECK(tutti::max{}(a, b) == (a < b ? b : a));
      CHECK(tutti::avg{}(a, b) == tutti::sum{}(a, b));
      CHECK(tutti::band{}(a, b) == modular<T>(ua & ub));
      CHECK(tutti::bor{}(a, b) == modular<T>(ua | ub));
      CHECK(tutti::bxor{}(a, b) == modular<T>(ua ^ ub));
    }
  }
}

TEST_CASE("signed edge cases", "[ops]") {
  constexpr auto int_min = std::numeric_limits<std::int32_t>::min();
  constexpr auto int_max = std::numeric_limits<std::int32_t>::max();
  STATIC_REQUIRE(tutti::sum{}(int_min, -1) == int_max);
  STATIC_REQUIRE(tutti::prod{}(int_min, -1) == int_min);
  STATIC_REQUIRE(tutti::min{}(int_min, int_max) == int_min);
  STATIC_REQUIRE(tutti::prod{}(std::uint16_t{65535}, std::uint16_t{65535}) == 1);  // no int overflow
}

TEST_CASE("avg finalize truncates integers toward zero and divides floats", "[ops]") {
  CHECK(tutti::avg::finalize(std::int32_t{7}, 2) == 3);
  CHECK(tutti::avg::finalize(std::int32_t{-7}, 2) == -3);
  CHECK(tutti::avg::finalize(std::int8_t{-128}, 4096) == 0);  // count wider than the type
  CHECK(tutti::avg::finalize(std::uint64_t{~0ull}, 3) == 6148914691236517205ull);
  CHECK(tutti::avg::finalize(7.0f, 2) == 3.5f);
  CHECK(tutti::avg::finalize(1.0, 3) == 1.0 / 3.0);
  CHECK(tutti::avg::finalize(tutti::bfloat16(3.0f), 2).bits() == tutti::bfloat16(1.5f).bits());
  CHECK(tutti::avg::finalize(tutti::half(1.0f), 3).bits() == tutti::half(1.0f / 3.0f).bits());
}

TEMPLATE_TEST_CASE("floating min and max propagate NaN and order -0 below +0", "[ops]", float, double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const T inf = std::numeric_limits<T>::infinity();
  const std::vector<T> values{nan, -inf, T(-1.5), T(-0.0), T(0.0), T(1e-30), T(2), inf};
  for (T a : values) {
    for (T b : values) {
      for (const bool lower : {true, false}) {
        const T got = lower ? tutti::min{}(a, b) : tutti::max{}(a, b);
        const T swapped = lower ? tutti::min{}(b, a) : tutti::max{}(b, a);
        INFO(a << (lower ? " min " : " max ") << b);
        if (std::isnan(a) || std::isnan(b)) {
          CHECK(std::isnan(got));
          CHECK(std::isnan(swapped));
          continue;
        }
        // Commutative to the bit, signed zero included.
        CHECK(std::bit_cast<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(got) ==
              std::bit_cast<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(swapped));
        if (a == T(0) && b == T(0)) {
          const bool any_negative = std::signbit(a) || std::signbit(b);
          const bool any_positive = !std::signbit(a) || !std::signbit(b);
          CHECK(std::signbit(got) == (lower ? any_negative : !any_positive));
        } else {
          CHECK(got == (lower ? std::fmin(a, b) : std::fmax(a, b)));
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("floating sum and prod follow IEEE", "[ops]", float, double) {
  using T = TestType;
  const T inf = std::numeric_limits<T>::infinity();
  CHECK(tutti::sum{}(T(0.1), T(0.2)) == T(0.1) + T(0.2));
  CHECK(std::isnan(tutti::sum{}(inf, -inf)));
  CHECK(tutti::prod{}(T(-0.0), T(5)) == T(0));
  CHECK(std::signbit(tutti::prod{}(T(-0.0), T(5))));
  CHECK(std::signbit(tutti::sum{}(T(-0.0), T(-0.0))));
}

TEMPLATE_TEST_CASE("16-bit floats combine in float and round back", "[ops]", tutti::half, tutti::bfloat16) {
  using T = TestType;
  const std::vector<float> values{0.0f, -0.0f, 1.0f, -2.5f, 3.14159f, 1e-5f, 65504.0f, -1e30f, INFINITY, NAN};
  for (float fa : values) {
    for (float fb : values) {
      const T a(fa);
      const T b(fb);
      const float wa = static_cast<float>(a);
      const float wb = static_cast<float>(b);
      INFO(wa << " op " << wb);
      CHECK(tutti::sum{}(a, b).bits() == T(wa + wb).bits());
      CHECK(tutti::prod{}(a, b).bits() == T(wa * wb).bits());
      CHECK(tutti::min{}(a, b).bits() == T(tutti::min{}(wa, wb)).bits());
      CHECK(tutti::max{}(a, b).bits() == T(tutti::max{}(wa, wb)).bits());
    }
  }
}

namespace {
struct not_copyable {
  not_copyable() = default;
  not_copyable(const not_copyable&) = delete;
  int operator()(int a, int b) const { return a + b; }
};
struct returns_void {
  void operator()(int, int) const {}
};
struct saturating_add {
  std::int8_t operator()(std::int8_t a, std::int8_t b) const {
    const int total = a + b;
    return static_cast<std::int8_t>(total > 127 ? 127 : (total < -128 ? -128 : total));
  }
};
}  // namespace

TEST_CASE("the reduction_op concept", "[ops]") {
  STATIC_REQUIRE(tutti::reduction_op<tutti::sum, float>);
  STATIC_REQUIRE(tutti::reduction_op<tutti::bxor, std::uint64_t>);
  STATIC_REQUIRE(!tutti::reduction_op<tutti::bxor, float>);
  STATIC_REQUIRE(!tutti::reduction_op<tutti::band, tutti::half>);
  STATIC_REQUIRE(tutti::reduction_op<saturating_add, std::int8_t>);
  STATIC_REQUIRE(!tutti::reduction_op<not_copyable, int>);
  STATIC_REQUIRE(!tutti::reduction_op<returns_void, int>);
  auto lambda = [](double a, double b) { return a > b ? a : b; };
  STATIC_REQUIRE(tutti::reduction_op<decltype(lambda), double>);
  STATIC_REQUIRE(tutti::op_kind_of<decltype(lambda)> == tutti::op_kind::custom);
  STATIC_REQUIRE(tutti::op_kind_of<tutti::avg> == tutti::op_kind::avg);
  CHECK(tutti::to_string(tutti::op_kind::bxor) == "bxor");
  CHECK(saturating_add{}(100, 100) == 127);
}
