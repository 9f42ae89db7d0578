// What a verbs transport shares with its peer channels: the device and its
// resources, the settings, the store, and the lists through which channels
// ask to be visited. A part of its own so that the channel classes, which
// live apart from the transport, reach all of it through one reference,
// with no virtual call and no more indirection than a member of the
// transport would have.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <tutti/bootstrap/store.hpp>
#include <tutti/detail/env.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/transport/verbs/device.hpp>
#include <tutti/transport/verbs/loader.hpp>
#include <tutti/transport/verbs/memory.hpp>
#include <tutti/transport/verbs/resources.hpp>
#include <tutti/transport/verbs/settings.hpp>

namespace tutti::detail::verbs {

class peer_channel;

struct transport_state {
  // `prefer`: the device open_port tries first.
  transport_state(const transport::context& ctx, const env_lookup& env, const std::function<std::string()>& prefer)
      : rank(ctx.rank),
        timeout(ctx.config.timeout),
        store(ctx.scoped_store),
        settings(verbs::settings::from(env)),
        device(open_port(env, prefer)),
        f(&libibverbs().functions) {}

  int rank;
  std::chrono::milliseconds timeout;
  std::shared_ptr<tutti::store> store;
  verbs::settings settings;
  opened_device device;
  const api* f;
  std::optional<verbs::resources> resources;
  std::unique_ptr<registration_cache> registrations;
  // The channel of each queue pair, to route receive completions by.
  std::unordered_map<std::uint32_t, peer_channel*> qp_owners;
  // Channels whose queue pair is not connected yet: progress polls the store for them.
  std::vector<peer_channel*> connecting;
  // Channels with work to do: progress pumps them.
  std::vector<peer_channel*> busy;
  // Signalled sends not yet polled, kept under cq_depth so that the send CQ
  // cannot overrun.
  std::size_t send_cq_used = 0;

  void mark_busy(peer_channel& c) {
    if (std::find(busy.begin(), busy.end(), &c) == busy.end()) busy.push_back(&c);
  }
};

}  // namespace tutti::detail::verbs
