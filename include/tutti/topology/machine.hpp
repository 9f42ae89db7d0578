// What one host looks like to tutti: NUMA nodes, cores, the process's CPU
// binding, NICs and GPUs, and how near any two of them are. Plain values
// with no hwloc in them, so that NIC choice, planning and tests can work on
// a machine that was discovered elsewhere, loaded from XML, or written by
// hand (discover.hpp fills them in from hwloc).
//
// Nearness follows the PCIe tree first and the CPU side after it, as NCCL's
// PIX/PXB/PHB/NODE/SYS classes do: traffic between two devices behind one
// PCIe switch never reaches the root complex, traffic under one host bridge
// never crosses the socket interconnect, and so on outwards.
#pragma once

#include <algorithm>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tutti::topology {

// The smallest part of the host that holds both of two things; nearest first.
enum class locality : std::uint8_t {
  device,       // one PCI device (two functions or ports of one card)
  pci_switch,   // behind a common PCIe bridge below the host bridge
  host_bridge,  // under one PCIe host bridge (root complex)
  numa_node,    // attached to one NUMA node
  package,      // one socket, different NUMA nodes
  machine,      // across sockets, or where either side is unknown
};

constexpr std::string_view to_string(locality level) noexcept {
  switch (level) {
    case locality::device: return "device";
    case locality::pci_switch: return "pci_switch";
    case locality::host_bridge: return "host_bridge";
    case locality::numa_node: return "numa_node";
    case locality::package: return "package";
    case locality::machine: return "machine";
  }
  return "unknown";
}

// Where a device or a set of CPUs sits.
struct place {
  // The PCIe bridges above a device, host bridge first, each named by the bus
  // range below it ("0000:[10-2f]"), which is unique on a host. Empty for
  // CPUs and for devices not on PCI.
  std::vector<std::string> pci_path;
  std::string pci_bus_id;  // the device's own, "0000:12:00.0"; empty for CPUs
  int numa_node = -1;      // index into machine::numa_nodes when local to exactly one
  int package = -1;        // package index when local to exactly one

  friend bool operator==(const place&, const place&) = default;
};

// How near two places are: the locality class, then the number of PCIe
// bridges between them within it (fewer is nearer), so a NIC on the GPU's
// own switch port beats one a level further down.
struct nearness {
  locality level = locality::machine;
  int hops = 0;

  friend auto operator<=>(const nearness&, const nearness&) = default;
};

namespace detail {

// "0000:12:00.1" and "0000:12:00.0" are functions of one card.
inline std::string_view without_function(std::string_view bus_id) noexcept {
  const auto dot = bus_id.rfind('.');
  return dot == std::string_view::npos ? bus_id : bus_id.substr(0, dot);
}

}  // namespace detail

inline nearness distance(const place& a, const place& b) {
  if (!a.pci_bus_id.empty() && detail::without_function(a.pci_bus_id) == detail::without_function(b.pci_bus_id)) {
    return {locality::device, 0};
  }
  if (!a.pci_path.empty() && !b.pci_path.empty() && a.pci_path.front() == b.pci_path.front()) {
    const auto common = static_cast<std::size_t>(
        std::mismatch(a.pci_path.begin(), a.pci_path.end(), b.pci_path.begin(), b.pci_path.end()).first -
        a.pci_path.begin());
    const int hops = static_cast<int>(a.pci_path.size() - common + b.pci_path.size() - common);
    return {common >= 2 ? locality::pci_switch : locality::host_bridge, hops};
  }
  if (a.numa_node >= 0 && a.numa_node == b.numa_node) return {locality::numa_node, 0};
  if (a.package >= 0 && a.package == b.package) return {locality::package, 0};
  return {locality::machine, 0};
}

struct numa_node {
  int index = 0;          // its position in machine::numa_nodes (hwloc's logical index)
  unsigned os_index = 0;  // the kernel's node number
  int package = -1;       // -1: not inside one package
  std::vector<int> pus;   // the kernel's CPU numbers, ascending
  int cores = 0;
  std::uint64_t memory_bytes = 0;  // 0: unknown

  friend bool operator==(const numa_node&, const numa_node&) = default;
};

struct cpu_binding {
  bool known = false;           // false: not this machine, or the OS would not tell
  std::vector<int> pus;         // the kernel's CPU numbers the process may run on
  std::vector<int> numa_nodes;  // indexes of the NUMA nodes those PUs belong to

  friend bool operator==(const cpu_binding&, const cpu_binding&) = default;
};

struct nic {
  std::string name;  // the verbs device ("mlx5_0"); the network interface when not RDMA
  bool rdma = false;
  std::vector<std::string> netdevs;  // network interfaces of the same PCI function
  std::uint16_t vendor_id = 0;
  std::uint16_t device_id = 0;
  std::string vendor;
  std::string model;
  double pci_gbytes_per_s = 0;  // the PCIe link's bandwidth; 0: unknown
  double port_gbits_per_s = 0;  // the network port's rate (sysfs, this machine only); 0: unknown
  place where;

  friend bool operator==(const nic&, const nic&) = default;
};

struct gpu {
  std::uint16_t vendor_id = 0;
  std::uint16_t device_id = 0;
  std::uint16_t pci_class = 0;  // 0x0302 3D controller, 0x0300 VGA, ...
  std::string vendor;
  std::string model;
  std::vector<std::string> os_devices;  // what drivers call it: "cuda0", "nvml0", "card1", "rsmi0"
  int cuda_index = -1;                  // N of an OS device "cudaN", when hwloc saw CUDA
  place where;

  friend bool operator==(const gpu&, const gpu&) = default;
};

struct machine {
  std::string source;    // where it came from: "this machine", "xml:FILE", "synthetic:DESC"
  std::string hostname;  // empty when unknown
  int packages = 0;
  int cores = 0;
  int pus = 0;
  std::vector<numa_node> numa_nodes;
  cpu_binding binding;
  std::vector<nic> nics;  // in PCI bus order: stable across hosts built alike
  std::vector<gpu> gpus;  // in PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID)
  // The NUMA nodes' relative latencies (the firmware's SLIT, 10 = local),
  // row-major by node index; empty when hwloc has none.
  std::vector<std::uint64_t> numa_distances;

  friend bool operator==(const machine&, const machine&) = default;
};

// Where a set of CPUs (a rank's binding) sits: the NUMA node or package all
// of them are in, when they are in one. PUs the machine does not have are
// ignored; no PUs is an unknown place.
inline place place_of_cpus(const machine& m, std::span<const int> pus) {
  std::vector<int> nodes;
  for (const auto& node : m.numa_nodes) {
    const bool touched = std::any_of(pus.begin(), pus.end(),
                                     [&](int pu) { return std::binary_search(node.pus.begin(), node.pus.end(), pu); });
    if (touched) nodes.push_back(node.index);
  }
  place out;
  if (nodes.empty()) return out;
  const int package = m.numa_nodes[static_cast<std::size_t>(nodes.front())].package;
  const bool one_package = std::all_of(
      nodes.begin(), nodes.end(), [&](int n) { return m.numa_nodes[static_cast<std::size_t>(n)].package == package; });
  if (nodes.size() == 1) out.numa_node = nodes.front();
  if (one_package) out.package = package;
  return out;
}

}  // namespace tutti::topology
