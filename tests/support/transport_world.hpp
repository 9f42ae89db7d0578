// Opens one transport for rank `rank` of `size` without a communicator:
// publishes its endpoint in an address card, runs the rendezvous on the
// given store, and attaches it to every other rank. For transport tests.
#pragma once

#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/rendezvous.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/options.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/version.hpp>

namespace tutti::test {

template <class Transport>
std::unique_ptr<Transport> open_transport(std::shared_ptr<store> shared, int rank, int size, options config = {}) {
  auto scoped = std::make_shared<prefix_store>(std::move(shared), "transport-test/");
  transport::context ctx;
  ctx.rank = rank;
  ctx.size = size;
  ctx.config = config;
  ctx.scoped_store = scoped;
  auto opened = std::make_unique<Transport>(ctx);

  address_card mine = address_card::local(rank, size);
  mine.endpoints.emplace_back(std::string(opened->name()), opened->endpoint());
  const auto cards = detail::rendezvous(*scoped, mine, config.timeout);

  std::vector<int> peers;
  for (int r = 0; r < size; ++r) {
    if (r != rank) peers.push_back(r);
  }
  opened->attach(cards, peers);
  return opened;
}

}  // namespace tutti::test
