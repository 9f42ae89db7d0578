// Fills a topology::machine in from hwloc: the live machine, an hwloc XML
// export (lstopo foo.xml, from any host) or a synthetic description
// ("pack:2 numa:1 core:4 pu:2", CPUs and memory only: no PCI devices).
//
// Only this header includes <hwloc.h>; what it returns holds no hwloc types.
// Machines without GPUs or RDMA NICs simply have none in the result.
#pragma once

#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/error.hpp>
#include <tutti/topology/machine.hpp>

namespace tutti::topology {

namespace detail {

using tutti::detail::concat;
using tutti::detail::fail;

struct topology_deleter {
  void operator()(hwloc_topology* t) const noexcept { hwloc_topology_destroy(t); }
};
using topology_ptr = std::unique_ptr<hwloc_topology, topology_deleter>;

struct bitmap_deleter {
  void operator()(hwloc_bitmap_s* b) const noexcept { hwloc_bitmap_free(b); }
};
using bitmap_ptr = std::unique_ptr<hwloc_bitmap_s, bitmap_deleter>;

inline std::vector<int> bits_of(hwloc_const_bitmap_t set) {
  std::vector<int> out;
  if (set == nullptr) return out;
  for (int i = hwloc_bitmap_first(set); i >= 0; i = hwloc_bitmap_next(set, i)) out.push_back(i);
  return out;
}

inline std::string info(hwloc_obj_t obj, const char* name) {
  const char* value = hwloc_obj_get_info_by_name(obj, name);
  return value == nullptr ? std::string() : std::string(value);
}

inline std::string format_bus_id(const hwloc_obj_attr_u::hwloc_pcidev_attr_s& pci) {
  char text[32];
  std::snprintf(text, sizeof text, "%04x:%02x:%02x.%01x", static_cast<unsigned>(pci.domain),
                static_cast<unsigned>(pci.bus), static_cast<unsigned>(pci.dev), static_cast<unsigned>(pci.func));
  return text;
}

inline std::string format_bus_range(hwloc_obj_t bridge) {
  const auto& down = bridge->attr->bridge.downstream.pci;
  char text[32];
  std::snprintf(text, sizeof text, "%04x:[%02x-%02x]", static_cast<unsigned>(down.domain),
                static_cast<unsigned>(down.secondary_bus), static_cast<unsigned>(down.subordinate_bus));
  return text;
}

// The one package `set` lies in, or -1.
inline int package_of(hwloc_topology_t topo, hwloc_const_cpuset_t set) {
  int found = -1;
  for (hwloc_obj_t p = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PACKAGE, nullptr); p != nullptr;
       p = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PACKAGE, p)) {
    if (!hwloc_bitmap_intersects(p->cpuset, set)) continue;
    if (found >= 0) return -1;
    found = static_cast<int>(p->logical_index);
  }
  return found;
}

// The CPU side an object is attached to: its NUMA node and package when it
// is local to exactly one.
inline void set_cpu_side(hwloc_topology_t topo, hwloc_obj_t obj, place& out) {
  hwloc_obj_t cpu_side = hwloc_get_non_io_ancestor_obj(topo, obj);
  if (cpu_side == nullptr) return;
  if (cpu_side->nodeset != nullptr && hwloc_bitmap_weight(cpu_side->nodeset) == 1) {
    const auto os = static_cast<unsigned>(hwloc_bitmap_first(cpu_side->nodeset));
    if (hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(topo, os)) {
      out.numa_node = static_cast<int>(node->logical_index);
    }
  }
  if (cpu_side->cpuset != nullptr) out.package = package_of(topo, cpu_side->cpuset);
}

inline place place_of_pci(hwloc_topology_t topo, hwloc_obj_t pci) {
  place out;
  out.pci_bus_id = format_bus_id(pci->attr->pcidev);
  for (hwloc_obj_t up = pci->parent; up != nullptr && up->type == HWLOC_OBJ_BRIDGE; up = up->parent) {
    out.pci_path.push_back(format_bus_range(up));
  }
  std::reverse(out.pci_path.begin(), out.pci_path.end());
  set_cpu_side(topo, pci, out);
  return out;
}

