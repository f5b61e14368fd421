#pragma once
// Index selection for the sparse codecs (topk, randomk, threshold), host side.

#include <cstdint>
#include <span>
#include <vector>

namespace gossip::kernels {

// Top-k of |x| with ties broken toward the lower index: element a ranks above b when
// |a| > |b|, or |a| == |b| and index(a) < index(b). |x| is compared as the IEEE bits of fabs(x)
// (a total order: NaN above +inf). Appends the chosen indices, plus `base`, in ascending order.
void select_topk(std::span<const float> x, std::uint64_t k, std::uint64_t base,
                 std::vector<std::uint32_t>& out);

// randomk: k distinct indices of [0, n) by Floyd's algorithm, every k-subset equally likely.
// Draw j (j = n-k .. n-1) is uniform on [0, j]: mul_hi64(r, j + 1) with r the 64-bit Philox word
// for counter {j, tensor, 0, 3 << 24} under key {seed[31:0], seed[63:32]}. Appends base + index
// in insertion order (the order the values travel in).
void randomk_indices(std::uint64_t seed, std::uint32_t tensor, std::uint64_t n, std::uint64_t k,
                     std::uint64_t base, std::vector<std::uint32_t>& out);

// Indices (ascending) of elements with |x| >= tau; NaN never qualifies.
void select_threshold(std::span<const float> x, float tau, std::vector<std::uint32_t>& out);

// True when idx is strictly increasing and every entry is < d.
bool indices_valid(std::span<const std::byte> idx_bytes, std::uint64_t count, std::uint64_t d);

}  // namespace gossip::kernels
