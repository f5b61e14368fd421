// C-PSGD, the centralised baseline: x ← x − γ (1/n) Σ_i g_i with the sum computed by the ring
// all-reduce (ring_allreduce.hpp). Every peer ends with the same bytes of the sum, so the models
// stay bit-identical across peers.

#include <algorithm>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"
#include "gossip/algorithms/ring_allreduce.hpp"

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
    recv_.resize(ring_scratch_floats(x_.size(), static_cast<std::size_t>(size_)));
  }

 private:
  void run_round() override {
    RingTimes times;
    ring_allreduce_sum(transport_, round_, g_, recv_, &times);
    last_.wait_s += times.wait_s;
    last_.decode_s += times.reduce_s;
    Clock::time_point mark = Clock::now();
    const float inv_n = 1.0f / static_cast<float>(size_);
    const float lr = config_.lr;
    const std::size_t d = x_.size();
    for (std::size_t k = 0; k < d; ++k) x_[k] -= lr * (g_[k] * inv_n);
    last_.update_s += seconds_since(mark);
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
