// RelaySGD (Vogels et al., NeurIPS 2021, "RelaySum for Decentralized Deep Learning on
// Heterogeneous Data", arXiv:2110.04175), the model-relaying form. On a tree, every peer ends each
// round with the plain average of all n peers' models after their local step, each delayed by its
// hop distance: x_i ← (1/n) Σ_k y_k^{(t − max(d(i,k) − 1, 0))}, y = x − γ·d (d: the update
// direction). Gossip weights no peer more than another, so how different the peers' data are does
// not enter the rate; the price is a tree (no cycles, or sums would count a peer twice) and delays
// up to the tree's diameter.
//
// What is relayed is each model's distance from the common initial model, r = y − x0, so a peer
// whose model has not arrived yet (the first rounds) counts as x0, as in the authors' code
// (github.com/epfml/relaysgd), without being filled in, and the numbers summed are small. Peer i
// owes neighbour j the sum m_{i→j} = r_i + Σ_{k ∈ N(i)∖j} m_{k→i} over what it received last round
// from its other neighbours, and sets x_i = x0 + (r_i + Σ_k m_{k→i}) / n. The sums differ per
// neighbour, but the transport sends one message to all of them, so peer i sends S_i = r_i + Σ_k
// m_{k→i} and neighbour j takes its own contribution back out: m_{i→j} = S_i − m_{j→i}, with
// m_{j→i} the sum j sent i the round before. Both ends subtract the same bytes, so their copies of
// every m agree exactly, and a rounding enters once per hop without being fed back. Each peer
// keeps, per neighbour, the last sum received from it and the last sum it owed it: two model-sized
// buffers per neighbour, unlike the other algorithms, whose state does not grow with the degree.
//
// With a lossy codec (our extension, not in the paper) the sums travel as CHOCO-SGD sends models:
// each peer keeps a public copy Ŝ_i that its neighbours replicate bit for bit, sends C(S_i − Ŝ_i)
// and adds the decoded difference to Ŝ_i on both sides; the relay runs on the public copies,
// m_{i→j} = Ŝ_i − m_{j→i}, so both ends still agree exactly. The copies start at 0, which is
// where the sums start. The copy lags S_i by the codec's error, which reaches every other peer's
// average once, 1/n-weighted, and stays in the models from there; a peer's own r_i enters its
// own average exactly. One more buffer per neighbour (its public copy) and one for the own.

#include <algorithm>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

class RelaySum final : public GossipAlgorithm {
 public:
  RelaySum(const AlgorithmConfig& config, net::Transport& transport,
           const topology::Topology& topology, std::span<const float> x0)
      : GossipAlgorithm(config, transport, topology, x0),
        compressed_(!lossless_codec()),
        x0_(model_buffer()) {
    const auto& graph = topology.graph;
    if (!graph.connected() || graph.edge_count() + 1 != static_cast<std::size_t>(graph.size())) {
      throw std::invalid_argument(fmt::format(
          "relaysum needs a tree (connected, n - 1 edges): {} has {} edges for {} peers{}; use a "
          "path (grid:{}), a star or a tree written in a topology file",
          topology.description, graph.edge_count(), graph.size(),
          graph.connected() ? "" : " and is not connected", graph.size()));
    }
    std::copy(x0.begin(), x0.end(), x0_.begin());
    if (compressed_) public_ = model_buffer();
    for (int j : transport.neighbors()) {
      received_.push_back(model_buffer());
      owed_.push_back(model_buffer());
      names_.push_back(fmt::format("received from {}", j));
      names_.push_back(fmt::format("owed to {}", j));
      if (compressed_) {
        replicas_.push_back(model_buffer());
        names_.push_back(fmt::format("public copy of {}", j));
      }
    }
    scratch_ = model_buffer();
  }

