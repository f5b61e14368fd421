// D-PSGD (Lian et al. 2017): x_i ← Σ_j W_ij x_j − γ g_i, the message is x_i itself (fp32, or
// fp16/bf16 through the codec).

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

class Dpsgd final : public GossipAlgorithm {
 public:
  Dpsgd(const AlgorithmConfig& config, net::Transport& transport,
        const topology::Topology& topology, std::span<const float> x0)
      : GossipAlgorithm(config, transport, topology, x0) {}

 private:
  void run_round() override {
    encode(x_);
    const auto& messages = exchange();
    Clock::time_point mark = Clock::now();
    const std::size_t d = x_.size();
    // The own term uses the exact x_i (the rule's W_ii x_i), not the codec's copy of it; x is
    // rescaled in place so neighbours' messages accumulate straight into it.
    const float w_ii = self_weight();
    for (std::size_t k = 0; k < d; ++k) x_[k] *= w_ii;
    last_.update_s += seconds_since(mark);
    accumulate_neighbors(messages, 1.0f, x_);
    mark = Clock::now();
    const float lr = config_.lr;
    for (std::size_t k = 0; k < d; ++k) x_[k] -= lr * g_[k];
    last_.update_s += seconds_since(mark);
  }
};

}  // namespace

std::unique_ptr<Algorithm> make_dpsgd(const AlgorithmConfig& config, net::Transport& transport,
                                      const topology::Topology& topology,
                                      std::span<const float> x0) {
  return std::make_unique<Dpsgd>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
