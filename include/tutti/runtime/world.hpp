// A world: the ranks that formed one communicator on a store, as this rank
// sees them. Forming it is collective: every rank claims its rank, counts
// the generation (ranks make communicators on a store in the same order,
// so the count names this one alike everywhere), opens its transports,
// publishes their endpoints in its address card, runs the rendezvous
// (bootstrap/rendezvous.hpp), builds the cluster view from the cards and
// routes each peer over one transport. Transports are known only through
// their descriptors (transport/registry.hpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/launcher.hpp>
#include <tutti/bootstrap/rendezvous.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/bootstrap/tcp_store.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>
#include <tutti/options.hpp>
#include <tutti/runtime/executor.hpp>
#include <tutti/topology/cluster.hpp>
#include <tutti/topology/discover.hpp>
#include <tutti/transport/registry.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/transport/wait.hpp>

namespace tutti::runtime {

class world {
 public:
  world(const options& config, std::shared_ptr<store> shared, int rank, int size) : rank_(rank), size_(size) {
    if (!shared) tutti::detail::fail(errc::invalid_argument, "communicator: the store is null");
    if (size < 1) tutti::detail::fail(errc::invalid_argument, "communicator: world size ", size, " is not positive");
    if (rank < 0 || rank >= size) {
      tutti::detail::fail(errc::invalid_argument, "communicator: rank ", rank, " is outside [0, ", size, ")");
    }
    if (config.transport != "auto") transport::descriptor_named(config.transport, "TUTTI_TRANSPORT or options");
    address_card mine = address_card::local(rank, size);
    claim_rank(*shared, mine);
    const auto generation = shared->add(tutti::detail::concat("tutti/generation/", rank), 1);
    scoped_store_ = std::make_shared<prefix_store>(shared, tutti::detail::concat("tutti/", generation, "/"));
    open_transports(config, mine);
    try {
      cards_ = tutti::detail::rendezvous(*scoped_store_, mine, config.timeout);
    } catch (const error& e) {
      // A stall may have a cause another rank found (a duplicate rank).
      if (e.code() == errc::timeout && shared->contains(fault_key()).front()) {
        tutti::detail::raise_fault(shared->get(fault_key().front(), config.timeout));
      }
      throw;
    }
    std::vector<topology::rank_location> where;
    where.reserve(cards_.size());
    for (const auto& card : cards_) where.push_back({card.host_id, card.rail});
    cluster_ = std::make_shared<const topology::cluster>(where);
    local_rank_ = cluster_->local_rank(rank);
    local_size_ = static_cast<int>(cluster_->ranks_on(cluster_->host_of(rank)).size());
    transport::note_local_ranks(local_size_);
    route_peers(config.transport);
    link_class_ = derive_link_class(config.transport);
    // Transports may use the store while attaching; a store hosted by rank 0
    // must outlive that, so rank 0 returns only once every rank is done.
    if (scoped_store_->add("constructed", 1) == size) scoped_store_->set("all_constructed", "");
    if (rank == 0) scoped_store_->get("all_constructed", config.timeout);
  }

  world(const world&) = delete;
  world& operator=(const world&) = delete;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  [[nodiscard]] int local_rank() const noexcept { return local_rank_; }
  [[nodiscard]] int local_size() const noexcept { return local_size_; }
  [[nodiscard]] const std::shared_ptr<store>& scoped_store() const noexcept { return scoped_store_; }
  [[nodiscard]] std::span<const address_card> cards() const noexcept { return cards_; }
  [[nodiscard]] const std::shared_ptr<const topology::cluster>& cluster() const noexcept { return cluster_; }
  [[nodiscard]] std::span<const route> routes() const noexcept { return route_table_; }
  [[nodiscard]] std::span<const std::unique_ptr<transport::transport>> transports() const noexcept {
    return transports_;
  }
  // The descriptor of each of transports(), in the same order.
  [[nodiscard]] std::span<const transport::descriptor* const> descriptors() const noexcept { return descriptors_; }
  [[nodiscard]] transport::transport& transport_to(int peer) const {
    return *route_table_[static_cast<std::size_t>(peer)].via;
  }
  // The transport whose links the cost model describes: the slowest that
  // any pair of ranks uses, derived alike on every rank from the cards.
  [[nodiscard]] const std::string& link_class() const noexcept { return link_class_; }
  [[nodiscard]] bool one_host() const noexcept { return cluster_->host_count() == 1; }

