// DoubleSqueeze (Tang, Yu, Lian, Zhang, Liu, ICML 2019): compressed all-reduce with error
// feedback on both sides, without a parameter server: rank r serves chunk r of the vector (as
// DeepSpeed's compressed all-reduce does).
//
//   worker i: v_i = d_i + δ_i; c_i = C(v_i) chunk by chunk; δ_i ← v_i − c_i; chunk r to rank r.
//   rank r:   u_r = (1/n) Σ_j c_j[r] + e_r; ĉ_r = C(u_r); e_r ← u_r − ĉ_r; ĉ_r to every rank.
//   everyone: x ← x − γ ĉ.
//
// Every chunk is its own codec message (its own header and tensor layout: the part of the
// model's tensors that falls in the chunk). The messages go straight to their rank
// (Transport::post / collect, every pair linked): worker chunk j to rank j (lane 0), then ĉ_r
// from rank r to every rank (lane 1): 2(n − 1) messages of one chunk each per peer. Every peer
// decodes the same bytes of every ĉ_r with the same codec, so the models stay bit-identical. With
// the identity codec this is all-reduce SGD, up to the order of the sum.

#include <algorithm>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"
#include "kernels/codec.hpp"

namespace gossip::algorithms::detail {
namespace {

constexpr std::uint32_t kWorker = 0;  // lane of the worker chunk messages
constexpr std::uint32_t kServer = 1;  // lane of the served averages ĉ_r

// Chunk c of n is [begin[c], begin[c + 1]): the first d mod n chunks are one longer (the ring
// all-reduce's chunks).
std::vector<std::size_t> chunk_begins(std::size_t d, std::size_t n) {
  std::vector<std::size_t> begin;
  for (std::size_t c = 0; c <= n; ++c) begin.push_back(c * (d / n) + std::min(c, d % n));
  return begin;
}

// The model's tensors cut to [b, e) (empty: one tensor).
std::vector<std::size_t> chunk_layout(const std::vector<std::size_t>& tensors, std::size_t b,
                                      std::size_t e) {
  std::vector<std::size_t> out;
  std::size_t at = 0;
  for (std::size_t t : tensors) {
    const std::size_t lo = std::max(at, b), hi = std::min(at + t, e);
    if (hi > lo) out.push_back(hi - lo);
    at += t;
  }
  return out;
}

class DoubleSqueeze final : public Algorithm {
 public:
  DoubleSqueeze(const AlgorithmConfig& config, net::Transport& transport,
                const topology::Topology& topology, std::span<const float> x0)
      : Algorithm(config, transport, topology, x0) {
    if (on_device())
      throw std::invalid_argument(
          "doublesqueeze encodes its chunks in host memory and does not run with the state on a "
          "GPU (cuda_device >= 0; run.device = \"cuda\"): use the host");
    const std::size_t d = x_.size(), n = static_cast<std::size_t>(size_);
    begin_ = chunk_begins(d, n);
    for (std::size_t c = 0; c < n; ++c) {
      const auto sizes = chunk_layout(config.tensor_sizes, begin_[c], begin_[c + 1]);
      codecs_.push_back(space().make_codec(config.codec, sizes, chunk_size(c)));
    }
    delta_ = model_buffer();
    const std::size_t own = chunk_size(static_cast<std::size_t>(rank_));
    error_ = space().alloc(own, 0.0f);
    u_ = space().alloc(own, 0.0f);
  }

 private:
  std::vector<StateBuffer> extra_state() override {
    return {{"delta", delta_}, {"server_error", error_}};
  }

  std::size_t chunk_size(std::size_t c) const { return begin_[c + 1] - begin_[c]; }
  std::span<float> chunk(Buffer& b, std::size_t c) {
    return std::span<float>(b).subspan(begin_[c], chunk_size(c));
  }
  // Codec RNG keys: worker chunk c and the served chunk get their own streams in each round.
  kernels::RngKey key(std::uint64_t slot) const {
    return {config_.seed, static_cast<std::uint32_t>(rank_),
            round_ * 2 * static_cast<std::uint64_t>(size_) + slot};
  }