// The PCI device an OS device belongs to, or null.
inline hwloc_obj_t pci_parent(hwloc_obj_t obj) {
  for (hwloc_obj_t up = obj->parent; up != nullptr; up = up->parent) {
    if (up->type == HWLOC_OBJ_PCI_DEVICE) return up;
    if (up->type != HWLOC_OBJ_MISC && up->type != HWLOC_OBJ_OS_DEVICE) return nullptr;
  }
  return nullptr;
}

// The leading number of a sysfs file ("100 Gb/sec (4X EDR)", "25000"), or 0.
inline double read_sysfs_number(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!std::getline(in, text)) return 0;
  double value = 0;
  const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), value);
  (void)end;
  return status == std::errc{} && value > 0 ? value : 0;
}

// GPUs are 3D controllers, or display controllers from GPU vendors: a
// server's BMC shows up as a VGA device too, and nothing should run on it.
inline bool is_gpu(const hwloc_obj_attr_u::hwloc_pcidev_attr_s& pci) {
  const unsigned cls = pci.class_id;
  if (cls == 0x0302) return true;
  const bool gpu_vendor = pci.vendor_id == 0x10de || pci.vendor_id == 0x1002;  // NVIDIA, AMD
  return gpu_vendor && (cls == 0x0300 || cls == 0x0380 || cls == 0x1200);
}

inline void read_numa(hwloc_topology_t topo, machine& m) {
  const int count = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < count; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    if (obj == nullptr) continue;
    numa_node node;
    node.index = i;
    node.os_index = obj->os_index;
    node.pus = bits_of(obj->cpuset);
    if (obj->attr != nullptr) node.memory_bytes = obj->attr->numanode.local_memory;
    if (hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_PACKAGE, obj)) {
      node.package = static_cast<int>(pkg->logical_index);
    } else if (obj->cpuset != nullptr && !hwloc_bitmap_iszero(obj->cpuset)) {
      node.package = package_of(topo, obj->cpuset);
    }
    for (hwloc_obj_t core = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_CORE, nullptr); core != nullptr;
         core = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_CORE, core)) {
      if (obj->cpuset != nullptr && hwloc_bitmap_isincluded(core->cpuset, obj->cpuset)) ++node.cores;
    }
    m.numa_nodes.push_back(std::move(node));
  }

  // The first matrix over all NUMA nodes, whatever its kind (usually the SLIT).
  unsigned n = 1;
  hwloc_distances_s* dist = nullptr;
  if (hwloc_distances_get_by_type(topo, HWLOC_OBJ_NUMANODE, &n, &dist, 0, 0) != 0 || n == 0) return;
  if (dist->nbobjs == static_cast<unsigned>(count)) {
    const auto side = static_cast<std::size_t>(count);
    m.numa_distances.assign(side * side, 0);
    for (std::size_t a = 0; a < side; ++a) {
      for (std::size_t b = 0; b < side; ++b) {
        m.numa_distances[dist->objs[a]->logical_index * side + dist->objs[b]->logical_index] =
            dist->values[a * side + b];
      }
    }
  }
  hwloc_distances_release(topo, dist);
}

inline void read_binding(hwloc_topology_t topo, machine& m) {
  if (!hwloc_topology_is_thissystem(topo)) return;
  const bitmap_ptr set(hwloc_bitmap_alloc());
  if (!set) return;
  if (hwloc_get_cpubind(topo, set.get(), HWLOC_CPUBIND_PROCESS) != 0 && hwloc_get_cpubind(topo, set.get(), 0) != 0) {
    return;
  }
  hwloc_bitmap_and(set.get(), set.get(), hwloc_topology_get_topology_cpuset(topo));
  m.binding.known = true;
  m.binding.pus = bits_of(set.get());
  for (const auto& node : m.numa_nodes) {
    const bool touched = std::any_of(node.pus.begin(), node.pus.end(),
                                     [&](int pu) { return hwloc_bitmap_isset(set.get(), static_cast<unsigned>(pu)); });
    if (touched) m.binding.numa_nodes.push_back(node.index);
  }
}

