#pragma once
// Element-wise work of every dense codec as host-and-device functors, one call per group of 32
// elements (a group's packed codes fill whole 32-bit words, so groups write disjoint bytes and run
// in any order on any number of threads). Run by kernels/codec_host.cpp (host, OpenMP threads, or
// their AVX-512 twins in host_avx512.hpp) and kernels/cuda/device_codec.cu (device). Every float
// formula here is the definition the tests check.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/float16.hpp"
#include "kernels/hd.hpp"
#include "kernels/layout.hpp"
#include "kernels/le_bytes.hpp"
#include "kernels/philox.hpp"

namespace gossip::kernels {

inline constexpr std::uint32_t kGroup = 32;
inline constexpr std::uint32_t kSegment = 4096;  // fixed-order reduction segment (see sum_segment)

// g(std::integral_constant<int, F>) for the runtime code width f if it is one of Widths, nothing
// otherwise: the bridge from a codec's parameters to functors instantiated per width. The host
// builds every width it accepts, the device a subset (pack.hpp, DeviceWidths).
template <int... Widths, class G>
void with_width_in(std::integer_sequence<int, Widths...>, int f, G&& g) {
  (void)((f == Widths ? (g(std::integral_constant<int, Widths>{}), true) : false) || ...);
}

// ---- fixed-order reductions -------------------------------------------------------------------
// Sum of f(x_i) over n <= kSegment elements in double: lane j accumulates elements j, j+32, ...
// in order, then lanes fold pairwise (16, 8, 4, 2, 1). A bucket's sum is the in-order sum of its
// segments' sums. This order is part of the format: it makes norms bit-identical on any thread
// count and on the GPU (a warp computes the same lanes).
template <bool kSquare>
GOSSIP_HD inline double sum_segment(const float* p, std::uint32_t n) {
  double lane[kGroup];
  for (std::uint32_t j = 0; j < kGroup; ++j) lane[j] = 0.0;
  const std::uint32_t full = n & ~(kGroup - 1);
  for (std::uint32_t i = 0; i < full; i += kGroup) {
    for (std::uint32_t j = 0; j < kGroup; ++j) {
      const double v = static_cast<double>(p[i + j]);
      lane[j] += kSquare ? v * v : (v < 0 ? -v : v);
    }
  }
  for (std::uint32_t j = 0; j < n - full; ++j) {
    const double v = static_cast<double>(p[full + j]);
    lane[j] += kSquare ? v * v : (v < 0 ? -v : v);
  }
  for (std::uint32_t w = kGroup / 2; w >= 1; w /= 2)
    for (std::uint32_t j = 0; j < w; ++j) lane[j] += lane[j + w];
  return lane[0];
}

struct MinMax {
  float lo, hi;
};
// Left to right, as the definition: a NaN first element makes both NaN, later NaNs never win. (A
// split into segments must start each later segment at its first number: codec_host.cpp.)
GOSSIP_HD inline MinMax minmax_range(const float* p, std::uint64_t n) {
  float lo = p[0], hi = p[0];
  for (std::uint64_t i = 1; i < n; ++i) {
    lo = p[i] < lo ? p[i] : lo;
    hi = p[i] > hi ? p[i] : hi;
  }
  return {lo, hi};
}
GOSSIP_HD inline float maxabs_range(const float* p, std::uint64_t n) {
  float m = 0.0f;
  for (std::uint64_t i = 0; i < n; ++i) {
    const float a = std::fabs(p[i]);
    m = a > m ? a : m;
  }
  return m;
}

enum class BucketStat { kL2, kL1Mean, kMaxAbs, kMinMax };

// Per-bucket statistic written into the payload's scale table (one call per bucket).
// kL2: ||x||_2 (qsgd); kL1Mean: ||x||_1 / len (sign); kMaxAbs: max |x| (terngrad);
// kMinMax: (min, max) pair (quantize).
template <BucketStat kStat>
struct BucketStatFn {
  const float* x;
  LayoutView layout;
  std::byte* table;

