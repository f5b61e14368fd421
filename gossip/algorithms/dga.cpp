// Delayed gradient averaging (DGA; Zhu, Lin, Lu, Han, NeurIPS 2021), with K = 1:
//
//   x_i ← x_i − γ (d_i^t − d_i^{t−D} + d̄^{t−D}),   d^s = 0 for s < 0,
//
// so the average of round t's directions is needed only in round t + D. Its all-reduce is a
// direct reduce-scatter and all-gather (Transport::post / collect, one hop each): in round t a
// peer posts chunk j of d_i^t to rank j (lane 0); in round t + A, A = ⌈D/2⌉, rank r collects the
// chunks r of every peer, sums them and posts the sum to every rank (lane 1); in round t + D
// every peer collects the sums and applies the step. The messages travel while the peers compute
// rounds t + 1 … t + D: a round waits for the network only when A (resp. D − A) rounds of
// computation are shorter than a one-hop message (docs/algorithms.md, "DGA").
//
// Rank r sums chunk r in ring order, its own value first, then ranks r + 1, r + 2, … (collect's
// order), which is the order in which the ring all-reduce of ring_allreduce.hpp sums that chunk:
// D = 0 (every phase in the round itself) is all-reduce SGD bit for bit. The mean of the models
// follows SGD on the mean direction for every D; the models differ by the last D own directions.

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"

namespace gossip::algorithms::detail {
namespace {

constexpr std::uint32_t kScatter = 0;  // lane of the worker chunks (reduce-scatter)
constexpr std::uint32_t kGather = 1;   // lane of the summed chunks (all-gather)

class DelayedGradientAveraging final : public Algorithm {
 public:
  DelayedGradientAveraging(const AlgorithmConfig& config, net::Transport& transport,
                           const topology::Topology& topology, std::span<const float> x0)
      : Algorithm(config, transport, topology, x0),
        delay_(config.delay),
        half_((config.delay + 1) / 2),
        slots_(std::max<std::size_t>(config.delay, 1)) {
    if (on_device())
      throw std::invalid_argument(
          "dga keeps its reductions in host memory and does not run with the state on a GPU "
          "(cuda_device >= 0; run.device = \"cuda\"): use the host");
    const std::size_t d = x_.size(), n = static_cast<std::size_t>(size_);
    for (std::size_t c = 0; c <= n; ++c) begin_.push_back(c * (d / n) + std::min(c, d % n));
    for (std::size_t s = 0; s < slots_; ++s) {
      if (delay_ > 0) {
        own_.push_back(model_buffer());
        names_.push_back(fmt::format("own_{}", s));
      }
      sums_.push_back(model_buffer());
      names_.push_back(fmt::format("sum_{}", s));
    }
  }

 private:
  std::vector<StateBuffer> extra_state() override {
    std::vector<StateBuffer> out;
    std::size_t k = 0;
    for (std::size_t s = 0; s < slots_; ++s) {
      if (delay_ > 0) out.push_back({names_[k++], own_[s]});
      out.push_back({names_[k++], sums_[s]});
    }
    return out;
  }

  // A resumed peer's transport is fresh: the messages in flight at the checkpoint are posted
  // again from the state (own directions, summed chunks) before the next round.
  void after_load() override { repost_ = delay_ > 0; }

  void run_round() override {
    const std::uint64_t t = round_;
    if (repost_) {
      for (std::uint64_t s = t - std::min<std::uint64_t>(t, half_); s < t; ++s)
        post_chunks(s, own_[slot_of(s)].data());
      for (std::uint64_t s = t - std::min<std::uint64_t>(t, delay_); s + half_ < t; ++s)
        post_sum(s);
      repost_ = false;
    }
    post_chunks(t, g_.data());
    if (t >= half_) {
      const std::uint64_t s = t - half_;
      collect_chunks(s);
      post_sum(s);
    }
    // Reduction t − D, complete now; before round D a zero sum and a zero own direction.
    const std::size_t slot = slot_of(t);
    const float* own = delay_ == 0 ? g_.data() : own_[slot].data();
    if (t >= delay_) collect_sums(t - delay_);
    Clock::time_point mark = Clock::now();
    run(ew::DelayedStep{config_.lr, 1.0f / static_cast<float>(size_), g_.data(), own,
                        sums_[slot].data(), x_.data()});
    if (delay_ > 0) space().copy(g_, own_[slot]);
    last_.update_s += seconds_since(mark);
  }

