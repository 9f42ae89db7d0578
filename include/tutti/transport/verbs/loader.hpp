// libibverbs, loaded at run time. A program that includes tutti does not link
// against rdma-core, so it starts on machines without it; the verbs transport
// opens libibverbs.so.1 on first use and calls every exported verbs function
// through this table. The data-path verbs (post_send, post_recv, poll_cq,
// req_notify_cq) are inline in <infiniband/verbs.h> and go through the
// context's ops as rdma-core defines them, so they need no symbol; no code
// here may call an exported verbs function directly, and since nothing links
// libibverbs a stray call fails the link rather than the run.
#pragma once

#include <dlfcn.h>
#include <infiniband/verbs.h>

#include <cstddef>
#include <cstring>
#include <string>

#include <tutti/detail/env.hpp>
#include <tutti/error.hpp>

namespace tutti::detail::verbs {

// The exported functions tutti uses, by their symbol names.
struct api {
  decltype(&::ibv_get_device_list) get_device_list = nullptr;
  decltype(&::ibv_free_device_list) free_device_list = nullptr;
  decltype(&::ibv_get_device_name) get_device_name = nullptr;
  decltype(&::ibv_open_device) open_device = nullptr;
  decltype(&::ibv_close_device) close_device = nullptr;
  decltype(&::ibv_query_device) query_device = nullptr;
  decltype(&::ibv_query_port) query_port_compat = nullptr;  // the symbol behind the ibv_query_port macro
  decltype(&::ibv_query_gid) query_gid = nullptr;
  decltype(&::_ibv_query_gid_ex) query_gid_ex = nullptr;  // optional: rdma-core >= 32
  decltype(&::ibv_alloc_pd) alloc_pd = nullptr;
  decltype(&::ibv_dealloc_pd) dealloc_pd = nullptr;
  decltype(&::ibv_reg_mr) reg_mr = nullptr;  // the symbol behind the ibv_reg_mr macro
  decltype(&::ibv_dereg_mr) dereg_mr = nullptr;
  decltype(&::ibv_create_comp_channel) create_comp_channel = nullptr;
  decltype(&::ibv_destroy_comp_channel) destroy_comp_channel = nullptr;
  decltype(&::ibv_create_cq) create_cq = nullptr;
  decltype(&::ibv_destroy_cq) destroy_cq = nullptr;
  decltype(&::ibv_get_cq_event) get_cq_event = nullptr;
  decltype(&::ibv_ack_cq_events) ack_cq_events = nullptr;
  decltype(&::ibv_create_srq) create_srq = nullptr;
  decltype(&::ibv_destroy_srq) destroy_srq = nullptr;
  decltype(&::ibv_create_qp) create_qp = nullptr;
  decltype(&::ibv_modify_qp) modify_qp = nullptr;
  decltype(&::ibv_destroy_qp) destroy_qp = nullptr;
  decltype(&::ibv_wc_status_str) wc_status_str = nullptr;

  // ibv_query_port as the header's inline wrapper does it: the provider's
  // extended op when there is one, else the compatibility symbol.
  int query_port(ibv_context* context, std::uint8_t port, ibv_port_attr* attr) const {
    verbs_context* extended = verbs_get_ctx(context);
    const bool has_op = extended != nullptr &&
                        extended->sz >= sizeof(*extended) - offsetof(verbs_context, query_port) &&
                        extended->query_port != nullptr;
    if (has_op) return extended->query_port(context, port, attr, sizeof(*attr));
    std::memset(attr, 0, sizeof(*attr));
    return query_port_compat(context, port, reinterpret_cast<_compat_ibv_port_attr*>(attr));
  }
};

// What loading found: the table, or why there is none.
struct library {
  api functions;
  std::string missing;  // empty when loaded
  [[nodiscard]] bool loaded() const noexcept { return missing.empty(); }
};

namespace loader_detail {

template <class Fn>
bool bind(void* handle, Fn& slot, const char* symbol, std::string& missing) {
  slot = reinterpret_cast<Fn>(::dlsym(handle, symbol));
  if (slot == nullptr && missing.empty()) missing = concat("libibverbs.so.1 has no symbol ", symbol);
  return slot != nullptr;
}

inline library load(const char* name) {
  library out;
  // Never closed: providers it loads register themselves for the process's lifetime.
  void* handle = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    out.missing = concat("cannot load ", name, " (", why != nullptr ? why : "unknown reason",
                         "; install rdma-core's libibverbs1 and a provider package such as ibverbs-providers)");
    return out;
  }
  std::string& m = out.missing;
  api& f = out.functions;
  bind(handle, f.get_device_list, "ibv_get_device_list", m);
  bind(handle, f.free_device_list, "ibv_free_device_list", m);
  bind(handle, f.get_device_name, "ibv_get_device_name", m);
  bind(handle, f.open_device, "ibv_open_device", m);
  bind(handle, f.close_device, "ibv_close_device", m);
  bind(handle, f.query_device, "ibv_query_device", m);
  bind(handle, f.query_port_compat, "ibv_query_port", m);
  bind(handle, f.query_gid, "ibv_query_gid", m);
  bind(handle, f.alloc_pd, "ibv_alloc_pd", m);
  bind(handle, f.dealloc_pd, "ibv_dealloc_pd", m);
  bind(handle, f.reg_mr, "ibv_reg_mr", m);
  bind(handle, f.dereg_mr, "ibv_dereg_mr", m);
  bind(handle, f.create_comp_channel, "ibv_create_comp_channel", m);
  bind(handle, f.destroy_comp_channel, "ibv_destroy_comp_channel", m);
  bind(handle, f.create_cq, "ibv_create_cq", m);
  bind(handle, f.destroy_cq, "ibv_destroy_cq", m);
  bind(handle, f.get_cq_event, "ibv_get_cq_event", m);
  bind(handle, f.ack_cq_events, "ibv_ack_cq_events", m);
  bind(handle, f.create_srq, "ibv_create_srq", m);
  bind(handle, f.destroy_srq, "ibv_destroy_srq", m);
  bind(handle, f.create_qp, "ibv_create_qp", m);
  bind(handle, f.modify_qp, "ibv_modify_qp", m);
  bind(handle, f.destroy_qp, "ibv_destroy_qp", m);
  bind(handle, f.wc_status_str, "ibv_wc_status_str", m);
  std::string optional;
  bind(handle, f.query_gid_ex, "_ibv_query_gid_ex", optional);
  return out;
}

}  // namespace loader_detail

// The process's libibverbs, loaded once (thread-safe). TUTTI_IB_LIBRARY
// names another file, for tests and unusual installs.
inline const library& libibverbs() {
  static const library loaded = [] {
    const auto name = process_env("TUTTI_IB_LIBRARY");
    return loader_detail::load(name && !name->empty() ? name->c_str() : "libibverbs.so.1");
  }();
  return loaded;
}

}  // namespace tutti::detail::verbs
