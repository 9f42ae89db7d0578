// Run-time CPU feature checks for kernels compiled for several instruction
// sets: a header-only library cannot assume the flags its users compile with.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TUTTI_DETAIL_X86_DISPATCH 1
#else
#define TUTTI_DETAIL_X86_DISPATCH 0
#endif

namespace tutti::detail {

inline bool cpu_has_avx2() noexcept {
#if TUTTI_DETAIL_X86_DISPATCH
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

}  // namespace tutti::detail
