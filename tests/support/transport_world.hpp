// Opens one transport for rank `rank` of `size` without a communicator:
// publishes its endpoint in an address card, runs the rendezvous on the
// given store, and attaches it to every other rank. For transport tests:
// by type (a transport's own suite) or by descriptor (the suites every
// transport of the list runs).
#pragma once

#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/rendezvous.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/options.hpp>
#include <tutti/transport/descriptor.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/version.hpp>

namespace tutti::test {

inline transport::context transport_context(std::shared_ptr<store> scoped, int rank, int size, const options& config) {
  transport::context ctx;
  ctx.rank = rank;
  ctx.size = size;
  ctx.config = config;
  ctx.scoped_store = std::move(scoped);
  return ctx;
}

// Publishes `opened`'s endpoint, meets the other ranks and attaches to all.
template <class Transport>
std::unique_ptr<Transport> attach_to_all(std::unique_ptr<Transport> opened, store& scoped, int rank, int size,
                                         const options& config) {
  address_card mine = address_card::local(rank, size);
  mine.endpoints.emplace_back(std::string(opened->name()), opened->endpoint());
  const auto cards = detail::rendezvous(scoped, mine, config.timeout);
  std::vector<int> peers;
  for (int r = 0; r < size; ++r) {
    if (r != rank) peers.push_back(r);
  }
  opened->attach(cards, peers);
  return opened;
}

template <class Transport>
std::unique_ptr<Transport> open_transport(std::shared_ptr<store> shared, int rank, int size, options config = {}) {
  auto scoped = std::make_shared<prefix_store>(std::move(shared), "transport-test/");
  auto opened = std::make_unique<Transport>(transport_context(scoped, rank, size, config));
  return attach_to_all(std::move(opened), *scoped, rank, size, config);
}

inline std::unique_ptr<transport::transport> open_transport(const transport::descriptor& d,
                                                            std::shared_ptr<store> shared, int rank, int size,
                                                            options config = {}) {
  auto scoped = std::make_shared<prefix_store>(std::move(shared), "transport-test/");
  auto opened = d.open(transport_context(scoped, rank, size, config));
  return attach_to_all(std::move(opened), *scoped, rank, size, config);
}

}  // namespace tutti::test
