#pragma once
// AVX-512 twins of the ops.hpp functors for the host backend (included by codec_host.cpp only;
// never seen by nvcc). Each function writes exactly the bytes, and computes exactly the floats, of
// the functor it stands for: the same IEEE operations in the same order per element, only 16
// lanes at a time. Every twin is an overload of groups(f, g0, g1) — groups(f, g0, g1, r) for
// encoders that take random words — so codec_host.cpp finds the twin of a functor by its type.
// A last group that is not full goes to the functor itself; groups that straddle bucket
// boundaries take per-lane constants (for_groups). Used when
// host_isa() is kAvx512 (kernels/cpu.hpp); the tests run with and without.
//
// Bit packing: 16 codes of F bits are narrowed to bytes (F <= 4, two codes per byte pair-merged
// in a 64-bit lane) or words, then BMI2 pext squeezes out the gaps; unpacking is the reverse
// (pdep, widen, split). Both give the LSB-first stream of docs/kernels.md.

#if defined(__x86_64__)

#include "kernels/x86_intrinsics.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/ops.hpp"

#define GOSSIP_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,bmi,bmi2,f16c")))
// Helpers and lambdas must be inlined into their callers: a call keeps vectors and the group
// stream in memory (and g++ does not inline across the target attribute on its own).
#define GOSSIP_AVX512_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,bmi,bmi2,f16c"), always_inline))

// The lambdas below take and return vectors; they are always inlined, so the note that their ABI
// differs from code without AVX-512 does not apply.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace gossip::kernels::avx512 {

// ---- group bit streams ------------------------------------------------------------------------
// A group's 32 codes of F bits: F 32-bit words, assembled in (or read from) 64-bit words. Offsets
// are compile-time constants once the per-group loops are unrolled.
template <int F>
struct GroupStream {
  static constexpr int kWords64 = (32 * F + 63) / 64 + 1;
  std::uint64_t buf[kWords64];
  int pos = 0;

  GOSSIP_AVX512_INLINE void put(std::uint64_t v, int n) {  // v < 2^n, 1 <= n <= 64
    const int w = pos >> 6, sh = pos & 63;
    buf[w] = sh ? buf[w] | (v << sh) : v;
    if (sh && sh + n > 64) buf[w + 1] = v >> (64 - sh);
    pos += n;
  }
  GOSSIP_AVX512_INLINE std::uint64_t get(int n) {  // 1 <= n <= 64
    const int w = pos >> 6, sh = pos & 63;
    std::uint64_t v = buf[w] >> sh;
    if (sh && sh + n > 64) v |= buf[w + 1] << (64 - sh);
    pos += n;
    return n == 64 ? v : v & ((std::uint64_t{1} << n) - 1);
  }
};

// Mask with the low `k` bits of every `lane`-bit field set.
constexpr std::uint64_t field_mask(int k, int lane) {
  std::uint64_t m = 0;
  for (int b = 0; b < 64; b += lane) m |= ((k >= 64 ? ~0ull : ((1ull << k) - 1)) << b);
  return m;
}

// Appends 16 codes (each < 2^F) to the stream.
template <int F>
GOSSIP_AVX512_INLINE inline void pack16(__m512i c, GroupStream<F>& s) {
  if constexpr (F == 1) {
    s.put(_mm512_test_epi32_mask(c, c), 16);
  } else if constexpr (F == 8) {
    alignas(16) std::uint64_t b[2];
    _mm_store_si128(reinterpret_cast<__m128i*>(b), _mm512_cvtepi32_epi8(c));
    s.put(b[0], 64);
    s.put(b[1], 64);
  } else {
    // Each 64-bit lane holds codes (c0, c1): merge them into c0 | c1 << F in its low bits.
    const __m512i q = _mm512_or_si512(c, _mm512_srli_epi64(c, 32 - F));
    if constexpr (F <= 4) {
      const auto u = static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm512_cvtepi64_epi8(q)));
      s.put(F == 4 ? u : _pext_u64(u, field_mask(2 * F, 8)), 16 * F);
    } else if constexpr (F <= 7) {
      alignas(16) std::uint64_t b[2];
      _mm_store_si128(reinterpret_cast<__m128i*>(b), _mm512_cvtepi64_epi16(q));
      s.put(_pext_u64(b[0], field_mask(2 * F, 16)), 8 * F);
      s.put(_pext_u64(b[1], field_mask(2 * F, 16)), 8 * F);
    } else {
      // F >= 9: 2F bits per lane, appended lane by lane.
      const __m512i lo = _mm512_and_si512(c, _mm512_set1_epi64(0xffffffffll));
      const __m512i m = _mm512_or_si512(lo, _mm512_slli_epi64(_mm512_srli_epi64(c, 32), F));
      alignas(64) std::uint64_t b[8];
      _mm512_store_si512(b, m);
      for (int k = 0; k < 8; ++k) s.put(b[k], 2 * F);
    }
  }
}

