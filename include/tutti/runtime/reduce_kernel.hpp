// Element-wise reduction kernels: dst[i] = op(lhs[i], src[i]), where lhs is
// usually dst itself.
//
// The typed entry point, reduce_into, checks its arguments; the byte-level
// form, detail::reduction, is what the executor calls with raw chunks after
// the collective front has checked types once.
//
// Speed: the loop body is a fixed-length inner loop over a block, which GCC
// and Clang vectorise even at -O2, and the kernels are compiled twice on
// x86-64 (baseline SSE2 and AVX2) with the choice made at run time, so a
// consumer built without -march flags still reduces at memory bandwidth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <tutti/detail/cpu.hpp>
#include <tutti/error.hpp>
#include <tutti/ops.hpp>
#include <tutti/types.hpp>

namespace tutti {
namespace detail {

// dst[i] = op(lhs[i], src[i]). With Separate false, lhs is dst itself
// (the two-operand form dst = op(dst, src)) and the lhs argument is unused:
// restrict-qualified pointers must not alias, so the two forms differ only in
// where the left operand is read, not in the loop.
template <bool Separate, class T, class Op>
[[gnu::always_inline]] inline void reduce_loop(T* __restrict dst, const T* __restrict lhs, const T* __restrict src,
                                               std::size_t count, const Op& op) {
  auto left = [&](std::size_t i) -> T {
    if constexpr (Separate) {
      return lhs[i];
    } else {
      return dst[i];
    }
  };
  // Four cache lines per block: enough to fill AVX2 registers several times
  // over, few enough that the scalar tail stays short.
  constexpr std::size_t block = 256 / sizeof(T);
  std::size_t i = 0;
  for (; i + block <= count; i += block) {
    for (std::size_t j = 0; j < block; ++j) dst[i + j] = T(op(left(i + j), src[i + j]));
  }
  for (; i < count; ++i) dst[i] = T(op(left(i), src[i]));
}

template <bool Separate, class T, class Op>
void reduce_baseline(T* __restrict dst, const T* __restrict lhs, const T* __restrict src, std::size_t count,
                     const Op& op) {
  reduce_loop<Separate>(dst, lhs, src, count, op);
}

#if TUTTI_DETAIL_X86_DISPATCH
template <bool Separate, class T, class Op>
[[gnu::target("avx2")]] void reduce_avx2(T* __restrict dst, const T* __restrict lhs, const T* __restrict src,
                                         std::size_t count, const Op& op) {
  reduce_loop<Separate>(dst, lhs, src, count, op);
}
#endif

template <bool Separate, class T, class Op>
void reduce_widest(T* dst, const T* lhs, const T* src, std::size_t count, const Op& op) {
#if TUTTI_DETAIL_X86_DISPATCH
  if (cpu_has_avx2()) return reduce_avx2<Separate>(dst, lhs, src, count, op);
#endif
  reduce_baseline<Separate>(dst, lhs, src, count, op);
}

// dst = op(lhs, src) with the widest instruction set this CPU has. Each of
// lhs and src is either dst's range or disjoint from it (checked by
// callers); lhs and src, both only read, may overlap each other.
template <class T, class Op>
void reduce_dispatch(T* dst, const T* lhs, const T* src, std::size_t count, const Op& op) {
  if (dst == src) {
    // An operand aliases the result: element by element, no restrict.
    for (std::size_t i = 0; i < count; ++i) dst[i] = T(op(lhs[i], dst[i]));
    return;
  }
  if (dst == lhs) return reduce_widest<false>(dst, static_cast<const T*>(nullptr), src, count, op);
  reduce_widest<true>(dst, lhs, src, count, op);
}

// Rejects an operand that partially overlaps the result; an operand that is
// the result's very range is allowed.
inline void check_reduce_ranges(const void* dst, const void* src, std::size_t bytes) {
  const auto d = reinterpret_cast<std::uintptr_t>(dst);
  const auto s = reinterpret_cast<std::uintptr_t>(src);
  if (d != s && d < s + bytes && s < d + bytes) {
    fail(errc::invalid_argument, "reduce: destination [", dst, ", +", bytes, ") and source [", src, ", +", bytes,
         ") partially overlap; they must be identical or disjoint");
  }
}

// A type-erased reduction over raw bytes: the element type and op are fixed
// when it is made from a typed call, so the executor moves bytes only.
class reduction {
 public:
  template <element T, class Op>
  static reduction make(const Op& op) noexcept {
    check_op<Op, T>();
    if constexpr (valid_op<Op, T>) {
      return reduction(dtype_of<T>, op_kind_of<Op>, &apply_typed<T, Op>, &op);
    }
  }

  [[nodiscard]] dtype type() const noexcept { return type_; }
  [[nodiscard]] op_kind kind() const noexcept { return kind_; }
  [[nodiscard]] std::size_t element_size() const noexcept { return size_of(type_); }

  // dst = op(lhs, src) over `bytes`, which must be a whole number of
  // elements. Reducing into a separate dst saves the copy of lhs into it.
  void operator()(void* dst, const void* lhs, const void* src, std::size_t bytes) const {
    if (bytes % element_size() != 0) {
      fail(errc::invalid_argument, "reduce: ", bytes, " bytes is not a whole number of ", to_string(type_),
           " elements");
    }
    check_reduce_ranges(dst, lhs, bytes);
    check_reduce_ranges(dst, src, bytes);
    apply_(op_, dst, lhs, src, bytes / element_size());
  }

  // dst = op(dst, src).
  void operator()(void* dst, const void* src, std::size_t bytes) const { (*this)(dst, dst, src, bytes); }

 private:
  using apply_fn = void (*)(const void* op, void* dst, const void* lhs, const void* src, std::size_t count);

  reduction(dtype type, op_kind kind, apply_fn apply, const void* op) noexcept
      : type_(type), kind_(kind), apply_(apply), op_(op) {}

  template <class T, class Op>
  static void apply_typed(const void* op, void* dst, const void* lhs, const void* src, std::size_t count) {
    reduce_dispatch(static_cast<T*>(dst), static_cast<const T*>(lhs), static_cast<const T*>(src), count,
                    *static_cast<const Op*>(op));
  }

  dtype type_;
  op_kind kind_;
  apply_fn apply_;
  const void* op_;  // the caller's op, which outlives the collective using it
};

}  // namespace detail

// dst[i] = op(dst[i], src[i]) for every i. dst and src must have the same
// length and be either the same range or disjoint.
template <element T, class Op = sum>
void reduce_into(std::span<T> dst, std::span<const T> src, const Op& op = {}) {
  detail::check_op<Op, T>();
  if constexpr (detail::valid_op<Op, T>) {
    if (dst.size() != src.size()) {
      detail::fail(errc::invalid_argument, "reduce_into: destination has ", dst.size(), " elements but source has ",
                   src.size());
    }
    detail::check_reduce_ranges(dst.data(), src.data(), dst.size_bytes());
    detail::reduce_dispatch(dst.data(), dst.data(), src.data(), dst.size(), op);
  }
}

}  // namespace tutti
