#include <tutti/topology/discover.hpp>
#include <tutti/topology/hca_list.hpp>
#include <tutti/topology/machine.hpp>
#include <tutti/topology/nic_choice.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../support/error_matchers.hpp"

namespace topo = tutti::topology;

namespace {

const std::string data_dir = TUTTI_TEST_DATA_DIR;

const topo::machine& dgx() {
  static const topo::machine m = topo::discover_xml_file(data_dir + "/dgx_like.xml");
  return m;
}

tutti::detail::env_lookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

const tutti::detail::env_lookup no_env = env_of({});

std::vector<topo::local_rank> gpu_ranks(int n) {
  std::vector<topo::local_rank> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out[static_cast<std::size_t>(i)].gpu = i;
  return out;
}

std::vector<std::string> names(const std::vector<topo::nic_assignment>& choice) {
  std::vector<std::string> out;
  for (const auto& a : choice) out.push_back(a.name);
  return out;
}

// The DGX host with only the NICs named kept.
topo::machine with_nics(const std::vector<std::string>& keep) {
  topo::machine m = dgx();
  std::erase_if(m.nics, [&](const topo::nic& n) { return std::find(keep.begin(), keep.end(), n.name) == keep.end(); });
  return m;
}

}  // namespace

TEST_CASE("the live machine is discovered with its binding", "[topology]") {
  const topo::machine m = topo::discover();
  CHECK(m.source == "this machine");
  REQUIRE(!m.numa_nodes.empty());
  CHECK(m.pus >= 1);
  CHECK(m.cores >= 1);
  CHECK(m.cores <= m.pus);
  REQUIRE(m.binding.known);
  CHECK(!m.binding.pus.empty());
  CHECK(!m.binding.numa_nodes.empty());
  std::size_t pus_in_nodes = 0;
  for (const auto& node : m.numa_nodes) pus_in_nodes += node.pus.size();
  CHECK(pus_in_nodes == static_cast<std::size_t>(m.pus));
  // Whatever NICs this host has, they have names and a rail each.
  for (std::size_t i = 0; i < m.nics.size(); ++i) {
    CHECK(!m.nics[i].name.empty());
    const bool carries_rail = m.nics[i].rdma || topo::rail_nics(m).size() == m.nics.size();
    CHECK((topo::rail_of(m, static_cast<int>(i)) >= 0) == carries_rail);
  }
}

TEST_CASE("the DGX-like XML host has 2 NUMA nodes, 8 GPUs and 8 NICs", "[topology]") {
  const auto& m = dgx();
  CHECK(m.source == "xml:" + data_dir + "/dgx_like.xml");
  CHECK(m.hostname == "dgx-like");
  CHECK(m.packages == 2);
  CHECK(m.cores == 16);
  CHECK(m.pus == 32);
  REQUIRE(m.numa_nodes.size() == 2);
  CHECK(m.numa_nodes[0].package == 0);
  CHECK(m.numa_nodes[1].package == 1);
  CHECK(m.numa_nodes[0].cores == 8);
  CHECK(m.numa_nodes[0].memory_bytes == 512ULL << 30);
  std::vector<int> node0;
  for (int pu = 0; pu < 8; ++pu) node0.push_back(pu);
  for (int pu = 16; pu < 24; ++pu) node0.push_back(pu);
  CHECK(m.numa_nodes[0].pus == node0);
  CHECK(m.numa_distances == std::vector<std::uint64_t>{10, 21, 21, 10});
  CHECK_FALSE(m.binding.known);  // not this machine

  // The BMC's VGA controller is not a GPU.
  REQUIRE(m.gpus.size() == 8);
  REQUIRE(m.nics.size() == 8);
  for (std::size_t i = 0; i < 8; ++i) {
    const auto& g = m.gpus[i];
    const auto& n = m.nics[i];
    INFO("index " << i);
    CHECK(g.vendor_id == 0x10de);
    CHECK(g.pci_class == 0x0302);
    CHECK(g.cuda_index == static_cast<int>(i));
    CHECK(g.os_devices == std::vector<std::string>{"cuda" + std::to_string(i), "nvml" + std::to_string(i)});
    CHECK(g.where.numa_node == static_cast<int>(i / 4));
    CHECK(g.where.package == static_cast<int>(i / 4));
    CHECK(n.name == "mlx5_" + std::to_string(i));
    CHECK(n.rdma);
    CHECK(n.vendor_id == 0x15b3);
    CHECK(n.netdevs == std::vector<std::string>{"ib" + std::to_string(i)});
    CHECK(n.pci_gbytes_per_s > 30);
    CHECK(n.where.numa_node == static_cast<int>(i / 4));
    CHECK(topo::rail_of(m, static_cast<int>(i)) == static_cast<int>(i));
  }
  CHECK(m.gpus[0].where.pci_bus_id == "0000:12:00.0");
  CHECK(m.nics[0].where.pci_bus_id == "0000:13:00.0");
  CHECK(m.gpus[0].where.pci_path == std::vector<std::string>{"0000:[10-2f]", "0000:[11-13]", "0000:[12-12]"});
}

