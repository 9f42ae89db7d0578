// Point-to-point operations for communicator::exchange: a batch of sends
// and receives posted together, as between ncclGroupStart and ncclGroupEnd
// (or torch's batch_isend_irecv), so that pairwise exchanges in any order
// cannot deadlock.
//
//   comm.exchange({tutti::send_op(std::span<const float>(mine), right),
//                  tutti::recv_op(std::span<float>(theirs), left)});
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <tutti/types.hpp>

namespace tutti {

struct p2p_op {
  enum class direction : std::uint8_t { send, recv };
  direction kind = direction::send;
  int peer = 0;
  void* data = nullptr;  // const for sends: never written through
  std::size_t bytes = 0;
};

template <element T>
p2p_op send_op(std::span<const T> buffer, int peer) {
  return {p2p_op::direction::send, peer, const_cast<T*>(buffer.data()), buffer.size_bytes()};
}

template <element T>
p2p_op recv_op(std::span<T> buffer, int peer) {
  return {p2p_op::direction::recv, peer, buffer.data(), buffer.size_bytes()};
}

}  // namespace tutti
