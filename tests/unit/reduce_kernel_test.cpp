#include <tutti/runtime/reduce_kernel.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

namespace {

template <class T>
T random_value(std::mt19937_64& rng) {
  if constexpr (tutti::integral_element<T>) {
    return static_cast<T>(rng());
  } else {
    // Mostly ordinary values, some specials, so NaN handling is exercised.
    std::uniform_real_distribution<float> dist(-100.0f, 100.0f);
    const auto pick = rng() % 64;
    if (pick == 0) return T(std::numeric_limits<float>::quiet_NaN());
    if (pick == 1) return T(-0.0f);
    if (pick == 2) return T(std::numeric_limits<float>::infinity());
    return T(dist(rng));
  }
}

template <class T>
std::vector<T> random_values(std::size_t count, std::mt19937_64& rng) {
  std::vector<T> out(count);
  for (auto& v : out) v = random_value<T>(rng);
  return out;
}

// Runs `reduce` (dst, lhs, src, count, op) at misaligned starts and compares
// bit for bit with a scalar loop: element-wise kernels do not reassociate,
// so results must be identical. With Separate, lhs is its own buffer (dst =
// op(lhs, src)); without, lhs is dst (dst = op(dst, src)).
template <bool Separate, class T, class Op, class Reduce>
void check_against_scalar(Op op, Reduce reduce) {
  std::mt19937_64 rng(7);
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 257; ++n) lengths.push_back(n);
  lengths.push_back((std::size_t{1} << 16) + 3);  // many blocks plus a tail
  for (const std::size_t n : lengths) {
    for (const std::size_t dst_offset : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
      const std::size_t src_offset = (dst_offset + 1) % 4;
      const std::size_t lhs_offset = (dst_offset + 2) % 4;
      auto dst_storage = random_values<T>(n + 4, rng);
      const auto src_storage = random_values<T>(n + 4, rng);
      const auto lhs_storage = random_values<T>(n + 4, rng);
      T* dst = dst_storage.data() + dst_offset;
      const T* lhs = Separate ? lhs_storage.data() + lhs_offset : dst;
      const T* src = src_storage.data() + src_offset;
      auto expected = dst_storage;
      for (std::size_t i = 0; i < n; ++i) expected[dst_offset + i] = T(op(lhs[i], src[i]));
      reduce(dst, lhs, src, n, op);
      INFO("length " << n << ", dst offset " << dst_offset << ", src offset " << src_offset << ", separate lhs "
                     << Separate);
      REQUIRE(std::memcmp(dst_storage.data(), expected.data(), dst_storage.size() * sizeof(T)) == 0);
    }
  }
}

template <bool Separate, class T, class Op>
void check_form(Op op) {
  SECTION("dispatched") { check_against_scalar<Separate, T>(op, &tutti::detail::reduce_dispatch<T, Op>); }
  SECTION("baseline") { check_against_scalar<Separate, T>(op, &tutti::detail::reduce_baseline<Separate, T, Op>); }
#if TUTTI_DETAIL_X86_DISPATCH
  if (tutti::detail::cpu_has_avx2()) {
    SECTION("avx2") { check_against_scalar<Separate, T>(op, &tutti::detail::reduce_avx2<Separate, T, Op>); }
  }
#endif
  SECTION("type-erased") {
    check_against_scalar<Separate, T>(op, [](T* d, const T* l, const T* s, std::size_t n, const Op& o) {
      tutti::detail::reduction::make<T>(o)(d, l, s, n * sizeof(T));
    });
  }
}

template <class T, class Op>
void check_every_path(Op op) {
  SECTION("dst = op(dst, src)") { check_form<false, T>(op); }
  SECTION("dst = op(lhs, src)") { check_form<true, T>(op); }
  SECTION("reduce_into") {
    check_against_scalar<false, T>(op, [](T* d, const T*, const T* s, std::size_t n, const Op& o) {
      tutti::reduce_into(std::span<T>(d, n), std::span<const T>(s, n), o);
    });
  }
}

}  // namespace

