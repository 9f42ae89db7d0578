// The verbs transport's entry in the transport list: hosts with RDMA ports
// (InfiniBand, RoCE), preferred over tcp between hosts when both ends have
// one.
#pragma once

#include <tutti/transport/descriptor.hpp>
#include <tutti/transport/verbs/transport.hpp>

namespace tutti::transport {

inline constexpr descriptor verbs_descriptor{
    .name = "verbs",
    .reaches = reach::network,
    .auto_preference = 20,
    .may_be_unavailable = true,
    .open = open_as<verbs_transport>,
    .link = {3.0, algorithm::us_per_byte(12.0)},
    .can = {.registers_memory = true},
    .summary = "hosts with RDMA ports: RC queue pairs, eager RDMA WRITE with immediate, zero-copy rendezvous",
};

}  // namespace tutti::transport
