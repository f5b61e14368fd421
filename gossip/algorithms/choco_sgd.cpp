// CHOCO-SGD (Koloskova et al., ICLR 2020 form). The peer keeps its public copy x̂_i and
// s_i = Σ_j W_ij x̂_j instead of a replica per neighbour; all x̂ start at 0.

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

class ChocoSgd final : public GossipAlgorithm {
 public:
  ChocoSgd(const AlgorithmConfig& config, net::Transport& transport,
           const topology::Topology& topology, std::span<const float> x0)
      : GossipAlgorithm(config, transport, topology, x0),
        x_hat_(model_buffer(0.0f)),
        s_(model_buffer(0.0f)) {
    require_consensus_step(config, "choco-sgd: consensus_step (γ_c)");
  }

 private:
  std::vector<StateBuffer> extra_state() override { return {{"x_hat", x_hat_}, {"s", s_}}; }

  void run_round() override {
    Clock::time_point mark = Clock::now();
    // x_half in place of x; x_half − x̂_i into the gradient buffer.
    run(ew::HalfStepDiff{config_.lr, x_hat_.data(), x_.data(), g_.data()});
    last_.update_s += seconds_since(mark);
    encode(g_);
    accumulate_own(1.0f, x_hat_);
    accumulate_own(self_weight(), s_);
    exchange_accumulate(1.0f, s_);
    mark = Clock::now();
    run(ew::ConsensusStep{config_.consensus_step, s_.data(), x_hat_.data(), x_.data()});
    last_.update_s += seconds_since(mark);
  }

  Buffer x_hat_;
  Buffer s_;
};

}  // namespace

std::unique_ptr<Algorithm> make_choco_sgd(const AlgorithmConfig& config, net::Transport& transport,
                                          const topology::Topology& topology,
                                          std::span<const float> x0) {
  return std::make_unique<ChocoSgd>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
