// The buffers a program asked a communicator to keep registered
// (communicator::register_memory): counted, so that registering a buffer
// twice needs two unregistrations, and handed to every transport (those
// that register no memory ignore it: transport::register_memory).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <span>

#include <tutti/error.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::runtime {

class registered_memory {
 public:
  void add(std::span<const std::unique_ptr<transport::transport>> transports, const void* data, std::size_t bytes) {
    if (bytes == 0) return;
    if (data == nullptr) {
      tutti::detail::fail(errc::invalid_argument, "register_memory: null buffer of ", bytes, " bytes");
    }
    auto& held = buffers_[data];
    if (held.uses > 0 && held.bytes != bytes) {
      tutti::detail::fail(errc::invalid_argument, "register_memory: the buffer at ", data, " is registered with ",
                          held.bytes, " bytes, not ", bytes);
    }
    if (held.uses++ > 0) return;
    held.bytes = bytes;
    for (const auto& t : transports) t->register_memory(data, bytes);
  }

  void remove(std::span<const std::unique_ptr<transport::transport>> transports, const void* data, std::size_t bytes) {
    if (bytes == 0) return;
    const auto found = buffers_.find(data);
    if (found == buffers_.end()) {
      tutti::detail::fail(errc::invalid_argument, "unregister_memory: the buffer at ", data, " (", bytes,
                          " bytes) is not registered");
    }
    if (--found->second.uses > 0) return;
    buffers_.erase(found);
    for (const auto& t : transports) t->unregister_memory(data);
  }

 private:
  struct holding {
    std::size_t bytes = 0;
    int uses = 0;
  };
  std::map<const void*, holding> buffers_;
};

}  // namespace tutti::runtime
