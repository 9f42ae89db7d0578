// barrier schedules.
//
// - dissemination: ceil(log2(size)) rounds; in round k each rank signals
//   rank + 2^k and waits for rank - 2^k. After the last round every rank has
//   heard, directly or through others, from every rank. Messages are empty.
#pragma once

#include <utility>

#include <tutti/algorithm/collective.hpp>
#include <tutti/algorithm/partition.hpp>
#include <tutti/algorithm/schedule.hpp>

namespace tutti::algorithm::barrier {

inline schedule dissemination(const collective_args& a) {
  using namespace detail;
  schedule_builder b;
  for (int distance = 1; distance < a.size; distance *= 2) {
    b.send(wrap(a.rank + distance, a.size), {buffer::scratch, 0}, 0);
    b.recv(wrap(a.rank - distance, a.size), {buffer::scratch, 0}, 0);
    // Empty messages touch no bytes, so only a fence makes the next round's
    // signal wait for this round's.
    b.fence();
  }
  return std::move(b).finish();
}

}  // namespace tutti::algorithm::barrier
