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
#include <array>
#include <string>

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
    if (!graph.is_tree()) {
      throw std::invalid_argument(fmt::format(
          "relaysum needs a tree (connected, n - 1 edges): {} has {} edges for {} peers{}; use a "
          "path (grid:{}), a star or a tree written in a topology file",
          topology.description, graph.edge_count(), graph.size(),
          graph.connected() ? "" : " and is not connected", graph.size()));
    }
    space().copy(x_, x0_);
    if (compressed_) public_ = model_buffer();
    for (int j : transport.neighbors()) {
      Link& l = links_.emplace_back();
      l.received = model_buffer();
      l.owed = model_buffer();
      if (compressed_) l.replica = model_buffer();
      l.names = {fmt::format("received from {}", j), fmt::format("owed to {}", j),
                 fmt::format("public copy of {}", j)};
    }
    scratch_ = model_buffer();
  }

 private:
  // What this peer keeps of one tree edge.
  struct Link {
    Buffer received;  // m_{j→i} of the last round
    Buffer owed;      // m_{i→j} of the last round
    Buffer replica;   // Ŝ_j (lossy codec only)
    std::array<std::string, 3> names;
  };

  std::vector<StateBuffer> extra_state() override {
    std::vector<StateBuffer> out{{"x0", x0_}};
    if (compressed_) out.push_back({"public copy", public_});
    for (Link& l : links_) {
      out.push_back({l.names[0], l.received});
      out.push_back({l.names[1], l.owed});
      if (compressed_) out.push_back({l.names[2], l.replica});
    }
    return out;
  }

  // out = (y − x0) + Σ_k received_k, y being x_ after the local step; buffer by buffer, always in
  // this order, so the sum sent and the sum averaged round alike.
  void own_plus_received(float* out) {
    run(ew::Sub{x_.data(), x0_.data(), out});
    for (const Link& l : links_) run(ew::Axpy{1.0f, l.received.data(), out});
  }

  void run_round() override {
    Clock::time_point mark = Clock::now();
    // y = x − γ d in x.
    run(ew::Axpy{-config_.lr, g_.data(), x_.data()});
    if (links_.empty()) {  // one peer: the average is its own model
      last_.update_s += seconds_since(mark);
      return;
    }
    // S in g (the direction is no longer needed); compressed, the message is S − Ŝ.
    own_plus_received(g_.data());
    if (compressed_) run(ew::Axpy{-1.0f, public_.data(), g_.data()});
    last_.update_s += seconds_since(mark);
    encode(g_);
    if (!compressed_) {
      exchange_decode_each(scratch_, [&](std::size_t k, float, std::span<const float> s_j) {
        relay(k, s_j.data(), g_.data());
      });
    } else {
      accumulate_own(1.0f, public_);  // Ŝ_i += C(S − Ŝ_i), as the neighbours' replicas do
      exchange_decode_each(scratch_, [&](std::size_t k, float, std::span<const float> q_j) {
        Buffer& copy = links_[k].replica;
        run(ew::Axpy{1.0f, q_j.data(), copy.data()});
        relay(k, copy.data(), public_.data());
      });
    }
    mark = Clock::now();
    // x = x0 + ((y − x0) + Σ_k received_k) / n.
    own_plus_received(g_.data());
    run(ew::OffsetMean{1.0f / static_cast<float>(size_), x0_.data(), g_.data(), x_.data()});
    last_.update_s += seconds_since(mark);
  }

  // Neighbour k's sum this round is s_j; this peer's own is s_i (as the neighbours hold it).
  // received becomes m_{j→i} of this round (s_j − owed), owed m_{i→j} of this round, from last
  // round's m_{j→i} (s_i − received).
  void relay(std::size_t k, const float* s_j, const float* s_i) {
    run(ew::Relay{s_j, s_i, links_[k].received.data(), links_[k].owed.data()});
  }

  bool compressed_;          // a lossy codec: relay the public copies
  Buffer x0_;                // the common initial model
  std::vector<Link> links_;  // in neighbors() order
  Buffer scratch_;           // one decoded message
  Buffer public_;            // Ŝ_i (lossy codec only)
};

}  // namespace

std::unique_ptr<Algorithm> make_relaysum(const AlgorithmConfig& config, net::Transport& transport,
                                         const topology::Topology& topology,
                                         std::span<const float> x0) {
  return std::make_unique<RelaySum>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