  void run_round() override {
    const std::size_t n = static_cast<std::size_t>(size_), r = static_cast<std::size_t>(rank_);
    const auto t = round_;
    // Worker: v = d + δ in g_; c = C(v) chunk by chunk; δ ← v − c.
    Clock::time_point mark = Clock::now();
    run(ew::Axpy{1.0f, delta_.data(), g_.data()});
    for (std::size_t c = 0; c < n; ++c) {
      codecs_[c]->encode(chunk(g_, c), key(c));
      codecs_[c]->decode_own(chunk(delta_, c));
    }
    run(ew::Sub{g_.data(), delta_.data(), delta_.data()});
    codecs_[r]->decode_own(u_);  // Σ_j c_j[r], own message first
    last_.encode_s += seconds_since(mark);

    // Chunk j's message to rank j; rank r adds the messages for chunk r in the order r + 1,
    // r + 2, … (collect's).
    mark = Clock::now();
    transport_.post(t, kWorker,
                    [&](int j) { return codecs_[static_cast<std::size_t>(j)]->message(); });
    last_.wait_s += seconds_since(mark);
    collect(t, kWorker, [&](std::size_t j, std::span<const std::byte> bytes) {
      decode_from(j, [&] { codecs_[r]->decode_accumulate(bytes, 1.0f, u_); });
    });

    // Server of chunk r: u = (1/n) Σ_j c_j[r] + e; ĉ = C(u); e ← u − ĉ.
    mark = Clock::now();
    space().run(ew::ScaleAdd{1.0f / static_cast<float>(n), error_.data(), u_.data()}, u_.size());
    codecs_[r]->encode(u_, key(n + r));
    codecs_[r]->decode_own(error_);
    space().run(ew::Sub{u_.data(), error_.data(), error_.data()}, u_.size());
    codecs_[r]->decode_own(chunk(g_, r));
    last_.encode_s += seconds_since(mark);

    // ĉ_r to every rank; ĉ_j of every rank j laid out in g_.
    mark = Clock::now();
    const auto served = codecs_[r]->message();
    transport_.post(t, kServer, [&](int) { return served; });
    last_.wait_s += seconds_since(mark);
    collect(t, kServer, [&](std::size_t j, std::span<const std::byte> bytes) {
      decode_from(j, [&] { codecs_[j]->decode(bytes, chunk(g_, j)); });
    });

    mark = Clock::now();
    run(ew::Axpy{-config_.lr, g_.data(), x_.data()});
    last_.update_s += seconds_since(mark);
  }

  // Collects lane `lane` of this round, timing the wait and the decoding apart.
  template <class Use>
  void collect(std::uint64_t t, std::uint32_t lane, Use&& use) {
    Clock::time_point mark = Clock::now();
    double work = 0.0;
    transport_.collect(t, lane, [&](std::size_t j, std::span<const std::byte> bytes) {
      Clock::time_point at = Clock::now();
      use(j, bytes);
      work += seconds_since(at);
    });
    last_.wait_s += seconds_since(mark) - work;
    last_.decode_s += work;
  }

  // A codec error in a message from rank `from` becomes a WireError naming this rank, the round
  // and that peer.
  template <class Decode>
  void decode_from(std::size_t from, Decode&& decode) const {
    try {
      decode();
    } catch (const kernels::WireError& e) {
      throw kernels::WireError(fmt::format("rank {}: round {}: message from {}: {}", rank_, round_,
                                           transport_.peer_name(static_cast<int>(from)), e.what()));
    }
  }

  std::vector<std::size_t> begin_;                   // chunk c is [begin_[c], begin_[c + 1])
  std::vector<std::unique_ptr<SpaceCodec>> codecs_;  // one per chunk; codecs_[rank] also serves
  Buffer delta_;                                     // δ_i, model-sized
  Buffer error_;                                     // e_r, chunk r
  Buffer u_;                                         // u_r, chunk r (scratch)
};

}  // namespace

std::size_t double_squeeze_payload(const AlgorithmConfig& config, std::size_t d, int n) {
  // One chunk's codec message (its own header and tensor layout), the largest of the n.
  const auto begin = chunk_begins(d, static_cast<std::size_t>(n));
  std::size_t bytes = 0;
  for (std::size_t c = 0; c + 1 < begin.size(); ++c)
    bytes = std::max(bytes, kernels::make_codec(config.codec, chunk_layout(config.tensor_sizes,
                                                                           begin[c], begin[c + 1]))
                                ->wire_size(begin[c + 1] - begin[c]));
  return bytes;
}

std::unique_ptr<Algorithm> make_double_squeeze(const AlgorithmConfig& config,
                                               net::Transport& transport,
                                               const topology::Topology& topology,
                                               std::span<const float> x0) {
  return std::make_unique<DoubleSqueeze>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
