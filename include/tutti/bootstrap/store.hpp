// The key-value store that ranks use to find each other before any channel
// exists. Keys are strings; values are byte strings (std::string holds any
// bytes). Counters written by add() are decimal strings, so get() reads them.
//
// Blocking calls take a timeout and throw tutti::error(timeout) naming the
// keys still missing; a store that cannot be reached throws transport or
// remote_failure. Every implementation is safe to call from several threads.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
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

// A key or value as it can be shown in a message: quoted, with non-printable
// bytes as \xNN, cut after `max_bytes`.
inline std::string printable(std::string_view bytes, std::size_t max_bytes = 200) {
  constexpr const char* hex = "0123456789ABCDEF";
  std::string out = "\"";
  for (const char ch : bytes.substr(0, max_bytes)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.append({'\\', ch});
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      out.append({'\\', 'x', hex[c >> 4U], hex[c & 15U]});
    }
  }
  out += bytes.size() > max_bytes ? "\"..." : "\"";
  return out;
}

// The timeout every store reports: which keys are still missing (the first
// few; at thousands of ranks the full list is noise) and how long it waited.
// `where` names the store.
[[noreturn]] inline void fail_store_timeout(std::string_view where, std::span<const std::string> missing,
                                            std::size_t total, store::timeout_type timeout) {
  constexpr std::size_t shown = 10;
  std::string list;
  for (std::size_t i = 0; i < missing.size() && i < shown; ++i) list += (i == 0 ? "" : ", ") + printable(missing[i]);
  if (missing.size() > shown) list += concat(" and ", missing.size() - shown, " more");
  fail(errc::timeout, where, ": waited ", std::chrono::duration<double>(timeout).count(), " s for ", missing.size(),
       " of ", total, " keys: ", list);
}

// add() for every store: the current value (empty when the key is missing)
// plus delta, with the value checked to be a counter and the sum to fit.
inline std::int64_t add_to_counter(std::string_view key, std::string_view current, std::int64_t delta) {
  std::int64_t value = 0;
  if (!current.empty()) {
    const auto* end = current.data() + current.size();
    const auto [stop, status] = std::from_chars(current.data(), end, value);
    if (status != std::errc{} || stop != end) {
      fail(errc::invalid_argument, "store: add(", printable(key), "): value ", printable(current, 40),
           " is not a decimal integer");
    }
  }
  std::int64_t sum = 0;
  if (__builtin_add_overflow(value, delta, &sum)) {
    fail(errc::invalid_argument, "store: add(", printable(key), ", ", delta, ") overflows ", value);
  }
  return sum;
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
