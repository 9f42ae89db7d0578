// A FIFO of pending operations that allocates only when it grows past its
// largest size so far: posting and completing messages in steady state
// allocates nothing.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

namespace tutti::detail::shm {

template <class T>
class op_queue {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  explicit op_queue(std::size_t capacity = 64) : items_(round_up(capacity)) {}

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
    std::vector<T> bigger(items_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = (*this)[i];
    items_ = std::move(bigger);
    first_ = 0;
  }

  std::vector<T> items_;
  std::size_t first_ = 0;
  std::size_t size_ = 0;
};

}  // namespace tutti::detail::shm
