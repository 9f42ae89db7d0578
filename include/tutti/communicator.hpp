// tutti::communicator: a group of ranks that found each other through a
// store. This is the embedding API, and only that: the world it runs on is
// formed by runtime/world.hpp, typed calls become operations in
// runtime/call_builder.hpp and run in issue order in
// runtime/operation_queue.hpp, the cost model is calibrated by
// runtime/calibration.hpp, a launched job's store is joined by
// bootstrap/launch_store.hpp, and registered buffers are counted by
// runtime/registered_memory.hpp.
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

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/select.hpp>
#include <tutti/bootstrap/address_card.hpp>
#include <tutti/bootstrap/launch_store.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/error.hpp>
#include <tutti/ops.hpp>
#include <tutti/options.hpp>
#include <tutti/p2p.hpp>
#include <tutti/request.hpp>
#include <tutti/runtime/calibration.hpp>
#include <tutti/runtime/call_builder.hpp>
#include <tutti/runtime/operation_queue.hpp>
#include <tutti/runtime/registered_memory.hpp>
#include <tutti/runtime/world.hpp>
#include <tutti/topology/cluster.hpp>
#include <tutti/transport/registry.hpp>
#include <tutti/transport/transport.hpp>
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
    auto joined = detail::join_launch_store(config.timeout);
    try {
      communicator comm(joined.client, joined.launch.rank, joined.launch.world_size, std::move(config));
      comm.state_->world.host_store(joined.server);
      return comm;
    } catch (const error&) {
      joined.linger_after_failure();
      throw;
    }
  }

  [[nodiscard]] int rank() const noexcept { return state_->world.rank(); }
  [[nodiscard]] int size() const noexcept { return state_->world.size(); }
  // This rank's index among the ranks on its host, and their number.
  [[nodiscard]] int local_rank() const noexcept { return state_->world.local_rank(); }
  [[nodiscard]] int local_size() const noexcept { return state_->world.local_size(); }
  [[nodiscard]] const options& config() const noexcept { return state_->config; }

  // The cost model this communicator ranks algorithms with, and the class
  // of link it describes (a transport's name): the slowest that any pair of
  // ranks uses. See options::calibrate and options::cost_model.
  [[nodiscard]] const algorithm::cost_model& cost_model() const noexcept { return state_->calls.model(); }
  [[nodiscard]] const std::string& link_class() const noexcept { return state_->world.link_class(); }

  // What a call of `kind` over `count` elements of `element_size` bytes
  // (uniform counts, root 0) would run: algorithm, chunk and predicted time.
  [[nodiscard]] algorithm::selection plan(algorithm::collective kind, std::size_t count,
                                          std::size_t element_size = 1) const {
    return state_->calls.plan(kind, count, element_size);
  }
  // Which ranks share a host and the rails between hosts, as every rank
  // sees it (topology/cluster.hpp): what the hierarchical algorithms follow.
  [[nodiscard]] const topology::cluster& cluster() const noexcept { return *state_->world.cluster(); }
  // What rank `r` published at rendezvous.
  [[nodiscard]] const address_card& card(int r) const {
    check_rank(r, "card");
    return state_->world.cards()[static_cast<std::size_t>(r)];
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
    execute(state_->calls.all_reduce(in, out, op));
  }
  template <element T, class Op = sum>
  void all_reduce(std::span<T> inout, const Op& op = {}) {
    execute(state_->calls.all_reduce(std::span<const T>(inout), inout, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request all_reduce_async(std::span<const T> in, std::span<T> out, const Op& op = {}) {
    return submit(state_->calls.all_reduce(in, out, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request all_reduce_async(std::span<T> inout, const Op& op = {}) {
    return submit(state_->calls.all_reduce(std::span<const T>(inout), inout, op));
  }

  // Root's out[i] = op over all ranks of in[i]; `out` matters at root only
  // (other ranks may pass an empty span).
  template <element T, class Op = sum>
  void reduce(std::span<const T> in, std::span<T> out, int root, const Op& op = {}) {
    execute(state_->calls.reduce(in, out, root, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request reduce_async(std::span<const T> in, std::span<T> out, int root, const Op& op = {}) {
    return submit(state_->calls.reduce(in, out, root, op));
  }

  // Copies root's `buffer` into every rank's `buffer`.
  template <element T>
  void broadcast(std::span<T> buffer, int root) {
    execute(state_->calls.broadcast(buffer, root));
  }
  template <element T>
  [[nodiscard]] request broadcast_async(std::span<T> buffer, int root) {
    return submit(state_->calls.broadcast(buffer, root));
  }

  // out holds every rank's `in` in rank order: out.size() == in.size() * size().
  template <element T>
  void all_gather(std::span<const T> in, std::span<T> out) {
    execute(state_->calls.all_gather(in, out));
  }
  template <element T>
  [[nodiscard]] request all_gather_async(std::span<const T> in, std::span<T> out) {
    return submit(state_->calls.all_gather(in, out));
  }

  // Like all_gather, with counts[r] elements from rank r.
  template <element T>
  void all_gather_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> counts) {
    execute(state_->calls.all_gather_v(in, out, counts));
  }
  template <element T>
  [[nodiscard]] request all_gather_v_async(std::span<const T> in, std::span<T> out,
                                           std::span<const std::size_t> counts) {
    return submit(state_->calls.all_gather_v(in, out, counts));
  }

  // Rank r's out is the reduction over all ranks of block r of `in`:
  // in.size() == out.size() * size().
  template <element T, class Op = sum>
  void reduce_scatter(std::span<const T> in, std::span<T> out, const Op& op = {}) {
    execute(state_->calls.reduce_scatter(in, out, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request reduce_scatter_async(std::span<const T> in, std::span<T> out, const Op& op = {}) {
    return submit(state_->calls.reduce_scatter(in, out, op));
  }

  // Like reduce_scatter, with block r of counts[r] elements.
  template <element T, class Op = sum>
  void reduce_scatter_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> counts,
                        const Op& op = {}) {
    execute(state_->calls.reduce_scatter_v(in, out, counts, op));
  }
  template <element T, class Op = sum>
  [[nodiscard]] request reduce_scatter_v_async(std::span<const T> in, std::span<T> out,
                                               std::span<const std::size_t> counts, const Op& op = {}) {
    return submit(state_->calls.reduce_scatter_v(in, out, counts, op));
  }

  // Root's out holds every rank's `in` in rank order (out matters at root only).
  template <element T>
  void gather(std::span<const T> in, std::span<T> out, int root) {
    execute(state_->calls.gather(in, out, root));
  }
  template <element T>
  [[nodiscard]] request gather_async(std::span<const T> in, std::span<T> out, int root) {
    return submit(state_->calls.gather(in, out, root));
  }

  // Rank r's out is block r of root's `in` (in matters at root only).
  template <element T>
  void scatter(std::span<const T> in, std::span<T> out, int root) {
    execute(state_->calls.scatter(in, out, root));
  }
  template <element T>
  [[nodiscard]] request scatter_async(std::span<const T> in, std::span<T> out, int root) {
    return submit(state_->calls.scatter(in, out, root));
  }

  // Block p of `in` goes to rank p; block p of `out` comes from rank p.
  template <element T>
  void all_to_all(std::span<const T> in, std::span<T> out) {
    execute(state_->calls.all_to_all(in, out));
  }
  template <element T>
  [[nodiscard]] request all_to_all_async(std::span<const T> in, std::span<T> out) {
    return submit(state_->calls.all_to_all(in, out));
  }

  // send_counts[p] elements to rank p, recv_counts[p] from rank p, blocks in
  // rank order.
  template <element T>
  void all_to_all_v(std::span<const T> in, std::span<T> out, std::span<const std::size_t> send_counts,
                    std::span<const std::size_t> recv_counts) {
    execute(state_->calls.all_to_all_v(in, out, send_counts, recv_counts));
  }
  template <element T>
  [[nodiscard]] request all_to_all_v_async(std::span<const T> in, std::span<T> out,
                                           std::span<const std::size_t> send_counts,
                                           std::span<const std::size_t> recv_counts) {
    return submit(state_->calls.all_to_all_v(in, out, send_counts, recv_counts));
  }

  // Returns once every rank has called barrier().
  void barrier() { execute(state_->calls.barrier()); }
  [[nodiscard]] request barrier_async() { return submit(state_->calls.barrier()); }

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

  // Keeps `buffer` registered with the transports' devices until
  // unregister_memory: large transfers from and into it then skip
  // registration. For buffers a program keeps (weights, gradient buckets);
  // a no-op over transports that register no memory. Registering a buffer
  // twice takes two unregistrations.
  template <element T>
  void register_memory(std::span<const T> buffer) {
    state_->memory.add(state_->world, buffer.data(), buffer.size_bytes());
  }
  template <element T>
  void unregister_memory(std::span<const T> buffer) {
    state_->memory.remove(state_->world, buffer.data(), buffer.size_bytes());
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
    for (const auto& t : state_->world.transports()) {
      const auto held = t->held();
      total.connections += held.connections;
      total.memory_bytes += held.memory_bytes;
    }
    return total;
  }
  [[nodiscard]] transport::transport& transport_to(int r) {
    check_rank(r, "transport_to");
    return state_->world.transport_to(r);
  }

 private:
  struct state {
    state(const options& given, std::shared_ptr<store> shared, int rank, int size)
        : config(given),
          world(config, std::move(shared), rank, size),
          calls(rank, size, world.cluster(), config.algorithms, config.check) {}

    options config;
    runtime::world world;
    runtime::call_builder calls;
    runtime::registered_memory memory;
    std::uint64_t splits = 0;           // communicators split from this one, naming their store scope
    runtime::operation blocking_batch;  // reused by blocking send, recv and exchange: no allocation once warm
    // Last: pending operations are failed before the channels they use go.
    runtime::operation_queue queue;
  };

  // The constructor proper, taking options with the environment applied.
  // A communicator split from another inherits its cost model.
  communicator(options config, std::shared_ptr<store> shared, int rank, int size,
               const algorithm::cost_model* inherited = nullptr)
      : state_(std::make_unique<state>(config, std::move(shared), rank, size)) {
    state_->queue.bind(state_->world.routes(), rank, state_->config.timeout);
    // Last, so that calibration runs while the other ranks wait idle.
    choose_cost_model(inherited);
  }

  std::optional<communicator> split(int color, int key, const options& config) {
    state& s = *state_;
    const int n = size();
    const std::int64_t mine[2] = {color, key};
    std::vector<std::int64_t> table(2 * static_cast<std::size_t>(n));
    all_gather(std::span<const std::int64_t>(mine), std::span<std::int64_t>(table));
    // Every rank checks every color, so a bad one fails all ranks alike.
    std::vector<std::pair<std::int64_t, int>> members;  // (key, rank) of my color
    for (int r = 0; r < n; ++r) {
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
    const auto me = std::find(members.begin(), members.end(), std::pair<std::int64_t, int>(key, rank()));
    auto child_store =
        std::make_shared<prefix_store>(s.world.scoped_store(), detail::concat("split/", id, "/", color, "/"));
    communicator child(config, std::move(child_store), static_cast<int>(me - members.begin()),
                       static_cast<int>(members.size()), &s.calls.model());
    child.state_->world.host_store(s.world.hosted_store());
    return child;
  }

  // The defaults of the link class's transport, then rank 0's measurements
  // (or the parent's model), then the constants given in options.
  void choose_cost_model(const algorithm::cost_model* inherited) {
    state& s = *state_;
    auto model = transport::cost_model_for(s.world.link_class());
    if (inherited != nullptr) {
      model = *inherited;
    } else if (s.config.calibrate && size() > 1) {
      // Calibration broadcasts its figures, ranking algorithms with the
      // defaults meanwhile.
      s.calls.use_model(model);
      model = runtime::calibrated(*this, *s.world.cluster(), model, s.world.link_class());
      s.calls.restart_sequence();
    }
    if (!s.config.cost_model.empty()) {
      model = algorithm::parse_cost_model(s.config.cost_model, model, transport::link_classes());
    }
    // On one host the link is the local one; across hosts calibration
    // measures the local link too, else it keeps shm's default figures.
    if (s.world.one_host()) model.local = model.link;
    s.calls.use_model(model);
  }

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

  void check_rank(int r, const char* what) const {
    if (r < 0 || r >= size()) {
      detail::fail(errc::invalid_argument, "communicator::", what, ": rank ", r, " is outside [0, ", size(), ")");
    }
  }

  std::unique_ptr<state> state_;
};

}  // namespace tutti