// Reads 16 codes from the stream.
template <int F>
GOSSIP_AVX512_INLINE inline __m512i unpack16(GroupStream<F>& s) {
  if constexpr (F == 1) {
    return _mm512_maskz_mov_epi32(static_cast<__mmask16>(s.get(16)), _mm512_set1_epi32(1));
  } else if constexpr (F == 8) {
    const std::uint64_t b0 = s.get(64), b1 = s.get(64);
    return _mm512_cvtepu8_epi32(
        _mm_set_epi64x(static_cast<long long>(b1), static_cast<long long>(b0)));
  } else {
    __m512i q;
    if constexpr (F <= 4) {
      const std::uint64_t u = s.get(16 * F);
      const std::uint64_t b = F == 4 ? u : _pdep_u64(u, field_mask(2 * F, 8));
      q = _mm512_cvtepu8_epi64(_mm_cvtsi64_si128(static_cast<long long>(b)));
    } else if constexpr (F <= 7) {
      const std::uint64_t b0 = _pdep_u64(s.get(8 * F), field_mask(2 * F, 16));
      const std::uint64_t b1 = _pdep_u64(s.get(8 * F), field_mask(2 * F, 16));
      q = _mm512_cvtepu16_epi64(
          _mm_set_epi64x(static_cast<long long>(b1), static_cast<long long>(b0)));
    } else {
      alignas(64) std::uint64_t b[8];
      for (int k = 0; k < 8; ++k) b[k] = s.get(2 * F);
      q = _mm512_load_si512(b);
    }
    // Lane (c0 | c1 << F) -> dwords (c0, c1).
    const __m512i m = _mm512_set1_epi64((1ll << F) - 1);
    return _mm512_or_si512(_mm512_and_si512(q, m),
                           _mm512_slli_epi64(_mm512_and_si512(_mm512_srli_epi64(q, F), m), 32));
  }
}

// Whole 64-bit words and a last 32-bit one, register to memory: copying through the buffer would
// make a load straddle two smaller stores, which store forwarding cannot serve.
template <int F>
GOSSIP_AVX512_INLINE inline void store_group(const GroupStream<F>& s, std::byte* stream,
                                             std::uint64_t g) {
  std::byte* p = stream + g * 4 * F;
  for (int k = 0; k < F / 2; ++k) store_le<std::uint64_t>(p + 8 * k, s.buf[k]);
  if constexpr (F % 2)
    store_le<std::uint32_t>(p + 8 * (F / 2), static_cast<std::uint32_t>(s.buf[F / 2]));
}
template <int F>
GOSSIP_AVX512_INLINE inline void load_group(GroupStream<F>& s, const std::byte* stream,
                                            std::uint64_t g) {
  const std::byte* p = stream + g * 4 * F;
  for (int k = 0; k < F / 2; ++k) s.buf[k] = load_le<std::uint64_t>(p + 8 * k);
  s.buf[F / 2] = F % 2 ? load_le<std::uint32_t>(p + 8 * (F / 2)) : 0;
}

// ---- shared per-element pieces ---------------------------------------------------------------
GOSSIP_AVX512_INLINE inline __m512 fabs16(__m512 v) {
  return _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}