  // Keeps a rank 0's store up as long as this world (and those split from it).
  void host_store(std::shared_ptr<tcp_store_server> server) { server_ = std::move(server); }
  [[nodiscard]] const std::shared_ptr<tcp_store_server>& hosted_store() const noexcept { return server_; }

 private:
  static std::span<const std::string> fault_key() {
    static const std::string key[] = {"tutti/fault"};
    return key;
  }

  // A rank belongs to the first process that claims it on this store, for
  // every communicator made there: a second process given the same rank
  // (a launcher misconfiguration) fails at once and leaves a fault that the
  // others report when their rendezvous stalls. Generations are counted per
  // rank, so without this claim a duplicate would silently form a world of
  // its own.
  static void claim_rank(store& shared, const address_card& mine) {
    const std::string identity = tutti::detail::concat(mine.host_id, ' ', mine.pid);
    const std::string key = tutti::detail::concat("tutti/owner/", mine.rank);
    const std::string owner = shared.compare_set(key, "", identity);
    if (owner == identity) return;
    const std::string message = tutti::detail::concat(
        "communicator: rank ", mine.rank, " was given to two processes: pid ", owner.substr(owner.rfind(' ') + 1),
        " on ", owner.substr(0, owner.rfind(' ')), " and ", mine.describe(), " on ", mine.host_id);
    shared.compare_set(fault_key().front(), "", tutti::detail::encode_fault(errc::invalid_argument, message));
    tutti::detail::fail(errc::invalid_argument, message);
  }

  // What the launcher says this rank's index on its host is; -1 when no
  // launcher says (an explicitly built world).
  static int launcher_local_rank() {
    try {
      return detect_launch().local_rank;
    } catch (const error&) {
      return -1;
    }
  }

  // The rail of the RDMA device a transport uses between hosts, from the
  // host's topology (rails are its RDMA NICs in PCI order): -1 when hwloc
  // does not see the device (soft-RoCE), and the cluster view then takes
  // the local rank. Only ranks with an RDMA device pay for the discovery.
  static int rail_of_device(const std::string& device) {
    try {
      const topology::machine& host = topology::this_machine();
      for (std::size_t i = 0; i < host.nics.size(); ++i) {
        if (host.nics[i].name == device) return topology::rail_of(host, static_cast<int>(i));
      }
    } catch (const error& e) {
      tutti::detail::log(tutti::detail::log_level::warn, "no rail for ", device, ": ", e.message());
    }
    return -1;
  }

  // Opens, before rendezvous, the transports this rank may use: under auto
  // every one auto may pick, else the named one; and the one that carries
  // each rank's channel to itself. Their endpoints go into its card.
  void open_transports(const options& config, address_card& mine) {
    transport::context ctx;
    ctx.rank = rank_;
    ctx.size = size_;
    ctx.local_rank_hint = launcher_local_rank();
    ctx.config = config;
    ctx.scoped_store = scoped_store_;
    const bool automatic = config.transport == "auto";
    for (const auto& d : transport::descriptors) {
      const bool named = d.name == config.transport;
      if (!named && !d.serves_self && !(automatic && d.auto_preference > 0)) continue;
      try {
        transports_.push_back(d.open(ctx));
        descriptors_.push_back(&d);
      } catch (const error& e) {
        if (named || !d.may_be_unavailable || e.code() != errc::unavailable) throw;
        tutti::detail::log(tutti::detail::log_level::info, "rank ", rank_, ": no ", d.name, " (", e.message(),
                           "); auto does without it");
        continue;
      }
      const std::string nic = transports_.back()->nic();
      if (!nic.empty() && mine.rail < 0) mine.rail = rail_of_device(nic);
    }
    for (const auto& t : transports_) mine.endpoints.emplace_back(std::string(t->name()), t->endpoint());
  }

