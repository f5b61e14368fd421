// DoubleSqueeze (Tang, Yu, Lian, Zhang, Liu, ICML 2019): compressed all-reduce with error
// feedback on both sides, without a parameter server: rank r serves chunk r of the vector (as
// DeepSpeed's compressed all-reduce does).
//
//   worker i: v_i = d_i + δ_i; c_i = C(v_i) chunk by chunk; δ_i ← v_i − c_i; chunk r to rank r.
//   rank r:   u_r = (1/n) Σ_j c_j[r] + e_r; ĉ_r = C(u_r); e_r ← u_r − ĉ_r; ĉ_r to every rank.
//   everyone: x ← x − γ ĉ.
//
// Every chunk is its own codec message (its own header and tensor layout: the part of the
// model's tensors that falls in the chunk). The transport links a peer only with its ring
// neighbours, so the messages travel over ring steps: first an all-to-all in which rank i's
// message for rank q is forwarded (q − i) mod n hops, unchanged (step s carries the n − 1 − s
// messages of rank r − s still on their way), then an all-gather of the ĉ_r. Every peer decodes
// the same bytes of every ĉ_r with the same codec, so the models stay bit-identical. With the
// identity codec this is all-reduce SGD, up to the order of the sum.

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"
#include "kernels/codec.hpp"

namespace gossip::algorithms::detail {
namespace {

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
      const auto sizer = kernels::make_codec(config.codec, sizes);
      if (!sizer->fixed_wire_size())
        throw std::invalid_argument(fmt::format(
            "doublesqueeze needs a codec whose messages have a fixed size (the ring steps "
            "forward them by length), and {} writes as many bytes as the data asks: use topk "
            "or randomk",
            sizer->spec()));
      wire_.push_back(sizer->wire_size(chunk_size(c)));
      codecs_.push_back(space().make_codec(config.codec, sizes, chunk_size(c)));
    }
    delta_ = model_buffer();
    const std::size_t own = chunk_size(static_cast<std::size_t>(rank_));
    error_ = space().alloc(own, 0.0f);
    u_ = space().alloc(own, 0.0f);
    const std::size_t most = std::accumulate(wire_.begin(), wire_.end(), std::size_t{0});
    bundles_[0].resize(most);
    bundles_[1].resize(most);
  }

 private:
  std::vector<StateBuffer> extra_state() override {
    return {{"delta", delta_}, {"server_error", error_}};
  }

  std::size_t chunk_size(std::size_t c) const { return begin_[c + 1] - begin_[c]; }
  std::span<float> chunk(Buffer& b, std::size_t c) {
    return std::span<float>(b).subspan(begin_[c], chunk_size(c));
  }
  std::size_t wrap(std::size_t c) const { return c % static_cast<std::size_t>(size_); }
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
    // The messages for ranks r + 1, …, r + n − 1, in that order: the first all-to-all step.
    std::size_t out_bytes = 0;
    for (std::size_t k = 1; k < n; ++k) {
      const auto m = codecs_[wrap(r + k)]->message();
      std::copy(m.begin(), m.end(), bundles_[0].begin() + static_cast<std::ptrdiff_t>(out_bytes));
      out_bytes += m.size();
    }
    codecs_[r]->decode_own(u_);  // Σ_j c_j[r], own message first
    last_.encode_s += seconds_since(mark);

    // All-to-all over the ring: in step s, rank r − 1 passes on the messages of rank r − 1 − s
    // for ranks r, r + 1, …, r − s − 2 + n; the first is ours, the rest go on in step s + 1.
    std::span<const std::byte> out(bundles_[0].data(), out_bytes);
    for (std::size_t s = 0; s + 1 < n; ++s) {
      std::size_t in_bytes = 0;
      for (std::size_t k = 0; k + 1 + s < n; ++k) in_bytes += wire_[wrap(r + k)];
      std::span<std::byte> in(bundles_[(s + 1) % 2].data(), in_bytes);
      mark = Clock::now();
      transport_.ring_step(t, static_cast<std::uint32_t>(s), out, in);
      last_.wait_s += seconds_since(mark);
      decode_from(wrap(r + n - 1),
                  [&] { codecs_[r]->decode_accumulate(in.first(wire_[r]), 1.0f, u_); });
      last_.decode_s += seconds_since(mark);
      out = in.subspan(wire_[r]);
    }

    // Server of chunk r: u = (1/n) Σ_j c_j[r] + e; ĉ = C(u); e ← u − ĉ.
    mark = Clock::now();
    space().run(ew::ScaleAdd{1.0f / static_cast<float>(n), error_.data(), u_.data()}, u_.size());
    codecs_[r]->encode(u_, key(n + r));
    codecs_[r]->decode_own(error_);
    space().run(ew::Sub{u_.data(), error_.data(), error_.data()}, u_.size());
    codecs_[r]->decode_own(chunk(g_, r));
    last_.encode_s += seconds_since(mark);

    // All-gather over the ring: in step s the ĉ of rank r − 1 − s arrives; ĉ is laid out in g_.
    out = codecs_[r]->message();
    for (std::size_t s = 0; s + 1 < n; ++s) {
      const std::size_t q = wrap(r + 2 * n - 1 - s);
      std::span<std::byte> in(bundles_[s % 2].data(), wire_[q]);
      mark = Clock::now();
      transport_.ring_step(t, static_cast<std::uint32_t>(n - 1 + s), out, in);
      last_.wait_s += seconds_since(mark);
      decode_from(wrap(r + n - 1), [&] { codecs_[q]->decode(in, chunk(g_, q)); });
      last_.decode_s += seconds_since(mark);
      out = in;
    }

    mark = Clock::now();
    run(ew::Axpy{-config_.lr, g_.data(), x_.data()});
    last_.update_s += seconds_since(mark);
  }

  // A codec error in a message from rank `from` (the ring's rank − 1, which may have forwarded
  // it) becomes a WireError naming this rank, the round and that peer.
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
  std::vector<std::size_t> wire_;                    // bytes of a message of chunk c
  std::vector<std::unique_ptr<SpaceCodec>> codecs_;  // one per chunk; codecs_[rank] also serves
  Buffer delta_;                                     // δ_i, model-sized
  Buffer error_;                                     // e_r, chunk r
  Buffer u_;                                         // u_r, chunk r (scratch)
  std::vector<std::byte> bundles_[2];                // the ring step's outgoing and incoming bytes
};

}  // namespace

std::size_t double_squeeze_payload(const AlgorithmConfig& config, std::size_t d, int n) {
  // The largest ring step carries fewer than all n chunk messages.
  const auto begin = chunk_begins(d, static_cast<std::size_t>(n));
  std::size_t bytes = 0;
  for (std::size_t c = 0; c + 1 < begin.size(); ++c)
    bytes +=
        kernels::make_codec(config.codec, chunk_layout(config.tensor_sizes, begin[c], begin[c + 1]))
            ->wire_size(begin[c + 1] - begin[c]);
  return bytes;
}

std::unique_ptr<Algorithm> make_double_squeeze(const AlgorithmConfig& config,
                                               net::Transport& transport,
                                               const topology::Topology& topology,
                                               std::span<const float> x0) {
  return std::make_unique<DoubleSqueeze>(config, transport, topology, x0);
}

}  // namespace gossip::algorithms::detail