// uniform01(r) for 16 words: (float)(int)(r >> 8) * 2^-24.
GOSSIP_AVX512_INLINE inline __m512 uniform16(const std::uint32_t* r) {
  const __m512i w = _mm512_loadu_si512(r);
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w, 8)),
                       _mm512_set1_ps(5.9604644775390625e-08f));
}
// floor_nonneg: truncation through int32.
GOSSIP_AVX512_INLINE inline __m512 trunc16(__m512 a) {
  return _mm512_cvtepi32_ps(_mm512_cvttps_epi32(a));
}
template <DecodeMode kMode>
GOSSIP_AVX512_INLINE inline void emit16(float* y, float w, __m512 v) {
  if constexpr (kMode == DecodeMode::kAssign) {
    _mm512_storeu_ps(y, v);
  } else {
    _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), _mm512_mul_ps(_mm512_set1_ps(w), v)));
  }
}

// Per-bucket constants of 16 lanes: one vector (qsgd's scale or unit, terngrad's and sign's
// magnitude) or two (quantize's lo and step). blend_lanes(m, a, b): b where m is set.
struct LanePair {
  __m512 lo, scale;
};
GOSSIP_AVX512_INLINE inline __m512 blend_lanes(__mmask16 m, __m512 a, __m512 b) {
  return _mm512_mask_blend_ps(m, a, b);
}
GOSSIP_AVX512_INLINE inline LanePair blend_lanes(__mmask16 m, LanePair a, LanePair b) {
  return {_mm512_mask_blend_ps(m, a.lo, b.lo), _mm512_mask_blend_ps(m, a.scale, b.scale)};
}

// Calls full(g, c0, c1) for every group g of [g0, g1) with all 32 elements inside d, where c0 and
// c1 hold, lane by lane, make(bucket) of the bucket of each of the group's two halves' 16
// elements: a broadcast inside one bucket, blended where a boundary falls inside the half (small
// buckets, tensor ends). make runs once per bucket. part(g) (the functor) takes the last, partial
// group.
template <class Make, class Full, class Part>
GOSSIP_AVX512_INLINE inline void for_groups(const LayoutView& layout, std::uint64_t d,
                                            std::uint64_t g0, std::uint64_t g1, Make make,
                                            Full full, Part part) {
  using Consts = decltype(make(std::uint64_t{0}));
  BucketCursor cur;  // end = 0: the first half seeks
  std::uint64_t last = ~0ull;
  Consts cached{};
  auto of = [&](std::uint64_t b) GOSSIP_AVX512_INLINE {
    if (b != last) {
      cached = make(b);
      last = b;
    }
    return cached;
  };
  auto half = [&](std::uint64_t i) GOSSIP_AVX512_INLINE {
    if (i >= cur.end) cur.seek(layout, i);
    Consts c = of(cur.bucket);
    while (cur.end < i + 16) {  // lanes from cur.end - i on are in the next bucket
      const auto mask = static_cast<__mmask16>(0xffffu << (cur.end - i));
      cur.seek(layout, cur.end);
      c = blend_lanes(mask, c, of(cur.bucket));
    }
    return c;
  };
  for (std::uint64_t g = g0; g < g1; ++g) {
    const std::uint64_t i0 = g * kGroup;
    if (i0 + kGroup > d) {
      part(g);
      continue;
    }
    const Consts c0 = half(i0);
    const Consts c1 = half(i0 + 16);
    full(g, c0, c1);
  }
}

// Calls full(g, i0) for every group g of [g0, g1) with all 32 elements inside d (i0 = its first
// element), and part(g) (the functor) for the last, partial one: the codecs without buckets.
template <class Full, class Part>
GOSSIP_AVX512_INLINE inline void for_full_groups(std::uint64_t d, std::uint64_t g0,
                                                 std::uint64_t g1, Full full, Part part) {
  for (std::uint64_t g = g0; g < g1; ++g) {
    if (g * kGroup + kGroup <= d)
      full(g, g * kGroup);
    else
      part(g);
  }
}

