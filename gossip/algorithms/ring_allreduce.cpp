#include "gossip/algorithms/ring_allreduce.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

namespace gossip::algorithms {

void ring_allreduce_sum(net::Transport& transport, std::uint64_t round, std::span<float> data,
                        std::span<float> scratch, RingTimes* times, std::uint32_t first_step) {
  const auto n = static_cast<std::size_t>(transport.size());
  if (n == 1) return;
  const std::size_t d = data.size();
  // Chunk c of n: the first d % n chunks are one longer, so any d works (d < n included: some
  // chunks are empty and their steps carry no bytes).
  auto begin = [&](std::size_t c) { return c * (d / n) + std::min(c, d % n); };
  auto size = [&](std::size_t c) { return begin(c + 1) - begin(c); };
  auto chunk = [&](long long c) {
    const auto m = static_cast<long long>(n);
    return static_cast<std::size_t>(((c % m) + m) % m);
  };
  if (scratch.size() < ring_scratch_floats(d, n))
    throw std::invalid_argument("ring_allreduce_sum: scratch shorter than ceil(d / n)");
  using Clock = std::chrono::steady_clock;
  auto mark = Clock::now();
  auto lap = [&](double RingTimes::*field) {
    const auto now = Clock::now();
    if (times) times->*field += std::chrono::duration<double>(now - mark).count();
    mark = now;
  };
  const auto r = static_cast<long long>(transport.rank());
  const auto steps = static_cast<long long>(n) - 1;
  std::uint32_t step = first_step;
  auto exchange = [&](std::size_t send_c, std::size_t recv_c) {
    transport.ring_step(round, step++, std::as_bytes(data.subspan(begin(send_c), size(send_c))),
                        std::as_writable_bytes(scratch.first(size(recv_c))));
    lap(&RingTimes::wait_s);
  };
  // Reduce-scatter: after n - 1 steps this peer holds the full sum of chunk r + 1.
  for (long long s = 0; s < steps; ++s) {
    const std::size_t rc = chunk(r - s - 1);
    exchange(chunk(r - s), rc);
    float* dst = data.data() + begin(rc);
    for (std::size_t k = 0; k < size(rc); ++k) dst[k] += scratch[k];
    lap(&RingTimes::reduce_s);
  }
  // All-gather: pass the finished chunks around the ring.
  for (long long s = 0; s < steps; ++s) {
    const std::size_t rc = chunk(r - s);
    exchange(chunk(r + 1 - s), rc);
    std::copy_n(scratch.begin(), size(rc), data.begin() + static_cast<std::ptrdiff_t>(begin(rc)));
    lap(&RingTimes::reduce_s);
  }
}

void allreduce_mean(net::Transport& transport, std::uint64_t round, std::span<float> data,
                    std::uint32_t first_step) {
  const auto n = static_cast<std::size_t>(transport.size());
  if (n == 1) return;
  std::vector<float> scratch(ring_scratch_floats(data.size(), n));
  ring_allreduce_sum(transport, round, data, scratch, nullptr, first_step);
  const float inv = 1.0f / static_cast<float>(n);
  for (float& v : data) v *= inv;
}

}  // namespace gossip::algorithms
