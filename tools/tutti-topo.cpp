// tutti-topo: the host as tutti sees it, and the NIC each local rank would
// use. Reads the live machine, or another host's hwloc XML export, or a
// synthetic description:
//
//   tutti-topo                                  this machine
//   tutti-topo --xml dgx.xml --local-ranks 8    lstopo dgx.xml, taken on that host
//   tutti-topo --synthetic "pack:2 numa:1 core:4 pu:2" --json
//
// Local rank i is assumed to drive GPU i when there is one, and otherwise to
// be bound to the NUMA nodes in blocks (ranks 0..k-1 to node 0, ...), as
// launchers binding by NUMA node do. TUTTI_IB_HCA applies as in a job.
#include <tutti/topology/discover.hpp>
#include <tutti/topology/machine.hpp>
#include <tutti/topology/nic_choice.hpp>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

namespace topo = tutti::topology;
using tutti::detail::concat;

constexpr const char* usage =
    "usage: tutti-topo [--xml FILE | --synthetic DESC] [--local-ranks N] [--json]\n"
    "\n"
    "Prints the NUMA nodes, CPU binding, NICs and GPUs of this machine (or of the\n"
    "host an hwloc XML export or synthetic description stands for) and the NIC\n"
    "each of N local ranks would use (default N: the number of GPUs, at least 1).\n"
    "\n"
    "  --xml FILE          an hwloc XML export (lstopo FILE.xml on the host)\n"
    "  --synthetic DESC    an hwloc synthetic description, e.g. \"pack:2 numa:1 core:4 pu:2\"\n"
    "  --local-ranks N     the number of local ranks to choose NICs for (1..4096)\n"
    "  --json              JSON instead of text\n"
    "  --help              this text\n";

struct options {
  std::optional<std::string> xml;
  std::optional<std::string> synthetic;
  int local_ranks = 0;  // 0: the default
  bool json = false;
};

[[noreturn]] void bad_usage(const std::string& why) {
  std::fprintf(stderr, "tutti-topo: %s\n(tutti-topo --help for usage)\n", why.c_str());
  std::exit(2);
}

options parse(int argc, char** argv) {
  options out;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) bad_usage(concat(arg, " needs a value"));
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    } else if (arg == "--xml") {
      out.xml = value();
    } else if (arg == "--synthetic") {
      out.synthetic = value();
    } else if (arg == "--local-ranks") {
      const std::string text = value();
      int n = 0;
      const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (text.empty() || status != std::errc{} || end != text.data() + text.size() || n < 1 || n > 4096) {
        bad_usage(concat("--local-ranks '", text, "' is not a number in 1..4096"));
      }
      out.local_ranks = n;
    } else if (arg == "--json") {
      out.json = true;
    } else {
      bad_usage(concat("unknown argument '", arg, "'"));
    }
  }
  if (out.xml && out.synthetic) bad_usage("--xml and --synthetic are exclusive");
  return out;
}

// "0-7,16-23".
std::string ranges(std::span<const int> values) {
  std::string out;
  for (std::size_t i = 0; i < values.size();) {
    std::size_t j = i;
    while (j + 1 < values.size() && values[j + 1] == values[j] + 1) ++j;
    out += concat(out.empty() ? "" : ",", values[i]);
    if (j > i) out += concat('-', values[j]);
    i = j + 1;
  }
  return out.empty() ? "none" : out;
}

std::string hex4(std::uint16_t v) {
  char text[8];
  std::snprintf(text, sizeof text, "%04x", static_cast<unsigned>(v));
  return text;
}

std::string gib(std::uint64_t bytes) {
  if (bytes == 0) return "memory unknown";
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / static_cast<double>(1ULL << 30));
  return text;
}

std::string where_text(const topo::place& p) {
  return concat("NUMA ", p.numa_node < 0 ? std::string("?") : std::to_string(p.numa_node), ", package ",
                p.package < 0 ? std::string("?") : std::to_string(p.package));
}