// ---- encoders ----------------------------------------------------------------------------------
template <int F>
GOSSIP_AVX512 void groups(const QsgdEncode<F>& f, std::uint64_t g0, std::uint64_t g1,
                          const std::uint32_t* r) {
  const BucketedArgs& a = f.a;
  const __m512 s = _mm512_set1_ps(static_cast<float>(a.param));
  for_groups(
      a.layout, a.d, g0, g1,
      [&](std::uint64_t b) GOSSIP_AVX512_INLINE { return _mm512_set1_ps(qsgd_encode_scale(a, b)); },
      [&](std::uint64_t g, __m512 scale0, __m512 scale1) GOSSIP_AVX512_INLINE {
        GroupStream<F> st;
        for (int h = 0; h < 2; ++h) {
          const __m512 scale = h == 0 ? scale0 : scale1;
          const __m512 x = _mm512_loadu_ps(f.x + g * kGroup + 16 * h);
          const __m512 av = _mm512_min_ps(_mm512_mul_ps(fabs16(x), scale), s);
          const __m512 l = trunc16(av);
          const __m512 u = uniform16(r + (g - g0) * kGroup + 16 * h);
          const __mmask16 up = _mm512_cmp_ps_mask(u, _mm512_sub_ps(av, l), _CMP_LT_OQ);
          __m512i xi = _mm512_mask_add_epi32(_mm512_cvttps_epi32(l), up, _mm512_cvttps_epi32(l),
                                             _mm512_set1_epi32(1));
          const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
          xi = _mm512_slli_epi32(xi, 1);
          pack16<F>(_mm512_mask_or_epi32(xi, neg, xi, _mm512_set1_epi32(1)), st);
        }
        store_group(st, f.stream, g);
      },
      [&](std::uint64_t g) { f.run(g, r + (g - g0) * kGroup); });
}

template <int F>
GOSSIP_AVX512 void groups(const QuantizeEncode<F>& f, std::uint64_t g0, std::uint64_t g1,
                          const std::uint32_t* r) {
  const BucketedArgs& a = f.a;
  const bool nearest = a.flag;
  const __m512 top = _mm512_set1_ps(static_cast<float>(a.param));
  const __m512 big = _mm512_set1_ps(8388608.0f);
  for_groups(
      a.layout, a.d, g0, g1,
      [&](std::uint64_t b) GOSSIP_AVX512_INLINE {
        const QuantConsts c = quantize_encode_consts(a, b);
        return LanePair{_mm512_set1_ps(c.lo), _mm512_set1_ps(c.inv_or_step)};
      },
      [&](std::uint64_t g, LanePair c0, LanePair c1) GOSSIP_AVX512_INLINE {
        GroupStream<F> st;
        for (int h = 0; h < 2; ++h) {
          const LanePair c = h == 0 ? c0 : c1;
          const __m512 x = _mm512_loadu_ps(f.x + g * kGroup + 16 * h);
          __m512 t = _mm512_mul_ps(_mm512_sub_ps(x, c.lo), c.scale);
          t = _mm512_max_ps(t, _mm512_setzero_ps());  // t > 0 ? t : 0 (NaN -> 0)
          t = _mm512_min_ps(t, top);                  // t < top ? t : top
          __m512i q;
          if (nearest) {
            q = _mm512_cvttps_epi32(_mm512_sub_ps(_mm512_add_ps(t, big), big));
          } else {
            const __m512 l = trunc16(t);
            const __m512 u = uniform16(r + (g - g0) * kGroup + 16 * h);
            const __mmask16 up = _mm512_cmp_ps_mask(u, _mm512_sub_ps(t, l), _CMP_LT_OQ);
            q = _mm512_mask_add_epi32(_mm512_cvttps_epi32(l), up, _mm512_cvttps_epi32(l),
                                      _mm512_set1_epi32(1));
          }
          pack16<F>(q, st);
        }
        store_group(st, f.stream, g);
      },
      [&](std::uint64_t g) { f.run(g, nearest ? nullptr : r + (g - g0) * kGroup); });
}

