// The umbrella header: everything a framework embedding tutti needs.
#pragma once

#include <tutti/bootstrap/file_store.hpp>
#include <tutti/bootstrap/memory_store.hpp>
#include <tutti/bootstrap/tcp_store.hpp>
#include <tutti/communicator.hpp>
#include <tutti/error.hpp>
#include <tutti/ops.hpp>
#include <tutti/options.hpp>
#include <tutti/p2p.hpp>
#include <tutti/request.hpp>
#include <tutti/runtime/reduce_kernel.hpp>
#include <tutti/topology/cluster.hpp>
#include <tutti/topology/discover.hpp>
#include <tutti/topology/nic_choice.hpp>
#include <tutti/types.hpp>
#include <tutti/version.hpp>
