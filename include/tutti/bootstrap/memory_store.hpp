// A store inside one process, for ranks that are threads (tests, inproc
// transport, single-process multi-GPU).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <tutti/bootstrap/store.hpp>
#include <tutti/error.hpp>

namespace tutti {

class memory_store final : public store {
 public:
  void set(std::string_view key, std::string_view value) override {
    {
      const std::scoped_lock lock(mutex_);
      values_.insert_or_assign(std::string(key), std::string(value));
    }
    changed_.notify_all();
  }

  std::string get(std::string_view key, timeout_type timeout) override {
    const std::string keys[] = {std::string(key)};
    return std::move(multi_get(keys, timeout).front());
  }

  std::vector<std::string> multi_get(std::span<const std::string> keys, timeout_type timeout) override {
    std::unique_lock lock(mutex_);
    wait_locked(lock, keys, timeout);
    std::vector<std::string> out;
    out.reserve(keys.size());
    for (const auto& key : keys) out.push_back(values_.at(key));
    return out;
  }

  std::int64_t add(std::string_view key, std::int64_t delta) override {
    std::int64_t value = 0;
    {
      const std::scoped_lock lock(mutex_);
      auto& text = values_[std::string(key)];
      value = detail::add_to_counter(key, text, delta);
      text = std::to_string(value);
    }
    changed_.notify_all();
    return value;
  }

  std::string compare_set(std::string_view key, std::string_view expected, std::string_view desired) override {
    std::string result;
    {
      const std::scoped_lock lock(mutex_);
      const auto found = values_.find(std::string(key));
      const std::string_view current = found == values_.end() ? std::string_view{} : found->second;
      if (current != expected) return std::string(current);
      values_.insert_or_assign(std::string(key), std::string(desired));
      result = desired;
    }
    changed_.notify_all();
    return result;
  }

  void wait(std::span<const std::string> keys, timeout_type timeout) override {
    std::unique_lock lock(mutex_);
    wait_locked(lock, keys, timeout);
  }

  std::vector<bool> contains(std::span<const std::string> keys) override {
    const std::scoped_lock lock(mutex_);
    std::vector<bool> out;
    out.reserve(keys.size());
    for (const auto& key : keys) out.push_back(values_.contains(key));
    return out;
  }

  bool erase(std::string_view key) override {
    const std::scoped_lock lock(mutex_);
    return values_.erase(std::string(key)) != 0;
  }

 private:
  void wait_locked(std::unique_lock<std::mutex>& lock, std::span<const std::string> keys, timeout_type timeout) {
    auto all_present = [&] {
      for (const auto& key : keys) {
        if (!values_.contains(key)) return false;
      }
      return true;
    };
    if (changed_.wait_for(lock, timeout, all_present)) return;
    std::vector<std::string> missing;
    for (const auto& key : keys) {
      if (!values_.contains(key)) missing.push_back(key);
    }
    detail::fail_store_timeout("memory_store", missing, keys.size(), timeout);
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::unordered_map<std::string, std::string> values_;
};

}  // namespace tutti