GOSSIP_AVX512 inline void groups(const TerngradEncode& f, std::uint64_t g0, std::uint64_t g1,
                                 const std::uint32_t* r) {
  const BucketedArgs& a = f.a;
  for_groups(
      a.layout, a.d, g0, g1,
      [&](std::uint64_t b)
          GOSSIP_AVX512_INLINE { return _mm512_set1_ps(terngrad_encode_inv(a, b)); },
      [&](std::uint64_t g, __m512 inv0, __m512 inv1) GOSSIP_AVX512_INLINE {
        GroupStream<2> st;
        for (int h = 0; h < 2; ++h) {
          const __m512 x = _mm512_loadu_ps(f.x + g * kGroup + 16 * h);
          const __m512 u = uniform16(r + (g - g0) * kGroup + 16 * h);
          const __mmask16 keep =
              _mm512_cmp_ps_mask(u, _mm512_mul_ps(fabs16(x), h == 0 ? inv0 : inv1), _CMP_LT_OQ);
          const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
          const __m512i c = _mm512_or_si512(_mm512_maskz_mov_epi32(keep, _mm512_set1_epi32(1)),
                                            _mm512_maskz_mov_epi32(neg, _mm512_set1_epi32(2)));
          pack16<2>(c, st);
        }
        store_group(st, f.stream, g);
      },
      [&](std::uint64_t g) { f.run(g, r + (g - g0) * kGroup); });
}

// Sign bits need no bucket: a full group is two compare masks.
GOSSIP_AVX512 inline void groups(const SignEncode& f, std::uint64_t g0, std::uint64_t g1) {
  for_full_groups(
      f.d, g0, g1,
      [&](std::uint64_t g, std::uint64_t i0) GOSSIP_AVX512_INLINE {
        const __m512 z = _mm512_setzero_ps();
        const std::uint32_t lo = _mm512_cmp_ps_mask(_mm512_loadu_ps(f.x + i0), z, _CMP_LT_OQ);
        const std::uint32_t hi = _mm512_cmp_ps_mask(_mm512_loadu_ps(f.x + i0 + 16), z, _CMP_LT_OQ);
        store_le<std::uint32_t>(f.stream + 4 * g, lo | (hi << 16));
      },
      [&](std::uint64_t g) { f(g); });
}

// fp16: vcvtps2ph rounds to nearest even like float_to_fp16_bits; NaNs become the canonical
// sign | 0x7e00 as there (the instruction would keep payload bits).
template <bool kBf16>
GOSSIP_AVX512 void groups(const HalfEncode<kBf16>& f, std::uint64_t g0, std::uint64_t g1) {
  for_full_groups(
      f.d, g0, g1,
      [&](std::uint64_t, std::uint64_t i0) GOSSIP_AVX512_INLINE {
        for (int h = 0; h < 2; ++h) {
          const __m512 x = _mm512_loadu_ps(f.x + i0 + 16 * h);
          const __m512i xb = _mm512_castps_si512(x);
          const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
          __m256i hv;
          if constexpr (kBf16) {
            // (x + 0x7fff + ((x >> 16) & 1)) >> 16; NaN: (x >> 16) | 0x40.
            const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(xb, 16), _mm512_set1_epi32(1));
            __m512i r = _mm512_srli_epi32(
                _mm512_add_epi32(_mm512_add_epi32(xb, _mm512_set1_epi32(0x7fff)), lsb), 16);
            r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(xb, 16), _mm512_set1_epi32(0x40));
            hv = _mm512_cvtepi32_epi16(r);
          } else {
            hv = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            if (nan) {
              const __m512i canon = _mm512_or_si512(
                  _mm512_and_si512(_mm512_srli_epi32(xb, 16), _mm512_set1_epi32(0x8000)),
                  _mm512_set1_epi32(0x7e00));
              hv = _mm256_mask_blend_epi16(nan, hv, _mm512_cvtepi32_epi16(canon));
            }
          }
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(f.out + 2 * (i0 + 16 * h)), hv);
        }
      },
      [&](std::uint64_t g) { f(g); });
}