 private:
  std::vector<StateBuffer> extra_state() override {
    std::vector<StateBuffer> out{{"x0", x0_}};
    if (compressed_) out.push_back({"public copy", public_});
    const std::size_t per = compressed_ ? 3 : 2;
    for (std::size_t k = 0; k < received_.size(); ++k) {
      out.push_back({names_[per * k], received_[k]});
      out.push_back({names_[per * k + 1], owed_[k]});
      if (compressed_) out.push_back({names_[per * k + 2], replicas_[k]});
    }
    return out;
  }

  void run_round() override {
    Clock::time_point mark = Clock::now();
    const std::size_t d = x_.size();
    const float lr = config_.lr;
    // y = x − γ d in x.
    for (std::size_t e = 0; e < d; ++e) x_[e] -= lr * g_[e];
    if (received_.empty()) {  // one peer: the average is its own model
      last_.update_s += seconds_since(mark);
      return;
    }
    // S = (y − x0) + Σ_k received_k in g (the direction is no longer needed).
    for (std::size_t e = 0; e < d; ++e) g_[e] = x_[e] - x0_[e];
    for (const auto& r : received_)
      for (std::size_t e = 0; e < d; ++e) g_[e] += r[e];
    if (compressed_) {
      for (std::size_t e = 0; e < d; ++e) g_[e] -= public_[e];  // the message: S − Ŝ
    }
    last_.update_s += seconds_since(mark);
    encode(g_);
    if (!compressed_) {
      exchange_decode_each(
          scratch_, [&](std::size_t k, float, std::span<const float> s_j) { relay(k, s_j, g_); });
    } else {
      decode_own(scratch_);
      mark = Clock::now();
      for (std::size_t e = 0; e < d; ++e) public_[e] += scratch_[e];
      last_.update_s += seconds_since(mark);
      exchange_decode_each(scratch_, [&](std::size_t k, float, std::span<const float> q_j) {
        auto& copy = replicas_[k];
        for (std::size_t e = 0; e < d; ++e) copy[e] += q_j[e];
        relay(k, copy, public_);
      });
    }
    mark = Clock::now();
    // x = x0 + ((y − x0) + Σ_k received_k) / n, summed in the same order as S.
    for (std::size_t e = 0; e < d; ++e) g_[e] = x_[e] - x0_[e];
    for (const auto& r : received_)
      for (std::size_t e = 0; e < d; ++e) g_[e] += r[e];
    const float inv_n = 1.0f / static_cast<float>(size_);
    for (std::size_t e = 0; e < d; ++e) x_[e] = x0_[e] + g_[e] * inv_n;
    last_.update_s += seconds_since(mark);
  }

  // Neighbour k's sum this round is s_j; this peer's own is s_i (as the neighbours hold it).
  void relay(std::size_t k, std::span<const float> s_j, std::span<const float> s_i) {
    auto& in = received_[k];
    auto& out = owed_[k];
    for (std::size_t e = 0; e < in.size(); ++e) {
      const float from_j = s_j[e] - out[e];  // m_{j→i} of this round
      out[e] = s_i[e] - in[e];               // m_{i→j} of this round, from last round's m_{j→i}
      in[e] = from_j;
    }
  }

  bool compressed_;                           // a lossy codec: relay the public copies
  std::vector<float> x0_;                     // the common initial model
  std::vector<std::vector<float>> received_;  // per neighbour: m_{j→i} of the last round
  std::vector<std::vector<float>> owed_;      // per neighbour: m_{i→j} of the last round
  std::vector<float> scratch_;                // one decoded message
  std::vector<float> public_;                 // Ŝ_i (lossy codec only)
  std::vector<std::vector<float>> replicas_;  // per neighbour: Ŝ_j (lossy codec only)
  std::vector<std::string> names_;            // state buffer names, two or three per neighbour
};

}  // namespace

std::unique_ptr<Algorithm> make_relaysum(const AlgorithmConfig& config, net::Transport& transport,
                                         const topology::Topology& topology,
                                         std::span<const float> x0) {
  return std::make_unique<RelaySum>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
