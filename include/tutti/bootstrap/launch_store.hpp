// The store a launched job meets in: where the launcher's environment says
// (bootstrap/launcher.hpp), a file store or a TCP store that rank 0 hosts.
// communicator::from_env forms its world on it.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <tutti/bootstrap/file_store.hpp>
#include <tutti/bootstrap/launcher.hpp>
#include <tutti/bootstrap/store.hpp>
#include <tutti/bootstrap/tcp_store.hpp>
#include <tutti/detail/env.hpp>
#include <tutti/detail/log.hpp>
#include <tutti/error.hpp>

namespace tutti::detail {

struct joined_store {
  launch_info launch;
  std::shared_ptr<store> client;
  // Rank 0's, for a TCP store: it must outlive every client of this
  // process, and stays up a while after a failed start (linger_after_failure).
  std::shared_ptr<tutti::tcp_store_server> server;

  // How long a rank 0 whose bootstrap failed keeps its store up for the
  // others to read the fault.
  static constexpr std::chrono::seconds server_linger{5};

  // Drops this process's own client first: the server lingers until its
  // clients have gone.
  void linger_after_failure() {
    client.reset();
    if (server) server->linger(server_linger);
  }
};

// Joins the store the launcher names (TUTTI_STORE, or its own variables);
// rank 0 hosts it when it is a TCP store, listening on TUTTI_STORE_BIND if
// set. TUTTI_STORE_TOKEN authenticates every connection.
inline joined_store join_launch_store(std::chrono::milliseconds timeout) {
  joined_store out;
  out.launch = detect_launch();
  const launch_info& launch = out.launch;
  log(log_level::info, "rank ", launch.rank, " of ", launch.world_size, " from ", launch.launcher, ", store ",
      launch.store);
  if (launch.store.starts_with("file://")) {
    out.client = std::make_shared<tutti::file_store>(launch.store.substr(7));
    return out;
  }
  const std::string token = process_env("TUTTI_STORE_TOKEN").value_or("");
  const auto where = parse_tcp_url(launch.store, "TUTTI_STORE");
  if (launch.rank == 0) {
    endpoint bind = where;
    if (auto host = process_env("TUTTI_STORE_BIND")) bind.host = *host;
    try {
      out.server = std::make_shared<tutti::tcp_store_server>(bind, token);
    } catch (const error& e) {
      fail(e.code(), e.message(), " (rank 0 hosts the store: TUTTI_STORE must name an address of rank 0's",
           " host, or TUTTI_STORE_BIND the address to listen on)");
    }
  }
  try {
    out.client = std::make_shared<tutti::tcp_store>(where, token, timeout);
  } catch (const error&) {
    out.linger_after_failure();
    throw;
  }
  return out;
}

}  // namespace tutti::detail
