// C-PSGD, the centralised baseline: x ← x − γ (1/n) Σ_i g_i with the sum computed by the ring
// all-reduce (ring_allreduce.hpp). Every peer ends with the same bytes of the sum, so the models
// stay bit-identical across peers. With local steps H > 1 (local SGD) the models are averaged
// every H rounds instead: x ← (1/n) Σ_i (x_i − γ g_i); the rounds between step locally.

#include <algorithm>

#include "gossip/algorithms/gossip_base.hpp"
#include "gossip/algorithms/ring_allreduce.hpp"

namespace gossip::algorithms::detail {
namespace {

class AllreduceSgd final : public Algorithm {
 public:
  AllreduceSgd(const AlgorithmConfig& config, net::Transport& transport,
               const topology::Topology& topology, std::span<const float> x0)
      : Algorithm(config, transport, topology, x0) {
    recv_.resize(ring_scratch_floats(x_.size(), static_cast<std::size_t>(size_)));
    if (on_device()) host_v_.resize(x_.size());
  }

 private:
  void run_round() override {
    const float inv_n = 1.0f / static_cast<float>(size_);
    if (config_.local_steps == 1) {
      sum_over_peers(g_);
      Clock::time_point mark = Clock::now();
      run(ew::MeanGradientStep{config_.lr, inv_n, g_.data(), x_.data()});
      last_.update_s += seconds_since(mark);
      return;
    }
    // Local SGD: the models after this round's own step are averaged, x ← (1/n) Σ_j (x_j − γ d_j).
    Clock::time_point mark = Clock::now();
    run(ew::Axpy{-config_.lr, g_.data(), x_.data()});
    last_.update_s += seconds_since(mark);
    sum_over_peers(x_);
    mark = Clock::now();
    run(ew::Scale{inv_n, x_.data()});
    last_.update_s += seconds_since(mark);
  }

  // v ← Σ_j v_j by the ring all-reduce.
  void sum_over_peers(std::span<float> v) {
    RingTimes times;
    // The ring moves fp32 through the host; on a GPU the sum is formed there too.
    if (on_device()) {
      Clock::time_point mark = Clock::now();
      space().download(v, host_v_);
      last_.encode_s += seconds_since(mark);
      ring_allreduce_sum(transport_, round_, host_v_, recv_, &times);
      mark = Clock::now();
      space().upload(host_v_, v);
      last_.decode_s += seconds_since(mark);
    } else {
      ring_allreduce_sum(transport_, round_, v, recv_, &times);
    }
    last_.wait_s += times.wait_s;
    last_.decode_s += times.reduce_s;
  }

  std::vector<float> recv_;    // one chunk, about d/n floats
  std::vector<float> host_v_;  // the summed vector on the host (GPU space only)
};

}  // namespace

std::unique_ptr<Algorithm> make_allreduce_sgd(const AlgorithmConfig& config,
                                              net::Transport& transport,
                                              const topology::Topology& topology,
                                              std::span<const float> x0) {
  return std::make_unique<AllreduceSgd>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
