// tutti::communicator: a group of ranks that found each other through a
// store. This is the embedding API; collectives are added to it by the
// collectives layer.
//
//   auto comm = tutti::communicator::from_env();       // any supported launcher
//   auto comm = tutti::communicator(store, rank, size); // explicit form
//
// Construction is collective: every rank of the world constructs its
// communicator, in the same order as its other communicators on that store.
// It costs each rank two store round trips (claim the rank, count the
// generation), the rendezvous (bootstrap/rendezvous.hpp), what the
// transports exchange while attaching (shm: a mapping barrier per host), and
// one last count that rank 0 waits on.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/registry.hpp>
#include <tutti/algorithm/select.hpp>
#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/file_store.hpp>
#include <tutti/bootstrap/launcher.hpp>
#include <tutti/bootstrap/rendezvous.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/bootstrap/tcp_store.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>
#include <tutti/ops.hpp>
#include <tutti/options.hpp>
#include <tutti/p2p.hpp>
#include <tutti/request.hpp>
#include <tutti/runtime/operation_queue.hpp>
#include <tutti/runtime/reduce_kernel.hpp>
#include <tutti/topology/cluster.hpp>
#include <tutti/topology/discover.hpp>
#include <tutti/topology/nic_choice.hpp>
#include <tutti/transport/inproc.hpp>
#include <tutti/transport/shm.hpp>
#include <tutti/transport/tcp.hpp>
#include <tutti/transport/transport.hpp>
#include <tutti/transport/verbs.hpp>
#include <tutti/transport/wait.hpp>
#include <tutti/version.hpp>

namespace tutti {

class communicator {
 public:
  // TUTTI_* variables override `config` here as in from_env.
  communicator(std::shared_ptr<store> shared, int rank, int size, options config = {})
      : communicator(config.with_env(), std::move(shared), rank, size) {}

  // Forms the world from the launcher's environment (see bootstrap/launcher.hpp
  // and the README): rank 0 hosts the TCP store when TUTTI_STORE names one.
  static communicator from_env(options config = {}) {
    config = config.with_env();
    const launch_info launch = detect_launch();
    const std::string token = detail::process_env("TUTTI_STORE_TOKEN").value_or("");
    detail::log(detail::log_level::info, "rank ", launch.rank, " of ", launch.world_size, " from ", launch.launcher,
                ", store ", launch.store);
    if (launch.store.starts_with("file://")) {
      return communicator(std::make_shared<file_store>(launch.store.substr(7)), launch.rank, launch.world_size,
                          std::move(config));
    }
    const auto where = detail::parse_tcp_url(launch.store, "TUTTI_STORE");
    std::unique_ptr<tcp_store_server> server;
    if (launch.rank == 0) {
      detail::endpoint bind = where;
      if (auto host = detail::process_env("TUTTI_STORE_BIND")) bind.host = *host;
      try {
        server = std::make_unique<tcp_store_server>(bind, token);
      } catch (const error& e) {
        detail::fail(e.code(), e.message(), " (rank 0 hosts the store: TUTTI_STORE must name an address of rank 0's",
                     " host, or TUTTI_STORE_BIND the address to listen on)");
      }
    }
    try {
      auto client = std::make_shared<tcp_store>(where, token, config.timeout);
      communicator comm(std::move(client), launch.rank, launch.world_size, std::move(config));
      comm.state_->server = std::move(server);
      return comm;
    } catch (const error&) {
      if (server) server->linger(server_linger);
      throw;
    }
  }

  [[nodiscard]] int rank() const noexcept { return state_->rank; }
  [[nodiscard]] int size() const noexcept { return state_->size; }
  // This rank's index among the ranks on its host, and their number.
  [[nodiscard]] int local_rank() const noexcept { return state_->local_rank; }
  [[nodiscard]] int local_size() const noexcept { return state_->local_size; }
  [[nodiscard]] const options& config() const noexcept { return state_->config; }

  // The cost model this communicator ranks algorithms with, and the class
  // of link it describes ("inproc", "shm", "tcp"): the slowest that any pair
  // of ranks uses. See options::calibrate and options::cost_model.
  [[nodiscard]] const algorithm::cost_model& cost_model() const noexcept { return state_->model; }
  [[nodiscard]] const std::string& link_class() const noexcept { return state_->link_class; }

  // What a call of `kind` over `count` elements of `element_size` bytes
  // (uniform counts, root 0) would run: algorithm, chunk and predicted time.
  [[nodiscard]] algorithm::selection plan(algorithm::collective kind, std::size_t count,
                                          std::size_t element_size = 1) const {
    algorithm::collective_args args;
    args.kind = kind;
    args.rank = rank();
    args.size = size();
    args.count = count;
    args.element_size = element_size;
    args.cluster = state_->cluster;
    return algorithm::choose(args, state_->forced_algorithms, state_->model);
  }
  // Which ranks share a host and the rails between hosts, as every rank
  // sees it (topology/cluster.hpp): what the hierarchical algorithms follow.
  [[nodiscard]] const topology::cluster& cluster() const noexcept { return *state_->cluster; }
  // What rank `r` published at rendezvous.
  [[nodiscard]] const address_card& card(int r) const {
    check_rank(r, "card");
    return state_->cards[static_cast<std::size_t>(r)];
  }
  [[nodiscard]] bool same_host(int r) const { return card(r).host_id == card(rank()).host_id; }

