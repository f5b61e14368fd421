#pragma once
// Parsed codec spec. One struct for all codecs; fields a codec does not use stay at defaults.

#include <cstdint>
#include <string>
#include <string_view>

#include "kernels/wire.hpp"

namespace gossip::kernels {

struct CodecParams {
  CodecId id = CodecId::kIdentity;
  std::uint32_t s = 3;       // qsgd levels
  std::uint32_t bits = 8;    // quantize bit width
  std::uint32_t bucket = 0;  // 0: the whole tensor is one bucket
  bool scaled = false;       // qsgd: C(x) / (1 + tau)
  bool nearest = false;      // quantize: round to nearest instead of stochastically
  bool unbiased = true;      // randomk: scale by d/k
  std::uint64_t k = 0;       // topk/randomk: fixed k (per tensor), 0 when ratio is used
  double ratio = 0.0;        // topk/randomk: k = ceil(ratio * tensor size)
  double tau = 0.0;          // threshold

  // Field width of one qsgd code: sign bit + ceil(log2(s + 1)) level bits.
  std::uint32_t qsgd_width() const;
  // k for a tensor of n elements.
  std::uint64_t k_for(std::uint64_t n) const;
  // randomk: the factor its values are decoded with for a tensor of n elements, n/k when
  // unbiased (1 when k = 0 or biased).
  float randomk_scale(std::uint64_t n) const;
};

// Throws std::invalid_argument naming the codec / parameter and the allowed values.
CodecParams parse_spec(std::string_view spec);
std::string canonical_spec(const CodecParams& p);

}  // namespace gossip::kernels
