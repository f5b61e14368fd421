#pragma once
// Straightforward scalar references for the codec tests: one element at a time, no packing, no
// threads. They share only the Philox function (checked against Random123's known answers in
// test_rng_half.cpp) with the library.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "kernels/codec.hpp"
#include "kernels/philox.hpp"

namespace gossip::kernels::ref {

// The bit-packed codecs with the parameter corners that matter to the tile kernels (every qsgd
// and quantize width, buckets that do and do not divide the tile, whole-tensor buckets); the
// CPU/GPU tests run each of them.
inline const char* const kPackedSpecs[] = {"qsgd:s=3,bucket=512",
                                           "qsgd:s=15,scaled=true",
                                           "qsgd:s=255,bucket=4096",
                                           "qsgd:s=7,bucket=100",
                                           "qsgd:s=1,bucket=5000",
                                           "qsgd:s=100,bucket=300",
                                           "quantize:bits=2",
                                           "quantize:bits=8,rounding=nearest,bucket=33",
                                           "quantize:bits=1,bucket=9000",
                                           "quantize:bits=4,bucket=77",
                                           "quantize:bits=4,bucket=9000",
                                           "terngrad:bucket=64",
                                           "terngrad",
                                           "sign:bucket=512",
                                           "sign",
                                           "sign:bucket=3"};

inline std::uint32_t fbits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// The random word of element i for a (seed, peer, round) key, straight from docs/kernels.md.
inline std::uint32_t noise_word(const RngKey& k, std::uint64_t i) {
  const Philox4 ctr{{static_cast<std::uint32_t>(i / 4), k.peer, static_cast<std::uint32_t>(k.round),
                     (static_cast<std::uint32_t>(k.round >> 32) & 0xffffffu) | (1u << 24)}};
  return philox4x32_10(ctr, static_cast<std::uint32_t>(k.seed),
                       static_cast<std::uint32_t>(k.seed >> 32))
      .v[i % 4];
}
inline float u01(std::uint32_t r) {
  return std::ldexp(static_cast<float>(r >> 8), -24);
}

struct Bucket {
  std::size_t begin, end;
};
// Buckets of `bucket` elements inside each tensor (0: one per tensor).
inline std::vector<Bucket> buckets(std::span<const std::size_t> sizes, std::size_t d,
                                   std::size_t bucket) {
  std::vector<std::size_t> ts(sizes.begin(), sizes.end());
  if (ts.empty() && d) ts.push_back(d);
  std::vector<Bucket> out;
  std::size_t off = 0;
  for (std::size_t n : ts) {
    const std::size_t b = bucket ? bucket : n;
    for (std::size_t s = 0; s < n; s += b) out.push_back({off + s, off + std::min(n, s + b)});
    off += n;
  }
  return out;
}

// The documented summation order: 4096-element segments, 32 lanes in double folded pairwise.
inline double ordered_sum(const float* p, std::size_t n, bool square) {
  double total = 0.0;
  for (std::size_t s = 0; s < n; s += 4096) {
    const std::size_t m = std::min<std::size_t>(4096, n - s);
    double lane[32] = {};
    for (std::size_t i = 0; i < m; ++i) {
      const double v = p[s + i];
      lane[i % 32] += square ? v * v : std::fabs(v);
    }
    for (int w = 16; w >= 1; w /= 2)
      for (int j = 0; j < w; ++j) lane[j] += lane[j + w];
    total += lane[0];
  }
  return total;
}

inline std::vector<float> qsgd(std::span<const float> x, std::span<const std::size_t> sizes,
                               std::uint32_t s, std::size_t bucket, bool scaled, const RngKey& k) {
  std::vector<float> c(x.size());
  for (const Bucket& b : buckets(sizes, x.size(), bucket)) {
    const auto norm =
        static_cast<float>(std::sqrt(ordered_sum(&x[b.begin], b.end - b.begin, true)));
    const float scale = norm > 0 ? static_cast<float>(s) / norm : 0.0f;
    const double len = static_cast<double>(b.end - b.begin);
    const double tau = std::min(len / (double(s) * s), std::sqrt(len) / s);
    const auto unit = static_cast<float>(norm / (double(s) * (scaled ? 1.0 + tau : 1.0)));
    for (std::size_t i = b.begin; i < b.end; ++i) {
      const float a = std::fabs(x[i]) * scale;
      float l = std::floor(a), p = a - l;
      if (l >= float(s)) l = float(s), p = 0;
      const float xi = l + (u01(noise_word(k, i)) < p ? 1.0f : 0.0f);
      const float v = xi * unit;
      c[i] = x[i] < 0 ? -v : v;
    }
  }
  return c;
}

inline std::vector<float> quantize(std::span<const float> x, std::span<const std::size_t> sizes,
                                   std::uint32_t bits, std::size_t bucket, bool nearest,
                                   const RngKey& k) {
  std::vector<float> c(x.size());
  const float L = float((1u << bits) - 1);
  for (const Bucket& b : buckets(sizes, x.size(), bucket)) {
    const float lo = *std::min_element(&x[b.begin], &x[b.begin] + (b.end - b.begin));
    const float hi = *std::max_element(&x[b.begin], &x[b.begin] + (b.end - b.begin));
    const float inv = hi > lo ? L / (hi - lo) : 0.0f;
    const float step = (hi - lo) / L;
    for (std::size_t i = b.begin; i < b.end; ++i) {
      const float t = std::clamp((x[i] - lo) * inv, 0.0f, L);
      float q;
      if (nearest)
        q = std::nearbyint(t);
      else
        q = std::floor(t) + (u01(noise_word(k, i)) < t - std::floor(t) ? 1.0f : 0.0f);
      c[i] = lo + q * step;
    }
  }
  return c;
}

inline std::vector<float> terngrad(std::span<const float> x, std::span<const std::size_t> sizes,
                                   std::size_t bucket, const RngKey& k) {
  std::vector<float> c(x.size());
  for (const Bucket& b : buckets(sizes, x.size(), bucket)) {
    float s = 0;
    for (std::size_t i = b.begin; i < b.end; ++i) s = std::max(s, std::fabs(x[i]));
    const float inv = s > 0 ? 1.0f / s : 0.0f;
    for (std::size_t i = b.begin; i < b.end; ++i) {
      const bool keep = u01(noise_word(k, i)) < std::fabs(x[i]) * inv;
      c[i] = keep ? (x[i] < 0 ? -s : s) : 0.0f;
    }
  }
  return c;
}

inline std::vector<float> sign(std::span<const float> x, std::span<const std::size_t> sizes,
                               std::size_t bucket) {
  std::vector<float> c(x.size());
  for (const Bucket& b : buckets(sizes, x.size(), bucket)) {
    const auto m = static_cast<float>(ordered_sum(&x[b.begin], b.end - b.begin, false) /
                                      double(b.end - b.begin));
    for (std::size_t i = b.begin; i < b.end; ++i) c[i] = x[i] < 0 ? -m : m;
  }
  return c;
}

// Top-k with std::nth_element under the documented rank: larger |x| first, lower index on ties.
inline std::vector<float> topk(std::span<const float> x, std::size_t k) {
  std::vector<std::size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min(k, x.size());
  auto rank = [&](std::size_t a, std::size_t b) {
    const float fa = std::fabs(x[a]), fb = std::fabs(x[b]);
    return fa != fb ? fa > fb : a < b;
  };
  std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(), rank);
  std::vector<float> c(x.size(), 0.0f);
  for (std::size_t j = 0; j < k; ++j) c[idx[j]] = x[idx[j]];
  return c;
}

inline std::vector<float> threshold(std::span<const float> x, float tau) {
  std::vector<float> c(x.size(), 0.0f);
  for (std::size_t i = 0; i < x.size(); ++i)
    if (std::fabs(x[i]) >= tau) c[i] = x[i];
  return c;
}

inline std::vector<float> gaussian(std::size_t d, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.0f, scale);
  std::vector<float> x(d);
  for (auto& v : x) v = n(g);
  return x;
}

inline bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 4 * a.size()) == 0);
}

// encode then decode into a fresh vector.
inline std::vector<float> roundtrip(const Codec& c, std::span<const float> x, const RngKey& k) {
  std::vector<std::byte> wire(c.wire_size(x.size()));
  const std::size_t n = c.encode(x, k, wire);
  std::vector<float> y(x.size(), 123.0f);
  c.decode(std::span<const std::byte>(wire.data(), n), y);
  return y;
}

}  // namespace gossip::kernels::ref
