// A FIFO of pending operations over a ring that only grows: it allocates
// on its first entry and when it grows past its largest size so far, so
// posting and completing messages in steady state allocates nothing, and a
// channel that is never used (most of a large world's) holds no memory.
// The shm and tcp channels keep their sends and receives in these.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

namespace tutti::detail {

template <class T>
class op_queue {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  // `capacity`: the entries the first allocation makes room for.
  explicit op_queue(std::size_t capacity = 16) : first_capacity_(round_up(capacity)) {}

  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  // The i-th oldest entry.
  T& operator[](std::size_t i) noexcept { return items_[(first_ + i) & (items_.size() - 1)]; }
  T& front() noexcept { return items_[first_]; }
  const T& front() const noexcept { return items_[first_]; }

  void push_back(const T& item) {
    if (size_ == items_.size()) grow();
    items_[(first_ + size_) & (items_.size() - 1)] = item;
    ++size_;
  }
  void pop_front() noexcept {
    first_ = (first_ + 1) & (items_.size() - 1);
    --size_;
  }
  void clear() noexcept { first_ = size_ = 0; }

 private:
  static std::size_t round_up(std::size_t n) {
    std::size_t out = 1;
    while (out < n) out <<= 1U;
    return out;
  }
  void grow() {
    std::vector<T> bigger(items_.empty() ? first_capacity_ : items_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = (*this)[i];
    items_ = std::move(bigger);
    first_ = 0;
  }

  std::size_t first_capacity_;
  std::vector<T> items_;
  std::size_t first_ = 0;
  std::size_t size_ = 0;
};

}  // namespace tutti::detail