std::vector<topo::local_rank> assumed_ranks(const topo::machine& m, int n) {
  std::vector<topo::local_rank> out(static_cast<std::size_t>(n));
  const auto nodes = m.numa_nodes.size();
  for (std::size_t r = 0; r < out.size(); ++r) {
    if (r < m.gpus.size()) {
      out[r].gpu = static_cast<int>(r);
    } else if (nodes > 0) {
      out[r].pus = m.numa_nodes[r * nodes / out.size()].pus;
    }
  }
  return out;
}

void print_text(const topo::machine& m, std::span<const topo::local_rank> ranks,
                std::span<const topo::nic_assignment> choice) {
  std::printf("%s%s%s\n", m.source.c_str(), m.hostname.empty() ? "" : ", host ", m.hostname.c_str());
  std::printf("%d packages, %d cores, %d PUs, %zu NUMA nodes\n", m.packages, m.cores, m.pus, m.numa_nodes.size());
  for (const auto& node : m.numa_nodes) {
    std::printf("  NUMA %d (os %u, package %s): %d cores, PUs %s, %s\n", node.index, node.os_index,
                node.package < 0 ? "?" : std::to_string(node.package).c_str(), node.cores, ranges(node.pus).c_str(),
                gib(node.memory_bytes).c_str());
  }
  if (!m.numa_distances.empty()) {
    std::printf("  NUMA distances:");
    const std::size_t n = m.numa_nodes.size();
    for (std::size_t a = 0; a < n; ++a) {
      std::printf("%s", a == 0 ? " " : " | ");
      for (std::size_t b = 0; b < n; ++b) {
        std::printf("%s%llu", b == 0 ? "" : " ", static_cast<unsigned long long>(m.numa_distances[a * n + b]));
      }
    }
    std::printf("\n");
  }
  if (m.binding.known) {
    std::printf("binding: PUs %s (NUMA %s)\n", ranges(m.binding.pus).c_str(), ranges(m.binding.numa_nodes).c_str());
  } else {
    std::printf("binding: unknown (not this machine)\n");
  }

  std::printf("%zu NICs:\n", m.nics.size());
  for (std::size_t i = 0; i < m.nics.size(); ++i) {
    const auto& n = m.nics[i];
    const int rail = topo::rail_of(m, static_cast<int>(i));
    std::printf("  %-10s %-5s rail %-3s %s  %s", n.name.c_str(), n.rdma ? "rdma" : "net",
                rail < 0 ? "-" : std::to_string(rail).c_str(),
                n.where.pci_bus_id.empty() ? "(not on PCI)" : n.where.pci_bus_id.c_str(), where_text(n.where).c_str());
    if (n.pci_gbytes_per_s > 0) std::printf(", PCIe %.1f GB/s", n.pci_gbytes_per_s);
    if (n.port_gbits_per_s > 0) std::printf(", port %.0f Gb/s", n.port_gbits_per_s);
    if (!n.netdevs.empty() && (n.rdma || n.netdevs.size() > 1)) {
      std::string list;
      for (const auto& d : n.netdevs) list += concat(list.empty() ? "" : ",", d);
      std::printf(", netdev %s", list.c_str());
    }
    if (n.vendor_id != 0) std::printf(", [%s:%s]", hex4(n.vendor_id).c_str(), hex4(n.device_id).c_str());
    if (!n.vendor.empty() || !n.model.empty()) std::printf(" %s %s", n.vendor.c_str(), n.model.c_str());
    std::printf("\n");
  }

  std::printf("%zu GPUs:\n", m.gpus.size());
  for (std::size_t i = 0; i < m.gpus.size(); ++i) {
    const auto& g = m.gpus[i];
    std::string devices;
    for (const auto& d : g.os_devices) devices += concat(devices.empty() ? "" : ",", d);
    const int near = topo::nearest_nic(m, g.where);
    std::printf("  GPU %zu %s  %s, [%s:%s] %s %s%s%s%s", i, g.where.pci_bus_id.c_str(), where_text(g.where).c_str(),
                hex4(g.vendor_id).c_str(), hex4(g.device_id).c_str(), g.vendor.c_str(), g.model.c_str(),
                devices.empty() ? "" : " (", devices.c_str(), devices.empty() ? "" : ")");
    if (near >= 0) {
      const auto& n = m.nics[static_cast<std::size_t>(near)];
      std::printf(", nearest NIC %s (%s)", n.name.c_str(),
                  std::string(topo::to_string(topo::distance(g.where, n.where).level)).c_str());
    }
    std::printf("\n");
  }

  std::printf("NIC choice for %zu local ranks (GPU i, else bound by NUMA node in blocks):\n", ranks.size());
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    const auto& a = choice[r];
    const std::string from = ranks[r].gpu >= 0      ? concat("GPU ", ranks[r].gpu)
                             : ranks[r].pus.empty() ? std::string("unbound")
                                                    : concat("PUs ", ranges(ranks[r].pus));
    if (a.name.empty()) {
      std::printf("  local rank %zu (%s): no NIC\n", r, from.c_str());
      continue;
    }
    std::printf("  local rank %zu (%s): %s%s rail %d, %s, by %s\n", r, from.c_str(), a.name.c_str(),
                a.port == 0 ? "" : concat(':', a.port).c_str(), a.rail,
                std::string(topo::to_string(a.near.level)).c_str(), std::string(topo::to_string(a.basis)).c_str());
  }
}

