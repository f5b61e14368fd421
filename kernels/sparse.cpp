#include "kernels/sparse.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "kernels/hd.hpp"
#include "kernels/radix_select.hpp"
#include "kernels/randomk_parallel.hpp"

namespace gossip::kernels {
namespace {

constexpr std::uint64_t kChunk = 64 * 1024;  // fixed work unit: results never depend on threads

// The k-th largest of the candidates (k <= cand.size()): with (key << 32 | ~index) packing, a
// descending integer order is the rank order and every value is distinct, so the top k are
// exactly the candidates >= this threshold. Selected on a copy, so `cand` keeps index order.
std::uint64_t kth_largest(const std::vector<std::uint64_t>& cand, std::uint64_t k,
                          std::vector<std::uint64_t>& work) {
  work.assign(cand.begin(), cand.end());
  std::nth_element(work.begin(), work.begin() + static_cast<std::ptrdiff_t>(k - 1), work.end(),
                   std::greater<>());
  return work[k - 1];
}

}  // namespace

void select_topk(std::span<const float> x, std::uint64_t k, std::uint64_t base,
                 std::vector<std::uint32_t>& out) {
  const std::uint64_t n = x.size();
  k = std::min(k, n);
  if (k == 0) return;
  if (k == n) {
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint32_t>(base + i));
    return;
  }
  auto pack = [&](std::uint64_t i) {
    return (static_cast<std::uint64_t>(topk_key(x[i])) << 32) |
           (0xffffffffu - static_cast<std::uint32_t>(i));
  };
  // Scratch lives per thread and keeps its capacity: steady-state calls allocate nothing. Names
  // bound here, outside the parallel regions, so worker threads use the caller's buffers.
  thread_local std::vector<std::uint64_t> cand_tl, hist_tl, work_tl;
  thread_local std::vector<std::vector<std::uint64_t>> parts_tl;
  std::vector<std::uint64_t>& cand = cand_tl;
  cand.clear();
  if (n <= 4 * kChunk) {
    cand.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) cand[i] = pack(i);
  } else {
    // Radix select on the top 12 bits of the key: one histogram pass, then one pass keeps the
    // elements of the boundary bin and above; the exact rank order decides inside the bin.
    constexpr int kShift = 19, kBins = 1 << 12;
    const auto chunks = static_cast<std::int64_t>((n + kChunk - 1) / kChunk);
    std::vector<std::uint64_t>& hist = hist_tl;
    hist.assign(kBins, 0);
#pragma omp parallel
    {
      // Each thread's own, four interleaved copies: gradients crowd into a few bins, and one
      // counter incremented back to back waits on its own previous store every time.
      thread_local std::vector<std::uint64_t> local;
      local.assign(4 * kBins, 0);
      std::uint64_t* h = local.data();
#pragma omp for schedule(static)
      for (std::int64_t c = 0; c < chunks; ++c) {
        const std::uint64_t b = static_cast<std::uint64_t>(c) * kChunk, e = std::min(n, b + kChunk);
        std::uint64_t i = b;
        for (; i + 4 <= e; i += 4) {
          ++h[topk_key(x[i]) >> kShift];
          ++h[kBins + (topk_key(x[i + 1]) >> kShift)];
          ++h[2 * kBins + (topk_key(x[i + 2]) >> kShift)];
          ++h[3 * kBins + (topk_key(x[i + 3]) >> kShift)];
        }
        for (; i < e; ++i) ++h[topk_key(x[i]) >> kShift];
      }
#pragma omp critical
      for (int i = 0; i < kBins; ++i)
        hist[static_cast<std::size_t>(i)] +=
            h[i] + h[kBins + i] + h[2 * kBins + i] + h[3 * kBins + i];
    }
    std::uint64_t above = 0;
    std::uint32_t bin = kBins - 1;
    while (above + hist[bin] < k) above += hist[bin--];
    std::vector<std::vector<std::uint64_t>>& parts = parts_tl;
    parts.resize(static_cast<std::size_t>(chunks));
    for (auto& p : parts) p.clear();
#pragma omp parallel for schedule(dynamic, 4)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::uint64_t b = static_cast<std::uint64_t>(c) * kChunk, e = std::min(n, b + kChunk);
      auto& part = parts[static_cast<std::size_t>(c)];
      // Few elements pass: a 64-bit mask per 64 elements (a loop g++ vectorises), then only the
      // set bits are visited.
      const auto lim = static_cast<std::int32_t>(bin << kShift);
      std::uint64_t i = b;
      for (; i + 64 <= e; i += 64) {
        std::uint64_t m = 0;
        for (std::uint32_t j = 0; j < 64; ++j)
          m |= static_cast<std::uint64_t>(static_cast<std::int32_t>(topk_key(x[i + j])) >= lim)
               << j;
        for (; m; m &= m - 1)
          part.push_back(pack(i + static_cast<std::uint64_t>(__builtin_ctzll(m))));
      }
      for (; i < e; ++i)
        if ((topk_key(x[i]) >> kShift) >= bin) part.push_back(pack(i));
    }
    std::size_t total = 0;
    for (const auto& p : parts) total += p.size();
    cand.reserve(total);  // grows once
    for (const auto& p : parts) cand.insert(cand.end(), p.begin(), p.end());
  }
  // cand is in index order (chunks in order, each in order): keeping the ones at or above the k-th
  // largest gives the k indices already ascending, without a sort.
  const std::uint64_t t = kth_largest(cand, k, work_tl);
  for (std::uint64_t c : cand)
    if (c >= t)
      out.push_back(
          static_cast<std::uint32_t>(base + (0xffffffffu - static_cast<std::uint32_t>(c))));
}

