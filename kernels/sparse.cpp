#include "kernels/sparse.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "kernels/hd.hpp"
#include "kernels/philox.hpp"

namespace gossip::kernels {
namespace {

constexpr std::uint64_t kChunk = 64 * 1024;  // fixed work unit: results never depend on threads

inline std::uint32_t abs_key(float v) {
  return bits_as<std::uint32_t>(v) & 0x7fffffffu;
}

// Exact top-k of a small candidate list under the rank order.
void pick_ranked(std::vector<std::uint64_t>& cand, std::uint64_t k) {
  // Candidates pack (key << 32 | ~index) so a descending integer order is the rank order.
  if (k < cand.size()) {
    std::nth_element(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(k), cand.end(),
                     std::greater<>());
    cand.resize(k);
  }
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
    return (static_cast<std::uint64_t>(abs_key(x[i])) << 32) |
           (0xffffffffu - static_cast<std::uint32_t>(i));
  };
  std::vector<std::uint64_t> cand;
  if (n <= 4 * kChunk) {
    cand.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) cand[i] = pack(i);
  } else {
    // Radix select on the top 12 bits of the key: one histogram pass, then one pass keeps the
    // elements of the boundary bin and above; the exact rank order decides inside the bin.
    constexpr int kShift = 19, kBins = 1 << 12;
    const auto chunks = static_cast<std::int64_t>((n + kChunk - 1) / kChunk);
    std::vector<std::uint64_t> hist(kBins, 0);
#pragma omp parallel
    {
      std::vector<std::uint64_t> local(kBins, 0);
#pragma omp for schedule(static)
      for (std::int64_t c = 0; c < chunks; ++c) {
        const std::uint64_t b = static_cast<std::uint64_t>(c) * kChunk, e = std::min(n, b + kChunk);
        for (std::uint64_t i = b; i < e; ++i) ++local[abs_key(x[i]) >> kShift];
      }
#pragma omp critical
      for (int i = 0; i < kBins; ++i)
        hist[static_cast<std::size_t>(i)] += local[static_cast<std::size_t>(i)];
    }
    std::uint64_t above = 0;
    std::uint32_t bin = kBins - 1;
    while (above + hist[bin] < k) above += hist[bin--];
    std::vector<std::vector<std::uint64_t>> parts(static_cast<std::size_t>(chunks));
#pragma omp parallel for schedule(dynamic, 4)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::uint64_t b = static_cast<std::uint64_t>(c) * kChunk, e = std::min(n, b + kChunk);
      auto& part = parts[static_cast<std::size_t>(c)];
      for (std::uint64_t i = b; i < e; ++i)
        if ((abs_key(x[i]) >> kShift) >= bin) part.push_back(pack(i));
    }
    std::size_t total = 0;
    for (const auto& p : parts) total += p.size();
    cand.reserve(total);
    for (const auto& p : parts) cand.insert(cand.end(), p.begin(), p.end());
  }
  pick_ranked(cand, k);
  const std::size_t first = out.size();
  for (std::uint64_t c : cand)
    out.push_back(static_cast<std::uint32_t>(base + (0xffffffffu - static_cast<std::uint32_t>(c))));
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
}

void randomk_indices(std::uint64_t seed, std::uint32_t tensor, std::uint64_t n, std::uint64_t k,
                     std::uint64_t base, std::vector<std::uint32_t>& out) {
  k = std::min(k, n);
  if (k == 0) return;
  std::vector<std::uint64_t> taken((n + 63) / 64, 0);
  const auto k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  for (std::uint64_t j = n - k; j < n; ++j) {
    const Philox4 r =
        philox4x32_10(Philox4{{static_cast<std::uint32_t>(j), tensor, 0u, 3u << 24}}, k0, k1);
    const std::uint64_t word = (static_cast<std::uint64_t>(r.v[1]) << 32) | r.v[0];
    std::uint64_t t = mul_hi64(word, j + 1);
    if (taken[t >> 6] & (1ull << (t & 63))) t = j;
    taken[t >> 6] |= 1ull << (t & 63);
    out.push_back(static_cast<std::uint32_t>(base + t));
  }
}

void select_threshold(std::span<const float> x, float tau, std::vector<std::uint32_t>& out) {
  const std::uint64_t n = x.size();
  const auto chunks = static_cast<std::int64_t>((n + kChunk - 1) / kChunk);
  std::vector<std::uint64_t> count(static_cast<std::size_t>(chunks) + 1, 0);
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
