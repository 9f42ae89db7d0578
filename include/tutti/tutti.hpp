// The umbrella header: everything a framework embedding tutti needs.
#pragma once

#include <tutti/error.hpp>
#include <tutti/ops.hpp>
#include <tutti/runtime/reduce_kernel.hpp>
#include <tutti/types.hpp>
#include <tutti/version.hpp>
