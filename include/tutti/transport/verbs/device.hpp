// Which RDMA device, port and address a rank uses.
//
// Devices and ports are enumerated; a port is usable when ACTIVE.
// TUTTI_IB_HCA narrows the choice as NCCL's NCCL_IB_HCA does: a comma list
// of device[:port] entries matched as name prefixes ("mlx5" matches mlx5_0),
// exactly with a leading '=' ("=mlx5_1"), or excluded with a leading '^'
// ("^mlx5_2:1"). Among what remains the first is taken (the nearest to the
// rank's GPU or CPU once topology knows; see ../shared/DESIGN.md).
//
// Addressing: InfiniBand ports are reached by LID; RoCE ports by GID, and
// the GID index matters: a wrong one gives completions with "transport retry
// counter exceeded" (status 12) and nothing else. choose_gid takes the RoCE
// v2 GID carrying an IPv4 address (::ffff:a.b.c.d), else a RoCE v2 GID with a
// global IPv6 address, else the first valid entry; TUTTI_IB_GID_INDEX
// overrides.
#pragma once

#include <infiniband/verbs.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tutti/detail/env.hpp>
#include <tutti/detail/list_text.hpp>
#include <tutti/error.hpp>
#include <tutti/topology/hca_list.hpp>
#include <tutti/transport/verbs/loader.hpp>

namespace tutti::detail::verbs {

// --- GID choice -----------------------------------------------------------------

enum class gid_kind : std::uint8_t { infiniband, roce_v1, roce_v2 };

struct gid_entry {
  int index = 0;
  std::array<std::uint8_t, 16> gid{};
  gid_kind kind = gid_kind::infiniband;
};

[[nodiscard]] inline bool gid_is_zero(const std::array<std::uint8_t, 16>& g) {
  return std::all_of(g.begin(), g.end(), [](std::uint8_t b) { return b == 0; });
}
[[nodiscard]] inline bool gid_is_ipv4(const std::array<std::uint8_t, 16>& g) {
  return std::all_of(g.begin(), g.begin() + 10, [](std::uint8_t b) { return b == 0; }) && g[10] == 0xff &&
         g[11] == 0xff;
}
[[nodiscard]] inline bool gid_is_link_local(const std::array<std::uint8_t, 16>& g) {
  return g[0] == 0xfe && (g[1] & 0xc0) == 0x80;
}

inline std::string format_gid(const std::array<std::uint8_t, 16>& g) {
  if (gid_is_ipv4(g)) return concat("::ffff:", int{g[12]}, '.', int{g[13]}, '.', int{g[14]}, '.', int{g[15]});
  std::string out;
  char part[8];
  for (std::size_t i = 0; i < 16; i += 2) {
    std::snprintf(part, sizeof part, "%s%02x%02x", i == 0 ? "" : ":", g[i], g[i + 1]);
    out += part;
  }
  return out;
}

// The index to use in `table` (the port's valid entries), or nothing.
inline std::optional<int> choose_gid(std::span<const gid_entry> table) {
  auto first = [&](auto&& pick) -> std::optional<int> {
    for (const auto& e : table) {
      if (!gid_is_zero(e.gid) && pick(e)) return e.index;
    }
    return std::nullopt;
  };
  if (auto v4 = first([](const gid_entry& e) { return e.kind == gid_kind::roce_v2 && gid_is_ipv4(e.gid); })) return v4;
  if (auto v6 = first([](const gid_entry& e) {
        return e.kind == gid_kind::roce_v2 && !gid_is_ipv4(e.gid) && !gid_is_link_local(e.gid);
      })) {
    return v6;
  }
  return first([](const gid_entry&) { return true; });
}

// --- the chosen port ------------------------------------------------------------

struct port_choice {
  std::string device;
  int port = 1;
  bool roce = false;  // Ethernet link layer: addressed by GID
  int gid_index = 0;
  std::array<std::uint8_t, 16> gid{};
  std::uint16_t lid = 0;
  ibv_mtu active_mtu = IBV_MTU_1024;
  int max_inline = 0;  // filled when the first queue pair is created

  [[nodiscard]] std::string describe() const {
    return roce ? concat(device, ':', port, " GID index ", gid_index, " (", format_gid(gid), ')')
                : concat(device, ':', port, " LID ", lid);
  }
};

inline int mtu_bytes(ibv_mtu mtu) noexcept { return 128 << static_cast<int>(mtu); }

// Reads a port's GID table: through ibv_query_gid_ex where rdma-core has it,
// else ibv_query_gid and the kernel's gid_attrs/types in sysfs.
inline std::vector<gid_entry> read_gid_table(const api& f, ibv_context* context, const std::string& device, int port,
                                             int table_length, bool roce) {
  std::vector<gid_entry> out;
  for (int i = 0; i < table_length; ++i) {
    gid_entry e;
    e.index = i;
    if (f.query_gid_ex != nullptr) {
      ibv_gid_entry entry{};
      if (f.query_gid_ex(context, static_cast<std::uint32_t>(port), static_cast<std::uint32_t>(i), &entry, 0,
                         sizeof entry) != 0) {
        continue;  // an empty slot
      }
      std::memcpy(e.gid.data(), entry.gid.raw, 16);
      e.kind = entry.gid_type == IBV_GID_TYPE_ROCE_V2   ? gid_kind::roce_v2
               : entry.gid_type == IBV_GID_TYPE_ROCE_V1 ? gid_kind::roce_v1
                                                        : gid_kind::infiniband;
    } else {
      ibv_gid gid{};
      if (f.query_gid(context, static_cast<std::uint8_t>(port), i, &gid) != 0) continue;
      std::memcpy(e.gid.data(), gid.raw, 16);
      std::ifstream type(concat("/sys/class/infiniband/", device, "/ports/", port, "/gid_attrs/types/", i));
      std::string text;
      std::getline(type, text);
      e.kind = !roce ? gid_kind::infiniband : text == "RoCE v2" ? gid_kind::roce_v2 : gid_kind::roce_v1;
    }
    if (!gid_is_zero(e.gid)) out.push_back(e);
  }
  return out;
}

// An open device and the port chosen on it; closes the device when dropped.
class opened_device {
 public:
  opened_device() = default;
  opened_device(const api* f, ibv_context* context, port_choice choice) noexcept
      : f_(f), context_(context), choice_(std::move(choice)) {}
  opened_device(opened_device&& other) noexcept
      : f_(other.f_), context_(std::exchange(other.context_, nullptr)), choice_(std::move(other.choice_)) {}
  opened_device& operator=(opened_device&& other) noexcept {
    if (this != &other) {
      close();
      f_ = other.f_;
      context_ = std::exchange(other.context_, nullptr);
      choice_ = std::move(other.choice_);
    }
    return *this;
  }
  ~opened_device() { close(); }