// ---- decoders ----------------------------------------------------------------------------------
template <bool kBf16, DecodeMode kMode>
GOSSIP_AVX512 void groups(const HalfDecode<kBf16, kMode>& f, std::uint64_t g0, std::uint64_t g1) {
  for_full_groups(
      f.d, g0, g1,
      [&](std::uint64_t, std::uint64_t i0) GOSSIP_AVX512_INLINE {
        for (int h = 0; h < 2; ++h) {
          const __m256i hv =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(f.in + 2 * (i0 + 16 * h)));
          const __m512i e = _mm512_cvtepu16_epi32(hv);
          __m512 v;
          if constexpr (kBf16) {
            v = _mm512_castsi512_ps(_mm512_slli_epi32(e, 16));
          } else {
            v = _mm512_cvtph_ps(hv);
            // Exponent 31 (inf / NaN): rebuilt from the bits like fp16_bits_to_float, which keeps a
            // signalling NaN's payload where the instruction would quiet it.
            const __mmask16 special = _mm512_cmpeq_epi32_mask(
                _mm512_and_si512(e, _mm512_set1_epi32(0x7c00)), _mm512_set1_epi32(0x7c00));
            if (special) {
              const __m512i sign =
                  _mm512_slli_epi32(_mm512_and_si512(e, _mm512_set1_epi32(0x8000)), 16);
              const __m512i em =
                  _mm512_slli_epi32(_mm512_and_si512(e, _mm512_set1_epi32(0x7fff)), 13);
              const __m512i bits =
                  _mm512_or_si512(sign, _mm512_add_epi32(em, _mm512_set1_epi32(0x70000000)));
              v = _mm512_mask_mov_ps(v, special, _mm512_castsi512_ps(bits));
            }
          }
          emit16<kMode>(f.y + i0 + 16 * h, f.w, v);
        }
      },
      [&](std::uint64_t g) { f(g); });
}

template <DecodeMode kMode>
GOSSIP_AVX512 void groups(const IdentityDecode<kMode>& f, std::uint64_t g0, std::uint64_t g1) {
  for_full_groups(
      f.d, g0, g1,
      [&](std::uint64_t, std::uint64_t i0) GOSSIP_AVX512_INLINE {
        for (int h = 0; h < 2; ++h) {
          const __m512 v =
              _mm512_loadu_ps(reinterpret_cast<const float*>(f.in + 4 * (i0 + 16 * h)));
          emit16<kMode>(f.y + i0 + 16 * h, f.w, v);
        }
      },
      [&](std::uint64_t g) { f(g); });
}

// Bucketed decoders: per-lane constants c, then value(c, codes) for 16 codes at a time.
template <int F, DecodeMode kMode, class Fn, class Consts, class Value>
GOSSIP_AVX512_INLINE inline void bucketed_decode(const Fn& f, std::uint64_t g0, std::uint64_t g1,
                                                 Consts consts, Value value) {
  const BucketedArgs& a = f.a;
  using C = decltype(consts(std::uint64_t{0}));
  for_groups(
      a.layout, a.d, g0, g1, consts,
      [&](std::uint64_t g, C c0, C c1) GOSSIP_AVX512_INLINE {
        GroupStream<F> st;
        load_group(st, f.stream, g);
        emit16<kMode>(f.y + g * kGroup, f.w, value(c0, unpack16<F>(st)));
        emit16<kMode>(f.y + g * kGroup + 16, f.w, value(c1, unpack16<F>(st)));
      },
      [&](std::uint64_t g) { f(g); });
}

template <int F, DecodeMode kMode>
GOSSIP_AVX512 void groups(const QsgdDecode<F, kMode>& f, std::uint64_t g0, std::uint64_t g1) {
  bucketed_decode<F, kMode>(
      f, g0, g1,
      [&](std::uint64_t b)
          GOSSIP_AVX512_INLINE { return _mm512_set1_ps(qsgd_decode_unit(f.a, b)); },
      [](__m512 unit, __m512i c) GOSSIP_AVX512_INLINE {
        // (float)(int)(c >> 1) * unit, negated (sign bit flipped) when bit 0 is set.
        const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(c, 1)), unit);
        return _mm512_castsi512_ps(
            _mm512_xor_si512(_mm512_castps_si512(v), _mm512_slli_epi32(c, 31)));
      });
}