TEMPLATE_TEST_CASE("kernels match a scalar loop for every op", "[reduce]", std::int8_t, std::uint8_t, std::int16_t,
                   std::uint16_t, std::int32_t, std::uint32_t, std::int64_t, std::uint64_t, float, double, tutti::half,
                   tutti::bfloat16) {
  using T = TestType;
  SECTION("sum") { check_every_path<T>(tutti::sum{}); }
  SECTION("prod") { check_every_path<T>(tutti::prod{}); }
  SECTION("min") { check_every_path<T>(tutti::min{}); }
  SECTION("max") { check_every_path<T>(tutti::max{}); }
  if constexpr (tutti::integral_element<T>) {
    SECTION("band") { check_every_path<T>(tutti::band{}); }
    SECTION("bor") { check_every_path<T>(tutti::bor{}); }
    SECTION("bxor") { check_every_path<T>(tutti::bxor{}); }
  }
}

TEST_CASE("kernels run user-defined ops with state", "[reduce]") {
  const double weight = 0.25;
  check_every_path<double>([weight](double a, double b) { return a + weight * b; });
}

TEST_CASE("identical ranges reduce in place", "[reduce]") {
  std::vector<int> v{1, 2, 3, 4, 5};
  tutti::reduce_into(std::span<int>(v), std::span<const int>(v));
  CHECK(v == std::vector<int>{2, 4, 6, 8, 10});
}

TEST_CASE("the result may be either operand's very range", "[reduce]") {
  const auto sum = tutti::detail::reduction::make<int>(tutti::sum{});
  std::vector<int> a{1, 2, 3};
  const std::vector<int> b{10, 20, 30};
  std::vector<int> result(3);
  sum(result.data(), a.data(), b.data(), 3 * sizeof(int));
  CHECK(result == std::vector<int>{11, 22, 33});
  sum(a.data(), b.data(), a.data(), 3 * sizeof(int));  // a = b + a
  CHECK(a == std::vector<int>{11, 22, 33});
}

TEST_CASE("bad input is rejected before any element changes", "[reduce]") {
  std::vector<float> dst(10, 1.0f);
  const std::vector<float> src(12, 2.0f);
  const auto untouched = dst;

  SECTION("different lengths name both lengths") {
    CHECK_THROWS_MATCHES(tutti::reduce_into(std::span<float>(dst), std::span<const float>(src)), tutti::error,
                         Catch::Matchers::Predicate<tutti::error>(
                             [](const tutti::error& e) {
                               return e.code() == tutti::errc::invalid_argument &&
                                      e.message().find("10 elements") != std::string::npos &&
                                      e.message().find("12") != std::string::npos;
                             },
                             "invalid_argument naming 10 and 12"));
  }
  SECTION("partially overlapping ranges") {
    std::vector<float> buffer(16, 1.0f);
    const auto before = buffer;
    CHECK_THROWS_MATCHES(
        tutti::reduce_into(std::span<float>(buffer.data(), 8), std::span<const float>(buffer.data() + 4, 8)),
        tutti::error, Catch::Matchers::Message([&] {
          std::ostringstream m;
          m << "tutti: invalid_argument: reduce: destination [" << static_cast<const void*>(buffer.data())
            << ", +32) and source [" << static_cast<const void*>(buffer.data() + 4)
            << ", +32) partially overlap; they must be identical or disjoint";
          return m.str();
        }()));
    CHECK(buffer == before);
  }
  SECTION("a left operand partially overlapping the result") {
    const auto sum = tutti::detail::reduction::make<float>(tutti::sum{});
    std::vector<float> buffer(16, 1.0f);
    CHECK_THROWS_WITH(sum(buffer.data(), buffer.data() + 2, src.data(), 8 * sizeof(float)),
                      Catch::Matchers::Contains("partially overlap"));
  }
  SECTION("byte counts that split an element") {
    const auto sum = tutti::detail::reduction::make<float>(tutti::sum{});
    CHECK_THROWS_WITH(sum(dst.data(), src.data(), 6),
                      "tutti: invalid_argument: reduce: 6 bytes is not a whole number of float32 elements");
  }
  CHECK(dst == untouched);
}
