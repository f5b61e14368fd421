#pragma once
// randomk's index choice (Floyd's algorithm, sparse.hpp) resolved in parallel, written once for
// host and device (the CUDA randomk and its CPU twin randomk_indices_parallel, tested against
// sparse.cpp's randomk_indices).
//
// Floyd's step j (j = n-k .. n-1, draw position q = j - (n-k)) draws t_j uniform on [0, j] and
// emits t_j unless it was emitted before, else j. With D_v = the steps that drew v, step j
// collides iff
//   j is not the first step of D_{t_j}, or
//   t_j >= n-k, t_j < j and step t_j collided (then step t_j emitted t_j itself).
// (A value v < n-k can only be emitted by a draw of v; a value v >= n-k is emitted at step v, by
// t_v = v or by a collision there, or else by the first later draw of v.) So with every step's
// draw and a flag "first draw of its value" (a stable sort of the draws gives it), each step
// follows the chain j -> t_j -> t_{t_j} .. on its own: randomk_resolve.

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/hd.hpp"
#include "kernels/layout.hpp"
#include "kernels/philox.hpp"

namespace gossip::kernels {

// The draw of step j for tensor `tensor` under the sent seed: uniform on [0, j].
GOSSIP_HD inline std::uint64_t randomk_draw(std::uint64_t seed, std::uint32_t tensor,
                                            std::uint64_t j) {
  const Philox4 r =
      philox4x32_10(Philox4{{static_cast<std::uint32_t>(j), tensor, 0u, 3u << 24}},
                    static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
  const std::uint64_t word = (static_cast<std::uint64_t>(r.v[1]) << 32) | r.v[0];
  return mul_hi64(word, j + 1);
}

// Index (base + local) emitted by draw position q of a tensor of n elements choosing k, from
// draw[] (base + t_j for every position) and first[] (1 when the position is the first to draw
// its value).
GOSSIP_HD inline std::uint64_t randomk_resolve(const std::uint32_t* draw, const std::uint8_t* first,
                                               std::uint64_t base, std::uint64_t n, std::uint64_t k,
                                               std::uint64_t q) {
  const std::uint64_t lo = n - k;
  std::uint64_t cur = q;
  for (;;) {
    if (!first[cur]) return base + lo + q;  // collision: step j emits j
    const std::uint64_t v = draw[cur] - base, j = lo + cur;
    if (v >= lo && v < j) {
      cur = v - lo;  // emitted t_j iff step t_j did not collide
      continue;
    }
    return draw[q];
  }
}

// Draw e of a layout (kbase[t]: first draw of tensor t, tensors + 1 entries; offsets likewise):
// its tensor, the tensor's size and k, and the draw's position in the tensor.
GOSSIP_HD inline void randomk_locate(const std::uint64_t* offsets, const std::uint64_t* kbase,
                                     std::uint32_t tensors, std::uint64_t e, std::uint32_t& t,
                                     std::uint64_t& n, std::uint64_t& k, std::uint64_t& q) {
  t = LayoutView::search(kbase, tensors, e);  // largest t with kbase[t] <= e
  n = offsets[t + 1] - offsets[t];
  k = kbase[t + 1] - kbase[t];
  q = e - kbase[t];
}

// Twin of the device pipeline over a whole layout: every draw as a global index, one stable sort
// of (draw, position) for all tensors (values of different tensors never meet), the first-draw
// flags, then randomk_resolve per draw. Returns the indices in payload order.
inline std::vector<std::uint32_t> randomk_layout_host(std::uint64_t seed,
                                                      const std::vector<std::uint64_t>& offsets,
                                                      const std::vector<std::uint64_t>& kbase) {
  const auto tensors = static_cast<std::uint32_t>(offsets.size() - 1);
  const std::uint64_t total = kbase.back();
  std::vector<std::uint32_t> draw(total), idx(total);
  std::vector<std::pair<std::uint32_t, std::uint32_t>> sorted(total);
  for (std::uint64_t e = 0; e < total; ++e) {
    std::uint32_t t;
    std::uint64_t n, k, q;
    randomk_locate(offsets.data(), kbase.data(), tensors, e, t, n, k, q);
    draw[e] = static_cast<std::uint32_t>(offsets[t] + randomk_draw(seed, t, n - k + q));
    sorted[e] = {draw[e], static_cast<std::uint32_t>(e)};
  }
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::uint8_t> first(total);
  for (std::uint64_t p = 0; p < total; ++p)
    first[sorted[p].second] = p == 0 || sorted[p - 1].first != sorted[p].first ? 1 : 0;
  for (std::uint64_t e = 0; e < total; ++e) {
    std::uint32_t t;
    std::uint64_t n, k, q;
    randomk_locate(offsets.data(), kbase.data(), tensors, e, t, n, k, q);
    idx[e] = static_cast<std::uint32_t>(
        randomk_resolve(draw.data() + kbase[t], first.data() + kbase[t], offsets[t], n, k, q));
  }
  return idx;
}

// The CPU twin of the CUDA randomk: draws, a stable sort for the first-draw flags, then the
// chains. Appends what randomk_indices appends (base + index, in draw order).
inline void randomk_indices_parallel(std::uint64_t seed, std::uint32_t tensor, std::uint64_t n,
                                     std::uint64_t k, std::uint64_t base,
                                     std::vector<std::uint32_t>& out) {
  k = k < n ? k : n;
  if (k == 0) return;
  std::vector<std::uint32_t> draw(k);
  std::vector<std::pair<std::uint32_t, std::uint32_t>> sorted(k);
  for (std::uint64_t q = 0; q < k; ++q) {
    draw[q] = static_cast<std::uint32_t>(base + randomk_draw(seed, tensor, n - k + q));
    sorted[q] = {draw[q], static_cast<std::uint32_t>(q)};
  }
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::uint8_t> first(k);
  for (std::uint64_t p = 0; p < k; ++p)
    first[sorted[p].second] = p == 0 || sorted[p - 1].first != sorted[p].first ? 1 : 0;
  for (std::uint64_t q = 0; q < k; ++q)
    out.push_back(
        static_cast<std::uint32_t>(randomk_resolve(draw.data(), first.data(), base, n, k, q)));
}

}  // namespace gossip::kernels
