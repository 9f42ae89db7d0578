// The comma lists of the TUTTI_* variables ("all_reduce=ring,broadcast=chain",
// "alpha_us=2,reduce_gbps=8", "mlx5_0:1,mlx5_1"), parsed alike everywhere.
#pragma once

#include <string_view>
#include <utility>

#include <tutti/error.hpp>

namespace tutti::detail {

// Calls item(text) for every comma-separated item of `text`, empty ones
// included (the caller says why they are wrong); none for empty text.
template <class Item>
void for_each_item(std::string_view text, Item&& item) {
  while (!text.empty()) {
    const auto comma = text.find(',');
    item(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
}

// "key=value" as (key, value); otherwise errc::invalid_argument saying that
// `item` in `what` is not of the form `form`.
inline std::pair<std::string_view, std::string_view> split_assignment(std::string_view item, std::string_view what,
                                                                      std::string_view form) {
  const auto eq = item.find('=');
  if (eq == std::string_view::npos) fail(errc::invalid_argument, what, ": '", item, "' is not ", form);
  return {item.substr(0, eq), item.substr(eq + 1)};
}

}  // namespace tutti::detail
