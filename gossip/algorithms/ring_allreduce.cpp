#include "gossip/algorithms/ring_allreduce.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

namespace gossip::algorithms {

RingStepPlan ring_step_plan(std::size_t d, std::size_t n, std::size_t rank, std::size_t s) {
  // Chunk c of n: the first d % n chunks are one longer, so any d works (d < n included: some
  // chunks are empty and their steps carry no bytes).
  auto begin = [&](std::size_t c) { return c * (d / n) + std::min(c, d % n); };
  auto size = [&](std::size_t c) { return begin(c + 1) - begin(c); };
  // (rank − k) mod n for k in [0, 2n).
  auto chunk = [&](std::size_t back) { return (rank + 2 * n - back) % n; };
  RingStepPlan p;
  std::size_t send_c = 0, recv_c = 0;
  if (s + 1 < n) {
    // Reduce-scatter: after n − 1 steps this peer holds the full sum of chunk rank + 1.
    send_c = chunk(s);
    recv_c = chunk(s + 1);
  } else {
    // All-gather: pass the finished chunks around the ring.
    const std::size_t a = s - (n - 1);
    send_c = chunk(a + n - 1);  // rank + 1 − a
    recv_c = chunk(a);
    p.add = false;
  }
  p.send_begin = begin(send_c);
  p.send_size = size(send_c);
  p.recv_begin = begin(recv_c);
  p.recv_size = size(recv_c);
  return p;
}

std::vector<int> ring_members(const net::Transport& transport) {
  const std::vector<int> gone = net::gone_for_good(transport.departures());
  std::vector<int> members;
  for (int r = 0; r < transport.size(); ++r)
    if (!std::binary_search(gone.begin(), gone.end(), r)) members.push_back(r);
  return members;
}

bool ring_allreduce_sum(net::Transport& transport, std::uint64_t round, std::span<float> data,
                        std::span<float> scratch, RingTimes* times, std::uint32_t first_step) {
  std::size_t n = static_cast<std::size_t>(transport.size());
  auto rank = static_cast<std::size_t>(transport.rank());
  if (!transport.departures().empty()) {
    const auto members = ring_members(transport);
    n = members.size();
    rank = static_cast<std::size_t>(std::find(members.begin(), members.end(), transport.rank()) -
                                    members.begin());
  }
  if (n == 1) return true;
  const std::size_t d = data.size();
  if (scratch.size() < ring_scratch_floats(d, n))
    throw std::invalid_argument("ring_allreduce_sum: scratch shorter than ceil(d / n)");
  using Clock = std::chrono::steady_clock;
  auto mark = Clock::now();
  auto lap = [&](double RingTimes::*field) {
    const auto now = Clock::now();
    if (times) times->*field += std::chrono::duration<double>(now - mark).count();
    mark = now;
  };
  for (std::size_t s = 0; s < 2 * (n - 1); ++s) {
    const RingStepPlan p = ring_step_plan(d, n, rank, s);
    transport.ring_step(round, first_step + static_cast<std::uint32_t>(s),
                        std::as_bytes(data.subspan(p.send_begin, p.send_size)),
                        std::as_writable_bytes(scratch.first(p.recv_size)));
    if (transport.ring_cut()) return false;
    lap(&RingTimes::wait_s);
    float* dst = data.data() + p.recv_begin;
    if (p.add) {
      for (std::size_t k = 0; k < p.recv_size; ++k) dst[k] += scratch[k];
    } else {
      std::copy_n(scratch.begin(), p.recv_size, dst);
    }
    lap(&RingTimes::reduce_s);
  }
  return true;
}

bool allreduce_mean(net::Transport& transport, std::uint64_t round, std::span<float> data,
                    std::uint32_t first_step) {
  const auto n = ring_members(transport).size();
  if (n == 1) return true;
  std::vector<float> scratch(ring_scratch_floats(data.size(), n));
  if (!ring_allreduce_sum(transport, round, data, scratch, nullptr, first_step)) return false;
  const float inv = 1.0f / static_cast<float>(n);
  for (float& v : data) v *= inv;
  return true;
}

}  // namespace gossip::algorithms
