// The tcp transport's entry in the transport list: any host, over sockets;
// what auto falls back to between hosts without RDMA.
#pragma once

#include <tutti/transport/descriptor.hpp>
#include <tutti/transport/tcp/transport.hpp>

namespace tutti::transport {

inline constexpr descriptor tcp_descriptor{
    .name = "tcp",
    .reaches = reach::network,
    .auto_preference = 10,
    .open = open_as<tcp_transport>,
    .link = {25.0, algorithm::us_per_byte(1.5)},
    .summary = "any host: one non-blocking socket per peer pair, connected on first use",
};

}  // namespace tutti::transport