  std::size_t slot_of(std::uint64_t round) const {
    return static_cast<std::size_t>(round % slots_);
  }
  std::size_t chunk_size(std::size_t c) const { return begin_[c + 1] - begin_[c]; }
  // This peer's direction of round s (g_ in round s itself, when D = 0).
  const float* direction(std::uint64_t s) const {
    return s == round_ ? g_.data() : own_[slot_of(s)].data();
  }

  // Lane 0 of round s: chunk j of `d` to rank j.
  void post_chunks(std::uint64_t s, const float* d) {
    Clock::time_point mark = Clock::now();
    transport_.post(s, kScatter, [&](int j) {
      const auto c = static_cast<std::size_t>(j);
      return std::as_bytes(std::span<const float>(d + begin_[c], chunk_size(c)));
    });
    last_.wait_s += seconds_since(mark);
  }

  // Lane 1 of round s: this rank's summed chunk of reduction s to every rank.
  void post_sum(std::uint64_t s) {
    const auto r = static_cast<std::size_t>(rank_);
    const auto sum =
        std::as_bytes(std::span<const float>(sums_[slot_of(s)].data() + begin_[r], chunk_size(r)));
    Clock::time_point mark = Clock::now();
    transport_.post(s, kGather, [&](int) { return sum; });
    last_.wait_s += seconds_since(mark);
  }

  // Sum of chunk `rank` of every peer's direction of round s, in ring order from this rank.
  void collect_chunks(std::uint64_t s) {
    const auto r = static_cast<std::size_t>(rank_);
    const std::size_t len = chunk_size(r);
    float* acc = sums_[slot_of(s)].data() + begin_[r];
    std::copy_n(direction(s) + begin_[r], len, acc);
    collect(s, kScatter, len, [&](const float* v) {
      for (std::size_t k = 0; k < len; ++k) acc[k] += v[k];
    });
  }

  // The summed chunks of reduction s into its slot (this rank's own is there already).
  void collect_sums(std::uint64_t s) {
    float* sum = sums_[slot_of(s)].data();
    std::size_t from = 0;
    collect(
        s, kGather, 0,
        [&](const float* v) { std::copy_n(v, chunk_size(from), sum + begin_[from]); }, &from);
  }

  // Collects lane `lane` of round s: each message must be `len` floats (0: the sender's chunk),
  // handed to `use` as floats. `from`, when given, is set to the sender before each call.
  template <class Use>
  void collect(std::uint64_t s, std::uint32_t lane, std::size_t len, Use&& use,
               std::size_t* from = nullptr) {
    Clock::time_point mark = Clock::now();
    double work = 0.0;
    transport_.collect(s, lane, [&](std::size_t j, std::span<const std::byte> bytes) {
      Clock::time_point start = Clock::now();
      const std::size_t want = len > 0 ? len : chunk_size(j);
      if (bytes.size() != want * sizeof(float))
        throw net::TransportError(fmt::format(
            "rank {}: round {}: {} sent {} bytes in dga's {} of round {}, expected {}", rank_,
            round_, transport_.peer_name(static_cast<int>(j)), bytes.size(),
            lane == kScatter ? "reduce-scatter" : "all-gather", s, want * sizeof(float)));
      scratch_.resize(want);
      std::memcpy(scratch_.data(), bytes.data(), bytes.size());  // any alignment
      if (from) *from = j;
      use(scratch_.data());
      work += seconds_since(start);
    });
    last_.wait_s += seconds_since(mark) - work;
    last_.decode_s += work;
  }

  std::uint32_t delay_;
  std::uint32_t half_;  // A = ⌈D/2⌉: rounds from a direction to the sum of its chunks
  std::size_t slots_;   // reductions in flight: max(D, 1)
  std::vector<std::size_t> begin_;  // chunk c is [begin_[c], begin_[c + 1]), rank c sums it
  // Slot k holds the reduction (sums_) and, when D > 0, the own direction (own_) of the last
  // round r with r mod slots_ = k.
  std::vector<Buffer> own_, sums_;
  std::vector<std::string> names_;  // "own_k", "sum_k": storage of the state buffers' names
  std::vector<float> scratch_;      // one received chunk
  bool repost_ = false;
};

}  // namespace

std::unique_ptr<Algorithm> make_dga(const AlgorithmConfig& config, net::Transport& transport,
                                    const topology::Topology& topology, std::span<const float> x0) {
  return std::make_unique<DelayedGradientAveraging>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