  GOSSIP_HD void operator()(std::uint64_t j) const {
    std::uint64_t b, e;
    layout.bucket_range(j, b, e);
    const std::uint64_t n = e - b;
    if constexpr (kStat == BucketStat::kL2 || kStat == BucketStat::kL1Mean) {
      double s = 0.0;
      for (std::uint64_t o = 0; o < n; o += kSegment)
        s += sum_segment<kStat == BucketStat::kL2>(
            x + b + o, static_cast<std::uint32_t>(min_u64(kSegment, n - o)));
      store_le<float>(table + 4 * j, finish(s, n));
    } else if constexpr (kStat == BucketStat::kMaxAbs) {
      store_le<float>(table + 4 * j, maxabs_range(x + b, n));
    } else {
      const MinMax mm = minmax_range(x + b, n);
      store_le<float>(table + 8 * j, mm.lo);
      store_le<float>(table + 8 * j + 4, mm.hi);
    }
  }
  GOSSIP_HD static float finish(double s, std::uint64_t n) {
    if constexpr (kStat == BucketStat::kL2)
      return static_cast<float>(std::sqrt(s));
    else
      return static_cast<float>(s / static_cast<double>(n));
  }
};

// ---- bit packing --------------------------------------------------------------------------------
// Element i's F-bit code sits at bits [i*F, (i+1)*F) of the bit stream, bit k of the stream being
// bit k%8 of byte k/8 (LSB first). A group of 32 codes is exactly F 32-bit words; the last, partial
// group writes only ceil(n*F/8) bytes so the payload size is exact.
template <int F>
struct GroupBits {
  std::uint32_t w[F];

