// TUTTI_IB_HCA as a value: the grammar the verbs transport accepts (after
// NCCL_IB_HCA), parsed without verbs headers so that NIC choice can honour
// it on hosts and in tests without rdma-core.
//
//   mlx5_0,mlx5_1     entries match NIC names as prefixes ("mlx5" matches mlx5_0)
//   =mlx5_1           whole names only
//   ^mlx5_2:1         every NIC but these
//   mlx5_0:1          a port number after ':' (counting from 1; 0 is any)
#pragma once

#include <algorithm>
#include <charconv>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <tutti/detail/list_text.hpp>
#include <tutti/error.hpp>

namespace tutti::topology {

struct hca_list {
  struct entry {
    std::string device;
    int port = 0;  // 0: any port

    friend bool operator==(const entry&, const entry&) = default;
  };
  bool exclude = false;  // '^'
  bool exact = false;    // '='
  std::vector<entry> entries;

  [[nodiscard]] bool empty() const noexcept { return entries.empty(); }

  [[nodiscard]] bool names(const entry& e, std::string_view device) const {
    return exact ? device == e.device : device.starts_with(e.device);
  }

  // Whether the list lets port `port` of `device` be used.
  [[nodiscard]] bool allows(std::string_view device, int port) const {
    if (entries.empty()) return true;
    const bool listed = std::any_of(entries.begin(), entries.end(), [&](const entry& e) {
      return names(e, device) && (e.port == 0 || e.port == port);
    });
    return listed != exclude;
  }

  // Whether the list lets `device` be used at all: an exclusion with a port
  // leaves the device's other ports, so only port-less ones rule it out.
  [[nodiscard]] bool allows(std::string_view device) const {
    if (entries.empty()) return true;
    if (exclude) {
      return std::none_of(entries.begin(), entries.end(),
                          [&](const entry& e) { return e.port == 0 && names(e, device); });
    }
    return std::any_of(entries.begin(), entries.end(), [&](const entry& e) { return names(e, device); });
  }

  friend bool operator==(const hca_list&, const hca_list&) = default;
};

inline hca_list parse_hca_list(std::string_view text) {
  using tutti::detail::fail;
  hca_list out;
  if (text.starts_with('^')) {
    out.exclude = true;
    text.remove_prefix(1);
  }
  if (text.starts_with('=')) {
    out.exact = true;
    text.remove_prefix(1);
  }
  tutti::detail::for_each_item(text, [&](std::string_view item) {
    hca_list::entry e;
    const auto colon = item.find(':');
    e.device = std::string(item.substr(0, colon));
    if (colon != std::string_view::npos) {
      const std::string_view port = item.substr(colon + 1);
      const auto [end, status] = std::from_chars(port.data(), port.data() + port.size(), e.port);
      if (port.empty() || status != std::errc{} || end != port.data() + port.size() || e.port < 1 || e.port > 255) {
        fail(errc::invalid_argument, "TUTTI_IB_HCA: '", item, "' has no valid port after ':' (ports count from 1)");
      }
    }
    if (e.device.empty()) fail(errc::invalid_argument, "TUTTI_IB_HCA: an entry has no device name");
    out.entries.push_back(std::move(e));
  });
  return out;
}

}  // namespace tutti::topology
