// Reduction operations as function objects, and the concept a user-defined
// one satisfies. Every op here is commutative and associative (up to floating
// point rounding), so collectives may combine contributions in any order.
//
// Semantics a user can rely on:
// - Integer sum and prod wrap modulo 2^bits (computed in unsigned arithmetic,
//   so signed overflow is defined), as MPI implementations behave in practice.
// - half and bfloat16 are combined in float and rounded back to nearest-even
//   after every step.
// - min and max on floating types propagate NaN (if either input is NaN the
//   result is a NaN), and order -0 below +0, so the result does not depend on
//   the order in which ranks are combined.
// - avg combines like sum; the collective divides the total by the number of
//   contributions at the end (finalize). Floating types divide in their
//   compute type (float for half/bfloat16). Integers divide truncating toward
//   zero, after a sum that wraps like sum does: average small integer types in
//   a wider type.
// - band, bor, bxor are defined for integer elements only.
#pragma once

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <tutti/types.hpp>

namespace tutti {

// The built-in ops by name, as they travel in message headers. Ops written by
// users are `custom`.
enum class op_kind : std::uint8_t { sum, prod, min, max, avg, band, bor, bxor, custom };

constexpr std::string_view to_string(op_kind kind) noexcept {
  constexpr std::string_view names[] = {"sum", "prod", "min", "max", "avg", "band", "bor", "bxor", "custom"};
  const auto index = static_cast<std::size_t>(kind);
  return index < std::size(names) ? names[index] : "unknown";
}

namespace detail {

// half and bfloat16 compute in float; everything else in itself.
template <class T>
using compute_t = std::conditional_t<std::same_as<T, half> || std::same_as<T, bfloat16>, float, T>;

// Applies f to the values in their compute type and rounds back to T.
template <class T, class F>
constexpr T through_compute(T a, T b, F f) noexcept {
  using C = compute_t<T>;
  return T(f(static_cast<C>(a), static_cast<C>(b)));
}

// Integer arithmetic modulo 2^bits without signed overflow or integer
// promotion surprises (uint16 * uint16 would otherwise overflow int).
template <std::integral T, class F>
constexpr T wrapping(T a, T b, F f) noexcept {
  using wide = std::common_type_t<std::make_unsigned_t<T>, unsigned>;
  return static_cast<T>(f(static_cast<wide>(a), static_cast<wide>(b)));
}

template <std::floating_point F>
constexpr bool sign_bit(F value) noexcept {
  using bits = std::conditional_t<sizeof(F) == 4, std::uint32_t, std::uint64_t>;
  return (std::bit_cast<bits>(value) >> (sizeof(F) * 8 - 1)) != 0;
}

// min/max with NaN propagation and -0 < +0; `lower` selects min or max.
// Written as selects rather than branches so loops over it vectorise.
template <bool lower, std::floating_point F>
constexpr F ordered_pick(F a, F b) noexcept {
  const bool a_nan = a != a;
  const bool b_nan = b != b;
  const bool a_first = lower ? (a < b || (a == b && sign_bit(a))) : (a > b || (a == b && !sign_bit(a)));
  return (a_nan || (!b_nan && a_first)) ? a : b;
}

}  // namespace detail

struct sum {
  static constexpr op_kind kind = op_kind::sum;
  template <element T>
  constexpr T operator()(T a, T b) const noexcept {
    if constexpr (integral_element<T>) {
      return detail::wrapping(a, b, [](auto x, auto y) { return x + y; });
    } else {
      return detail::through_compute(a, b, [](auto x, auto y) { return x + y; });
    }
  }
};

struct prod {
  static constexpr op_kind kind = op_kind::prod;
  template <element T>
  constexpr T operator()(T a, T b) const noexcept {
    if constexpr (integral_element<T>) {
      return detail::wrapping(a, b, [](auto x, auto y) { return x * y; });
    } else {
      return detail::through_compute(a, b, [](auto x, auto y) { return x * y; });
    }
  }
};

struct min {
  static constexpr op_kind kind = op_kind::min;
  template <element T>
  constexpr T operator()(T a, T b) const noexcept {
    if constexpr (integral_element<T>) {
      return b < a ? b : a;
    } else {
      return detail::through_compute(a, b, [](auto x, auto y) { return detail::ordered_pick<true>(x, y); });
    }
  }
};

struct max {
  static constexpr op_kind kind = op_kind::max;
  template <element T>
  constexpr T operator()(T a, T b) const noexcept {
    if constexpr (integral_element<T>) {
      return a < b ? b : a;
    } else {
      return detail::through_compute(a, b, [](auto x, auto y) { return detail::ordered_pick<false>(x, y); });
    }
  }
};

struct avg {
  static constexpr op_kind kind = op_kind::avg;
  template <element T>
  constexpr T operator()(T a, T b) const noexcept {
    return sum{}(a, b);
  }
  // Turns the sum of `contributions` values into their mean.
  template <element T>
  static constexpr T finalize(T total, std::size_t contributions) noexcept {
    if constexpr (integral_element<T>) {
      using wide = std::conditional_t<std::is_signed_v<T>, std::int64_t, std::uint64_t>;
      return static_cast<T>(static_cast<wide>(total) / static_cast<wide>(contributions));
    } else {
      using C = detail::compute_t<T>;
      return T(static_cast<C>(total) / static_cast<C>(contributions));
    }
  }
};

struct band {
  static constexpr op_kind kind = op_kind::band;
  template <integral_element T>
  constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a & b);
  }
};

struct bor {
  static constexpr op_kind kind = op_kind::bor;
  template <integral_element T>
  constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a | b);
  }
};

struct bxor {
  static constexpr op_kind kind = op_kind::bxor;
  template <integral_element T>
  constexpr T operator()(T a, T b) const noexcept {
    return static_cast<T>(a ^ b);
  }
};

// A reduction op for elements of type T: a copyable callable combining two
// values into one. User-defined ops must be associative and commutative (as
// MPI_Op_create with commute=true): collectives combine in any order.
template <class Op, class T>
concept reduction_op = element<T> && std::copy_constructible<Op> && requires(const Op& op, T a, T b) {
  { op(a, b) } -> std::convertible_to<T>;
};

template <class Op>
inline constexpr op_kind op_kind_of = [] {
  if constexpr (requires { Op::kind; }) {
    return Op::kind;
  } else {
    return op_kind::custom;
  }
}();

namespace detail {

template <class Op>
inline constexpr bool is_bitwise_op =
    op_kind_of<Op> == op_kind::band || op_kind_of<Op> == op_kind::bor || op_kind_of<Op> == op_kind::bxor;

template <class Op, class T>
inline constexpr bool valid_op = element<T> && !(is_bitwise_op<Op> && floating_element<T>)&&reduction_op<Op, T>;

// Typed fronts call this, and compile their body only `if constexpr
// (valid_op<Op, T>)`, so that a wrong (op, element) pair fails with one
// sentence instead of a page of constraint diagnostics.
template <class Op, class T>
constexpr void check_op() noexcept {
  static_assert(element<T>,
                "tutti: unsupported element type; use 1-8 byte integers, float, double, "
                "tutti::half or tutti::bfloat16");
  static_assert(!(is_bitwise_op<Op> && floating_element<T>),
                "tutti: bitwise reductions (band, bor, bxor) take integer elements only");
  static_assert(is_bitwise_op<Op> || reduction_op<Op, T>,
                "tutti: a reduction op must be copyable and callable as T op(T, T)");
}

}  // namespace detail
}  // namespace tutti
