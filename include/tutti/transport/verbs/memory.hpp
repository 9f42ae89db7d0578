// Registered memory for the verbs transport: an owning memory region, and
// the registration cache that rendezvous transfers use for user buffers.
//
// The cache is keyed by address range: a lookup is served by any cached
// region that covers it, and otherwise registers the page-aligned range and
// evicts least recently used regions beyond a byte budget (regions in use by
// a transfer are never evicted). Buffers given to register_memory stay until
// unregistered.
//
// Why implicit caching is off by default (TUTTI_IB_REG_CACHE=1 turns it on):
// a registration pins the pages it was made over. If a program frees a
// buffer and its allocator maps fresh pages at the same address, a cached
// registration would still point at the old pages, and an RDMA transfer
// would silently read or write the wrong memory. Without hooks into the
// allocator a library cannot see that happen, so by default a user buffer
// is registered for one transfer and released after it; the buffers a
// program keeps (weights, gradient buckets) belong in register_memory,
// which makes them zero-cost.
#pragma once

#include <infiniband/verbs.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <utility>

#include <tutti/error.hpp>
#include <tutti/transport/verbs/loader.hpp>

namespace tutti::detail::verbs {

inline constexpr int remote_access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;

// Registers [data, data + bytes) with `pd`; throws naming the range.
inline ibv_mr* register_region(const api& f, ibv_pd* pd, void* data, std::size_t bytes) {
  ibv_mr* mr = f.reg_mr(pd, data, bytes, remote_access);
  if (mr == nullptr) {
    fail(errc::transport, "verbs: ibv_reg_mr of ", bytes, " bytes at ", data, " failed: ", std::strerror(errno),
         " (is the locked-memory limit, ulimit -l, large enough?)");
  }
  return mr;
}

// An owned memory region over memory it also owns: rings and staging.
class owned_region {
 public:
  owned_region() = default;
  owned_region(const api& f, ibv_pd* pd, std::size_t bytes) : f_(&f), bytes_(bytes) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    memory_.reset(static_cast<std::byte*>(std::aligned_alloc(page, (bytes + page - 1) / page * page)));
    if (!memory_) fail(errc::transport, "verbs: cannot allocate ", bytes, " bytes");
    std::memset(memory_.get(), 0, bytes);
    mr_ = register_region(f, pd, memory_.get(), bytes);
  }
  owned_region(owned_region&& o) noexcept
      : f_(o.f_), memory_(std::move(o.memory_)), bytes_(o.bytes_), mr_(std::exchange(o.mr_, nullptr)) {}
  owned_region& operator=(owned_region&& o) noexcept {
    if (this != &o) {
      release();
      f_ = o.f_;
      memory_ = std::move(o.memory_);
      bytes_ = o.bytes_;
      mr_ = std::exchange(o.mr_, nullptr);
    }
    return *this;
  }
  ~owned_region() { release(); }

  [[nodiscard]] std::byte* data() const noexcept { return memory_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_; }
  [[nodiscard]] std::uint32_t lkey() const noexcept { return mr_->lkey; }
  [[nodiscard]] std::uint32_t rkey() const noexcept { return mr_->rkey; }

 private:
  struct free_memory {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  void release() noexcept {
    if (mr_ != nullptr) f_->dereg_mr(mr_);
    mr_ = nullptr;
  }
  const api* f_ = nullptr;
  std::unique_ptr<std::byte, free_memory> memory_;
  std::size_t bytes_ = 0;
  ibv_mr* mr_ = nullptr;
};

class registration_cache {
 public:
  // A registration in use by one transfer; give it back with release().
  struct lease {
    ibv_mr* mr = nullptr;
    std::uintptr_t key = 0;  // the cached region's start; 0: not cached, deregistered on release
  };

  registration_cache(const api& f, ibv_pd* pd, bool cache_implicit, std::size_t budget_bytes)
      : f_(&f), pd_(pd), cache_implicit_(cache_implicit), budget_(budget_bytes) {}
  registration_cache(const registration_cache&) = delete;
  registration_cache& operator=(const registration_cache&) = delete;
  ~registration_cache() {
    for (auto& [start, e] : regions_) f_->dereg_mr(e.mr);
  }