TEST_CASE("locality on the DGX-like host follows the PCIe tree, then the sockets", "[topology]") {
  const auto& m = dgx();
  const auto level = [&](int g, int n) {
    return topo::distance(m.gpus[static_cast<std::size_t>(g)].where, m.nics[static_cast<std::size_t>(n)].where).level;
  };
  CHECK(level(0, 0) == topo::locality::pci_switch);
  CHECK(level(0, 1) == topo::locality::host_bridge);
  CHECK(level(0, 2) == topo::locality::numa_node);
  CHECK(level(0, 4) == topo::locality::machine);
  CHECK(level(5, 4) == topo::locality::host_bridge);
  CHECK(topo::distance(m.gpus[3].where, m.gpus[3].where).level == topo::locality::device);
  for (std::size_t g = 0; g < m.gpus.size(); ++g) {
    INFO("GPU " << g);
    CHECK(topo::nearest_nic(m, m.gpus[g].where) == static_cast<int>(g));
  }
  // From CPUs: a socket's PUs are local to its NUMA node's NICs only.
  const auto socket1 = topo::place_of_cpus(m, m.numa_nodes[1].pus);
  CHECK(socket1.numa_node == 1);
  CHECK(topo::distance(socket1, m.nics[5].where).level == topo::locality::numa_node);
  CHECK(topo::distance(socket1, m.nics[0].where).level == topo::locality::machine);
  CHECK(topo::place_of_cpus(m, std::vector<int>{0, 8}).numa_node == -1);  // both sockets
  CHECK(topo::place_of_cpus(m, std::vector<int>{}) == topo::place{});
}

TEST_CASE("NIC choice: 8 GPU ranks on 8 NICs get the NIC on their GPU's switch", "[topology]") {
  const auto choice = topo::choose_nics(dgx(), gpu_ranks(8), no_env);
  REQUIRE(choice.size() == 8);
  for (std::size_t r = 0; r < 8; ++r) {
    INFO("local rank " << r);
    CHECK(choice[r].name == "mlx5_" + std::to_string(r));
    CHECK(choice[r].nic == static_cast<int>(r));
    CHECK(choice[r].rail == static_cast<int>(r));
    CHECK(choice[r].near.level == topo::locality::pci_switch);
    CHECK(choice[r].basis == topo::nic_basis::gpu);
    CHECK(choice[r].port == 0);
  }
  // Deterministic: the same inputs, the same answer.
  CHECK(topo::choose_nics(dgx(), gpu_ranks(8), no_env) == choice);
}

TEST_CASE("NIC choice alone, before rendezvous, agrees with the choice for the whole host", "[topology]") {
  // The verbs transport decides from the launcher's local rank only.
  const auto all = topo::choose_nics(dgx(), gpu_ranks(8), no_env);
  for (int r = 0; r < 8; ++r) {
    const auto mine = topo::nic_for_local_rank(dgx(), r, no_env);
    REQUIRE(mine.has_value());
    CHECK(*mine == all[static_cast<std::size_t>(r)]);
  }
  // More ranks than GPUs: taken to be bound as this process is (not known
  // for an XML host), so they spread over the NICs in rail order.
  CHECK(topo::nic_for_local_rank(dgx(), 9, no_env)->rail == 1);
  CHECK_FALSE(topo::nic_for_local_rank(dgx(), -1, no_env).has_value());
  CHECK(topo::nic_for_local_rank(dgx(), 2, env_of({{"TUTTI_IB_HCA", "=mlx5_5"}}))->name == "mlx5_5");
}

