// C-PSGD, the centralised baseline: x ← x − γ (1/n) Σ_i g_i with the sum computed by the ring
// all-reduce (ring_allreduce.hpp). Every peer ends with the same bytes of the sum, so the models
// stay bit-identical across peers.

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
    if (on_device()) host_g_.resize(x_.size());
  }

 private:
  void run_round() override {
    RingTimes times;
    // The ring moves fp32 through the host; on a GPU the sum is formed there too.
    if (on_device()) {
      Clock::time_point mark = Clock::now();
      space().download(g_, host_g_);
      last_.encode_s += seconds_since(mark);
      ring_allreduce_sum(transport_, round_, host_g_, recv_, &times);
      mark = Clock::now();
      space().upload(host_g_, g_);
      last_.decode_s += seconds_since(mark);
    } else {
      ring_allreduce_sum(transport_, round_, g_, recv_, &times);
    }
    last_.wait_s += times.wait_s;
    last_.decode_s += times.reduce_s;
    Clock::time_point mark = Clock::now();
    run(ew::MeanGradientStep{config_.lr, 1.0f / static_cast<float>(size_), g_.data(), x_.data()});
    last_.update_s += seconds_since(mark);
  }

  std::vector<float> recv_;    // one chunk, about d/n floats
  std::vector<float> host_g_;  // the gradient on the host (GPU space only)
};

}  // namespace

std::unique_ptr<Algorithm> make_allreduce_sgd(const AlgorithmConfig& config,
                                              net::Transport& transport,
                                              const topology::Topology& topology,
                                              std::span<const float> x0) {
  return std::make_unique<AllreduceSgd>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
