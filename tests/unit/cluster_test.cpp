// The cluster view: hosts, local ranks, rail groups and the rail-aligned
// ring built from what ranks publish, and the promise planning rests on:
// every rank, given the same cards, holds the same view and makes the same
// choice, on synthetic clusters of 1x8, 4x8 and 512x8 ranks.
#include <tutti/algorithm/registry.hpp>
#include <tutti/algorithm/select.hpp>
#include <tutti/bootstrap/address_card.hpp>
#include <tutti/topology/cluster.hpp>
#include <tutti/transport/registry.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ta = tutti::algorithm;
namespace tt = tutti::topology;
using ta::collective;

namespace {

std::size_t uz(int v) { return static_cast<std::size_t>(v); }

// `hosts` hosts of `per_host` ranks, as a launcher places them (block) or
// round robin, each rank's rail being its local rank.
std::vector<tt::rank_location> locations(int hosts, int per_host, bool round_robin) {
  std::vector<tt::rank_location> out;
  for (int r = 0; r < hosts * per_host; ++r) {
    const int host = round_robin ? r % hosts : r / per_host;
    const int local = round_robin ? r / hosts : r % per_host;
    out.push_back({"node" + std::to_string(host), local});
  }
  return out;
}

}  // namespace

TEST_CASE("cluster: hosts by lowest rank, local ranks in rank order, rail groups by local rank", "[cluster]") {
  const tt::cluster c(locations(3, 4, true));  // host h holds ranks h, h + 3, h + 6, h + 9
  CHECK(c.size() == 12);
  CHECK(c.host_count() == 3);
  CHECK(c.ranks_per_host() == 4);
  CHECK(std::vector<int>(c.ranks_on(1).begin(), c.ranks_on(1).end()) == std::vector<int>{1, 4, 7, 10});
  CHECK(c.host_of(7) == 1);
  CHECK(c.local_rank(7) == 2);
  CHECK(c.rail_of(7) == 2);
  CHECK(c.rail_group(2) == std::vector<int>{6, 7, 8});
  CHECK(c.same_host(2, 11));
  CHECK_FALSE(c.same_host(2, 10));
  CHECK_THROWS_WITH(c.host_of(12), "tutti: invalid_argument: cluster: rank 12 is outside [0, 12)");

  // Hosts differ in rank count: no common ranks_per_host.
  std::vector<tt::rank_location> uneven{{"a"}, {"a"}, {"b"}};
  const tt::cluster u(uneven);
  CHECK(u.ranks_per_host() == 0);
  CHECK(u.rail_of(1) == 1);  // unknown rails default to the local rank
  CHECK_THROWS_WITH(tt::cluster(std::vector<tt::rank_location>{}), "tutti: invalid_argument: cluster: no ranks");
  CHECK_THROWS_WITH(tt::cluster::uniform(8, 0),
                    "tutti: invalid_argument: cluster: 8 ranks at 0 per host; both must be positive");
}

TEST_CASE("cluster: the rail-aligned ring crosses hosts once per host, on one rail", "[cluster]") {
  for (const int hosts : {2, 3, 4, 5, 512}) {
    const auto c = tt::cluster::uniform(hosts * 8, 8);
    const auto order = c.rail_aligned_order();
    INFO(hosts << " hosts");
    auto sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (int r = 0; r < c.size(); ++r) REQUIRE(sorted[uz(r)] == r);
    int crossings = 0;
    int off_rail = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
      const int from = order[i];
      const int to = order[(i + 1) % order.size()];
      if (c.same_host(from, to)) continue;
      ++crossings;
      if (c.rail_of(from) != c.rail_of(to)) ++off_rail;
    }
    CHECK(crossings == hosts);
    // Only the wrap-around of an odd number of hosts changes rail.
    CHECK(off_rail == hosts % 2);
  }
}