  // How far apart two ranks are, from their cards.
  static transport::reach distance(const address_card& a, const address_card& b) noexcept {
    if (a.host_id != b.host_id) return transport::reach::network;
    return a.pid == b.pid ? transport::reach::process : transport::reach::host;
  }

  // Whether the transport of `d` can carry messages to `them`: near enough,
  // and they published an endpoint for it.
  static bool reaches(const transport::descriptor& d, transport::reach far, const address_card& them) noexcept {
    return far <= d.reaches && them.endpoint_of(d.name) != nullptr;
  }

  // The transport for each peer: the named one, or the open one of the
  // highest auto preference that reaches it; this rank's own channel goes
  // over the transport that serves self. Then every transport attaches to
  // the peers it serves.
  void route_peers(const std::string& named) {
    const address_card& me = cards_[static_cast<std::size_t>(rank_)];
    std::vector<std::vector<int>> served(transports_.size());
    route_table_.resize(static_cast<std::size_t>(size_));
    for (int peer = 0; peer < size_; ++peer) {
      const address_card& them = cards_[static_cast<std::size_t>(peer)];
      const auto far = distance(me, them);
      std::size_t chosen = transports_.size();
      for (std::size_t i = 0; i < transports_.size(); ++i) {
        const auto& d = *descriptors_[i];
        const bool candidate = peer == rank_     ? d.serves_self
                               : named == "auto" ? d.auto_preference > 0
                                                 : d.name == named;
        if (!candidate || !reaches(d, far, them)) continue;
        if (chosen == transports_.size() || d.auto_preference > descriptors_[chosen]->auto_preference) chosen = i;
      }
      if (chosen == transports_.size()) {
        tutti::detail::fail(errc::unavailable, "communicator: transport ", named, " cannot reach rank ", peer, " (",
                            them.describe(), ") from rank ", rank_, " (", me.describe(), ")");
      }
      route_table_[static_cast<std::size_t>(peer)].via = transports_[chosen].get();
      served[chosen].push_back(peer);
    }
    for (std::size_t i = 0; i < transports_.size(); ++i) transports_[i]->attach(cards_, served[i]);
    for (int peer = 0; peer < size_; ++peer) {
      auto& r = route_table_[static_cast<std::size_t>(peer)];
      r.channel = &r.via->to(peer);
      if (tutti::detail::log_enabled(tutti::detail::log_level::debug)) {
        tutti::detail::log(tutti::detail::log_level::debug, "rank ", rank_, " reaches rank ", peer, " over ",
                           r.via->name());
      }
    }
  }

  // The named transport, or the one auto would pick for the farthest pair
  // of ranks: among those auto may pick that reach that far, the most
  // preferred that every rank published an endpoint for.
  [[nodiscard]] std::string derive_link_class(const std::string& named) const {
    if (named != "auto") return named;
    const address_card& first = cards_.front();
    auto far = transport::reach::process;
    for (const auto& card : cards_) far = std::max(far, distance(first, card));
    const transport::descriptor* best = nullptr;
    for (const auto& d : transport::descriptors) {
      if (d.auto_preference == 0 || d.reaches < far) continue;
      const bool everywhere = std::all_of(
          cards_.begin(), cards_.end(), [&](const address_card& card) { return card.endpoint_of(d.name) != nullptr; });
      if (everywhere && (best == nullptr || d.auto_preference > best->auto_preference)) best = &d;
    }
    if (best == nullptr) tutti::detail::fail(errc::internal, "communicator: no transport reaches every rank");
    return std::string(best->name);
  }

  // First, so that it is destroyed last: after this rank's own client.
  // Shared with the worlds split from this one.
  std::shared_ptr<tcp_store_server> server_;
  int rank_ = 0;
  int size_ = 0;
  int local_rank_ = 0;
  int local_size_ = 0;
  std::shared_ptr<store> scoped_store_;
  std::vector<address_card> cards_;
  std::shared_ptr<const topology::cluster> cluster_;
  std::vector<std::unique_ptr<transport::transport>> transports_;
  std::vector<const transport::descriptor*> descriptors_;  // of transports_
  std::vector<route> route_table_;                         // per peer
  std::string link_class_;
};

}  // namespace tutti::runtime
