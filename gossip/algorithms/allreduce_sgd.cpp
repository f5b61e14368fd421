// C-PSGD, the centralised baseline: x ← x − γ (1/n) Σ_i g_i with the sum computed by a ring
// all-reduce over the transport: reduce-scatter then all-gather, 2(n − 1) ring steps of about d/n
// floats each. Every peer ends with the same bytes of the sum (each chunk is reduced once, in ring
// order, then copied), so the models stay bit-identical across peers.

#include <algorithm>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

class AllreduceSgd final : public Algorithm {
 public:
  AllreduceSgd(const AlgorithmConfig& config, net::Transport& transport,
               const topology::Topology& topology, std::span<const float> x0)
      : Algorithm(config, transport, topology, x0) {
    if (config.codec != "identity" && !config.codec.empty()) {
      throw std::invalid_argument(fmt::format(
          "allreduce sends fp32 gradients; codec must be \"identity\", got \"{}\"", config.codec));
    }
    const auto n = static_cast<std::size_t>(size_);
    const std::size_t d = x_.size();
    if (n > 1) recv_.resize(d / n + (d % n != 0 ? 1 : 0));
  }

 private:
  // Chunk c of n: the first d % n chunks get one element more, so any d works (d < n included:
  // some chunks are empty and their ring steps carry no bytes).
  std::size_t chunk_begin(std::size_t c) const {
    const std::size_t n = static_cast<std::size_t>(size_);
    const std::size_t d = x_.size();
    return c * (d / n) + std::min(c, d % n);
  }
  std::size_t chunk_size(std::size_t c) const { return chunk_begin(c + 1) - chunk_begin(c); }
  std::size_t chunk_index(long long c) const {
    const long long n = size_;
    return static_cast<std::size_t>(((c % n) + n) % n);
  }

  void run_round() override {
    const long long n = size_;
    const long long r = rank_;
    std::uint32_t step = 0;
    // Reduce-scatter: after n − 1 steps this peer holds the full sum of chunk r + 1.
    for (long long s = 0; s + 1 < n; ++s, ++step) {
      const std::size_t send_c = chunk_index(r - s);
      const std::size_t recv_c = chunk_index(r - s - 1);
      ring(step, send_c, recv_c);
      Clock::time_point mark = Clock::now();
      float* dst = g_.data() + chunk_begin(recv_c);
      const std::size_t m = chunk_size(recv_c);
      for (std::size_t k = 0; k < m; ++k) dst[k] += recv_[k];
      last_.decode_s += seconds_since(mark);
    }
    // All-gather: pass the finished chunks around the ring.
    for (long long s = 0; s + 1 < n; ++s, ++step) {
      const std::size_t send_c = chunk_index(r + 1 - s);
      const std::size_t recv_c = chunk_index(r - s);
      ring(step, send_c, recv_c);
      Clock::time_point mark = Clock::now();
      std::copy_n(recv_.begin(), chunk_size(recv_c), g_.begin() + chunk_begin(recv_c));
      last_.decode_s += seconds_since(mark);
    }
    Clock::time_point mark = Clock::now();
    const float inv_n = 1.0f / static_cast<float>(n);
    const float lr = config_.lr;
    const std::size_t d = x_.size();
    for (std::size_t k = 0; k < d; ++k) x_[k] -= lr * (g_[k] * inv_n);
    last_.update_s += seconds_since(mark);
  }

  void ring(std::uint32_t step, std::size_t send_c, std::size_t recv_c) {
    Clock::time_point mark = Clock::now();
    const std::span<const float> send(g_.data() + chunk_begin(send_c), chunk_size(send_c));
    const std::span<float> recv(recv_.data(), chunk_size(recv_c));
    transport_.ring_step(round_, step, std::as_bytes(send), std::as_writable_bytes(recv));
    last_.wait_s += seconds_since(mark);
  }

  std::vector<float> recv_;  // one chunk, about d/n floats
};

}  // namespace

std::unique_ptr<Algorithm> make_allreduce_sgd(const AlgorithmConfig& config,
                                              net::Transport& transport,
                                              const topology::Topology& topology,
                                              std::span<const float> x0) {
  return std::make_unique<AllreduceSgd>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