TEST_CASE("NIC choice: 8 ranks on 2 NICs are 4 and 4, by socket", "[topology]") {
  const auto m = with_nics({"mlx5_0", "mlx5_4"});
  REQUIRE(m.nics.size() == 2);
  const std::vector<std::string> by_socket{"mlx5_0", "mlx5_0", "mlx5_0", "mlx5_0",
                                           "mlx5_4", "mlx5_4", "mlx5_4", "mlx5_4"};
  SECTION("ranks with GPUs") {
    const auto choice = topo::choose_nics(m, gpu_ranks(8), no_env);
    CHECK(names(choice) == by_socket);
    CHECK(choice[4].rail == 1);
    CHECK(choice[1].near.level == topo::locality::host_bridge);
    CHECK(choice[2].near.level == topo::locality::numa_node);
  }
  SECTION("ranks without GPUs bound to a socket each get that socket's NIC") {
    std::vector<topo::local_rank> ranks(8);
    for (std::size_t r = 0; r < 8; ++r) ranks[r].pus = m.numa_nodes[r / 4].pus;
    const auto choice = topo::choose_nics(m, ranks, no_env);
    CHECK(names(choice) == by_socket);
    CHECK(choice[0].basis == topo::nic_basis::cpu);
    CHECK(choice[0].near.level == topo::locality::numa_node);
    // Bound to one core of socket 1 is still socket 1.
    ranks.assign(1, topo::local_rank{-1, {9, 25}});
    CHECK(topo::choose_nics(m, ranks, no_env)[0].name == "mlx5_4");
  }
  SECTION("unbound ranks without GPUs are spread evenly") {
    const auto choice = topo::choose_nics(m, std::vector<topo::local_rank>(4), no_env);
    CHECK(names(choice) == std::vector<std::string>{"mlx5_0", "mlx5_4", "mlx5_0", "mlx5_4"});
    CHECK(choice[0].basis == topo::nic_basis::none);
  }
}

TEST_CASE("NIC choice balances equally near NICs before doubling up", "[topology]") {
  // Four ranks on socket 0 and all of its four NICs: each NIC once.
  std::vector<topo::local_rank> ranks(4);
  for (auto& r : ranks) r.pus = dgx().numa_nodes[0].pus;
  auto choice = topo::choose_nics(dgx(), ranks, no_env);
  CHECK(names(choice) == std::vector<std::string>{"mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"});
  // Nearness comes before balance: two ranks on GPU 0 both take the NIC on
  // its switch rather than spread to the one on the next switch.
  const auto two = with_nics({"mlx5_0", "mlx5_1"});
  choice = topo::choose_nics(two, std::vector<topo::local_rank>{{0, {}}, {0, {}}}, no_env);
  CHECK(names(choice) == std::vector<std::string>{"mlx5_0", "mlx5_0"});
}

TEST_CASE("NIC choice honours TUTTI_IB_HCA", "[topology]") {
  const auto ranks = gpu_ranks(4);
  SECTION("a list of whole names is assigned in turn") {
    const auto choice = topo::choose_nics(dgx(), ranks, env_of({{"TUTTI_IB_HCA", "mlx5_6,mlx5_7:1"}}));
    CHECK(names(choice) == std::vector<std::string>{"mlx5_6", "mlx5_7", "mlx5_6", "mlx5_7"});
    CHECK(choice[0].rail == 6);
    CHECK(choice[1].port == 1);
    CHECK(choice[0].basis == topo::nic_basis::hca_list);
    CHECK(choice[0].near.level == topo::locality::machine);
  }
  SECTION("names hwloc does not see are taken as given") {
    const auto choice = topo::choose_nics(dgx(), ranks, env_of({{"TUTTI_IB_HCA", "rxe0,rxe1"}}));
    CHECK(names(choice) == std::vector<std::string>{"rxe0", "rxe1", "rxe0", "rxe1"});
    CHECK(choice[1].nic == -1);
    CHECK(choice[1].rail == 1);
  }
  SECTION("an exclusion leaves the rest to topology") {
    const auto choice = topo::choose_nics(dgx(), ranks, env_of({{"TUTTI_IB_HCA", "^mlx5_1,mlx5_2"}}));
    CHECK(names(choice) == std::vector<std::string>{"mlx5_0", "mlx5_0", "mlx5_3", "mlx5_3"});
    CHECK(choice[1].basis == topo::nic_basis::gpu);
  }
  SECTION("a prefix narrows the set") {
    const auto m = with_nics({"mlx5_0", "mlx5_1", "mlx5_4"});
    const auto choice = topo::choose_nics(m, ranks, env_of({{"TUTTI_IB_HCA", "mlx5_1:1,mlx5_4"}}));
    // Whole names: in turn.
    CHECK(names(choice) == std::vector<std::string>{"mlx5_1", "mlx5_4", "mlx5_1", "mlx5_4"});
    const auto prefixed = topo::choose_nics(m, ranks, env_of({{"TUTTI_IB_HCA", "mlx5_:1"}}));
    CHECK(names(prefixed) == std::vector<std::string>{"mlx5_0", "mlx5_1", "mlx5_0", "mlx5_1"});
    CHECK(prefixed[0].port == 1);
  }
  SECTION("mistakes are errors naming the variable") {
    CHECK_TUTTI_ERROR(topo::choose_nics(dgx(), ranks, env_of({{"TUTTI_IB_HCA", "^mlx5"}})),
                      tutti::errc::invalid_argument, "TUTTI_IB_HCA='^mlx5' leaves none");
    CHECK_TUTTI_ERROR(topo::choose_nics(dgx(), ranks, env_of({{"TUTTI_IB_HCA", "mlx5_0:x"}})),
                      tutti::errc::invalid_argument, "TUTTI_IB_HCA: 'mlx5_0:x'");
    CHECK_TUTTI_ERROR(topo::choose_nics(dgx(), gpu_ranks(9), no_env), tutti::errc::invalid_argument,
                      "local rank 8 has GPU 8");
  }
}