  GOSSIP_HD static std::uint64_t group_bytes(std::uint64_t d, std::uint64_t g) {
    const std::uint64_t n = min_u64(kGroup, d - g * kGroup);
    return (n * F + 7) / 8;
  }
  // codes[j] for j >= n must be zero.
  GOSSIP_HD void pack(const std::uint32_t* codes) {
    std::uint64_t acc = 0;
    int filled = 0, word = 0;
    GOSSIP_UNROLL
    for (std::uint32_t j = 0; j < kGroup; ++j) {
      acc |= static_cast<std::uint64_t>(codes[j]) << filled;
      filled += F;
      if (filled >= 32) {
        w[word++] = static_cast<std::uint32_t>(acc);
        acc >>= 32;
        filled -= 32;
      }
    }
  }
  GOSSIP_HD void store(std::byte* stream, std::uint64_t d, std::uint64_t g) const {
    const std::uint64_t bytes = group_bytes(d, g);
    if (bytes == 4u * F)
      std::memcpy(stream + g * 4 * F, w, 4u * F);
    else
      std::memcpy(stream + g * 4 * F, w, bytes);
  }
  GOSSIP_HD void load(const std::byte* stream, std::uint64_t d, std::uint64_t g) {
    const std::uint64_t bytes = group_bytes(d, g);
    if (bytes == 4u * F) {
      std::memcpy(w, stream + g * 4 * F, 4u * F);
    } else {
      for (int k = 0; k < F; ++k) w[k] = 0;
      std::memcpy(w, stream + g * 4 * F, bytes);
    }
  }
  GOSSIP_HD void unpack(std::uint32_t* codes) const {
    constexpr std::uint32_t kMask = F >= 32 ? 0xffffffffu : ((1u << F) - 1u);
    GOSSIP_UNROLL
    for (std::uint32_t j = 0; j < kGroup; ++j) {
      const std::uint32_t bit = j * F, k = bit >> 5, sh = bit & 31u;
      std::uint64_t v = w[k] >> sh;
      if (sh + F > 32) v |= static_cast<std::uint64_t>(w[k + 1]) << (32 - sh);
      codes[j] = static_cast<std::uint32_t>(v) & kMask;
    }
  }
};

// Random words of a group's 32 elements (element i0 + j takes word j % 4 of block (i0 + j) / 4).
// Device code calls this per group; the host fills a whole tile at once with a vectorised twin.
GOSSIP_HD inline void group_noise(const RngStreamKey& key, std::uint64_t i0, std::uint32_t* r) {
  for (std::uint32_t b = 0; b < kGroup / 4; ++b) {
    const Philox4 blk = key.block(static_cast<std::uint32_t>((i0 >> 2) + b));
    for (int q = 0; q < 4; ++q) r[4 * b + q] = blk.v[q];
  }
}

// ---- per-element definitions ---------------------------------------------------------------
// Truncation is floor for the non-negative values it is used on, and converts in one instruction
// on every target (std::floor needs SSE4.1 to vectorise).
GOSSIP_HD inline float floor_nonneg(float a) {
  return static_cast<float>(static_cast<std::int32_t>(a));
}

// qsgd: code = negative | xi << 1 with xi in {l, l+1}, l = floor(a), a = min(|x| * (s / norm), s),
// P(l + 1) = a - l.
GOSSIP_HD inline std::uint32_t qsgd_code(float x, float scale, float s, std::uint32_t r) {
  float a = std::fabs(x) * scale;
  a = a < s ? a : s;
  const float l = floor_nonneg(a);
  const std::uint32_t xi =
      static_cast<std::uint32_t>(static_cast<std::int32_t>(l)) + (uniform01(r) < a - l ? 1u : 0u);
  return (x < 0.0f ? 1u : 0u) | (xi << 1);
}
GOSSIP_HD inline float qsgd_scale(float norm, std::uint32_t s) {
  return norm > 0.0f ? static_cast<float>(s) / norm : 0.0f;
}
// Decoded value of one level: norm / s, or norm / (s (1 + tau)) for scaled qsgd, with
// tau = min(len / s^2, sqrt(len) / s) from the bucket's actual length.
GOSSIP_HD inline float qsgd_unit(float norm, std::uint32_t s, bool scaled, std::uint64_t len) {
  double den = static_cast<double>(s);
  if (scaled) {
    const double b = static_cast<double>(len), sd = static_cast<double>(s);
    const double t1 = b / (sd * sd), t2 = std::sqrt(b) / sd;
    den *= 1.0 + (t1 < t2 ? t1 : t2);
  }
  return static_cast<float>(static_cast<double>(norm) / den);
}
GOSSIP_HD inline float qsgd_value(std::uint32_t c, float unit) {
  const float v = static_cast<float>(static_cast<std::int32_t>(c >> 1)) * unit;
  return (c & 1u) ? -v : v;
}

// quantize: t = clamp((x - m) * (L / (M - m)), 0, L); level floor(t) + [u < t - floor(t)], or t
// rounded to nearest-even (adding and removing 2^23 rounds in the FPU's default mode, exactly).
GOSSIP_HD inline float quantize_inv(MinMax mm, std::uint32_t levels) {
  return mm.hi > mm.lo ? static_cast<float>(levels) / (mm.hi - mm.lo) : 0.0f;
}
GOSSIP_HD inline std::uint32_t quantize_code(float x, float lo, float inv, float top, bool nearest,
                                             std::uint32_t r) {
  float t = (x - lo) * inv;
  t = t > 0.0f ? t : 0.0f;  // also maps NaN to 0
  t = t < top ? t : top;
  if (nearest) {
    const float q = (t + 8388608.0f) - 8388608.0f;
    return static_cast<std::uint32_t>(static_cast<std::int32_t>(q));
  }
  const float l = floor_nonneg(t);
  return static_cast<std::uint32_t>(static_cast<std::int32_t>(l)) +
         (uniform01(r) < t - l ? 1u : 0u);
}
GOSSIP_HD inline float quantize_step(MinMax mm, std::uint32_t levels) {
  return (mm.hi - mm.lo) / static_cast<float>(levels);
}

// terngrad: code bit0 = kept (u < |x| * (1/s)), bit1 = negative.
GOSSIP_HD inline std::uint32_t terngrad_code(float x, float inv, std::uint32_t r) {
  const bool keep = uniform01(r) < std::fabs(x) * inv;
  return (keep ? 1u : 0u) | (x < 0.0f ? 2u : 0u);
}
GOSSIP_HD inline float terngrad_value(std::uint32_t c, float s) {
  const float v = (c & 2u) ? -s : s;
  return (c & 1u) ? v : 0.0f;  // a dropped element is +0 whatever its sign
}

// ---- dense codec functors (one call per group of 32) -----------------------------------------
// operator()(g) is the device entry (draws its own random words); run(g, noise) lets the host pass
// words it generated for a whole tile. Each group first seeks its bucket; when all 32 elements
// share it (always, when 32 divides the bucket size) the per-element loop is branch-free.
enum class DecodeMode { kAssign, kAccumulate };

template <DecodeMode kMode>
GOSSIP_HD inline void emit(float* y, std::uint64_t i, float w, float v) {
  if constexpr (kMode == DecodeMode::kAssign)
    y[i] = v;
  else
    y[i] += w * v;
}

struct IdentityEncode {
  const float* x;
  std::uint64_t d;
  std::byte* out;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup, n = min_u64(kGroup, d - i0);
    if (n == kGroup)
      std::memcpy(out + 4 * i0, x + i0, 4 * kGroup);  // fixed size: inlined
    else
      std::memcpy(out + 4 * i0, x + i0, 4 * n);
  }
};
template <DecodeMode kMode>
struct IdentityDecode {
  const std::byte* in;
  std::uint64_t d;
  float w;
  float* y;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup, n = min_u64(kGroup, d - i0);
    if (n == kGroup) {
      float v[kGroup];
      std::memcpy(v, in + 4 * i0, sizeof v);
      for (std::uint32_t j = 0; j < kGroup; ++j) emit<kMode>(y, i0 + j, w, v[j]);
    } else {
      for (std::uint64_t j = 0; j < n; ++j)
        emit<kMode>(y, i0 + j, w, load_le<float>(in + 4 * (i0 + j)));
    }
  }
};