inline void fill_pci_identity(hwloc_obj_t pci, std::uint16_t& vendor_id, std::uint16_t& device_id, std::string& vendor,
                              std::string& model) {
  vendor_id = pci->attr->pcidev.vendor_id;
  device_id = pci->attr->pcidev.device_id;
  vendor = info(pci, "PCIVendor");
  model = info(pci, "PCIDevice");
}

inline void read_nics(hwloc_topology_t topo, machine& m) {
  const bool live = hwloc_topology_is_thissystem(topo) != 0;
  // OpenFabrics devices first, so that a netdev of the same PCI function
  // (ib0 next to mlx5_0) joins the RDMA NIC instead of becoming one.
  std::map<hwloc_obj_t, std::size_t> by_pci;
  for (const auto kind : {HWLOC_OBJ_OSDEV_OPENFABRICS, HWLOC_OBJ_OSDEV_NETWORK}) {
    for (hwloc_obj_t os = hwloc_get_next_osdev(topo, nullptr); os != nullptr; os = hwloc_get_next_osdev(topo, os)) {
      if (os->attr->osdev.type != kind || os->name == nullptr) continue;
      hwloc_obj_t pci = pci_parent(os);
      if (kind == HWLOC_OBJ_OSDEV_NETWORK && pci != nullptr) {
        if (auto it = by_pci.find(pci); it != by_pci.end()) {
          m.nics[it->second].netdevs.emplace_back(os->name);
          continue;
        }
      }
      nic n;
      n.name = os->name;
      n.rdma = kind == HWLOC_OBJ_OSDEV_OPENFABRICS;
      if (!n.rdma) n.netdevs.push_back(n.name);
      if (pci != nullptr) {
        fill_pci_identity(pci, n.vendor_id, n.device_id, n.vendor, n.model);
        n.pci_gbytes_per_s = static_cast<double>(pci->attr->pcidev.linkspeed);
        n.where = place_of_pci(topo, pci);
        by_pci.emplace(pci, m.nics.size());
      } else {
        set_cpu_side(topo, os, n.where);
      }
      if (live) {
        n.port_gbits_per_s = n.rdma ? read_sysfs_number(concat("/sys/class/infiniband/", n.name, "/ports/1/rate"))
                                    : read_sysfs_number(concat("/sys/class/net/", n.name, "/speed")) / 1000.0;
      }
      m.nics.push_back(std::move(n));
    }
  }
  // Bus order makes rail numbers agree across identical hosts; devices off
  // PCI (no bus id) go last, by name.
  std::stable_sort(m.nics.begin(), m.nics.end(), [](const nic& a, const nic& b) {
    const bool a_off = a.where.pci_bus_id.empty();
    const bool b_off = b.where.pci_bus_id.empty();
    if (a_off != b_off) return b_off;
    if (a.where.pci_bus_id != b.where.pci_bus_id) return a.where.pci_bus_id < b.where.pci_bus_id;
    return a.name < b.name;
  });
}

inline void read_gpus(hwloc_topology_t topo, machine& m) {
  for (hwloc_obj_t pci = hwloc_get_next_pcidev(topo, nullptr); pci != nullptr; pci = hwloc_get_next_pcidev(topo, pci)) {
    if (!is_gpu(pci->attr->pcidev)) continue;
    gpu g;
    fill_pci_identity(pci, g.vendor_id, g.device_id, g.vendor, g.model);
    g.pci_class = pci->attr->pcidev.class_id;
    g.where = place_of_pci(topo, pci);
    for (hwloc_obj_t os = pci->io_first_child; os != nullptr; os = os->next_sibling) {
      if (os->type != HWLOC_OBJ_OS_DEVICE || os->name == nullptr) continue;
      const std::string_view name = os->name;
      g.os_devices.emplace_back(name);
      if (os->attr->osdev.type == HWLOC_OBJ_OSDEV_COPROC && name.starts_with("cuda")) {
        int index = -1;
        const auto digits = name.substr(4);
        const auto [end, status] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
        if (status == std::errc{} && end == digits.data() + digits.size()) g.cuda_index = index;
      }
    }
    m.gpus.push_back(std::move(g));
  }
  std::stable_sort(m.gpus.begin(), m.gpus.end(),
                   [](const gpu& a, const gpu& b) { return a.where.pci_bus_id < b.where.pci_bus_id; });
}

