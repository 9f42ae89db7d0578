// The key-value store that ranks use to find each other before any channel
// exists. Keys are strings; values are byte strings (std::string holds any
// bytes). Counters written by add() are decimal strings, so get() reads them.
//
// Blocking calls take a timeout and throw tutti::error(timeout) naming the
// keys still missing; a store that cannot be reached throws transport or
// remote_failure. Every implementation is safe to call from several threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/error.hpp>

namespace tutti {

class store {
 public:
  using timeout_type = std::chrono::milliseconds;

  virtual ~store() = default;

  virtual void set(std::string_view key, std::string_view value) = 0;

  // Waits until `key` exists, then returns its value.
  virtual std::string get(std::string_view key, timeout_type timeout) = 0;

  // Waits until every key exists and returns their values in order: the one
  // round trip a rank needs to read all address cards.
  virtual std::vector<std::string> multi_get(std::span<const std::string> keys, timeout_type timeout) = 0;

  // Adds delta to the counter at key (a missing key counts as 0) and returns
  // the new value, atomically with respect to every other client.
  virtual std::int64_t add(std::string_view key, std::int64_t delta) = 0;

  // If the key's value equals `expected` (a missing key equals the empty
  // string), sets it to `desired`. Returns the value after the operation,
  // so the caller won exactly when the result equals `desired`.
  virtual std::string compare_set(std::string_view key, std::string_view expected, std::string_view desired) = 0;

  // Waits until every key exists.
  virtual void wait(std::span<const std::string> keys, timeout_type timeout) = 0;

  // Whether each key exists now, without waiting.
  virtual std::vector<bool> contains(std::span<const std::string> keys) = 0;

  // Removes the key; returns whether it existed.
  virtual bool erase(std::string_view key) = 0;
};

namespace detail {

// The timeout every store reports: which keys are still missing (the first
// few; at thousands of ranks the full list is noise) and how long it waited.
[[noreturn]] inline void fail_store_timeout(std::span<const std::string> missing, store::timeout_type timeout) {
  constexpr std::size_t shown = 10;
  std::string list;
  for (std::size_t i = 0; i < missing.size() && i < shown; ++i)
    list.append(i == 0 ? "'" : ", '").append(missing[i]) += '\'';
  if (missing.size() > shown) list += concat(" and ", missing.size() - shown, " more");
  fail(errc::timeout, "store: waited ", static_cast<double>(timeout.count()) / 1000.0, " s for ", list);
}

}  // namespace detail

// A view of another store in which every key is prefixed, so that
// sub-communicators (split, dup) and separate jobs share a store without
// their keys colliding.
class prefix_store final : public store {
 public:
  prefix_store(std::shared_ptr<store> base, std::string prefix) : base_(std::move(base)), prefix_(std::move(prefix)) {}

  void set(std::string_view key, std::string_view value) override { base_->set(full(key), value); }
  std::string get(std::string_view key, timeout_type timeout) override { return base_->get(full(key), timeout); }
  std::vector<std::string> multi_get(std::span<const std::string> keys, timeout_type timeout) override {
    return base_->multi_get(full(keys), timeout);
  }
  std::int64_t add(std::string_view key, std::int64_t delta) override { return base_->add(full(key), delta); }
  std::string compare_set(std::string_view key, std::string_view expected, std::string_view desired) override {
    return base_->compare_set(full(key), expected, desired);
  }
  void wait(std::span<const std::string> keys, timeout_type timeout) override { base_->wait(full(keys), timeout); }
  std::vector<bool> contains(std::span<const std::string> keys) override { return base_->contains(full(keys)); }
  bool erase(std::string_view key) override { return base_->erase(full(key)); }

  [[nodiscard]] const std::string& prefix() const noexcept { return prefix_; }

 private:
  [[nodiscard]] std::string full(std::string_view key) const {
    std::string out;
    out.reserve(prefix_.size() + key.size());
    out.append(prefix_).append(key);
    return out;
  }
  [[nodiscard]] std::vector<std::string> full(std::span<const std::string> keys) const {
    std::vector<std::string> out;
    out.reserve(keys.size());
    for (const auto& key : keys) out.push_back(full(key));
    return out;
  }

  std::shared_ptr<store> base_;
  std::string prefix_;
};

}  // namespace tutti
