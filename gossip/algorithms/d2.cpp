// D² (Tang et al. 2018, "D²: Decentralized Training over Decentralized Data"), in the form that
// mixes with W̄ = (I + W)/2, which is exact diffusion (Yuan et al. 2019). With ψ_t = x_t − γ d_t
// (d: the update direction) the message is φ_t = ψ_t + x_t − ψ_{t−1} = 2x_t − x_{t−1} − γ(d_t −
// d_{t−1}) and x_{t+1} = Σ_j W̄_ij φ_j. The correction x_t − ψ_{t−1} cancels the part of the local
// direction that differs between peers, so with exact gradients the peers converge to the optimum
// of the average loss however different their data; D-PSGD stops O(γ) away from it. D² needs
// λ_min(W) > −1/3; W̄'s eigenvalues lie in [0, 1] for every admissible W (rings of even n with
// weights 1/3 have λ_min(W) = −1/3), at the price of slower mixing: ρ(W̄) = (1 + λ_2(W))/2.
//
// Computed through the correction c_t = x_t − ψ_{t−1} (c_0 = 0): φ = ψ + c, then with
// u_i = Σ_j W̄_ij (φ_j − φ_i) both x ← φ + u and c ← c + u. In exact arithmetic this is the rule
// above, and Σ_i c_i = 0 forever, which is what keeps the mean of the models on SGD's path. In
// float the naive form lets that sum drift by the rounding of model-sized numbers every round,
// and a drift ε acts as a constant force that parks the models about ε/(γμ) from the optimum.
// Here the sum is carried by c, which is small (O(γ·gradient)), and the pairwise terms
// W_ij(φ̃_j − φ̃_i) are computed from the decoded messages on both sides, so they cancel exactly
// between peers i and j: the drift is the rounding of small numbers only.

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

class D2 final : public GossipAlgorithm {
 public:
  D2(const AlgorithmConfig& config, net::Transport& transport, const topology::Topology& topology,
     std::span<const float> x0)
      : GossipAlgorithm(config, transport, topology, x0),
        c_(model_buffer(0.0f)),
        scratch_(model_buffer(0.0f)) {}

 private:
  std::vector<StateBuffer> extra_state() override { return {{"correction", c_}}; }

  void run_round() override {
    Clock::time_point mark = Clock::now();
    // φ = ψ + c = x − γ d + c, in x (the exact value, for the own term) and sent.
    run(ew::CorrectedStep{config_.lr, c_.data(), g_.data(), x_.data()});
    last_.update_s += seconds_since(mark);
    encode(x_);
    // The own message as the neighbours decode it: the pairwise terms must be antisymmetric.
    decode_own(g_);
    exchange_decode_each(scratch_, [&](std::size_t, float w_ij, std::span<const float> q_j) {
      // W̄_ij = W_ij / 2 for j ≠ i.
      run(ew::PairwiseTerm{0.5f * w_ij, q_j.data(), g_.data(), c_.data(), x_.data()});
    });
  }

  Buffer c_;        // c_t = x_t − ψ_{t−1}
  Buffer scratch_;  // one neighbour's decoded message
};

}  // namespace

std::unique_ptr<Algorithm> make_d2(const AlgorithmConfig& config, net::Transport& transport,
                                   const topology::Topology& topology, std::span<const float> x0) {
  return std::make_unique<D2>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
