// The faulty transport's entry in the transport list (test builds only,
// TUTTI_TEST_TRANSPORTS): never picked by auto; TUTTI_TRANSPORT=faulty
// runs a world over it.
#pragma once

#include <tutti/transport/descriptor.hpp>
#include <tutti/transport/faulty/transport.hpp>

namespace tutti::transport {

inline constexpr descriptor faulty_descriptor{
    .name = "faulty",
    .reaches = reach::network,
    .open = open_as<faulty_transport>,
    .link = tcp_descriptor.link,
    .summary = "for tests: tcp with sends held back a few progress rounds and a chosen send failed (TUTTI_FAULTY)",
};

}  // namespace tutti::transport
