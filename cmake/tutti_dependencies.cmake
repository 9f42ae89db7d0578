# The interface dependencies of tutti, shared by the build tree and by
# tuttiConfig.cmake so that both resolve them the same way.
#
# libibverbs is deliberately not linked: the verbs transport opens it with
# dlopen at run time, so a binary that includes tutti runs on machines without
# rdma-core. Only its headers are needed at compile time.
include(CMakeFindDependencyMacro)

find_dependency(Threads)
find_dependency(PkgConfig)
pkg_check_modules(tutti_hwloc REQUIRED IMPORTED_TARGET GLOBAL hwloc)

find_path(TUTTI_IBVERBS_INCLUDE_DIR infiniband/verbs.h)
if(NOT TUTTI_IBVERBS_INCLUDE_DIR)
  message(FATAL_ERROR "tutti needs the rdma-core headers (infiniband/verbs.h): "
                      "install Debian's libibverbs-dev")
endif()

function(tutti_link_dependencies target)
  target_link_libraries(${target} INTERFACE Threads::Threads PkgConfig::tutti_hwloc ${CMAKE_DL_LIBS})
endfunction()
