// DCD-PSGD (Tang et al. 2018, Algorithm 1). Instead of one replica x̂_j per neighbour the peer
// keeps s_i = Σ_j W_ij x̂_j: every holder of x̂_j applies the same decoded bytes q_j, so the
// replicas equal x_j exactly and their weighted sum is all the update needs.

#include <algorithm>

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

class DcdPsgd final : public GossipAlgorithm {
 public:
  DcdPsgd(const AlgorithmConfig& config, net::Transport& transport,
          const topology::Topology& topology, std::span<const float> x0)
      : GossipAlgorithm(config, transport, topology, x0), s_(model_buffer()) {
    // s_i = Σ_j W_ij x_0 = x_0, since every peer starts from the same x_0.
    space().copy(x_, s_);
  }

 private:
  std::vector<StateBuffer> extra_state() override { return {{"s", s_}}; }

  void run_round() override {
    Clock::time_point mark = Clock::now();
    // z_i = (s_i − γ g_i) − x_i, formed in the gradient buffer.
    run(ew::DcdDifference{config_.lr, s_.data(), x_.data(), g_.data()});
    last_.update_s += seconds_since(mark);
    encode(g_);
    // x_i += q_i and s_i += W_ii q_i from the very bytes the neighbours decode.
    accumulate_own(1.0f, x_);
    accumulate_own(self_weight(), s_);
    exchange_accumulate(1.0f, s_);
  }

  Buffer s_;
};

}  // namespace

std::unique_ptr<Algorithm> make_dcd_psgd(const AlgorithmConfig& config, net::Transport& transport,
                                         const topology::Topology& topology,
                                         std::span<const float> x0) {
  return std::make_unique<DcdPsgd>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