void randomk_indices(std::uint64_t seed, std::uint32_t tensor, std::uint64_t n, std::uint64_t k,
                     std::uint64_t base, std::vector<std::uint32_t>& out) {
  k = std::min(k, n);
  if (k == 0) return;
  thread_local std::vector<std::uint64_t> taken;  // keeps its capacity: no steady-state allocation
  taken.assign((n + 63) / 64, 0);
  for (std::uint64_t j = n - k; j < n; ++j) {
    std::uint64_t t = randomk_draw(seed, tensor, j);
    if (taken[t >> 6] & (1ull << (t & 63))) t = j;
    taken[t >> 6] |= 1ull << (t & 63);
    out.push_back(static_cast<std::uint32_t>(base + t));
  }
}

void select_threshold(std::span<const float> x, float tau, std::vector<std::uint32_t>& out) {
  const std::uint64_t n = x.size();
  const auto chunks = static_cast<std::int64_t>((n + kChunk - 1) / kChunk);
  thread_local std::vector<std::uint64_t> count_tl;  // keeps its capacity
  std::vector<std::uint64_t>& count = count_tl;      // the caller's, in the parallel regions too
  count.assign(static_cast<std::size_t>(chunks) + 1, 0);
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::uint64_t b = static_cast<std::uint64_t>(c) * kChunk, e = std::min(n, b + kChunk);
    std::uint64_t m = 0;
    for (std::uint64_t i = b; i < e; ++i) m += std::fabs(x[i]) >= tau ? 1u : 0u;
    count[static_cast<std::size_t>(c) + 1] = m;
  }
  for (std::size_t c = 1; c < count.size(); ++c) count[c] += count[c - 1];
  const std::size_t first = out.size();
  out.resize(first + count.back());
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::uint64_t b = static_cast<std::uint64_t>(c) * kChunk, e = std::min(n, b + kChunk);
    std::uint32_t* o = out.data() + first + count[static_cast<std::size_t>(c)];
    for (std::uint64_t i = b; i < e; ++i)
      if (std::fabs(x[i]) >= tau) *o++ = static_cast<std::uint32_t>(i);
  }
}

bool indices_valid(std::span<const std::byte> idx_bytes, std::uint64_t count, std::uint64_t d) {
  const std::byte* p = idx_bytes.data();
  const auto n = static_cast<std::int64_t>(count);
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n > 65536)
  for (std::int64_t e = 0; e < n; ++e) {
    std::uint32_t cur, prev = 0;
    std::memcpy(&cur, p + 4 * e, 4);
    if (e > 0) std::memcpy(&prev, p + 4 * (e - 1), 4);
    bad |= (cur >= d || (e > 0 && cur <= prev)) ? 1 : 0;
  }
  return bad == 0;
}

}  // namespace gossip::kernels