  // --- Collectives. Every rank calls the same collective with matching
  // sizes, in the same order. Arguments are checked against the collective's
  // buffer layout (algorithm/collective.hpp) before any byte moves; a wrong
  // size, root or overlap is errc::invalid_argument naming it.
  //
  // Each has an *_async form that queues it and returns a tutti::request
  // (request.hpp): operations run in issue order, the blocking form being the
  // async one waited on. Buffers must stay valid until the request is done.

  // out[i] = op over all ranks of in[i]. `in` and `out` may be the same span.
  template <element T, class Op = sum>
  void all_reduce(std::span<const T> in, std::span<T> out, const Op& op = {}) {
    execute(all_reduce_op(in, out, op));
  }
  template <element T, class Op = sum>
  void all_reduce(std::span<T> inout, const Op& op = {}) {
    execute(all_reduce_op(std::span<const T>(inout), inout, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request all_reduce_async(std::span<const T> in, std::span<T> out, const Op& op = {}) {
    return submit(all_reduce_op(in, out, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request all_reduce_async(std::span<T> inout, const Op& op = {}) {
    return submit(all_reduce_op(std::span<const T>(inout), inout, op));
  }

  // Root's out[i] = op over all ranks of in[i]; `out` matters at root only
  // (other ranks may pass an empty span).
  template <element T, class Op = sum>
  void reduce(std::span<const T> in, std::span<T> out, int root, const Op& op = {}) {
    execute(reduce_op(in, out, root, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request reduce_async(std::span<const T> in, std::span<T> out, int root, const Op& op = {}) {
    return submit(reduce_op(in, out, root, op));
  }

  // Copies root's `buffer` into every rank's `buffer`.
  template <element T>
  void broadcast(std::span<T> buffer, int root) {
    execute(broadcast_op(buffer, root));
  }
  template <element T>
  [[nodiscard]] request broadcast_async(std::span<T> buffer, int root) {
    return submit(broadcast_op(buffer, root));
  }

  // out holds every rank's `in` in rank order: out.size() == in.size() * size().
  template <element T>
  void all_gather(std::span<const T> in, std::span<T> out) {
    execute(all_gather_op(in, out));
  }
  template <element T>
  [[nodiscard]] request all_gather_async(std::span<const T> in, std::span<T> out) {
    return submit(all_gather_op(in, out));
  }

  // Like all_gather, with counts[r] elements from rank r.
  template <element T>
  void all_gather_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> counts) {
    execute(all_gather_v_op(in, out, counts));
  }
  template <element T>
  [[nodiscard]] request all_gather_v_async(std::span<const T> in, std::span<T> out,
                                           std::span<const std::size_t> counts) {
    return submit(all_gather_v_op(in, out, counts));
  }

  // Rank r's out is the reduction over all ranks of block r of `in`:
  // in.size() == out.size() * size().
  template <element T, class Op = sum>
  void reduce_scatter(std::span<const T> in, std::span<T> out, const Op& op = {}) {
    execute(reduce_scatter_op(in, out, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request reduce_scatter_async(std::span<const T> in, std::span<T> out, const Op& op = {}) {
    return submit(reduce_scatter_op(in, out, op));
  }

  // Like reduce_scatter, with block r of counts[r] elements.
  template <element T, class Op = sum>
  void reduce_scatter_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> counts,
                        const Op& op = {}) {
    execute(reduce_scatter_v_op(in, out, counts, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request reduce_scatter_v_async(std::span<const T> in, std::span<T> out,
                                               std::span<const std::size_t> counts, const Op& op = {}) {
    return submit(reduce_scatter_v_op(in, out, counts, op));
  }

  // Root's out holds every rank's `in` in rank order (out matters at root only).
  template <element T>
  void gather(std::span<const T> in, std::span<T> out, int root) {
    execute(gather_op(in, out, root));
  }
  template <element T>
  [[nodiscard]] request gather_async(std::span<const T> in, std::span<T> out, int root) {
    return submit(gather_op(in, out, root));
  }

  // Rank r's out is block r of root's `in` (in matters at root only).
  template <element T>
  void scatter(std::span<const T> in, std::span<T> out, int root) {
    execute(scatter_op(in, out, root));
  }
  template <element T>
  [[nodiscard]] request scatter_async(std::span<const T> in, std::span<T> out, int root) {
    return submit(scatter_op(in, out, root));
  }

  // Block p of `in` goes to rank p; block p of `out` comes from rank p.
  template <element T>
  void all_to_all(std::span<const T> in, std::span<T> out) {
    execute(all_to_all_op(in, out));
  }
  template <element T>
  [[nodiscard]] request all_to_all_async(std::span<const T> in, std::span<T> out) {
    return submit(all_to_all_op(in, out));
  }

  // send_counts[p] elements to rank p, recv_counts[p] from rank p, blocks in
  // rank order.
  template <element T>
  void all_to_all_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> send_counts,
                    std::span<const std::size_t> recv_counts) {
    execute(all_to_all_v_op(in, out, send_counts, recv_counts));
  }
  template <element T>
  [[nodiscard]] request all_to_all_v_async(std::span<const T> in, std::span<T> out,
                                           std::span<const std::size_t> send_counts,
                                           std::span<const std::size_t> recv_counts) {
    return submit(all_to_all_v_op(in, out, send_counts, recv_counts));
  }

  // Returns once every rank has called barrier().
  void barrier() { execute(barrier_op()); }
  [[nodiscard]] request barrier_async() { return submit(barrier_op()); }

  // --- Point to point: messages to one peer arrive in order; the receive
  // must have the size of the send.
  template <element T>
  void send(std::span<const T> buffer, int peer) {
    check_rank(peer, "send");
    run_batch({send_op(buffer, peer)}, "send");
  }
  template <element T>
  void recv(std::span<T> buffer, int peer) {
    check_rank(peer, "recv");
    run_batch({recv_op(buffer, peer)}, "recv");
  }

  // Posts every send and receive of `ops` at once (as a group between
  // ncclGroupStart and ncclGroupEnd), so pairwise exchanges complete in any
  // order of their entries. Operations to one peer keep their order.
  void exchange(std::span<const p2p_op> ops) { run_batch(ops, "exchange"); }
  void exchange(std::initializer_list<p2p_op> ops) { exchange(std::span<const p2p_op>(ops.begin(), ops.size())); }
  [[nodiscard]] request exchange_async(std::span<const p2p_op> ops) {
    runtime::validate_batch(ops, size(), "exchange");
    runtime::operation op;
    op.name = "exchange";
    op.batch.assign(ops.begin(), ops.end());
    return submit(std::move(op));
  }
  [[nodiscard]] request exchange_async(std::initializer_list<p2p_op> ops) {
    return exchange_async(std::span<const p2p_op>(ops.begin(), ops.size()));
  }

  // --- New communicators. Both are collective over this communicator and
  // finish what it has queued first. The new communicator has channels of
  // its own: its traffic never mixes with this one's, and the two may be
  // used concurrently from different threads.

  // Color for ranks that want no part in the split (MPI_UNDEFINED).
  static constexpr int no_color = -1;

  // Ranks passing the same color form a communicator, ordered by key (ties
  // by rank here). A rank passing no_color gets an empty optional.
  [[nodiscard]] std::optional<communicator> split(int color, int key) { return split(color, key, state_->config); }

  // A communicator of the same ranks in the same order.
  [[nodiscard]] communicator dup() { return *split(0, rank(), state_->config); }

  // The same with other options (MPI_Comm_dup_with_info): forced
  // algorithms, a transport, check mode. Every rank must pass the same. The
  // cost model is inherited, with config.cost_model's constants on top.
  [[nodiscard]] communicator dup(const options& config) { return *split(0, rank(), config); }

 private:
  std::optional<communicator> split(int color, int key, const options& config) {
    state& s = *state_;
    const std::int64_t mine[2] = {color, key};
    std::vector<std::int64_t> table(2 * static_cast<std::size_t>(s.size));
    all_gather(std::span<const std::int64_t>(mine), std::span<std::int64_t>(table));
    // Every rank checks every color, so a bad one fails all ranks alike.
    std::vector<std::pair<std::int64_t, int>> members;  // (key, rank) of my color
    for (int r = 0; r < s.size; ++r) {
      const auto their_color = table[2 * static_cast<std::size_t>(r)];
      if (their_color < 0 && their_color != no_color) {
        detail::fail(errc::invalid_argument, "split: rank ", r, " passed color ", their_color,
                     "; a color is >= 0, or communicator::no_color");
      }
      if (their_color == color) members.emplace_back(table[2 * static_cast<std::size_t>(r) + 1], r);
    }
    const auto id = s.splits++;
    if (color == no_color) return std::nullopt;
    std::sort(members.begin(), members.end());
    const auto me = std::find(members.begin(), members.end(), std::pair<std::int64_t, int>(key, s.rank));
    auto child_store = std::make_shared<prefix_store>(s.scoped_store, detail::concat("split/", id, "/", color, "/"));
    communicator child(config, std::move(child_store), static_cast<int>(me - members.begin()),
                       static_cast<int>(members.size()), &s.model);
    child.state_->server = s.server;
    return child;
  }

 public:
  // Keeps `buffer` registered with the RDMA device until unregister_memory:
  // large transfers from and into it then skip registration. For buffers a
  // program keeps (weights, gradient buckets); a no-op without verbs.
  template <element T>
  void register_memory(std::span<const T> buffer) {
    for (const auto& t : state_->transports) {
      if (auto* v = dynamic_cast<transport::verbs_transport*>(t.get()))
        v->register_memory(buffer.data(), buffer.size_bytes());
    }
  }
  template <element T>
  void unregister_memory(std::span<const T> buffer) {
    for (const auto& t : state_->transports) {
      if (auto* v = dynamic_cast<transport::verbs_transport*>(t.get())) v->unregister_memory(buffer.data());
    }
  }

  // Operations queued by *_async calls and not yet done.
  [[nodiscard]] std::size_t pending() const noexcept { return state_->queue.pending(); }

  // The byte-level channel to rank `r` (this rank included), and the
  // transport that carries it: what collectives run on. Chosen at creation
  // (see options::transport). Using a channel directly while operations
  // are queued would interleave with their messages.
  [[nodiscard]] transport::channel& channel_to(int r) { return transport_to(r).to(r); }

  // The connections this rank's transports have made so far and the memory
  // they hold for them. tcp and verbs connect on a channel's first use, so
  // this counts the peers the collectives so far used (a ring: 2; a
  // hierarchical all_reduce: the host's ranks and two rail neighbours), not
  // the world.
  [[nodiscard]] transport::footprint transport_footprint() const {
    transport::footprint total;
    for (const auto& t : state_->transports) {
      const auto held = t->held();
      total.connections += held.connections;
      total.memory_bytes += held.memory_bytes;
    }
    return total;
  }
  [[nodiscard]] transport::transport& transport_to(int r) {
    check_rank(r, "transport_to");
    return *state_->routes[static_cast<std::size_t>(r)];
  }

 private:
  struct state {
    // First, so that it is destroyed last: after this rank's own client.
    // Shared with the communicators split from this one.
    std::shared_ptr<tcp_store_server> server;
    int rank = 0;
    int size = 0;
    int local_rank = 0;
    int local_size = 0;
    options config;
    std::shared_ptr<store> scoped_store;
    std::vector<address_card> cards;
    std::shared_ptr<const topology::cluster> cluster;  // from the cards
    std::vector<std::unique_ptr<transport::transport>> transports;
    std::vector<transport::transport*> routes;  // per peer
    std::vector<runtime::route> route_table;    // per peer, for the executor
    std::map<algorithm::collective, std::string> forced_algorithms;
    std::string link_class;       // what the cost model's link figures describe
    algorithm::cost_model model;  // the same on every rank
    // A collective's choice and schedule, made on its first call with these
    // arguments. Map nodes stay put: queued operations point at them.
    struct planned {
      algorithm::selection choice;
      algorithm::schedule schedule;
      // The buffer sizes, in elements, the collective's layout asks of this
      // rank for these arguments.
      std::size_t in_elements = 0;
      std::size_t out_elements = 0;
    };
    using schedule_key = std::tuple<algorithm::collective, std::size_t, std::size_t, int, std::vector<std::size_t>,
                                    std::vector<std::size_t>>;
    std::map<schedule_key, planned> schedules;
    // The last uniform call (no per-rank counts) and its plan: a loop calling
    // one collective again and again skips building a key and searching the map.
    struct uniform_call {
      algorithm::collective kind;
      std::size_t count;
      std::size_t element_size;
      int root;
      bool operator==(const uniform_call&) const = default;
    };
    std::optional<uniform_call> last_call;
    const planned* last_planned = nullptr;
    std::uint64_t calls = 0;            // collectives issued, the sequence number in check headers
    std::uint64_t splits = 0;           // communicators split from this one, naming their store scope
    runtime::operation blocking_batch;  // reused by blocking send, recv and exchange: no allocation once warm
    // Last: pending operations are failed before the channels they use go.
    runtime::operation_queue queue;
  };

  // How long a rank 0 whose bootstrap failed keeps its store up for the
  // others to read the fault.
  static constexpr std::chrono::seconds server_linger{5};

  // The constructor proper, taking options with the environment applied.
  // A communicator split from another inherits its cost model.
  communicator(options config, std::shared_ptr<store> shared, int rank, int size,
               const algorithm::cost_model* inherited = nullptr)
      : state_(std::make_unique<state>()) {
    if (!shared) detail::fail(errc::invalid_argument, "communicator: the store is null");
    if (size < 1) detail::fail(errc::invalid_argument, "communicator: world size ", size, " is not positive");
    if (rank < 0 || rank >= size) {
      detail::fail(errc::invalid_argument, "communicator: rank ", rank, " is outside [0, ", size, ")");
    }
    state& s = *state_;
    s.rank = rank;
    s.size = size;
    s.config = std::move(config);
    s.forced_algorithms = algorithm::parse_algorithm_overrides(s.config.algorithms);

    address_card mine = address_card::local(rank, size);

    claim_rank(*shared, mine);
    // Each rank counts the communicators it made on this store; ranks make
    // them in the same order, so the count names this one on every rank.
    const auto generation = shared->add(detail::concat("tutti/generation/", rank), 1);
    s.scoped_store = std::make_shared<prefix_store>(shared, detail::concat("tutti/", generation, "/"));
    open_transports(mine);
    try {
      s.cards = detail::rendezvous(*s.scoped_store, mine, s.config.timeout);
    } catch (const error& e) {
      // A stall may have a cause another rank found (a duplicate rank).
      if (e.code() == errc::timeout && shared->contains(fault_key()).front()) {
        detail::raise_fault(shared->get(fault_key().front(), s.config.timeout));
      }
      throw;
    }
    s.cluster = make_cluster(s.cards);
    s.local_rank = s.cluster->local_rank(rank);
    s.local_size = static_cast<int>(s.cluster->ranks_on(s.cluster->host_of(rank)).size());
    transport::note_local_ranks(s.local_size);
    route_peers();
    s.queue.bind(s.route_table, s.rank, s.config.timeout);
    // Transports may use the store while attaching; a store hosted by rank 0
    // must outlive that, so rank 0 returns only once every rank is done.
    if (s.scoped_store->add("constructed", 1) == size) s.scoped_store->set("all_constructed", "");
    if (rank == 0) s.scoped_store->get("all_constructed", s.config.timeout);
    // Last, so that calibration runs while the other ranks wait idle.
    choose_cost_model(inherited);
  }

  // Opens the transports this rank may use, before rendezvous, so their
  // endpoints go into its address card. inproc is always open: it carries
  // each rank's channel to itself.
  void open_transports(address_card& mine) {
    state& s = *state_;
    transport::context ctx;
    ctx.rank = s.rank;
    ctx.size = s.size;
    ctx.local_rank_hint = launcher_local_rank();
    ctx.config = s.config;
    ctx.scoped_store = s.scoped_store;
    const std::string& forced = s.config.transport;
    s.transports.push_back(std::make_unique<transport::inproc_transport>(ctx));
    if (forced == "auto" || forced == "shm") s.transports.push_back(std::make_unique<transport::shm_transport>(ctx));
    if (forced == "auto" || forced == "tcp") s.transports.push_back(std::make_unique<transport::tcp_transport>(ctx));
    if (forced == "auto" || forced == "verbs") {
      // Without an RDMA port, auto carries on over tcp between hosts; a
      // forced verbs transport makes that an error.
      try {
        auto verbs = std::make_unique<transport::verbs_transport>(ctx);
        mine.rail = rail_of_device(verbs->port().device);
        s.transports.push_back(std::move(verbs));
      } catch (const error& e) {
        if (forced == "verbs" || e.code() != errc::unavailable) throw;
        detail::log(detail::log_level::info, "rank ", s.rank, ": no verbs (", e.message(), "); tcp between hosts");
      }
    }
    for (const auto& t : s.transports) mine.endpoints.emplace_back(std::string(t->name()), t->endpoint());
  }

  // The transport for each peer: the forced one, or the closest that reaches
  // it. Then every transport attaches to the peers it serves.
  void route_peers() {
    state& s = *state_;
    const address_card& me = s.cards[static_cast<std::size_t>(s.rank)];
    auto named = [&](std::string_view name) -> transport::transport* {
      for (const auto& t : s.transports) {
        if (t->name() == name) return t.get();
      }
      return nullptr;
    };
    s.routes.assign(static_cast<std::size_t>(s.size), nullptr);
    std::vector<std::vector<int>> served(s.transports.size());
    for (int peer = 0; peer < s.size; ++peer) {
      const address_card& them = s.cards[static_cast<std::size_t>(peer)];
      const bool same_host = them.host_id == me.host_id;
      const bool same_process = same_host && them.pid == me.pid;
      const bool both_verbs = named("verbs") != nullptr && them.endpoint_of("verbs") != nullptr;
      std::string_view choice = same_process ? "inproc" : same_host ? "shm" : both_verbs ? "verbs" : "tcp";
      if (peer != s.rank && s.config.transport != "auto") {
        choice = s.config.transport;
        const bool reachable = choice == "tcp" || (choice == "verbs" && both_verbs) || (choice == "shm" && same_host) ||
                               (choice == "inproc" && same_process);
        if (!reachable) {
          detail::fail(errc::unavailable, "communicator: transport ", choice, " cannot reach rank ", peer, " (",
                       them.describe(), ") from rank ", s.rank, " (", me.describe(), ")");
        }
      }
      if (peer == s.rank) choice = "inproc";
      transport::transport* t = named(choice);
      s.routes[static_cast<std::size_t>(peer)] = t;
      for (std::size_t i = 0; i < s.transports.size(); ++i) {
        if (s.transports[i].get() == t) served[i].push_back(peer);
      }
    }
    for (std::size_t i = 0; i < s.transports.size(); ++i) s.transports[i]->attach(s.cards, served[i]);
    s.route_table.resize(static_cast<std::size_t>(s.size));
    for (int peer = 0; peer < s.size; ++peer) {
      auto* t = s.routes[static_cast<std::size_t>(peer)];
      s.route_table[static_cast<std::size_t>(peer)] = {t, &t->to(peer)};
    }
    if (detail::log_enabled(detail::log_level::debug)) {
      for (int peer = 0; peer < s.size; ++peer) {
        detail::log(detail::log_level::debug, "rank ", s.rank, " reaches rank ", peer, " over ",
                    s.routes[static_cast<std::size_t>(peer)]->name());
      }
    }
  }

  // The link class every rank derives alike from the address cards (or the
  // forced transport), its default figures, then rank 0's measurements (or
  // the parent's model), then the constants given in options.
  void choose_cost_model(const algorithm::cost_model* inherited) {
    state& s = *state_;
    const address_card& first = s.cards.front();
    bool one_host = true;
    bool one_process = true;
    for (const auto& card : s.cards) {
      one_host = one_host && card.host_id == first.host_id;
      one_process = one_process && card.host_id == first.host_id && card.pid == first.pid;
    }
    const bool all_verbs = std::all_of(s.cards.begin(), s.cards.end(),
                                       [](const address_card& card) { return card.endpoint_of("verbs") != nullptr; });
    s.link_class = s.config.transport != "auto" ? s.config.transport
                   : one_process                ? "inproc"
                   : one_host                   ? "shm"
                   : all_verbs                  ? "verbs"
                                                : "tcp";
    s.model = algorithm::cost_model::for_links(s.link_class);
    if (inherited != nullptr) {
      s.model = *inherited;
    } else if (s.config.calibrate && s.size > 1) {
      calibrate();
    }
    if (!s.config.cost_model.empty()) s.model = algorithm::parse_cost_model(s.config.cost_model, s.model);
    // On one host the link is the local one; across hosts calibration
    // measures the local link too, else it keeps shm's default figures.
    if (one_host) s.model.local = s.model.link;
  }

  // Rank 0 times round trips with one peer (on another host if there is
  // one: the slowest link class; then with a peer on its own host too, for
  // the hierarchical algorithms' local link) and a reduction, then
  // broadcasts what it measured, so every rank ranks algorithms alike.
  // Slopes leave per-message costs out; gamma comes from summing floats.
  // Best cases, so that noise from other processes does not skew the
  // ratios. A few milliseconds on shm.
  void calibrate() {
    state& s = *state_;
    const auto& here = s.cluster->ranks_on(0);
    int partner = 1;
    for (int r = 1; r < s.size; ++r) {
      if (!s.cluster->same_host(0, r)) {
        partner = r;
        break;
      }
    }
    // Across hosts, the link inside them is measured too, with rank 0's
    // first neighbour on its host.
    const int neighbour = !s.cluster->same_host(0, partner) && here.size() > 1 ? here[1] : -1;
    const auto started = transport::clock::now();
    // alpha, beta, gamma, local alpha, local beta
    double figures[5] = {s.model.link.alpha_us, s.model.link.beta_us_per_byte, s.model.gamma_us_per_byte,
                         s.model.local.alpha_us, s.model.local.beta_us_per_byte};
    // Sizes past L2, so the slope is not a cache's.
    constexpr std::size_t medium = std::size_t{256} << 10;
    constexpr std::size_t large = std::size_t{1} << 20;
    std::vector<std::uint8_t> payload;
    // Half the fastest of `rounds` round trips of `bytes` between rank 0
    // and `peer`, after one to warm up.
    auto one_way_us = [&](int peer, std::size_t bytes, int rounds) {
      const auto message = std::span(payload).first(bytes);
      const int other = s.rank == 0 ? peer : 0;
      double best = 0;
      for (int i = 0; i <= rounds; ++i) {
        const auto sent = transport::clock::now();
        if (s.rank == 0) {
          send(std::span<const std::uint8_t>(message), other);
          recv(message, other);
        } else {
          recv(message, other);
          send(std::span<const std::uint8_t>(message), other);
        }
        const double us = std::chrono::duration<double, std::micro>(transport::clock::now() - sent).count() / 2;
        if (i == 1 || (i > 1 && us < best)) best = us;
      }
      return best;
    };
    // alpha is half the fastest 8-byte round trip; beta the slope between
    // medium and large ones (a slope lost in noise keeps the default).
    auto measure = [&](int peer, double* alpha_beta) {
      if (s.rank != 0 && s.rank != peer) return;
      payload.resize(large);
      // Large first: by the time the small ones run, the other ranks have
      // stopped spinning and sleep, as they would in a real job's call.
      const double medium_us = one_way_us(peer, medium, 3);
      const double large_us = one_way_us(peer, large, 3);
      const double alpha = one_way_us(peer, 8, 16);
      if (s.rank != 0) return;
      alpha_beta[0] = alpha;
      if (large_us > medium_us) alpha_beta[1] = (large_us - medium_us) / static_cast<double>(large - medium);
    };
    measure(partner, figures);
    if (neighbour > 0) measure(neighbour, figures + 3);
    if (s.rank == 0) figures[2] = measure_gamma();
    broadcast(std::span<double>(figures), 0);
    s.calls = 0;  // the user's first collective is call #0 in check headers
    s.model.link = {figures[0], figures[1]};
    s.model.gamma_us_per_byte = figures[2];
    s.model.local = {figures[3], figures[4]};
    detail::log(detail::log_level::info, "rank ", s.rank, ": cost model over ", s.link_class, ": alpha ", figures[0],
                " us, ", 1e-3 / figures[1], " GB/s, reduce ", 1e-3 / figures[2], " GB/s; inside a host: alpha ",
                figures[3], " us, ", 1e-3 / figures[4], " GB/s (calibrated in ",
                std::chrono::duration<double, std::milli>(transport::clock::now() - started).count(), " ms)");
  }

  // Microseconds per byte of a float sum, best of a few 1 MiB passes.
  static double measure_gamma() {
    constexpr std::size_t elements = std::size_t{256} << 10;
    std::vector<float> dst(elements, 1.0f), src(elements, 0.5f);
    const auto reduce = detail::reduction::make<float>(sum{});
    double best = 0;
    for (int i = 0; i < 4; ++i) {
      const auto started = transport::clock::now();
      reduce(dst.data(), src.data(), elements * sizeof(float));
      const double us = std::chrono::duration<double, std::micro>(transport::clock::now() - started).count();
      best = i == 0 ? us : std::min(best, us);
    }
    return std::max(best, 1e-3) / static_cast<double>(elements * sizeof(float));
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

  // The rail of the RDMA device this rank uses between hosts, from the
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
      detail::log(detail::log_level::warn, "no rail for ", device, ": ", e.message());
    }
    return -1;
  }

  static std::shared_ptr<const topology::cluster> make_cluster(const std::vector<address_card>& cards) {
    std::vector<topology::rank_location> where;
    where.reserve(cards.size());
    for (const auto& card : cards) where.push_back({card.host_id, card.rail});
    return std::make_shared<const topology::cluster>(where);
  }

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
    const std::string identity = detail::concat(mine.host_id, ' ', mine.pid);
    const std::string key = detail::concat("tutti/owner/", mine.rank);
    const std::string owner = shared.compare_set(key, "", identity);
    if (owner == identity) return;
    const std::string message = detail::concat(
        "communicator: rank ", mine.rank, " was given to two processes: pid ", owner.substr(owner.rfind(' ') + 1),
        " on ", owner.substr(0, owner.rfind(' ')), " and ", mine.describe(), " on ", mine.host_id);
    shared.compare_set(fault_key().front(), "", detail::encode_fault(errc::invalid_argument, message));
    detail::fail(errc::invalid_argument, message);
  }

  enum class overlap_rule { disjoint, same_allowed };

  template <class Op>
  static inline const Op stateless_op{};

  template <class T>
  algorithm::collective_args args_for(algorithm::collective kind, std::size_t count, int root = 0) const {
    algorithm::collective_args args;
    args.kind = kind;
    args.rank = rank();
    args.size = size();
    args.count = count;
    args.element_size = sizeof(T);
    args.root = root;
    args.cluster = state_->cluster;
    return args;
  }

  // --- Operations: each typed call becomes a runtime::operation, checked
  // and with its schedule chosen, then runs now or is queued.

  void execute(runtime::operation op) { state_->queue.run(op); }
  request submit(runtime::operation op) { return state_->queue.submit(std::move(op)); }

  void run_batch(std::span<const p2p_op> ops, std::string_view what) {
    runtime::validate_batch(ops, size(), what);
    runtime::operation& op = state_->blocking_batch;
    op.name = what;
    op.batch.assign(ops.begin(), ops.end());
    state_->queue.run(op);
  }
  void run_batch(std::initializer_list<p2p_op> ops, std::string_view what) {
    run_batch(std::span<const p2p_op>(ops.begin(), ops.size()), what);
  }

  template <class T, class Op>
  runtime::operation all_reduce_op(std::span<const T> in, std::span<T> out, const Op& op) {
    return reducing(args_for<T>(algorithm::collective::all_reduce, in.size()), in, out, op, overlap_rule::same_allowed);
  }
  template <class T, class Op>
  runtime::operation reduce_op(std::span<const T> in, std::span<T> out, int root, const Op& op) {
    auto args = args_for<T>(algorithm::collective::reduce, in.size(), root);
    if (rank() != root) out = out.first(0);
    return reducing(std::move(args), in, out, op, overlap_rule::same_allowed);
  }
  template <class T>
  runtime::operation broadcast_op(std::span<T> buffer, int root) {
    return moving(args_for<T>(algorithm::collective::broadcast, buffer.size(), root), std::span<const T>(), buffer);
  }
  template <class T>
  runtime::operation all_gather_op(std::span<const T> in, std::span<T> out) {
    return moving(args_for<T>(algorithm::collective::all_gather, in.size()), in, out);
  }
  template <class T>
  runtime::operation all_gather_v_op(std::span<const T> in, std::span<T> out, std::span<const std::size_t> counts) {
    auto args = args_for<T>(algorithm::collective::all_gather_v, 0);
    args.counts.assign(counts.begin(), counts.end());
    return moving(std::move(args), in, out);
  }
  template <class T, class Op>
  runtime::operation reduce_scatter_op(std::span<const T> in, std::span<T> out, const Op& op) {
    return reducing(args_for<T>(algorithm::collective::reduce_scatter, out.size()), in, out, op,
                    overlap_rule::disjoint);
  }
  template <class T, class Op>
  runtime::operation reduce_scatter_v_op(std::span<const T> in, std::span<T> out, std::span<const std::size_t> counts,
                                         const Op& op) {
    auto args = args_for<T>(algorithm::collective::reduce_scatter_v, 0);
    args.counts.assign(counts.begin(), counts.end());
    return reducing(std::move(args), in, out, op, overlap_rule::disjoint);
  }
  template <class T>
  runtime::operation gather_op(std::span<const T> in, std::span<T> out, int root) {
    if (rank() != root) out = out.first(0);
    return moving(args_for<T>(algorithm::collective::gather, in.size(), root), in, out);
  }
  template <class T>
  runtime::operation scatter_op(std::span<const T> in, std::span<T> out, int root) {
    if (rank() != root) in = in.first(0);
    return moving(args_for<T>(algorithm::collective::scatter, out.size(), root), in, out);
  }
  template <class T>
  runtime::operation all_to_all_op(std::span<const T> in, std::span<T> out) {
    const auto ranks = static_cast<std::size_t>(size());
    if (in.size() % ranks != 0) {
      detail::fail(errc::invalid_argument, "all_to_all: input has ", in.size(), " elements, not a multiple of ", ranks,
                   " ranks");
    }
    return moving(args_for<T>(algorithm::collective::all_to_all, in.size() / ranks), in, out);
  }
  template <class T>
  runtime::operation all_to_all_v_op(std::span<const T> in, std::span<T> out, std::span<const std::size_t> send_counts,
                                     std::span<const std::size_t> recv_counts) {
    auto args = args_for<T>(algorithm::collective::all_to_all_v, 0);
    args.counts.assign(send_counts.begin(), send_counts.end());
    args.recv_counts.assign(recv_counts.begin(), recv_counts.end());
    return moving(std::move(args), in, out);
  }
  runtime::operation barrier_op() {
    return collective_op(args_for<std::byte>(algorithm::collective::barrier, 0), nullptr, 0, nullptr, 0, std::nullopt);
  }

  template <class T>
  runtime::operation moving(algorithm::collective_args args, std::span<const T> in, std::span<T> out,
                            overlap_rule rule = overlap_rule::disjoint) {
    check_overlap(args, std::as_bytes(in), std::as_bytes(out), rule);
    return collective_op(std::move(args), in.data(), in.size(), out.data(), out.size(), std::nullopt,
                         static_cast<std::uint8_t>(dtype_of<T>));
  }

  template <class T, class Op>
  runtime::operation reducing(algorithm::collective_args args, std::span<const T> in, std::span<T> out, const Op& op,
                              overlap_rule rule) {
    detail::check_op<Op, T>();
    if constexpr (detail::valid_op<Op, T>) {
      return reducing_checked(std::move(args), in, out, op, rule);
    } else {
      return {};
    }
  }

  // reducing() for a valid op. A function of its own with one return, so
  // the operation is built in place (named return value): a second return
  // in the same function made GCC move the whole operation on every call.
  template <class T, class Op>
  runtime::operation reducing_checked(algorithm::collective_args args, std::span<const T> in, std::span<T> out,
                                      const Op& op, overlap_rule rule) {
    check_overlap(args, std::as_bytes(in), std::as_bytes(out), rule);
    // The reduction refers to its op, which must outlive a queued call: a
    // stateless op is one shared instance, a stateful one is copied.
    const Op* kept = nullptr;
    std::shared_ptr<const void> storage;
    if constexpr (std::is_empty_v<Op> && std::is_default_constructible_v<Op>) {
      kept = &stateless_op<Op>;
    } else {
      auto copy = std::make_shared<const Op>(op);
      kept = copy.get();
      storage = std::move(copy);
    }
    auto operation = collective_op(std::move(args), in.data(), in.size(), out.data(), out.size(),
                                   detail::reduction::make<T>(*kept), static_cast<std::uint8_t>(dtype_of<T>));
    operation.op_storage = std::move(storage);
    // avg: the collective sums; the result is divided by the number of
    // contributions once it is complete.
    if constexpr (requires { Op::finalize(T{}, std::size_t{}); }) {
      operation.finalize = [](void* data, std::size_t elements, std::size_t contributors) {
        for (auto& x : std::span<T>(static_cast<T*>(data), elements)) x = Op::finalize(x, contributors);
      };
      operation.out_elements = out.size();
      operation.contributors = static_cast<std::size_t>(size());
    }
    return operation;
  }

  static void check_overlap(const algorithm::collective_args& args, std::span<const std::byte> in,
                            std::span<const std::byte> out, overlap_rule rule) {
    const auto in_begin = reinterpret_cast<std::uintptr_t>(in.data());
    const auto out_begin = reinterpret_cast<std::uintptr_t>(out.data());
    const bool overlapping =
        !in.empty() && !out.empty() && in_begin < out_begin + out.size() && out_begin < in_begin + in.size();
    const bool same = in.data() == out.data() && in.size() == out.size();
    if (overlapping && !(same && rule == overlap_rule::same_allowed)) {
      detail::fail(errc::invalid_argument, algorithm::to_string(args.kind), ": input and output overlap; they must be ",
                   rule == overlap_rule::same_allowed ? "the same span or disjoint" : "disjoint");
    }
  }

  // The byte-level core every typed collective forwards to: checks the
  // buffers against the collective's layout, picks the algorithm and reuses
  // its cached schedule.
  runtime::operation collective_op(algorithm::collective_args args, const void* in, std::size_t in_elements, void* out,
                                   std::size_t out_elements, std::optional<detail::reduction> reduce,
                                   std::uint8_t element_type = runtime::call_signature::no_type) {
    state& s = *state_;
    const auto name = algorithm::to_string(args.kind);
    // Everything validate() checks is part of the plan's key (rank and size
    // are the communicator's), so arguments with a plan were validated when
    // it was made: a repeated call skips straight to the buffer sizes.
    const bool uniform = args.counts.empty() && args.recv_counts.empty();
    const state::uniform_call this_call{args.kind, args.count, args.element_size, args.root};
    const state::planned* plan = uniform && s.last_call == this_call ? s.last_planned : nullptr;
    if (plan == nullptr) {
      state::schedule_key key{args.kind, args.count, args.element_size, args.root, args.counts, args.recv_counts};
      auto found = s.schedules.find(key);
      if (found == s.schedules.end()) {
        algorithm::validate(args);
        auto choice = algorithm::choose(args, s.forced_algorithms, s.model);
        if (choice.chunk_bytes != 0) args.chunk_bytes = choice.chunk_bytes;
        auto schedule = algorithm::build(choice.algorithm, args);
        state::planned made{std::move(choice), std::move(schedule), algorithm::input_bytes(args) / args.element_size,
                            algorithm::output_bytes(args) / args.element_size};
        found = s.schedules.emplace(std::move(key), std::move(made)).first;
      }
      plan = &found->second;
      if (uniform) {
        s.last_call = this_call;
        s.last_planned = plan;
      }
    }
    if (in_elements != plan->in_elements) {
      detail::fail(errc::invalid_argument, name, ": input has ", in_elements, " elements but rank ", s.rank, " needs ",
                   plan->in_elements);
    }
    if (out_elements != plan->out_elements) {
      detail::fail(errc::invalid_argument, name, ": output has ", out_elements, " elements but rank ", s.rank,
                   " needs ", plan->out_elements);
    }
    runtime::operation op;
    op.name = name;
    op.schedule = &plan->schedule;
    op.io = {static_cast<const std::byte*>(in), static_cast<std::byte*>(out), nullptr};
    op.reduce = std::move(reduce);
    if (s.config.check) {
      runtime::call_signature call;
      call.kind = args.kind;
      call.element_type = element_type;
      call.op = op.reduce ? static_cast<std::uint8_t>(op.reduce->kind()) : runtime::call_signature::no_op;
      call.root = args.root;
      call.sequence = s.calls;
      call.count = args.count;
      op.check = call;
    }
    ++s.calls;
    return op;
  }

  void check_rank(int r, const char* what) const {
    if (r < 0 || r >= size()) {
      detail::fail(errc::invalid_argument, "communicator::", what, ": rank ", r, " is outside [0, ", size(), ")");
    }
  }

  std::unique_ptr<state> state_;
};

}  // namespace tutti