template <bool kBf16>
struct HalfEncode {
  const float* x;
  std::uint64_t d;
  std::byte* out;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup, n = min_u64(kGroup, d - i0);
    std::uint16_t h[kGroup];
    if (n == kGroup) {
      for (std::uint32_t j = 0; j < kGroup; ++j)
        h[j] = kBf16 ? float_to_bf16_bits(x[i0 + j]) : float_to_fp16_bits(x[i0 + j]);
    } else {
      for (std::uint64_t j = 0; j < n; ++j)
        h[j] = kBf16 ? float_to_bf16_bits(x[i0 + j]) : float_to_fp16_bits(x[i0 + j]);
    }
    std::memcpy(out + 2 * i0, h, 2 * n);
  }
};
template <bool kBf16, DecodeMode kMode>
struct HalfDecode {
  const std::byte* in;
  std::uint64_t d;
  float w;
  float* y;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup, n = min_u64(kGroup, d - i0);
    std::uint16_t h[kGroup];
    std::memcpy(h, in + 2 * i0, 2 * n);
    if (n == kGroup) {
      for (std::uint32_t j = 0; j < kGroup; ++j)
        emit<kMode>(y, i0 + j, w, kBf16 ? bf16_bits_to_float(h[j]) : fp16_bits_to_float(h[j]));
    } else {
      for (std::uint64_t j = 0; j < n; ++j)
        emit<kMode>(y, i0 + j, w, kBf16 ? bf16_bits_to_float(h[j]) : fp16_bits_to_float(h[j]));
    }
  }
};

