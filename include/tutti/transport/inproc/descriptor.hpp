// The inproc transport's entry in the transport list: threads of one
// process, and every rank's channel to itself.
#pragma once

#include <tutti/transport/descriptor.hpp>
#include <tutti/transport/inproc/transport.hpp>

namespace tutti::transport {

inline constexpr descriptor inproc_descriptor{
    .name = "inproc",
    .reaches = reach::process,
    .auto_preference = 40,
    .serves_self = true,
    .open = open_as<inproc_transport>,
    // A copy from buffer to buffer: priced like shm.
    .link = {1.0, algorithm::us_per_byte(6.0)},
    .summary = "threads of one process: one copy, straight from the sender's buffer into the receiver's",
};

}  // namespace tutti::transport
