// Delayed gradient averaging (DGA; Zhu, Lin, Lu, Han, NeurIPS 2021), with K = 1:
//
//   x_i ← x_i − γ (d_i^t − d_i^{t−D} + d̄^{t−D}),   d^s = 0 for s < 0,
//
// so the average of round t's directions is needed only in round t + D. The ring all-reduce of
// d^t (2(n − 1) ring steps) is spread over rounds t + 1 … t + D: reduction t does steps
// [⌊mS/D⌋, ⌊(m+1)S/D⌋) in round t + 1 + m (S = 2(n − 1)). The D reductions in flight are at
// different steps, so one ring call of a round carries one step of each of them, laid end to
// end: a round makes ⌈S/D⌉ ring calls instead of all-reduce's S, each call carrying up to D
// chunks, and the bytes per round are those of one all-reduce. What is hidden is the number of
// latency-bound calls per round, not their latency: Transport::ring_step sends and then waits for
// rank − 1's message of the same call, so each call still waits about one link latency plus its
// bytes' transfer (docs/algorithms.md, "DGA").
//
// D = 0 runs every step in the round itself, in ring_allreduce_sum's order: all-reduce SGD, bit
// for bit. The mean of the models follows SGD on the mean direction for every D; the models
// differ by the last D own directions.

#include <algorithm>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"
#include "gossip/algorithms/ring_allreduce.hpp"

namespace gossip::algorithms::detail {
namespace {

class DelayedGradientAveraging final : public Algorithm {
 public:
  DelayedGradientAveraging(const AlgorithmConfig& config, net::Transport& transport,
                           const topology::Topology& topology, std::span<const float> x0)
      : Algorithm(config, transport, topology, x0),
        delay_(config.delay),
        slots_(std::max<std::size_t>(config.delay, 1)),
        steps_(size_ > 1 ? 2 * static_cast<std::size_t>(size_ - 1) : 0) {
    if (on_device())
      throw std::invalid_argument(
          "dga keeps its reductions in host memory and does not run with the state on a GPU "
          "(cuda_device >= 0; run.device = \"cuda\"): use the host");
    for (std::size_t s = 0; s < slots_; ++s) {
      if (delay_ > 0) {
        own_.push_back(model_buffer());
        names_.push_back(fmt::format("own_{}", s));
      }
      sums_.push_back(model_buffer());
      names_.push_back(fmt::format("sum_{}", s));
    }
    const std::size_t chunk = ring_scratch_floats(x_.size(), static_cast<std::size_t>(size_));
    send_.resize(slots_ * chunk);
    recv_.resize(slots_ * chunk);
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

  void run_round() override {
    const std::uint64_t t = round_;
    // Slot of the reduction applied now (t − D), refilled with round t's direction afterwards.
    const std::size_t slot = static_cast<std::size_t>(t % slots_);
    Clock::time_point mark = Clock::now();
    if (delay_ == 0) space().copy(g_, sums_[0]);
    last_.encode_s += seconds_since(mark);
    ring_calls(t);
    mark = Clock::now();
    const float* own = delay_ == 0 ? g_.data() : own_[slot].data();
    run(ew::DelayedStep{config_.lr, 1.0f / static_cast<float>(size_), g_.data(), own,
                        sums_[slot].data(), x_.data()});
    if (delay_ > 0) {
      space().copy(g_, own_[slot]);
      space().copy(g_, sums_[slot]);
    }
    last_.update_s += seconds_since(mark);
  }

  // The ring steps of round t: reduction s = t − first − m (first = 1, or 0 when D = 0) does
  // its m-th share of the S steps, for every m < slots_ with s >= 0 (no reduction before round
  // 0). Call j carries step lo(m) + j of each reduction that has one, in the order of m.
  void ring_calls(std::uint64_t t) {
    if (steps_ == 0) return;
    const std::uint64_t first = delay_ == 0 ? 0 : 1;
    const std::size_t d = x_.size(), n = static_cast<std::size_t>(size_);
    const auto rank = static_cast<std::size_t>(rank_);
    auto lo = [&](std::size_t m) { return m * steps_ / slots_; };
    auto in_flight = [&](std::size_t m) { return t >= first + m; };
    std::size_t calls = 0;
    for (std::size_t m = 0; m < slots_ && in_flight(m); ++m)
      calls = std::max(calls, lo(m + 1) - lo(m));
    for (std::size_t j = 0; j < calls; ++j) {
      Clock::time_point mark = Clock::now();
      std::size_t sent = 0, expected = 0;
      for (std::size_t m = 0; m < slots_ && in_flight(m); ++m) {
        if (lo(m) + j >= lo(m + 1)) continue;
        const RingStepPlan p = ring_step_plan(d, n, rank, lo(m) + j);
        const float* src = sums_[slot_of(t - first - m)].data() + p.send_begin;
        std::copy_n(src, p.send_size, send_.data() + sent);
        sent += p.send_size;
        expected += p.recv_size;
      }
      last_.encode_s += seconds_since(mark);
      transport_.ring_step(t, static_cast<std::uint32_t>(j),
                           std::as_bytes(std::span(send_).first(sent)),
                           std::as_writable_bytes(std::span(recv_).first(expected)));
      last_.wait_s += seconds_since(mark);
      std::size_t at = 0;
      for (std::size_t m = 0; m < slots_ && in_flight(m); ++m) {
        if (lo(m) + j >= lo(m + 1)) continue;
        const RingStepPlan p = ring_step_plan(d, n, rank, lo(m) + j);
        float* dst = sums_[slot_of(t - first - m)].data() + p.recv_begin;
        if (p.add) {
          space().run(ew::Axpy{1.0f, recv_.data() + at, dst}, p.recv_size);
        } else {
          space().copy(std::span<const float>(recv_.data() + at, p.recv_size),
                       std::span<float>(dst, p.recv_size));
        }
        at += p.recv_size;
      }
      last_.decode_s += seconds_since(mark);
    }
  }

  std::size_t slot_of(std::uint64_t round) const {
    return static_cast<std::size_t>(round % slots_);
  }

  std::uint32_t delay_;
  std::size_t slots_;  // reductions in flight: max(D, 1)
  std::size_t steps_;  // ring steps of one all-reduce, 2(n − 1)
  // Slot k holds the reduction (sums_) and, when D > 0, the own direction (own_) of the last
  // round r with r mod slots_ = k.
  std::vector<Buffer> own_, sums_;
  std::vector<std::string> names_;  // "own_k", "sum_k": storage of the state buffers' names
  std::vector<float> send_, recv_;  // one ring call: a chunk of each reduction in flight
};

}  // namespace

std::size_t dga_payload(const AlgorithmConfig& config, std::size_t d, int n) {
  // One ring call: a chunk of each of the max(D, 1) reductions in flight.
  return std::max<std::size_t>(config.delay, 1) *
         ring_scratch_floats(d, static_cast<std::size_t>(n)) * sizeof(float);
}

std::unique_ptr<Algorithm> make_dga(const AlgorithmConfig& config, net::Transport& transport,
                                    const topology::Topology& topology, std::span<const float> x0) {
  return std::make_unique<DelayedGradientAveraging>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