// Shared shape of the bucketed codecs: table = per-bucket scales (qsgd/sign/terngrad: 4 bytes,
// quantize: 8), stream = packed codes.
struct BucketedArgs {
  LayoutView layout;
  std::uint64_t d;
  const std::byte* table;
  std::uint32_t param;  // qsgd s, quantize levels
  bool flag;            // qsgd scaled, quantize nearest
  RngStreamKey rng;
  const float* units = nullptr;  // qsgd decode: per-bucket qsgd_unit, when precomputed
};

// ---- per-bucket constants: each read from the scale table in one place, for the host functors
// below, the device's (pack.hpp) and the AVX-512 twins (host_avx512.hpp).
struct QuantConsts {
  float lo, inv_or_step;
};
// qsgd's norm, sign's mean magnitude, terngrad's max |x|: bucket b's 4-byte entry.
GOSSIP_HD inline float bucket_float(const BucketedArgs& a, std::uint64_t b) {
  return load_le<float>(a.table + 4 * b);
}
GOSSIP_HD inline MinMax bucket_minmax(const BucketedArgs& a, std::uint64_t b) {
  return {load_le<float>(a.table + 8 * b), load_le<float>(a.table + 8 * b + 4)};
}
GOSSIP_HD inline float qsgd_encode_scale(const BucketedArgs& a, std::uint64_t b) {
  return qsgd_scale(bucket_float(a, b), a.param);
}
GOSSIP_HD inline float qsgd_decode_unit(const BucketedArgs& a, std::uint64_t b) {
  if (a.units) return a.units[b];
  std::uint64_t lo, hi;
  a.layout.bucket_range(b, lo, hi);
  return qsgd_unit(bucket_float(a, b), a.param, a.flag, hi - lo);
}
GOSSIP_HD inline QuantConsts quantize_encode_consts(const BucketedArgs& a, std::uint64_t b) {
  const MinMax mm = bucket_minmax(a, b);
  return {mm.lo, quantize_inv(mm, a.param)};
}
GOSSIP_HD inline QuantConsts quantize_decode_consts(const BucketedArgs& a, std::uint64_t b) {
  const MinMax mm = bucket_minmax(a, b);
  return {mm.lo, quantize_step(mm, a.param)};
}
GOSSIP_HD inline float terngrad_encode_inv(const BucketedArgs& a, std::uint64_t b) {
  const float s = bucket_float(a, b);
  return s > 0.0f ? 1.0f / s : 0.0f;
}

// qsgd decode's per-bucket unit (a double division, and a sqrt when scaled), computed once per
// bucket instead of once per group.
struct QsgdUnitFn {
  LayoutView layout;
  const std::byte* norms;
  std::uint32_t s;
  bool scaled;
  float* out;
  GOSSIP_HD void operator()(std::uint64_t b) const;
};

// Codes of one group: Consts(bucket) gives the per-bucket constants, code(consts, x, r) one code.
template <class Consts, class Code>
GOSSIP_HD inline void group_codes(const BucketedArgs& a, const float* x, std::uint64_t i0,
                                  std::uint32_t n, const std::uint32_t* r, std::uint32_t* codes,
                                  Consts consts, Code code) {
  BucketCursor cur;
  cur.seek(a.layout, i0);
  auto c = consts(cur.bucket);
  if (n == kGroup && cur.end >= i0 + kGroup) {
    for (std::uint32_t j = 0; j < kGroup; ++j) codes[j] = code(c, x[i0 + j], r ? r[j] : 0u);
    return;
  }
  for (std::uint32_t j = 0; j < kGroup; ++j) {
    if (j >= n) {
      codes[j] = 0;
      continue;
    }
    if (cur.at(a.layout, i0 + j)) c = consts(cur.bucket);
    codes[j] = code(c, x[i0 + j], r ? r[j] : 0u);
  }
}

