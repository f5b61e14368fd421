#pragma once
// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), written
// from the paper so host and device share one definition. Counter-based: the random word of
// element i is a pure function of (key, i), so an encoding never depends on thread count or device.

#include <cstdint>

#include "kernels/hd.hpp"

namespace gossip::kernels {

struct Philox4 {
  std::uint32_t v[4];
};

GOSSIP_HD inline Philox4 philox4x32_10(Philox4 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * ctr.v[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * ctr.v[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// Streams: independent uses of one (seed, peer, round) key, kept apart in the counter's top byte.
enum class RngStream : std::uint32_t {
  kElementNoise = 1,  // stochastic rounding of element i (qsgd, quantize, terngrad)
  kRandomkSeed = 2,   // the 64-bit seed randomk sends on the wire
};

// The stream for one encoding. Counter layout (documented in docs/kernels.md):
//   ctr = { i / 4, peer, round[31:0], (round[55:32] & 0xffffff) | stream << 24 },
//   key = { seed[31:0], seed[63:32] }; element i takes word i % 4 of block i / 4.
struct RngStreamKey {
  std::uint32_t k0, k1, peer, round_lo, hi;

  GOSSIP_HD Philox4 block(std::uint32_t b) const {
    return philox4x32_10(Philox4{{b, peer, round_lo, hi}}, k0, k1);
  }
};

GOSSIP_HD inline RngStreamKey make_stream(std::uint64_t seed, std::uint32_t peer,
                                          std::uint64_t round, RngStream stream) {
  return RngStreamKey{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                      peer, static_cast<std::uint32_t>(round),
                      (static_cast<std::uint32_t>(round >> 32) & 0xffffffu) |
                          (static_cast<std::uint32_t>(stream) << 24)};
}

// Uniform in [0, 1) with 24 random bits: exactly representable, the same float on every device.
GOSSIP_HD inline float uniform01(std::uint32_t r) {
  // Through int32 (exact: < 2^24) because signed conversion vectorises on every x86 level.
  return static_cast<float>(static_cast<std::int32_t>(r >> 8)) * 5.9604644775390625e-08f;  // 2^-24
}

}  // namespace gossip::kernels