// --- JSON ---------------------------------------------------------------------

std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(c));
      out += esc;
    } else {
      out += c;
    }
  }
  return out + '"';
}

template <class T, class Each>
std::string array(std::span<const T> items, Each each) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string item = each(items[i]);
    out += concat(i == 0 ? "" : item.starts_with('\n') ? "," : ", ", item);
  }
  return out + ']';
}

std::string ints(std::span<const int> values) {
  return array(values, [](int v) { return std::to_string(v); });
}

std::string strings(std::span<const std::string> values) {
  return array(values, [](const std::string& v) { return quoted(v); });
}

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

std::string place_json(const topo::place& p) {
  return concat("\"pci_bus_id\": ", p.pci_bus_id.empty() ? std::string("null") : quoted(p.pci_bus_id),
                ", \"pci_path\": ", strings(p.pci_path), ", \"numa_node\": ", p.numa_node,
                ", \"package\": ", p.package);
}

void print_json(const topo::machine& m, std::span<const topo::local_rank> ranks,
                std::span<const topo::nic_assignment> choice) {
  std::string out = "{\n";
  out += concat("  \"source\": ", quoted(m.source), ",\n  \"hostname\": ", quoted(m.hostname), ",\n");
  out += concat("  \"packages\": ", m.packages, ", \"cores\": ", m.cores, ", \"pus\": ", m.pus, ",\n");
  out += "  \"numa_nodes\": " +
         array(std::span(m.numa_nodes),
               [](const topo::numa_node& n) {
                 return concat("\n    {\"index\": ", n.index, ", \"os_index\": ", n.os_index,
                               ", \"package\": ", n.package, ", \"cores\": ", n.cores,
                               ", \"memory_bytes\": ", n.memory_bytes, ", \"pus\": ", ints(n.pus), "}");
               }) +
         ",\n";
  std::vector<std::string> rows;
  const std::size_t side = m.numa_nodes.size();
  for (std::size_t a = 0; a < side && !m.numa_distances.empty(); ++a) {
    rows.push_back(
        array(std::span(m.numa_distances).subspan(a * side, side), [](std::uint64_t v) { return std::to_string(v); }));
  }
  out += "  \"numa_distances\": " + array(std::span<const std::string>(rows), [](const std::string& r) { return r; }) +
         ",\n";
  out += concat("  \"binding\": {\"known\": ", m.binding.known ? "true" : "false", ", \"pus\": ", ints(m.binding.pus),
                ", \"numa_nodes\": ", ints(m.binding.numa_nodes), "},\n");
  std::vector<int> indexes(m.nics.size());
  for (std::size_t i = 0; i < indexes.size(); ++i) indexes[i] = static_cast<int>(i);
  out += "  \"nics\": " +
         array(std::span<const int>(indexes),
               [&](int i) {
                 const auto& n = m.nics[static_cast<std::size_t>(i)];
                 return concat("\n    {\"name\": ", quoted(n.name), ", \"rdma\": ", n.rdma ? "true" : "false",
                               ", \"rail\": ", topo::rail_of(m, i), ", \"netdevs\": ", strings(n.netdevs),
                               ", \"vendor_id\": ", quoted(hex4(n.vendor_id)),
                               ", \"device_id\": ", quoted(hex4(n.device_id)), ", \"vendor\": ", quoted(n.vendor),
                               ", \"model\": ", quoted(n.model), ", \"pci_gbytes_per_s\": ", number(n.pci_gbytes_per_s),
                               ", \"port_gbits_per_s\": ", number(n.port_gbits_per_s), ", ", place_json(n.where), "}");
               }) +
         ",\n";
  out +=
      "  \"gpus\": " +
      array(std::span(m.gpus),
            [&](const topo::gpu& g) {
              const int near = topo::nearest_nic(m, g.where);
              const auto* nic = near < 0 ? nullptr : &m.nics[static_cast<std::size_t>(near)];
              return concat(
                  "\n    {\"vendor_id\": ", quoted(hex4(g.vendor_id)), ", \"device_id\": ", quoted(hex4(g.device_id)),
                  ", \"pci_class\": ", quoted(hex4(g.pci_class)), ", \"vendor\": ", quoted(g.vendor),
                  ", \"model\": ", quoted(g.model), ", \"os_devices\": ", strings(g.os_devices),
                  ", \"cuda_index\": ", g.cuda_index, ", ", place_json(g.where),
                  ", \"nearest_nic\": ", nic ? quoted(nic->name) : std::string("null"), ", \"nearest_locality\": ",
                  nic ? quoted(topo::to_string(topo::distance(g.where, nic->where).level)) : std::string("null"), "}");
            }) +
      ",\n";
  std::string local = "[";
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    const auto& a = choice[r];
    local += concat(r == 0 ? "" : ",", "\n    {\"local_rank\": ", r, ", \"gpu\": ", ranks[r].gpu,
                    ", \"pus\": ", ints(ranks[r].pus), ", \"nic\": ", a.name.empty() ? "null" : quoted(a.name),
                    ", \"rail\": ", a.rail, ", \"port\": ", a.port, ", \"locality\": ", quoted(to_string(a.near.level)),
                    ", \"hops\": ", a.near.hops, ", \"basis\": ", quoted(to_string(a.basis)), "}");
  }
  out += "  \"local_ranks\": " + local + "]\n}\n";
  std::fputs(out.c_str(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);
  try {
    const topo::machine m = opt.xml         ? topo::discover_xml_file(*opt.xml)
                            : opt.synthetic ? topo::discover_synthetic(*opt.synthetic)
                                            : topo::discover();
    const int n = opt.local_ranks > 0 ? opt.local_ranks : std::max(1, static_cast<int>(m.gpus.size()));
    const auto ranks = assumed_ranks(m, n);
    const auto choice = topo::choose_nics(m, ranks);
    if (opt.json) {
      print_json(m, ranks, choice);
    } else {
      print_text(m, ranks, choice);
    }
    return 0;
  } catch (const tutti::error& e) {
    std::fprintf(stderr, "tutti-topo: %s\n", e.what());
    return 1;
  }
}
