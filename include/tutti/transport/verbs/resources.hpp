// The device-wide objects of a verbs transport: protection domain,
// completion queues and their event channel, the shared receive queue. A
// part of its own because every queue pair shares them and they outlive
// every queue pair.
//
// One shared receive queue of zero-length work requests serves every QP
// (data arrives by RDMA WRITE, only the immediate needs a WQE), so receive
// WQEs do not grow with the number of peers.
#pragma once

#include <fcntl.h>
#include <infiniband/verbs.h>

#include <cerrno>
#include <cstring>

#include <tutti/error.hpp>
#include <tutti/transport/verbs/loader.hpp>

namespace tutti::detail::verbs {

inline constexpr int srq_depth = 2048;
inline constexpr int cq_depth = 8192;

struct resources {
  const api* f;
  ibv_pd* pd = nullptr;
  ibv_comp_channel* events = nullptr;
  ibv_cq* send_cq = nullptr;
  ibv_cq* recv_cq = nullptr;
  ibv_srq* srq = nullptr;

  resources(const api& functions, ibv_context* context) : f(&functions) {
    try {
      pd = f->alloc_pd(context);
      if (pd == nullptr) fail_errno("ibv_alloc_pd");
      events = f->create_comp_channel(context);
      if (events == nullptr) fail_errno("ibv_create_comp_channel");
      ::fcntl(events->fd, F_SETFL, ::fcntl(events->fd, F_GETFL) | O_NONBLOCK);
      send_cq = f->create_cq(context, cq_depth, nullptr, events, 0);
      if (send_cq == nullptr) fail_errno("ibv_create_cq");
      recv_cq = f->create_cq(context, srq_depth * 2, nullptr, events, 0);
      if (recv_cq == nullptr) fail_errno("ibv_create_cq");
      ibv_srq_init_attr attr{};
      attr.attr.max_wr = srq_depth;
      attr.attr.max_sge = 1;
      srq = f->create_srq(pd, &attr);
      if (srq == nullptr) fail_errno("ibv_create_srq");
    } catch (...) {
      release();
      throw;
    }
  }
  resources(const resources&) = delete;
  resources& operator=(const resources&) = delete;
  ~resources() { release(); }

  static void fail_errno(const char* what) {
    fail(errc::transport, "verbs: ", what, " failed: ", std::strerror(errno));
  }
  void arm() const {
    ibv_req_notify_cq(send_cq, 0);
    ibv_req_notify_cq(recv_cq, 0);
  }
  // Gives the shared receive queue back `count` of its zero-length work
  // requests, as many as completions took.
  void post_receives(int count) const {
    for (int i = 0; i < count; ++i) {
      ibv_recv_wr wr{};
      wr.wr_id = 0;
      wr.num_sge = 0;
      ibv_recv_wr* bad = nullptr;
      if (const int rc = ibv_post_srq_recv(srq, &wr, &bad); rc != 0) {
        fail(errc::transport, "verbs: ibv_post_srq_recv failed: ", std::strerror(rc));
      }
    }
  }
  void consume_events() const {
    void* context = nullptr;
    ibv_cq* cq = nullptr;
    while (f->get_cq_event(events, &cq, &context) == 0) f->ack_cq_events(cq, 1);
  }
  void release() noexcept {
    if (srq != nullptr) f->destroy_srq(srq);
    if (recv_cq != nullptr) f->destroy_cq(recv_cq);
    if (send_cq != nullptr) f->destroy_cq(send_cq);
    if (events != nullptr) f->destroy_comp_channel(events);
    if (pd != nullptr) f->dealloc_pd(pd);
    srq = nullptr;
    recv_cq = send_cq = nullptr;
    events = nullptr;
    pd = nullptr;
  }
};

}  // namespace tutti::detail::verbs
