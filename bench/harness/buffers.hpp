// A rank's input and output buffers for the collective benchmarks, the
// check patterns written into them and the count of wrong elements after an
// operation. Shared by every library's runner, so they check the same thing.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <string_view>
#include <vector>

#include "cases.hpp"

namespace tutti::bench {

// Large buffers on 2 MiB boundaries and advised to be backed by huge pages,
// as frameworks' host allocators do for large tensors: the kernel walks a
// peer's page tables once per 2 MiB instead of per 4 KiB when it copies
// between processes (cross-memory attach), and the TLB covers more.
template <class T>
struct huge_page_allocator {
  using value_type = T;
  static constexpr std::size_t huge_page = std::size_t{2} << 20;

  huge_page_allocator() = default;
  template <class U>
  explicit huge_page_allocator(const huge_page_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    const std::size_t bytes = (n * sizeof(T) + huge_page - 1) / huge_page * huge_page;
    void* p = std::aligned_alloc(huge_page, bytes);
    if (p == nullptr) throw std::bad_alloc();
    ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: without THP it is a no-op
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }

  template <class U>
  friend bool operator==(const huge_page_allocator&, const huge_page_allocator<U>&) noexcept {
    return true;
  }
};

template <class T>
struct buffers {
  std::vector<T, huge_page_allocator<T>> in;
  std::vector<T, huge_page_allocator<T>> out;

  // Room for the largest case, touched now so that no page fault lands in
  // a timed operation.
  void reserve(std::size_t elements) {
    if (in.size() < elements) in.assign(elements, T(1.0F));
    if (out.size() < elements) out.assign(elements, T(1.0F));
  }

  // The check patterns for `op` on `rank`; outputs get a value no result has.
  void fill(operation op, std::string_view redop, int rank, const geometry& g) {
    for (std::size_t i = 0; i < g.in; ++i) in[i] = value(input_value(op, redop, rank, i));
    for (std::size_t i = 0; i < g.out; ++i) out[i] = value(-1);
    if (op == operation::broadcast && rank == 0) {
      for (std::size_t i = 0; i < g.out; ++i) out[i] = value(input_value(op, redop, 0, i));
    }
  }

  // Elements of this rank's result that differ from what `op` must give.
  [[nodiscard]] long long wrong(operation op, std::string_view redop, int rank, int ranks, const geometry& g) const {
    long long bad = 0;
    auto expect = [&](std::size_t i, int v) { bad += static_cast<float>(out[i]) != static_cast<float>(v) ? 1 : 0; };
    switch (op) {
      case operation::all_reduce:
        for (std::size_t i = 0; i < g.out; ++i) expect(i, reduced_value(redop, ranks, i));
        break;
      case operation::reduce:
        if (rank == 0) {
          for (std::size_t i = 0; i < g.out; ++i) expect(i, reduced_value(redop, ranks, i));
        }
        break;
      case operation::reduce_scatter:
        for (std::size_t j = 0; j < g.out; ++j) {
          expect(j, reduced_value(redop, ranks, static_cast<std::size_t>(rank) * g.block + j));
        }
        break;
      case operation::broadcast:
        for (std::size_t i = 0; i < g.out; ++i) expect(i, input_value(op, redop, 0, i));
        break;
      case operation::all_gather:
        for (std::size_t i = 0; i < g.out; ++i) {
          expect(i, input_value(op, redop, static_cast<int>(i / g.block), i % g.block));
        }
        break;
      case operation::all_to_all:
        // Block s came from rank s, which sent its block number `rank`.
        for (std::size_t i = 0; i < g.out; ++i) {
          const std::size_t s = i / g.block;
          expect(i,
                 input_value(op, redop, static_cast<int>(s), static_cast<std::size_t>(rank) * g.block + i % g.block));
        }
        break;
      case operation::send_recv:
        // Rank 1 receives rank 0's input and sends it back.
        if (rank < 2) {
          for (std::size_t i = 0; i < g.out; ++i) expect(i, input_value(op, redop, 0, i));
        }
        break;
    }
    return bad;
  }

 private:
  static T value(int v) { return T(static_cast<float>(v)); }
};

}  // namespace tutti::bench