TEST_CASE("TUTTI_IB_HCA parses as the verbs transport's", "[topology]") {
  const auto list = topo::parse_hca_list("^=mlx5_0:1,mlx5_2");
  CHECK(list.exclude);
  CHECK(list.exact);
  CHECK(list.entries == std::vector<topo::hca_list::entry>{{"mlx5_0", 1}, {"mlx5_2", 0}});
  CHECK(list.allows("mlx5_0"));  // only its port 1 is excluded
  CHECK_FALSE(list.allows("mlx5_2"));
  CHECK(list.allows("mlx5_20"));  // '=': whole names
  CHECK(topo::parse_hca_list("").allows("anything"));
  CHECK_TUTTI_ERROR(topo::parse_hca_list("mlx5_0,,mlx5_1"), tutti::errc::invalid_argument, "no device name");
}

TEST_CASE("a host with 2 GPUs and 1 NIC", "[topology]") {
  const auto m = topo::discover_xml_file(data_dir + "/two_gpu_one_nic.xml");
  REQUIRE(m.gpus.size() == 2);
  REQUIRE(m.nics.size() == 1);
  CHECK(m.nics[0].name == "mlx5_0");
  CHECK(m.nics[0].netdevs == std::vector<std::string>{"ens1f0"});
  CHECK(m.nics[0].where.numa_node == 1);
  const auto choice = topo::choose_nics(m, gpu_ranks(2), no_env);
  CHECK(names(choice) == std::vector<std::string>{"mlx5_0", "mlx5_0"});
  CHECK(choice[0].near.level == topo::locality::machine);
  CHECK(choice[1].near.level == topo::locality::pci_switch);
  CHECK(choice[1].rail == 0);
}

TEST_CASE("XML from text loads like the file", "[topology]") {
  std::ifstream in(data_dir + "/dgx_like.xml");
  std::stringstream text;
  text << in.rdbuf();
  const auto m = topo::discover_xml_text(text.str());
  CHECK(m.gpus == dgx().gpus);
  CHECK(m.nics == dgx().nics);
  CHECK(m.source == "xml text");
}

TEST_CASE("a synthetic description gives CPUs and memory, no devices", "[topology]") {
  const auto m = topo::discover_synthetic("pack:2 numa:1 core:4 pu:2");
  CHECK(m.packages == 2);
  CHECK(m.numa_nodes.size() == 2);
  CHECK(m.cores == 8);
  CHECK(m.pus == 16);
  CHECK(m.numa_nodes[1].cores == 4);
  CHECK(m.numa_nodes[1].pus == std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15});
  CHECK(m.gpus.empty());
  CHECK(m.nics.empty());
  // No NIC: every rank is told so, with no rail.
  const auto choice = topo::choose_nics(m, std::vector<topo::local_rank>(2), no_env);
  CHECK(choice[0].name.empty());
  CHECK(choice[0].rail == -1);
}

TEST_CASE("bad topology sources are errors naming them", "[topology]") {
  CHECK_TUTTI_ERROR(topo::discover_xml_file(data_dir + "/no_such_file.xml"), tutti::errc::invalid_argument,
                    "no_such_file.xml");
  CHECK_TUTTI_ERROR(topo::discover_xml_text("<topology>not hwloc"), tutti::errc::invalid_argument, "xml text");
  CHECK_TUTTI_ERROR(topo::discover_synthetic("pack:2 bogus:x"), tutti::errc::invalid_argument,
                    "synthetic:'pack:2 bogus:x'");
}