  // A registration covering [data, data + bytes).
  lease acquire(const void* data, std::size_t bytes) {
    const auto begin = reinterpret_cast<std::uintptr_t>(data);
    const auto end = begin + bytes;
    // The region starting at or before `begin` with the highest start.
    auto it = regions_.upper_bound(begin);
    if (it != regions_.begin()) {
      --it;
      if (it->first <= begin && end <= it->first + it->second.bytes) {
        touch(it);
        ++it->second.users;
        ++counts_.hits;
        return {it->second.mr, it->first};
      }
    }
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t start = begin / page * page;
    const std::uintptr_t stop = (end + page - 1) / page * page;
    ibv_mr* mr = register_region(*f_, pd_, reinterpret_cast<void*>(start), static_cast<std::size_t>(stop - start));
    ++counts_.registrations;
    auto [inserted, fresh] = regions_.try_emplace(start);
    if (!fresh) {
      // A smaller region with the same start is cached: replace it when
      // unused, else this transfer gets a registration of its own.
      if (inserted->second.users > 0 || inserted->second.pinned) return {mr, 0};
      f_->dereg_mr(inserted->second.mr);
      cached_bytes_ -= inserted->second.bytes;
      lru_.erase(inserted->second.position);
    }
    entry& e = inserted->second;
    e.mr = mr;
    e.bytes = static_cast<std::size_t>(stop - start);
    e.users = 1;
    e.pinned = false;
    lru_.push_front(start);
    e.position = lru_.begin();
    cached_bytes_ += e.bytes;
    return {mr, start};
  }

  void release(const lease& l) noexcept {
    if (l.key == 0) {
      f_->dereg_mr(l.mr);
      return;
    }
    auto it = regions_.find(l.key);
    if (it == regions_.end()) return;
    --it->second.users;
    if (it->second.users == 0 && !it->second.pinned && !cache_implicit_) {
      drop(it);
      return;
    }
    trim();
  }

  // register_memory: kept until unpin, never evicted.
  void pin(const void* data, std::size_t bytes) {
    const lease l = acquire(data, bytes);
    regions_.find(l.key)->second.pinned = true;
    release(l);
  }
  void unpin(const void* data) {
    const auto begin = reinterpret_cast<std::uintptr_t>(data);
    auto it = regions_.upper_bound(begin);
    if (it == regions_.begin()) return;
    --it;
    if (begin >= it->first + it->second.bytes) return;
    it->second.pinned = false;
    if (it->second.users == 0) drop(it);
  }

  // What the cache did so far, for tests and tuning.
  struct counts {
    std::uint64_t hits = 0;           // acquires served by a cached region
    std::uint64_t registrations = 0;  // ibv_reg_mr calls
    std::uint64_t evictions = 0;      // cached regions dropped for the budget
  };
  [[nodiscard]] counts activity() const noexcept { return counts_; }
  [[nodiscard]] std::size_t regions() const noexcept { return regions_.size(); }
  [[nodiscard]] std::size_t cached_bytes() const noexcept { return cached_bytes_; }

 private:
  struct entry {
    ibv_mr* mr = nullptr;
    std::size_t bytes = 0;
    int users = 0;
    bool pinned = false;
    std::list<std::uintptr_t>::iterator position;
  };
  using iterator = std::map<std::uintptr_t, entry>::iterator;

  void touch(iterator it) { lru_.splice(lru_.begin(), lru_, it->second.position); }

  void drop(iterator it) noexcept {
    f_->dereg_mr(it->second.mr);
    cached_bytes_ -= it->second.bytes;
    lru_.erase(it->second.position);
    regions_.erase(it);
  }

  // Evicts unused, unpinned regions, oldest first, down to the budget.
  void trim() noexcept {
    for (auto pos = lru_.end(); cached_bytes_ > budget_ && pos != lru_.begin();) {
      --pos;
      auto it = regions_.find(*pos);
      if (it->second.users > 0 || it->second.pinned) continue;
      auto next = pos;
      ++next;
      drop(it);
      ++counts_.evictions;
      pos = next;
    }
  }

  const api* f_;
  ibv_pd* pd_;
  bool cache_implicit_;
  std::size_t budget_;
  std::map<std::uintptr_t, entry> regions_;
  std::list<std::uintptr_t> lru_;  // most recently used first
  std::size_t cached_bytes_ = 0;
  counts counts_;
};

}  // namespace tutti::detail::verbs