// Loads a topology from `configure` (which picks the source; returns 0 or
// -1 with errno) and reads everything tutti needs from it.
template <class Configure>
machine load(std::string source, Configure&& configure) {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) fail(errc::unavailable, "topology: hwloc_topology_init failed");
  const topology_ptr topo(raw);
  // PCI devices, bridges and OS devices are off by default; IMPORTANT keeps
  // GPUs, NICs and the bridges above them, and drops the rest of the bus.
  hwloc_topology_set_io_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  // On Linux sysfs gives the same PCI devices, bridges and link speeds as
  // libpciaccess ("pci"), which adds vendor names and keeps a pci.ids cache
  // it never frees (600 KB that LeakSanitizer reports). OpenCL, GL and the
  // CUDA runtime would start GPU drivers, or X, inside a communication
  // library's start-up; NVML names the same GPUs cheaply.
  for (const char* component : {"pci", "opencl", "gl", "cuda"}) {
    hwloc_topology_set_components(raw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, component);
  }
  errno = 0;
  if (configure(raw) != 0) {
    const int error = errno;
    fail(errc::invalid_argument, "topology: cannot use ", source,
         error != 0 ? concat(": ", std::strerror(error)) : std::string());
  }
  errno = 0;
  if (hwloc_topology_load(raw) != 0) {
    const int error = errno;
    fail(errc::invalid_argument, "topology: hwloc cannot load ", source,
         error != 0 ? concat(": ", std::strerror(error)) : std::string());
  }
  machine m;
  m.source = std::move(source);
  m.hostname = info(hwloc_get_root_obj(raw), "HostName");
  m.packages = hwloc_get_nbobjs_by_type(raw, HWLOC_OBJ_PACKAGE);
  m.cores = hwloc_get_nbobjs_by_type(raw, HWLOC_OBJ_CORE);
  m.pus = hwloc_get_nbobjs_by_type(raw, HWLOC_OBJ_PU);
  read_numa(raw, m);
  read_binding(raw, m);
  read_nics(raw, m);
  read_gpus(raw, m);
  return m;
}

}  // namespace detail

// The machine this process runs on, with its CPU binding.
inline machine discover() {
  return detail::load("this machine", [](hwloc_topology_t) { return 0; });
}

// discover(), once per process: a discovery costs about 10 ms, and every
// communicator with an RDMA device (splits and dups too) needs the host's
// NICs. The hardware does not change under a running process; the binding
// is the one at the first call.
inline const machine& this_machine() {
  static const machine host = discover();
  return host;
}

// An hwloc XML export (`lstopo FILE.xml`, hwloc 1.x or 2.x format). The
// binding is unknown: it is not this machine.
inline machine discover_xml_file(const std::string& path) {
  return detail::load(tutti::detail::concat("xml:", path),
                      [&](hwloc_topology_t t) { return hwloc_topology_set_xml(t, path.c_str()); });
}

// The same, from the XML text itself.
inline machine discover_xml_text(std::string_view xml) {
  // hwloc wants the terminating NUL inside the given size.
  const std::string text(xml);
  return detail::load("xml text", [&](hwloc_topology_t t) {
    return hwloc_topology_set_xmlbuffer(t, text.c_str(), static_cast<int>(text.size() + 1));
  });
}

// A synthetic description, e.g. "pack:2 numa:1 core:4 pu:2": CPUs and
// memory only, no PCI devices (GPUs and NICs come from XML).
inline machine discover_synthetic(const std::string& description) {
  return detail::load(tutti::detail::concat("synthetic:'", description, "'"),
                      [&](hwloc_topology_t t) { return hwloc_topology_set_synthetic(t, description.c_str()); });
}

}  // namespace tutti::topology