template <int F, DecodeMode kMode>
GOSSIP_AVX512 void groups(const QuantizeDecode<F, kMode>& f, std::uint64_t g0, std::uint64_t g1) {
  bucketed_decode<F, kMode>(
      f, g0, g1,
      [&](std::uint64_t b) GOSSIP_AVX512_INLINE {
        const QuantConsts c = quantize_decode_consts(f.a, b);
        return LanePair{_mm512_set1_ps(c.lo), _mm512_set1_ps(c.inv_or_step)};
      },
      [](LanePair c, __m512i q) GOSSIP_AVX512_INLINE {
        return _mm512_add_ps(c.lo, _mm512_mul_ps(_mm512_cvtepi32_ps(q), c.scale));
      });
}

template <DecodeMode kMode>
GOSSIP_AVX512 void groups(const TerngradDecode<kMode>& f, std::uint64_t g0, std::uint64_t g1) {
  bucketed_decode<2, kMode>(
      f, g0, g1,
      [&](std::uint64_t b) GOSSIP_AVX512_INLINE { return _mm512_set1_ps(bucket_float(f.a, b)); },
      [](__m512 s, __m512i c) GOSSIP_AVX512_INLINE {
        // kept: +-s (sign from bit 1), dropped: +0.
        const __m512i sv = _mm512_xor_si512(_mm512_castps_si512(s),
                                            _mm512_slli_epi32(_mm512_srli_epi32(c, 1), 31));
        return _mm512_castsi512_ps(
            _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(c, _mm512_set1_epi32(1)), sv));
      });
}

template <DecodeMode kMode>
GOSSIP_AVX512 void groups(const SignDecode<kMode>& f, std::uint64_t g0, std::uint64_t g1) {
  bucketed_decode<1, kMode>(
      f, g0, g1,
      [&](std::uint64_t b) GOSSIP_AVX512_INLINE { return _mm512_set1_ps(bucket_float(f.a, b)); },
      [](__m512 s, __m512i c) GOSSIP_AVX512_INLINE {
        return _mm512_castsi512_ps(
            _mm512_xor_si512(_mm512_castps_si512(s), _mm512_slli_epi32(c, 31)));
      });
}

// ---- bucket statistics -------------------------------------------------------------------------
// sum_segment's order exactly: 32 double lanes in four vectors, elements added in order, then the
// pairwise fold (16, 8, 4, 2, 1) as lane j += lane j + w. A NaN sum is recomputed by the scalar
// code, so even which NaN payload survives cannot differ.
template <bool kSquare>
GOSSIP_AVX512_INLINE inline __m512d sum_term(__m512d v) {
  return kSquare ? _mm512_mul_pd(v, v)
                 : _mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(v),
                                                        _mm512_set1_epi64(0x7fffffffffffffffll)));
}

template <bool kSquare>
GOSSIP_AVX512 double sum_segment16(const float* p, std::uint32_t n) {
  __m512d l[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                  _mm512_setzero_pd()};
  const std::uint32_t full = n & ~(kGroup - 1);
  for (std::uint32_t i = 0; i < full; i += kGroup)
    for (int k = 0; k < 4; ++k)
      l[k] =
          _mm512_add_pd(l[k], sum_term<kSquare>(_mm512_cvtps_pd(_mm256_loadu_ps(p + i + 8 * k))));
  const std::uint32_t rest = n - full;
  for (int k = 0; k < 4; ++k) {
    const int m = static_cast<int>(rest) - 8 * k;
    if (m <= 0) break;
    const __mmask8 mk = static_cast<__mmask8>(m >= 8 ? 0xff : (1u << m) - 1);
    const __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, p + full + 8 * k));
    l[k] = _mm512_mask_add_pd(l[k], mk, l[k], sum_term<kSquare>(v));
  }
  // Fold exactly as the scalar loop: w = 16: l0 += l2, l1 += l3; w = 8: l0 += l1; then inside l0.
  const __m512d f16a = _mm512_add_pd(l[0], l[2]), f16b = _mm512_add_pd(l[1], l[3]);
  const __m512d f8 = _mm512_add_pd(f16a, f16b);
  const __m256d f4 = _mm256_add_pd(_mm512_castpd512_pd256(f8), _mm512_extractf64x4_pd(f8, 1));
  const __m128d f2 = _mm_add_pd(_mm256_castpd256_pd128(f4), _mm256_extractf128_pd(f4, 1));
  const double s = _mm_cvtsd_f64(_mm_add_sd(f2, _mm_unpackhi_pd(f2, f2)));
  if (std::isnan(s)) return sum_segment<kSquare>(p, n);
  return s;
}

