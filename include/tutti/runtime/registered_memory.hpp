// The buffers a program asked a communicator to keep registered
// (communicator::register_memory): counted, so that registering a buffer
// twice needs two unregistrations, and handed to the world's transports
// whose descriptors say they register memory.
#pragma once

#include <cstddef>
#include <map>

#include <tutti/error.hpp>
#include <tutti/runtime/world.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::runtime {

class registered_memory {
 public:
  void add(const world& w, const void* data, std::size_t bytes) {
    if (bytes == 0) return;
    if (data == nullptr) {
      tutti::detail::fail(errc::invalid_argument, "register_memory: null buffer of ", bytes, " bytes");
    }
    if (const auto found = buffers_.find(data); found != buffers_.end()) {
      if (found->second.bytes != bytes) {
        tutti::detail::fail(errc::invalid_argument, "register_memory: the buffer at ", data, " is registered with ",
                            found->second.bytes, " bytes, not ", bytes);
      }
      ++found->second.uses;
      return;
    }
    // Recorded only once every transport has it, so a failed registration
    // leaves nothing to undo.
    for_each_registering(w, [&](transport::transport& t) { t.register_memory(data, bytes); });
    buffers_.emplace(data, holding{bytes, 1});
  }

  void remove(const world& w, const void* data, std::size_t bytes) {
    if (bytes == 0) return;
    const auto found = buffers_.find(data);
    if (found == buffers_.end()) {
      tutti::detail::fail(errc::invalid_argument, "unregister_memory: the buffer at ", data, " (", bytes,
                          " bytes) is not registered");
    }
    if (--found->second.uses > 0) return;
    buffers_.erase(found);
    for_each_registering(w, [&](transport::transport& t) { t.unregister_memory(data); });
  }

 private:
  template <class Call>
  static void for_each_registering(const world& w, Call call) {
    for (std::size_t i = 0; i < w.transports().size(); ++i) {
      if (w.descriptors()[i]->can.registers_memory) call(*w.transports()[i]);
    }
  }

  struct holding {
    std::size_t bytes = 0;
    int uses = 0;
  };
  std::map<const void*, holding> buffers_;
};

}  // namespace tutti::runtime