  [[nodiscard]] ibv_context* context() const noexcept { return context_; }
  [[nodiscard]] const port_choice& port() const noexcept { return choice_; }
  [[nodiscard]] port_choice& port() noexcept { return choice_; }

 private:
  void close() noexcept {
    if (context_ != nullptr) f_->close_device(context_);
    context_ = nullptr;
  }
  const api* f_ = nullptr;
  ibv_context* context_ = nullptr;
  port_choice choice_;
};

// Opens the first active port TUTTI_IB_HCA allows, trying first the device
// `prefer` names (asked only when there are several devices: it may cost a
// topology discovery). Throws errc::unavailable saying why when there is
// none (no library, no device, no active port, the filter matched nothing),
// and errc::invalid_argument for bad variables.
inline opened_device open_port(const env_lookup& env, const std::function<std::string()>& prefer = {}) {
  const library& lib = libibverbs();
  if (!lib.loaded()) fail(errc::unavailable, "verbs: ", lib.missing);
  const api& f = lib.functions;
  const topology::hca_list filter = topology::parse_hca_list(env("TUTTI_IB_HCA").value_or(""));
  std::optional<int> forced_gid;
  if (auto text = env("TUTTI_IB_GID_INDEX"))
    forced_gid = static_cast<int>(parse_env_int("TUTTI_IB_GID_INDEX", *text, 0, 1023));

  int count = 0;
  ibv_device** list = f.get_device_list(&count);
  if (list == nullptr || count == 0) {
    const int error = errno;
    if (list != nullptr) f.free_device_list(list);
    fail(errc::unavailable, "verbs: no RDMA device found (ibv_get_device_list: ",
         list == nullptr ? std::string(std::strerror(error)) : std::string("an empty list"),
         "); is a provider and its kernel driver loaded?");
  }
  std::vector<int> order(static_cast<std::size_t>(count));
  for (int d = 0; d < count; ++d) order[static_cast<std::size_t>(d)] = d;
  if (count > 1 && prefer) {
    const std::string preferred = prefer();
    std::stable_partition(order.begin(), order.end(),
                          [&](int d) { return !preferred.empty() && f.get_device_name(list[d]) == preferred; });
  }
  std::string seen;  // every port considered, for the error message
  for (const int d : order) {
    const std::string name = f.get_device_name(list[d]);
    ibv_context* context = f.open_device(list[d]);
    if (context == nullptr) {
      seen += concat(seen.empty() ? "" : ", ", name, " (cannot open: ", std::strerror(errno), ")");
      continue;
    }
    ibv_device_attr device{};
    const int ports = f.query_device(context, &device) == 0 ? device.phys_port_cnt : 0;
    for (int p = 1; p <= ports; ++p) {
      ibv_port_attr attr{};
      if (f.query_port(context, static_cast<std::uint8_t>(p), &attr) != 0) continue;
      const bool active = attr.state == IBV_PORT_ACTIVE;
      const bool allowed = filter.allows(name, p);
      seen += concat(seen.empty() ? "" : ", ", name, ':', p, active ? "" : " (not active)",
                     allowed ? "" : " (excluded by TUTTI_IB_HCA)");
      if (!active || !allowed) continue;
      port_choice c;
      c.device = name;
      c.port = p;
      c.roce = attr.link_layer == IBV_LINK_LAYER_ETHERNET;
      c.lid = attr.lid;
      c.active_mtu = attr.active_mtu;
      if (c.roce || forced_gid) {
        const auto table = read_gid_table(f, context, name, p, attr.gid_tbl_len, c.roce);
        std::optional<int> index = forced_gid ? forced_gid : choose_gid(table);
        const auto found =
            std::find_if(table.begin(), table.end(), [&](const gid_entry& e) { return index && e.index == *index; });
        if (found == table.end()) {
          if (forced_gid) {
            f.close_device(context);
            f.free_device_list(list);
            fail(errc::invalid_argument, "verbs: TUTTI_IB_GID_INDEX=", *forced_gid, " is not a valid GID of ", name,
                 ':', p, " (", table.size(), " valid entries)");
          }
          seen += " (no valid GID)";
          continue;
        }
        c.gid_index = found->index;
        c.gid = found->gid;
      }
      f.free_device_list(list);
      return opened_device(&f, context, std::move(c));
    }
    f.close_device(context);
  }
  f.free_device_list(list);
  fail(errc::unavailable, "verbs: no usable port among ", seen,
       filter.empty() ? std::string() : concat(" (TUTTI_IB_HCA=", env("TUTTI_IB_HCA").value_or(""), ")"));
}

}  // namespace tutti::detail::verbs