// minmax_range: lanes start at p[0] and take _mm512_min_ps(v, lane) (= v < lane ? v : lane, NaN v
// ignored), so the extremes' values are the scalar ones. Only +0 / -0 compare equal with different
// bits: when an extreme is zero, or p[0] is NaN, the scalar loop decides.
GOSSIP_AVX512 inline MinMax minmax16(const float* p, std::uint64_t n) {
  if (n < 64 || std::isnan(p[0])) return minmax_range(p, n);
  __m512 lo = _mm512_set1_ps(p[0]), hi = lo, lo2 = lo, hi2 = lo;
  std::uint64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 v = _mm512_loadu_ps(p + i), u = _mm512_loadu_ps(p + i + 16);
    lo = _mm512_min_ps(v, lo);
    hi = _mm512_max_ps(v, hi);
    lo2 = _mm512_min_ps(u, lo2);
    hi2 = _mm512_max_ps(u, hi2);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, p + i);
    lo = _mm512_mask_min_ps(lo, m, v, lo);
    hi = _mm512_mask_max_ps(hi, m, v, hi);
  }
  const MinMax mm{_mm512_reduce_min_ps(_mm512_min_ps(lo, lo2)),
                  _mm512_reduce_max_ps(_mm512_max_ps(hi, hi2))};
  if (mm.lo == 0.0f || mm.hi == 0.0f) return minmax_range(p, n);
  return mm;
}

GOSSIP_AVX512 inline float maxabs16(const float* p, std::uint64_t n) {
  __m512 m = _mm512_setzero_ps(), m2 = m;
  std::uint64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m = _mm512_max_ps(fabs16(_mm512_loadu_ps(p + i)), m);
    m2 = _mm512_max_ps(fabs16(_mm512_loadu_ps(p + i + 16)), m2);
  }
  for (; i < n; i += 16) {
    const __mmask16 k = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    m = _mm512_mask_max_ps(m, k, fabs16(_mm512_maskz_loadu_ps(k, p + i)), m);
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m, m2));
}

// BucketStatFn with the vector pieces.
template <BucketStat kStat>
GOSSIP_AVX512 void bucket_stat(const BucketStatFn<kStat>& f, std::uint64_t j) {
  std::uint64_t b, e;
  f.layout.bucket_range(j, b, e);
  const std::uint64_t n = e - b;
  if constexpr (kStat == BucketStat::kL2 || kStat == BucketStat::kL1Mean) {
    double s = 0.0;
    for (std::uint64_t o = 0; o < n; o += kSegment)
      s += sum_segment16<kStat == BucketStat::kL2>(
          f.x + b + o, static_cast<std::uint32_t>(min_u64(kSegment, n - o)));
    store_le<float>(f.table + 4 * j, BucketStatFn<kStat>::finish(s, n));
  } else if constexpr (kStat == BucketStat::kMaxAbs) {
    store_le<float>(f.table + 4 * j, maxabs16(f.x + b, n));
  } else {
    const MinMax mm = minmax16(f.x + b, n);
    store_le<float>(f.table + 8 * j, mm.lo);
    store_le<float>(f.table + 8 * j + 4, mm.hi);
  }
}

}  // namespace gossip::kernels::avx512

#pragma GCC diagnostic pop

#endif  // __x86_64__
