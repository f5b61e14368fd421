#include "src/collective.hpp"

#include <algorithm>

namespace gossip::runtime {

void allreduce_mean(net::Transport& transport, std::uint64_t round, std::span<float> data) {
  const auto n = static_cast<std::size_t>(transport.size());
  if (n == 1) return;
  const std::size_t d = data.size();
  auto begin = [&](std::size_t c) { return c * (d / n) + std::min(c, d % n); };
  auto size = [&](std::size_t c) { return begin(c + 1) - begin(c); };
  auto chunk = [&](long long c) {
    const auto m = static_cast<long long>(n);
    return static_cast<std::size_t>(((c % m) + m) % m);
  };
  std::vector<float> recv(d / n + 1);
  const auto r = static_cast<long long>(transport.rank());
  std::uint32_t step = 0;
  for (long long s = 0; s + 1 < static_cast<long long>(n); ++s, ++step) {
    const std::size_t sc = chunk(r - s), rc = chunk(r - s - 1);
    transport.ring_step(round, step, std::as_bytes(data.subspan(begin(sc), size(sc))),
                        std::as_writable_bytes(std::span(recv.data(), size(rc))));
    for (std::size_t k = 0; k < size(rc); ++k) data[begin(rc) + k] += recv[k];
  }
  for (long long s = 0; s + 1 < static_cast<long long>(n); ++s, ++step) {
    const std::size_t sc = chunk(r + 1 - s), rc = chunk(r - s);
    transport.ring_step(round, step, std::as_bytes(data.subspan(begin(sc), size(sc))),
                        std::as_writable_bytes(std::span(recv.data(), size(rc))));
    std::copy_n(recv.begin(), size(rc), data.begin() + static_cast<std::ptrdiff_t>(begin(rc)));
  }
  const float inv = 1.0f / static_cast<float>(n);
  for (float& v : data) v *= inv;
}

}  // namespace gossip::runtime
