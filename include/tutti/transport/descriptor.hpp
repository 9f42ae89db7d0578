// What a transport declares about itself, in one place: the folder of each
// transport (transport/<name>/descriptor.hpp) holds one of these, and the
// list of them (transport/registry.hpp) is all that the communicator, the
// options, the cost model, the tools and the generic test suites know of
// transports.
#pragma once

#include <memory>
#include <string_view>

#include <tutti/algorithm/cost_model.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::transport {

// The farthest peer a transport can carry messages to.
enum class reach {
  process,  // threads of this process
  host,     // processes on this host
  network,  // any host
};

// What a transport can do beyond ordered two-sided channels.
struct capabilities {
  // register_memory keeps a buffer registered with a device, so that large
  // transfers from and into it skip registration.
  bool registers_memory = false;
  // A peer can put into and get from registered memory without a matching
  // call of its own.
  bool one_sided = false;
  // The memory kinds its channels can read and write.
  bool host_memory = true;
  bool cuda_memory = false;
};

struct descriptor {
  // As users type it (TUTTI_TRANSPORT, options::transport), and the name of
  // its entry in an address card.
  std::string_view name;
  reach reaches = reach::network;
  // How `auto` picks: per peer, the open transport of the highest
  // preference that reaches it and that the peer published an endpoint
  // for. 0: never picked by auto, only when named.
  int auto_preference = 0;
  // Carries each rank's channel to itself, so it is open whatever transport
  // is named (one transport only: inproc).
  bool serves_self = false;
  // Under auto, failing to open with errc::unavailable means the machine
  // lacks what it needs (an RDMA port), and auto does without it; when it is
  // named, that is an error.
  bool may_be_unavailable = false;
  // Builds the transport before rendezvous; its endpoint goes into the
  // rank's address card.
  std::unique_ptr<transport> (*open)(const context&) = nullptr;
  // The default figures of its links for the cost model, until calibration
  // measures them.
  algorithm::link_cost link{};
  capabilities can{};
  std::string_view summary;  // one line, for tutti-info and the README
};

// What a descriptor's `open` is for a transport constructed from its
// context: open_as<tcp_transport>.
template <class Transport>
std::unique_ptr<transport> open_as(const context& ctx) {
  return std::make_unique<Transport>(ctx);
}

}  // namespace tutti::transport
