// The shm transport's entry in the transport list: processes on one host.
#pragma once

#include <tutti/transport/descriptor.hpp>
#include <tutti/transport/shm/transport.hpp>

namespace tutti::transport {

inline constexpr descriptor shm_descriptor{
    .name = "shm",
    .reaches = reach::host,
    .auto_preference = 30,
    .open = open_as<shm_transport>,
    .link = {1.0, algorithm::us_per_byte(6.0)},
    .summary = "processes of one host: rings in a shared segment, single-copy (CMA) for large messages",
};

}  // namespace tutti::transport
