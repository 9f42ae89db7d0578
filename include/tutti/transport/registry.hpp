// The transport list: every transport tutti can use, by its descriptor
// (descriptor.hpp). The communicator opens, routes and prices transports
// only through this list; the tools and the generic test suites enumerate
// it. Adding a transport is a folder transport/<name>/ with its
// descriptor.hpp, and one line here.
//
// Test builds (TUTTI_TEST_TRANSPORTS) also list the transports that exist to
// test the others: faulty, which injects delays and failures. Define it for
// a whole program or not at all: the list is one inline variable, and two
// translation units that disagree on it break the one-definition rule.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/algorithm/cost_model.hpp>
#include <tutti/bootstrap/memory_store.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/descriptor.hpp>
#include <tutti/transport/inproc/descriptor.hpp>
#include <tutti/transport/shm/descriptor.hpp>
#include <tutti/transport/tcp/descriptor.hpp>
#include <tutti/transport/verbs/descriptor.hpp>
#ifdef TUTTI_TEST_TRANSPORTS
#include <tutti/transport/faulty/descriptor.hpp>
#endif

namespace tutti::transport {

inline constexpr std::array descriptors{
    inproc_descriptor, shm_descriptor, tcp_descriptor, verbs_descriptor,
#ifdef TUTTI_TEST_TRANSPORTS
    faulty_descriptor,
#endif
};

// The descriptor named `name`, or null.
inline const descriptor* find_descriptor(std::string_view name) noexcept {
  for (const auto& d : descriptors) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

// "auto, inproc, shm, ...": what options::transport may name.
inline std::string transport_choices() {
  std::string out = "auto";
  for (const auto& d : descriptors) out += tutti::detail::concat(", ", d.name);
  return out;
}

// The descriptor `name`; fails naming the choices. `what` says where the
// name came from.
inline const descriptor& descriptor_named(std::string_view name, std::string_view what) {
  if (const descriptor* found = find_descriptor(name)) return *found;
  tutti::detail::fail(errc::invalid_argument, "transport '", name, "' (", what, ") is not one of ",
                      transport_choices());
}

// Every transport's link figures by name: the classes TUTTI_COST_MODEL's
// `link` key may name.
inline std::vector<algorithm::named_link> link_classes() {
  std::vector<algorithm::named_link> out;
  for (const auto& d : descriptors) out.push_back({d.name, d.link});
  return out;
}

// The cost model's defaults over the links of transport `name`: its link
// figures, the other constants the model's own defaults.
inline algorithm::cost_model cost_model_for(std::string_view name) {
  algorithm::cost_model model;
  model.link = descriptor_named(name, "cost model link class").link;
  return model;
}

// Why transport `d` cannot open on this machine (an RDMA transport without
// a device), or empty when it opens: it opens as rank 0 of a world of one.
// Failing otherwise, or failing where its descriptor does not allow it, is
// an error and thrown.
inline std::string unavailable_here(const descriptor& d) {
  context ctx;
  ctx.scoped_store = std::make_shared<memory_store>();
  try {
    (void)d.open(ctx);
    return {};
  } catch (const error& e) {
    if (e.code() != errc::unavailable || !d.may_be_unavailable) throw;
    return e.message();
  }
}

}  // namespace tutti::transport