TEST_CASE("cluster: every rank builds the same view and makes the same choices", "[cluster]") {
  // A cost model with a fast link inside hosts, so hierarchical plans win
  // some sizes and lose others.
  ta::cost_model model = tutti::transport::cost_model_for("verbs");
  model.local = {0.7, ta::us_per_byte(150)};
  for (const auto& [hosts, per_host] : std::vector<std::pair<int, int>>{{1, 8}, {4, 8}, {512, 8}}) {
    for (const bool round_robin : {false, true}) {
      // What each rank publishes goes through the wire and back, as at
      // rendezvous.
      std::vector<tt::rank_location> published;
      for (const auto& where : locations(hosts, per_host, round_robin)) {
        tutti::address_card card;
        card.host_id = where.host_id;
        card.rail = where.rail;
        const auto back = tutti::address_card::parse(card.serialize(), "test");
        published.push_back({back.host_id, back.rail});
      }
      const auto reference = std::make_shared<const tt::cluster>(published);
      const int n = hosts * per_host;
      INFO(hosts << "x" << per_host << (round_robin ? " round robin" : " block"));
      CHECK(reference->host_count() == hosts);
      CHECK(reference->ranks_per_host() == per_host);
      std::map<std::pair<collective, std::size_t>, ta::selection> first;
      for (int rank = 0; rank < n; ++rank) {
        // Each rank builds its own view from the same cards.
        const auto view = rank % 97 == 0 ? std::make_shared<const tt::cluster>(published) : reference;
        if (rank % 97 == 0) REQUIRE(*view == *reference);
        for (const collective kind :
             {collective::all_reduce, collective::all_gather, collective::reduce_scatter, collective::broadcast}) {
          for (const std::size_t count : {std::size_t{2}, std::size_t{1} << 16, std::size_t{64} << 20}) {
            ta::collective_args a;
            a.kind = kind;
            a.rank = rank;
            a.size = n;
            a.count = count;
            a.element_size = 4;
            a.root = n - 1;
            a.cluster = view;
            const auto chosen = ta::choose(a, {}, model);
            const auto [it, fresh] = first.emplace(std::pair{kind, count}, chosen);
            if (fresh) continue;
            if (chosen.algorithm != it->second.algorithm || chosen.chunk_bytes != it->second.chunk_bytes) {
              FAIL("rank " << rank << " chose " << chosen.algorithm << " for " << ta::to_string(kind) << " of " << count
                           << "; rank 0 chose " << it->second.algorithm);
            }
          }
        }
      }
      // On several hosts, large all_reduces go hierarchical.
      const auto large = first.at({collective::all_reduce, std::size_t{64} << 20});
      CHECK(large.algorithm.starts_with("hierarchical") == (hosts > 1));
    }
  }
}

TEST_CASE("hierarchical algorithms reject hosts of different sizes, naming them", "[cluster]") {
  std::vector<tt::rank_location> uneven;
  for (int r = 0; r < 7; ++r) uneven.push_back({r < 4 ? "a" : "b"});
  ta::collective_args a;
  a.kind = collective::all_reduce;
  a.size = 7;
  a.count = 100;
  a.element_size = 4;
  a.cluster = std::make_shared<const tt::cluster>(uneven);
  CHECK_THROWS_WITH(ta::build("hierarchical", a),
                    "tutti: invalid_argument: all_reduce: hierarchical algorithms need the same number of ranks on "
                    "every host; host 0 has 4, host 1 has 3");
  a.cluster = std::make_shared<const tt::cluster>(tt::cluster::uniform(8, 4));
  CHECK_THROWS_WITH(ta::build("hierarchical", a),
                    "tutti: invalid_argument: all_reduce: the cluster view has 8 ranks for a world of 7");
}

TEST_CASE("a hierarchical all_reduce sends each rank's rail a 1/L share", "[cluster]") {
  // 4 hosts of 8: each rank's traffic between hosts is a ring all_reduce of
  // count / 8 elements among 4 hosts: 2 (4 - 1) / 4 of it, sent to one peer.
  const auto c = std::make_shared<const tt::cluster>(tt::cluster::uniform(32, 8));
  ta::collective_args a;
  a.kind = collective::all_reduce;
  a.size = 32;
  a.count = std::size_t{1} << 20;
  a.element_size = 4;
  a.cluster = c;
  for (const int rank : {0, 13, 31}) {
    a.rank = rank;
    const auto s = ta::build("hierarchical", a);
    std::size_t across = 0;
    std::size_t inside = 0;
    std::vector<int> remote_peers;
    for (const auto& step : s.steps) {
      if (step.kind != ta::step_kind::send) continue;
      if (c->same_host(rank, step.peer)) {
        inside += step.bytes;
      } else {
        across += step.bytes;
        if (std::find(remote_peers.begin(), remote_peers.end(), step.peer) == remote_peers.end()) {
          remote_peers.push_back(step.peer);
        }
      }
    }
    const std::size_t share = a.count * a.element_size / 8;
    INFO("rank " << rank);
    CHECK(across == 2 * share * 3 / 4);
    CHECK(inside == 2 * share * 7);
    CHECK(remote_peers.size() == 1);  // the ring's right neighbour on this rail
    CHECK(c->rail_of(remote_peers.front()) == c->rail_of(rank));
  }
}
