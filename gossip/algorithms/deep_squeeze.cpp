// DeepSqueeze (Tang et al. 2019): compress x_half + δ_i with error feedback, then move x_half by
// η Σ_j (W_ij − [i=j]) c_j. The columns of W − I sum to zero, so the mean of the models follows SGD
// on the mean gradient exactly, whatever the codec.

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

class DeepSqueeze final : public GossipAlgorithm {
 public:
  DeepSqueeze(const AlgorithmConfig& config, net::Transport& transport,
              const topology::Topology& topology, std::span<const float> x0)
      : GossipAlgorithm(config, transport, topology, x0), delta_(model_buffer(0.0f)) {
    require_consensus_step(config, "deepsqueeze: consensus_step (η)");
  }

 private:
  std::vector<StateBuffer> extra_state() override { return {{"delta", delta_}}; }

  void run_round() override {
    Clock::time_point mark = Clock::now();
    // x_half in place of x; v_i = x_half + δ_i in place of δ.
    run(ew::HalfStepAccumulate{config_.lr, g_.data(), x_.data(), delta_.data()});
    last_.update_s += seconds_since(mark);
    encode(delta_);
    // δ_i ← v_i − c_i before the exchange: it only needs the own message.
    accumulate_own(-1.0f, delta_);
    const float eta = config_.consensus_step;
    accumulate_own(eta * (self_weight() - 1.0f), x_);
    exchange_accumulate(eta, x_);
  }

  Buffer delta_;
};

}  // namespace

std::unique_ptr<Algorithm> make_deep_squeeze(const AlgorithmConfig& config,
                                             net::Transport& transport,
                                             const topology::Topology& topology,
                                             std::span<const float> x0) {
  return std::make_unique<DeepSqueeze>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
