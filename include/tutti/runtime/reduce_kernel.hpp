// Element-wise reduction kernels: dst[i] = op(dst[i], src[i]).
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

template <class T, class Op>
[[gnu::always_inline]] inline void reduce_loop(T* __restrict dst, const T* __restrict src, std::size_t count,
                                               const Op& op) {
  // Four cache lines per block: enough to fill AVX2 registers several times
  // over, few enough that the scalar tail stays short.
  constexpr std::size_t block = 256 / sizeof(T);
  std::size_t i = 0;
  for (; i + block <= count; i += block) {
    for (std::size_t j = 0; j < block; ++j) dst[i + j] = T(op(dst[i + j], src[i + j]));
  }
  for (; i < count; ++i) dst[i] = T(op(dst[i], src[i]));
}

template <class T, class Op>
void reduce_baseline(T* __restrict dst, const T* __restrict src, std::size_t count, const Op& op) {
  reduce_loop(dst, src, count, op);
}

#if TUTTI_DETAIL_X86_DISPATCH
template <class T, class Op>
[[gnu::target("avx2")]] void reduce_avx2(T* __restrict dst, const T* __restrict src, std::size_t count, const Op& op) {
  reduce_loop(dst, src, count, op);
}
#endif

// Picks the widest instruction set this CPU has. dst and src are either the
// same range or disjoint (checked by callers).
template <class T, class Op>
void reduce_dispatch(T* dst, const T* src, std::size_t count, const Op& op) {
  if (dst == src) {
    // op(x, x) in place: the restrict-qualified loops must not see aliases.
    for (std::size_t i = 0; i < count; ++i) dst[i] = T(op(dst[i], dst[i]));
    return;
  }
#if TUTTI_DETAIL_X86_DISPATCH
  if (cpu_has_avx2()) return reduce_avx2(dst, src, count, op);
#endif
  reduce_baseline(dst, src, count, op);
}

// Rejects partially overlapping ranges; identical ranges are allowed.
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

  // dst = op(dst, src) over `bytes`, which must be a whole number of elements.
  void operator()(void* dst, const void* src, std::size_t bytes) const {
    if (bytes % element_size() != 0) {
      fail(errc::invalid_argument, "reduce: ", bytes, " bytes is not a whole number of ", to_string(type_),
           " elements");
    }
    check_reduce_ranges(dst, src, bytes);
    apply_(op_, dst, src, bytes / element_size());
  }

 private:
  using apply_fn = void (*)(const void* op, void* dst, const void* src, std::size_t count);

  reduction(dtype type, op_kind kind, apply_fn apply, const void* op) noexcept
      : type_(type), kind_(kind), apply_(apply), op_(op) {}

  template <class T, class Op>
  static void apply_typed(const void* op, void* dst, const void* src, std::size_t count) {
    reduce_dispatch(static_cast<T*>(dst), static_cast<const T*>(src), count, *static_cast<const Op*>(op));
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
    detail::reduce_dispatch(dst.data(), src.data(), dst.size(), op);
  }
}

}  // namespace tutti