// Decoded values of one group: Consts(bucket, len) per-bucket constants, value(consts, code).
template <DecodeMode kMode, class Consts, class Value>
GOSSIP_HD inline void group_values(const BucketedArgs& a, std::uint64_t i0, std::uint32_t n,
                                   const std::uint32_t* codes, float w, float* y, Consts consts,
                                   Value value) {
  BucketCursor cur;
  cur.seek(a.layout, i0);
  auto c = consts(cur.bucket);
  if (n == kGroup && cur.end >= i0 + kGroup) {
    for (std::uint32_t j = 0; j < kGroup; ++j) emit<kMode>(y, i0 + j, w, value(c, codes[j]));
    return;
  }
  for (std::uint32_t j = 0; j < n; ++j) {
    if (cur.at(a.layout, i0 + j)) c = consts(cur.bucket);
    emit<kMode>(y, i0 + j, w, value(c, codes[j]));
  }
}

GOSSIP_HD inline void QsgdUnitFn::operator()(std::uint64_t b) const {
  std::uint64_t lo, hi;
  layout.bucket_range(b, lo, hi);
  out[b] = qsgd_unit(load_le<float>(norms + 4 * b), s, scaled, hi - lo);
}

template <int F>
struct QsgdEncode {
  BucketedArgs a;
  const float* x;
  std::byte* stream;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    std::uint32_t r[kGroup];
    group_noise(a.rng, g * kGroup, r);
    run(g, r);
  }
  GOSSIP_HD void run(std::uint64_t g, const std::uint32_t* r) const {
    const std::uint64_t i0 = g * kGroup;
    const auto n = static_cast<std::uint32_t>(min_u64(kGroup, a.d - i0));
    const float s = static_cast<float>(a.param);
    std::uint32_t codes[kGroup];
    group_codes(
        a, x, i0, n, r, codes, [&](std::uint64_t b) { return qsgd_encode_scale(a, b); },
        [s](float scale, float v, std::uint32_t rw) { return qsgd_code(v, scale, s, rw); });
    GroupBits<F> bits;
    bits.pack(codes);
    bits.store(stream, a.d, g);
  }
};
template <int F, DecodeMode kMode>
struct QsgdDecode {
  BucketedArgs a;
  const std::byte* stream;
  float w;
  float* y;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup;
    const auto n = static_cast<std::uint32_t>(min_u64(kGroup, a.d - i0));
    GroupBits<F> bits;
    bits.load(stream, a.d, g);
    std::uint32_t codes[kGroup];
    bits.unpack(codes);
    group_values<kMode>(
        a, i0, n, codes, w, y, [&](std::uint64_t b) { return qsgd_decode_unit(a, b); },
        [](float unit, std::uint32_t c) { return qsgd_value(c, unit); });
  }
};

template <int F>
struct QuantizeEncode {
  BucketedArgs a;
  const float* x;
  std::byte* stream;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    std::uint32_t r[kGroup];
    if (!a.flag) group_noise(a.rng, g * kGroup, r);
    run(g, a.flag ? nullptr : r);
  }
  GOSSIP_HD void run(std::uint64_t g, const std::uint32_t* r) const {
    const std::uint64_t i0 = g * kGroup;
    const auto n = static_cast<std::uint32_t>(min_u64(kGroup, a.d - i0));
    const float top = static_cast<float>(a.param);
    const bool nearest = a.flag;
    std::uint32_t codes[kGroup];
    group_codes(
        a, x, i0, n, r, codes, [&](std::uint64_t b) { return quantize_encode_consts(a, b); },
        [top, nearest](QuantConsts c, float v, std::uint32_t rw) {
          return quantize_code(v, c.lo, c.inv_or_step, top, nearest, rw);
        });
    GroupBits<F> bits;
    bits.pack(codes);
    bits.store(stream, a.d, g);
  }
};
template <int F, DecodeMode kMode>
struct QuantizeDecode {
  BucketedArgs a;
  const std::byte* stream;
  float w;
  float* y;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup;
    const auto n = static_cast<std::uint32_t>(min_u64(kGroup, a.d - i0));
    GroupBits<F> bits;
    bits.load(stream, a.d, g);
    std::uint32_t codes[kGroup];
    bits.unpack(codes);
    group_values<kMode>(
        a, i0, n, codes, w, y, [&](std::uint64_t b) { return quantize_decode_consts(a, b); },
        [](QuantConsts c, std::uint32_t q) {
          return c.lo + static_cast<float>(static_cast<std::int32_t>(q)) * c.inv_or_step;
        });
  }
};

