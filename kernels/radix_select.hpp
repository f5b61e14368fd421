#pragma once
// Top-k selection by radix select, written once for host and device (the CUDA top-k and its CPU
// twin select_topk_radix, tested against sparse.cpp's select_topk).
//
// Rank order (sparse.hpp): key = IEEE bits of |x| (31 bits; NaN above inf), ties to the lower
// index. Three passes over the key's digits [30:20], [19:10], [9:0] find the k-th largest key T:
// pass p histograms the digit of the elements whose higher digits equal the prefix found so far,
// and radix_pick walks the bins from the top until the count reaches the number still needed.
// Afterwards the k chosen are every element with key > T plus the first `need` elements (lowest
// indices) with key == T: topk_keep() with an element's rank among the key == T elements, which a
// scan in index order gives. Indices come out ascending.

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/hd.hpp"

namespace gossip::kernels {

inline constexpr int kRadixPasses = 3;
inline constexpr std::uint32_t kRadixMaxBins = 2048;

GOSSIP_HD inline std::uint32_t topk_key(float v) {
  return bits_as<std::uint32_t>(v) & 0x7fffffffu;
}
GOSSIP_HD constexpr int radix_shift(int pass) {
  return pass == 0 ? 20 : (pass == 1 ? 10 : 0);
}
GOSSIP_HD constexpr std::uint32_t radix_bins(int pass) {
  return pass == 0 ? 2048u : 1024u;
}
// Key bits decided before `pass`.
GOSSIP_HD constexpr std::uint32_t radix_decided(int pass) {
  return pass == 0 ? 0u : (0x7fffffffu >> radix_shift(pass - 1)) << radix_shift(pass - 1);
}

// Per tensor: the key prefix decided so far and how many elements are still to be chosen at or
// below it. need == 0: nothing to select (empty tensor or k = 0).
struct RadixState {
  std::uint32_t prefix;
  std::uint32_t need;
};

GOSSIP_HD inline bool radix_candidate(std::uint32_t key, RadixState s, int pass) {
  return (key & radix_decided(pass)) == s.prefix;
}
GOSSIP_HD inline std::uint32_t radix_digit(std::uint32_t key, int pass) {
  return (key >> radix_shift(pass)) & (radix_bins(pass) - 1);
}

// One pass's choice from the candidates' histogram and its sums over groups of 32 bins
// (group_sum[q] = hist[32 q] + .. + hist[32 q + 31]): the bin b with (count above b) < need <=
// (count above b) + hist[b]. Requires need <= the candidates' count.
GOSSIP_HD inline void radix_pick(const std::uint32_t* hist, const std::uint32_t* group_sum,
                                 int pass, RadixState& s) {
  std::uint64_t above = 0;
  std::uint32_t q = radix_bins(pass) / 32 - 1;
  while (above + group_sum[q] < s.need) above += group_sum[q--];
  std::uint32_t b = q * 32 + 31;
  while (above + hist[b] < s.need) above += hist[b--];
  s.prefix |= b << radix_shift(pass);
  s.need -= static_cast<std::uint32_t>(above);
}

// After the passes: is an element chosen? eq_rank = number of lower-index elements of its tensor
// with key == s.prefix.
GOSSIP_HD inline bool topk_keep(std::uint32_t key, RadixState s, std::uint64_t eq_rank) {
  return key > s.prefix || (key == s.prefix && eq_rank < s.need);
}

// ---- the device's work split: chunks of one tensor each ----------------------------------------
// A chunk is a run of at most kTopkChunk elements of one tensor (one CUDA block in every top-k
// kernel); first_chunk is its tensor's first chunk.
inline constexpr std::uint64_t kTopkChunk = 16384;
struct TopkChunk {
  std::uint64_t begin, end;
  std::uint32_t tensor, first_chunk;
};
inline std::vector<TopkChunk> topk_chunks(std::span<const std::uint64_t> offsets) {
  std::vector<TopkChunk> chunks;
  for (std::size_t t = 0; t + 1 < offsets.size(); ++t) {
    const auto first = static_cast<std::uint32_t>(chunks.size());
    for (std::uint64_t b = offsets[t]; b < offsets[t + 1]; b += kTopkChunk)
      chunks.push_back(TopkChunk{b, std::min(b + kTopkChunk, offsets[t + 1]),
                                 static_cast<std::uint32_t>(t), first});
  }
  return chunks;
}
// Entries a chunk keeps: its eq elements with key == T ranked `before` .. among the tensor's ties,
// gt with key > T.
GOSSIP_HD inline std::uint32_t topk_chunk_kept(RadixState s, std::uint32_t before, std::uint32_t eq,
                                               std::uint32_t gt) {
  if (s.need == 0) return 0;
  const std::uint32_t ties = s.need > before ? (s.need - before < eq ? s.need - before : eq) : 0u;
  return gt + ties;
}

// Twin of the whole device pipeline over a layout (offsets: tensors + 1 entries, k[t] per
// tensor): per-chunk histograms added into per-tensor ones, the picks, per-chunk counts and their
// scans, then each chunk writing its entries at its offset in index order. Returns the global
// indices in payload order.
inline std::vector<std::uint32_t> topk_chunked_host(std::span<const float> x,
                                                    std::span<const std::uint64_t> offsets,
                                                    std::span<const std::uint64_t> k) {
  const std::size_t tensors = offsets.size() - 1;
  const std::vector<TopkChunk> chunks = topk_chunks(offsets);
  std::vector<RadixState> state(tensors);
  std::uint64_t total = 0;
  for (std::size_t t = 0; t < tensors; ++t) {
    const std::uint64_t n = offsets[t + 1] - offsets[t], kt = k[t] < n ? k[t] : n;
    state[t] = RadixState{0, static_cast<std::uint32_t>(kt)};
    total += kt;
  }
  std::vector<std::uint32_t> hist(tensors * kRadixMaxBins), sums(kRadixMaxBins / 32);
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    for (const TopkChunk& c : chunks) {
      if (state[c.tensor].need == 0) continue;
      for (std::uint64_t i = c.begin; i < c.end; ++i) {
        const std::uint32_t key = topk_key(x[i]);
        if (radix_candidate(key, state[c.tensor], pass))
          ++hist[c.tensor * kRadixMaxBins + radix_digit(key, pass)];
      }
    }
    for (std::size_t t = 0; t < tensors; ++t) {
      std::uint32_t* h = hist.data() + t * kRadixMaxBins;
      if (state[t].need != 0) {
        for (std::uint32_t q = 0; q < radix_bins(pass) / 32; ++q) {
          sums[q] = 0;
          for (std::uint32_t b = 0; b < 32; ++b) sums[q] += h[32 * q + b];
        }
        radix_pick(h, sums.data(), pass, state[t]);
      }
      std::fill(h, h + kRadixMaxBins, 0u);
    }
  }
  const std::size_t nc = chunks.size();
  std::vector<std::uint32_t> eq(nc), gt(nc), eq_scan(nc), kept(nc), offset(nc), before(nc);
  for (std::size_t c = 0; c < nc; ++c) {
    const RadixState s = state[chunks[c].tensor];
    for (std::uint64_t i = chunks[c].begin; i < chunks[c].end && s.need; ++i) {
      eq[c] += topk_key(x[i]) == s.prefix ? 1u : 0u;
      gt[c] += topk_key(x[i]) > s.prefix ? 1u : 0u;
    }
  }
  for (std::size_t c = 1; c < nc; ++c) eq_scan[c] = eq_scan[c - 1] + eq[c - 1];
  for (std::size_t c = 0; c < nc; ++c) {
    before[c] = eq_scan[c] - eq_scan[chunks[c].first_chunk];
    kept[c] = topk_chunk_kept(state[chunks[c].tensor], before[c], eq[c], gt[c]);
  }
  for (std::size_t c = 1; c < nc; ++c) offset[c] = offset[c - 1] + kept[c - 1];
  std::vector<std::uint32_t> out(total, 0xffffffffu);
  for (std::size_t c = 0; c < nc; ++c) {
    const RadixState s = state[chunks[c].tensor];
    std::uint64_t ties = before[c], pos = offset[c];
    for (std::uint64_t i = chunks[c].begin; i < chunks[c].end; ++i) {
      const std::uint32_t key = topk_key(x[i]);
      if (s.need != 0 && topk_keep(key, s, ties)) out.at(pos++) = static_cast<std::uint32_t>(i);
      ties += key == s.prefix ? 1u : 0u;
    }
  }
  return out;
}