struct TerngradEncode {
  BucketedArgs a;
  const float* x;
  std::byte* stream;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    std::uint32_t r[kGroup];
    group_noise(a.rng, g * kGroup, r);
    run(g, r);
  }
  GOSSIP_HD void run(std::uint64_t g, const std::uint32_t* r) const {
    const std::uint64_t i0 = g * kGroup;
    const auto n = static_cast<std::uint32_t>(min_u64(kGroup, a.d - i0));
    std::uint32_t codes[kGroup];
    group_codes(
        a, x, i0, n, r, codes, [&](std::uint64_t b) { return terngrad_encode_inv(a, b); },
        [](float inv, float v, std::uint32_t rw) { return terngrad_code(v, inv, rw); });
    GroupBits<2> bits;
    bits.pack(codes);
    bits.store(stream, a.d, g);
  }
};
template <DecodeMode kMode>
struct TerngradDecode {
  BucketedArgs a;
  const std::byte* stream;
  float w;
  float* y;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup;
    const auto n = static_cast<std::uint32_t>(min_u64(kGroup, a.d - i0));
    GroupBits<2> bits;
    bits.load(stream, a.d, g);
    std::uint32_t codes[kGroup];
    bits.unpack(codes);
    group_values<kMode>(
        a, i0, n, codes, w, y, [&](std::uint64_t b) { return bucket_float(a, b); },
        [](float s, std::uint32_t c) { return terngrad_value(c, s); });
  }
};

// sign: bit = x < 0 (zero counts as positive); value = +-(||x||_1 / len) of its bucket.
struct SignEncode {
  const float* x;
  std::uint64_t d;
  std::byte* stream;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup;
    const auto n = static_cast<std::uint32_t>(min_u64(kGroup, d - i0));
    std::uint32_t word = 0;
    if (n == kGroup) {
      for (std::uint32_t j = 0; j < kGroup; ++j) word |= (x[i0 + j] < 0.0f ? 1u : 0u) << j;
    } else {
      for (std::uint32_t j = 0; j < n; ++j) word |= (x[i0 + j] < 0.0f ? 1u : 0u) << j;
    }
    GroupBits<1> bits;
    bits.w[0] = word;
    bits.store(stream, d, g);
  }
};
template <DecodeMode kMode>
struct SignDecode {
  BucketedArgs a;
  const std::byte* stream;
  float w;
  float* y;
  GOSSIP_HD void operator()(std::uint64_t g) const {
    const std::uint64_t i0 = g * kGroup;
    const auto n = static_cast<std::uint32_t>(min_u64(kGroup, a.d - i0));
    GroupBits<1> bits;
    bits.load(stream, a.d, g);
    std::uint32_t codes[kGroup];
    for (std::uint32_t j = 0; j < kGroup; ++j) codes[j] = (bits.w[0] >> j) & 1u;
    group_values<kMode>(
        a, i0, n, codes, w, y, [&](std::uint64_t b) { return bucket_float(a, b); },
        [](float s, std::uint32_t c) { return c ? -s : s; });
  }
};

// ---- sparse decode: y[idx] (+)= w * scale * value ---------------------------------------------
template <DecodeMode kMode>
struct SparseDecode {
  const std::byte* idx;  // u32 per entry, or null when indices come from `gen`
  const std::byte* val;
  float w;
  float* y;
  GOSSIP_HD void operator()(std::uint64_t e) const {
    const auto i = load_le<std::uint32_t>(idx + 4 * e);
    emit<kMode>(y, i, w, load_le<float>(val + 4 * e));
  }
};

}  // namespace gossip::kernels