// The CPU twin of the CUDA top-k: the same passes and choice, serially. Appends base + index of
// the min(k, n) chosen elements, ascending (the result of select_topk).
inline void select_topk_radix(std::span<const float> x, std::uint64_t k, std::uint64_t base,
                              std::vector<std::uint32_t>& out) {
  const std::uint64_t n = x.size();
  k = k < n ? k : n;
  if (k == 0) return;
  RadixState s{0, static_cast<std::uint32_t>(k)};
  std::vector<std::uint32_t> hist(kRadixMaxBins), sums(kRadixMaxBins / 32);
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    std::fill(hist.begin(), hist.end(), 0u);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint32_t key = topk_key(x[i]);
      if (radix_candidate(key, s, pass)) ++hist[radix_digit(key, pass)];
    }
    for (std::uint32_t q = 0; q < radix_bins(pass) / 32; ++q) {
      sums[q] = 0;
      for (std::uint32_t b = 0; b < 32; ++b) sums[q] += hist[32 * q + b];
    }
    radix_pick(hist.data(), sums.data(), pass, s);
  }
  std::uint64_t eq = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint32_t key = topk_key(x[i]);
    if (topk_keep(key, s, eq)) out.push_back(static_cast<std::uint32_t>(base + i));
    eq += key == s.prefix ? 1u : 0u;
  }
}

}  // namespace gossip::kernels
