// Host implementation of every codec: dense element-wise work runs the functors of ops.hpp (or
// their AVX-512 twins, host_avx512.hpp) on OpenMP threads; sparse selection is in sparse.cpp. The
// byte format is in wire.hpp and docs/kernels.md.

#include <omp.h>

#include "kernels/x86_intrinsics.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/codec.hpp"
#include "kernels/cpu.hpp"
#include "kernels/crc32c.hpp"
#include "kernels/host_avx512.hpp"
#include "kernels/ops.hpp"
#include "kernels/params.hpp"
#include "kernels/plan.hpp"
#include "kernels/sparse.hpp"
#include "kernels/wire.hpp"

namespace gossip::kernels {
namespace {

// Runs f(0..n-1) on all threads. Below `serial_below` items a parallel region costs more than it
// saves (small tensors are common in per-tensor gossip). Each item is computed the same either
// way, so the bytes do not change. Items are handed out in chunks on demand (about 32 per thread)
// rather than split in fixed halves: when another process holds one of the cores, the running
// thread takes over the remaining chunks instead of waiting at the barrier for its partner's half.
template <class F>
void par_for(std::uint64_t n, const F& f, std::uint64_t serial_below = 64) {
  if (n < serial_below) {
    for (std::uint64_t i = 0; i < n; ++i) f(i);
    return;
  }
  const auto m = static_cast<std::int64_t>(n);
  const std::int64_t chunk =
      std::max<std::int64_t>(1, m / (32 * static_cast<std::int64_t>(omp_get_max_threads())));
#pragma omp parallel for schedule(dynamic, chunk)
  for (std::int64_t i = 0; i < m; ++i) f(static_cast<std::uint64_t>(i));
}

std::uint64_t groups(std::uint64_t d) {
  return (d + kGroup - 1) / kGroup;
}

// Work item of the host backend: a tile of groups, so each OpenMP iteration does enough work and
// the random words of a whole tile come from one vectorised Philox pass.
constexpr std::uint64_t kTileGroups = 128;

// Philox words of blocks [first, first + n) of a stream, block-major (word q of block b at
// out[4b + q]): the same words as RngStreamKey::block, 8 or 16 counters per vector instruction.
// g++ does not vectorise the 32x32->64 products on its own, hence the intrinsics. Integer-only:
// every path gives the same bits (the exact tests compare against the scalar Philox).
void fill_noise_scalar(const RngStreamKey& key, std::uint32_t first, std::uint32_t n,
                       std::uint32_t* out) {
  for (std::uint32_t b = 0; b < n; ++b) {
    const Philox4 r = key.block(first + b);
    for (int q = 0; q < 4; ++q) out[4 * b + q] = r.v[q];
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) void fill_noise_avx2(const RngStreamKey& key, std::uint32_t first,
                                                     std::uint32_t n, std::uint32_t* out) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  std::uint32_t b0 = 0;
  for (; b0 + 8 <= n; b0 += 8) {
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first + b0)), lane);
    __m256i c1 = _mm256_set1_epi32(static_cast<int>(key.peer));
    __m256i c2 = _mm256_set1_epi32(static_cast<int>(key.round_lo));
    __m256i c3 = _mm256_set1_epi32(static_cast<int>(key.hi));
    std::uint32_t k0 = key.k0, k1 = key.k1;
    for (int r = 0; r < 10; ++r) {
      // 64-bit products of even lanes, then of odd lanes; blend back to hi and lo words.
      const __m256i e0 = _mm256_mul_epu32(c0, m0),
                    o0 = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0);
      const __m256i e1 = _mm256_mul_epu32(c2, m1),
                    o1 = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(e0, 32), o0, 0xAA);
      const __m256i lo0 = _mm256_blend_epi32(e0, _mm256_slli_epi64(o0, 32), 0xAA);
      const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(e1, 32), o1, 0xAA);
      const __m256i lo1 = _mm256_blend_epi32(e1, _mm256_slli_epi64(o1, 32), 0xAA);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
      c1 = lo1;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // 4x8 transpose into block-major order.
    const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
    const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    // u0 = blocks {0, 4}, u1 = {1, 5}, u2 = {2, 6}, u3 = {3, 7} (128-bit halves).
    auto* o = reinterpret_cast<__m256i*>(out + 4 * b0);
    _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(u0, u1, 0x20));
    _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(u2, u3, 0x20));
    _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(u0, u1, 0x31));
    _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(u2, u3, 0x31));
  }
  fill_noise_scalar(key, first + b0, n - b0, out + 4 * b0);
}

__attribute__((target("avx512f"))) void fill_noise_avx512(const RngStreamKey& key,
                                                          std::uint32_t first, std::uint32_t n,
                                                          std::uint32_t* out) {
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  constexpr __mmask16 kOdd = 0xAAAA;
  std::uint32_t b0 = 0;
  for (; b0 + 16 <= n; b0 += 16) {
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(first + b0)), lane);
    __m512i c1 = _mm512_set1_epi32(static_cast<int>(key.peer));
    __m512i c2 = _mm512_set1_epi32(static_cast<int>(key.round_lo));
    __m512i c3 = _mm512_set1_epi32(static_cast<int>(key.hi));
    std::uint32_t k0 = key.k0, k1 = key.k1;
    for (int r = 0; r < 10; ++r) {
      // High words from the 64-bit products of even and odd lanes; low words straight from
      // vpmulld (cheaper than shifting and blending them out of the products).
      const __m512i e0 = _mm512_mul_epu32(c0, m0),
                    o0 = _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), m0);
      const __m512i e1 = _mm512_mul_epu32(c2, m1),
                    o1 = _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), m1);
      const __m512i hi0 = _mm512_mask_blend_epi32(kOdd, _mm512_srli_epi64(e0, 32), o0);
      const __m512i hi1 = _mm512_mask_blend_epi32(kOdd, _mm512_srli_epi64(e1, 32), o1);
      const __m512i lo0 = _mm512_mullo_epi32(c0, m0), lo1 = _mm512_mullo_epi32(c2, m1);
      // Three-way xors (0x96) in one instruction each.
      c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32(static_cast<int>(k0)), 0x96);
      c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32(static_cast<int>(k1)), 0x96);
      c1 = lo1;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // 4x16 transpose: unpacks give blocks {0,4,8,12}, {1,5,9,13}, ... one per 128-bit lane;
    // two rounds of 128-bit lane shuffles put blocks back in order.
    const __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
    const __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
    const __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
    const __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
    const __m512i a = _mm512_shuffle_i32x4(u0, u1, 0x44), b = _mm512_shuffle_i32x4(u2, u3, 0x44);
    const __m512i c = _mm512_shuffle_i32x4(u0, u1, 0xEE), e = _mm512_shuffle_i32x4(u2, u3, 0xEE);
    std::uint32_t* o = out + 4 * b0;
    _mm512_storeu_si512(o, _mm512_shuffle_i32x4(a, b, 0x88));
    _mm512_storeu_si512(o + 16, _mm512_shuffle_i32x4(a, b, 0xDD));
    _mm512_storeu_si512(o + 32, _mm512_shuffle_i32x4(c, e, 0x88));
    _mm512_storeu_si512(o + 48, _mm512_shuffle_i32x4(c, e, 0xDD));
  }
  fill_noise_avx2(key, first + b0, n - b0, out + 4 * b0);
}
#endif

// Widest code the CPU has (kernels/cpu.hpp; GOSSIP_KERNELS_ISA=scalar|avx2 caps it, and the tests
// run every level, since all must give the same bytes).
bool use_avx512() {
  return host_isa() == HostIsa::kAvx512;
}

void fill_noise(const RngStreamKey& key, std::uint32_t first, std::uint32_t n, std::uint32_t* out) {
  switch (host_isa()) {
#if defined(__x86_64__)
    case HostIsa::kAvx512:
      fill_noise_avx512(key, first, n, out);
      return;
    case HostIsa::kAvx2:
      fill_noise_avx2(key, first, n, out);
      return;
#endif
    default:
      fill_noise_scalar(key, first, n, out);
  }
}

// The AVX-512 twin of f (host_avx512.hpp, an overload of avx512::groups) for groups [g0, g1):
// true when f has one and it ran.
template <class Fn>
bool fast_groups(const Fn& f, std::uint64_t g0, std::uint64_t g1) {
#if defined(__x86_64__)
  if constexpr (requires { avx512::groups(f, g0, g1); }) {
    avx512::groups(f, g0, g1);
    return true;
  }
#endif
  return false;
}
template <class Fn>
bool fast_groups_noise(const Fn& f, std::uint64_t g0, std::uint64_t g1, const std::uint32_t* r) {
#if defined(__x86_64__)
  if constexpr (requires { avx512::groups(f, g0, g1, r); }) {
    avx512::groups(f, g0, g1, r);
    return true;
  }
#endif
  return false;
}

#if defined(__x86_64__)
// Every functor with a twin must find it: a missed overload would only be slower, which no test of
// the bytes can see.
template <class Fn>
constexpr bool kHasTwin = requires(const Fn& f) {
  avx512::groups(f, 0, 0);
};
template <class Fn>
constexpr bool kHasNoiseTwin = requires(const Fn& f) {
  avx512::groups(f, 0, 0, nullptr);
};
constexpr auto kAcc = DecodeMode::kAccumulate;
static_assert(kHasTwin<HalfEncode<false>> && kHasTwin<HalfEncode<true>> && kHasTwin<SignEncode>);
static_assert(kHasTwin<IdentityDecode<kAcc>> && kHasTwin<HalfDecode<true, kAcc>> &&
              kHasTwin<QsgdDecode<3, kAcc>> && kHasTwin<QuantizeDecode<2, kAcc>> &&
              kHasTwin<TerngradDecode<kAcc>> && kHasTwin<SignDecode<DecodeMode::kAssign>>);
static_assert(kHasNoiseTwin<QsgdEncode<3>> && kHasNoiseTwin<QuantizeEncode<4>> &&
              kHasNoiseTwin<TerngradEncode>);
static_assert(!kHasTwin<QsgdEncode<3>> && !kHasNoiseTwin<SignEncode>);
#endif

// Groups [g0, g1) of f, through the AVX-512 twin when the CPU has one.
template <class Fn>
void run_groups(const Fn& f, std::uint64_t g0, std::uint64_t g1) {
  if (use_avx512() && fast_groups(f, g0, g1)) return;
  for (std::uint64_t g = g0; g < g1; ++g) f(g);
}

// Work a tile does before its groups (none, or the bucket statistics of its buckets).
struct NoPre {
  void operator()(std::uint64_t, std::uint64_t) const {}
};

template <class Fn, class Pre = NoPre>
struct Tiles {
  Fn f;
  std::uint64_t ngroups;
  Pre pre{};
  void operator()(std::uint64_t t) const {
    const std::uint64_t g0 = t * kTileGroups, g1 = std::min(ngroups, g0 + kTileGroups);
    pre(g0 * kGroup, g1 * kGroup);
    run_groups(f, g0, g1);
  }
};

// Tiles whose groups take their random words from one fill_noise pass (none when !noise).
template <class Fn, class Pre = NoPre>
struct NoiseTiles {
  Fn f;
  std::uint64_t ngroups;
  RngStreamKey key;
  bool noise;
  Pre pre{};
  void operator()(std::uint64_t t) const {
    const std::uint64_t g0 = t * kTileGroups, g1 = std::min(ngroups, g0 + kTileGroups);
    pre(g0 * kGroup, g1 * kGroup);
    alignas(64) std::uint32_t r[kTileGroups * kGroup];
    if (noise)
      fill_noise(key, static_cast<std::uint32_t>(g0 * kGroup / 4),
                 static_cast<std::uint32_t>((g1 - g0) * kGroup / 4), r);
    if (use_avx512() && fast_groups_noise(f, g0, g1, r)) return;
    for (std::uint64_t g = g0; g < g1; ++g) f.run(g, noise ? r + (g - g0) * kGroup : nullptr);
  }
};

// The tile runner of f: NoiseTiles when f's groups take random words (f.run(g, r)), else Tiles.
template <class Fn, class Pre>
auto tiles_of(const Fn& f, std::uint64_t ngroups, const RngStreamKey* noise, const Pre& pre) {
  if constexpr (requires(const std::uint32_t* r) { f.run(std::uint64_t{0}, r); })
    return NoiseTiles<Fn, Pre>{f, ngroups, noise ? *noise : RngStreamKey{}, noise != nullptr, pre};
  else
    return Tiles<Fn, Pre>{f, ngroups, pre};
}

template <class Fn>
void par_groups(std::uint64_t d, const Fn& f) {
  const std::uint64_t ng = groups(d);
  par_for((ng + kTileGroups - 1) / kTileGroups, Tiles<Fn>{f, ng}, 2);  // a tile is 4096 elements
}

// Identity / fp16 / bf16: each 64 KiB checksum block of the payload is encoded by one work item
// and its CRC taken while it is still in cache, saving a second pass over the payload. Returns the
// message checksum (`header` already holds every field but the checksum). Block CRCs go through a
// stack batch of kChecksumBatch blocks at a time, so nothing is allocated.
template <class Fn>
std::uint32_t par_blocks_crc(std::uint64_t d, std::uint64_t elem_bytes, const Fn& f,
                             const std::byte* payload,
                             std::span<const std::byte, kHeaderSize> header) {
  const std::uint64_t per_block = kChecksumBlock / elem_bytes;  // a multiple of kGroup
  const std::uint64_t bytes = d * elem_bytes;
  const std::uint64_t nblocks = (bytes + kChecksumBlock - 1) / kChecksumBlock;
  const std::uint64_t ng = groups(d);
  std::uint32_t state = checksum_start(header);
  std::uint32_t crcs[kChecksumBatch];
  for (std::uint64_t b0 = 0; b0 < nblocks; b0 += kChecksumBatch) {
    const std::uint64_t nb = std::min<std::uint64_t>(kChecksumBatch, nblocks - b0);
    par_for(
        nb,
        [&, per_block, bytes, ng, b0](std::uint64_t i) {
          const std::uint64_t b = b0 + i;
          run_groups(f, b * per_block / kGroup, std::min(ng, (b + 1) * per_block / kGroup));
          const std::uint64_t off = b * kChecksumBlock;
          crcs[i] = crc32c(
              std::span<const std::byte>(payload + off, std::min(kChecksumBlock, bytes - off)));
        },
        2);
    state = checksum_continue(state, std::span<const std::uint32_t>(crcs, nb));
  }
  return state;
}

// Bucket statistics, through the AVX-512 twins when the CPU has them (same values, bit for bit).
template <BucketStat kStat>
struct HostBucketStat {
  BucketStatFn<kStat> f;
  void operator()(std::uint64_t j) const {
#if defined(__x86_64__)
    if (use_avx512()) return avx512::bucket_stat(f, j);
#endif
    f(j);
  }
};
template <bool kSquare>
double host_sum_segment(const float* p, std::uint32_t n) {
#if defined(__x86_64__)
  if (use_avx512()) return avx512::sum_segment16<kSquare>(p, n);
#endif
  return sum_segment<kSquare>(p, n);
}
MinMax host_minmax(const float* p, std::uint64_t n) {
#if defined(__x86_64__)
  if (use_avx512()) return avx512::minmax16(p, n);
#endif
  return minmax_range(p, n);
}
// Min and max of the numbers among p[0, n) (NaNs skipped; both NaN when there are none). Equal to
// minmax_range whenever p[0] is a number, since a NaN after the first element never wins there.
MinMax host_minmax_numbers(const float* p, std::uint64_t n) {
  std::uint64_t i = 0;
  while (i < n && std::isnan(p[i])) ++i;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  return i < n ? host_minmax(p + i, n - i) : MinMax{nan, nan};
}
float host_maxabs(const float* p, std::uint64_t n) {
#if defined(__x86_64__)
  if (use_avx512()) return avx512::maxabs16(p, n);
#endif
  return maxabs_range(p, n);
}

// Per-thread scratch of n elements that keeps its capacity, so steady-state encodes and decodes
// allocate nothing (encode/decode are const and may run on one codec from several threads at
// once, hence per thread, not per codec). kUse keeps apart buffers that are live together.
enum class Scratch { kSegments, kIndices, kUnits };
template <class T, Scratch kUse>
std::vector<T>& scratch(std::size_t n) {
  thread_local std::vector<T> v;
  v.resize(n);
  return v;
}

// Bucket statistics fused into the encode tiles, for buckets of at most a tile (4096 elements):
// each tile computes the buckets lying wholly inside it just before encoding them, while its x is
// in cache, instead of a separate pass over x. A bucket crossing a tile boundary (at most one
// boundary, being no longer than a tile) is computed before the tiles run (straddling_stats).
// Every bucket is computed once, by the same function on the same elements: the same bytes.
template <BucketStat kStat>
struct InTileStats {
  HostBucketStat<kStat> fn;
  std::uint64_t d;
  void operator()(std::uint64_t lo, std::uint64_t hi) const {
    hi = std::min(hi, d);
    const LayoutView& v = fn.f.layout;
    BucketCursor c;
    c.seek(v, lo);
    for (std::uint64_t j = c.bucket; j < v.buckets(); ++j) {
      std::uint64_t b, e;
      v.bucket_range(j, b, e);
      if (b >= hi) break;
      if (b >= lo && e <= hi) fn(j);
    }
  }
};
constexpr std::uint64_t kTileElems = kTileGroups * kGroup;
template <BucketStat kStat>
void straddling_stats(const InTileStats<kStat>& s) {
  const std::uint64_t nt = (s.d + kTileElems - 1) / kTileElems;
  if (nt < 2) return;
  par_for(nt - 1, [&s](std::uint64_t t) {
    const std::uint64_t p = (t + 1) * kTileElems;
    const LayoutView& v = s.fn.f.layout;
    BucketCursor c;
    c.seek(v, p);
    std::uint64_t b, e;
    v.bucket_range(c.bucket, b, e);
    if (b < p) s.fn(c.bucket);
  });
}

// Code widths the host builds: every width a packed codec can have (qsgd up to 17 bits).
using HostWidths =
    std::integer_sequence<int, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17>;
template <class G>
void with_width(int f, G&& g) {
  with_width_in(HostWidths{}, f, g);
}

class HostCodec final : public Codec, private CodecPlan {
 public:
  HostCodec(CodecParams p, std::span<const std::size_t> tensor_sizes)
      : CodecPlan(p, tensor_sizes) {}

  std::string spec() const override { return canonical(); }
  bool fixed_wire_size() const override { return p_.id != CodecId::kThreshold; }

  std::size_t wire_size(std::size_t d) const override {
    const LayoutData& own = layout_reused(d);
    return kHeaderSize + payload_size(own, d);
  }

  std::size_t encode(std::span<const float> x, const RngKey& key,
                     std::span<std::byte> wire) const override {
    const std::uint64_t d = x.size();
    const LayoutData& lay = layout_reused(d);
    const std::uint64_t payload_max = check_encode(lay, d, wire.size());
    std::byte* payload = wire.data() + kHeaderSize;
    // The header first (the checksum covers it, with its checksum field zeroed): encoders that
    // checksum as they go need it. threshold learns its payload length only at the end.
    WireHeader h = header_for(d);
    h.payload_bytes = fixed_wire_size() ? payload_max : 0;
    h.peer = key.peer;
    h.round = key.round;
    store_header(h, wire.first<kHeaderSize>());
    std::optional<std::uint32_t> sum;
    const std::uint64_t bytes =
        encode_payload(x, key, lay, payload, wire.first<kHeaderSize>(), sum);
    if (bytes != h.payload_bytes) {
      h.payload_bytes = bytes;
      store_header(h, wire.first<kHeaderSize>());
    }
    h.checksum = sum ? *sum : message_checksum(wire.first(kHeaderSize + bytes));
    store_header(h, wire.first<kHeaderSize>());
    return kHeaderSize + bytes;
  }

  void decode_accumulate(std::span<const std::byte> wire, float w,
                         std::span<float> y) const override {
    run_decode<DecodeMode::kAccumulate>(wire, w, y);
  }
  void decode(std::span<const std::byte> wire, std::span<float> y) const override {
    run_decode<DecodeMode::kAssign>(wire, 1.0f, y);
  }

 private:
  // Scale table of the bucketed codecs. Few large buckets: split each into kSegment pieces so
  // both cores work; the fixed summation order keeps the result the same either way.
  template <BucketStat kStat>
  void bucket_stats(const float* x, const LayoutData& lay, std::byte* table) const {
    const LayoutView v = lay.view();
    const std::uint64_t nb = v.buckets();
    const HostBucketStat<kStat> fn{{x, v, table}};
    if (nb >= 64 || lay.offsets.back() < 16 * kSegment) {
      par_for(nb, fn);
      return;
    }
    for (std::uint64_t j = 0; j < nb; ++j) {
      std::uint64_t b, e;
      v.bucket_range(j, b, e);
      const std::uint64_t n = e - b, segs = ceil_div(n, kSegment);
      if constexpr (kStat == BucketStat::kL2 || kStat == BucketStat::kL1Mean) {
        std::vector<double>& part = scratch<double, Scratch::kSegments>(segs);
        par_for(segs, [p = x + b, n, out = part.data()](std::uint64_t s) {
          out[s] = host_sum_segment<kStat == BucketStat::kL2>(
              p + s * kSegment,
              static_cast<std::uint32_t>(std::min<std::uint64_t>(kSegment, n - s * kSegment)));
        });
        double sum = 0.0;
        for (double q : part) sum += q;
        store_le<float>(table + 4 * j, BucketStatFn<kStat>::finish(sum, n));
      } else {
        std::vector<MinMax>& part = scratch<MinMax, Scratch::kSegments>(segs);
        par_for(segs, [p = x + b, n, out = part.data()](std::uint64_t s) {
          const std::uint64_t len = std::min<std::uint64_t>(kSegment, n - s * kSegment);
          const float* q = p + s * kSegment;
          out[s] = kStat == BucketStat::kMaxAbs ? MinMax{0.0f, host_maxabs(q, len)}
                                                : host_minmax_numbers(q, len);
        });
        // Segments give the min/max of their numbers; minmax_range's left-to-right rule over
        // the whole bucket adds one case: a NaN first element makes both NaN.
        MinMax mm = part[0];
        for (const MinMax& q : part) {
          mm.lo = q.lo < mm.lo || std::isnan(mm.lo) ? q.lo : mm.lo;
          mm.hi = q.hi > mm.hi || std::isnan(mm.hi) ? q.hi : mm.hi;
        }
        if (kStat == BucketStat::kMinMax && std::isnan(x[b])) mm = MinMax{x[b], x[b]};
        if constexpr (kStat == BucketStat::kMaxAbs) {
          store_le<float>(table + 4 * j, mm.hi);
        } else {
          store_le<float>(table + 8 * j, mm.lo);
          store_le<float>(table + 8 * j + 4, mm.hi);
        }
      }
    }
  }

  // Bucket statistics into the scale table `table`, then the code tiles of f (with Philox words
  // from `noise` unless null): fused into the tiles when buckets are at most a tile long.
  template <BucketStat kStat, class Fn>
  void stats_then_tiles(const float* x, const LayoutData& lay, std::byte* table, const Fn& f,
                        const RngStreamKey* noise) const {
    const std::uint64_t d = lay.offsets.back();
    const std::uint64_t ng = groups(d), nt = (ng + kTileGroups - 1) / kTileGroups;
    if (lay.bucket == 0 || lay.bucket > kTileElems) {
      bucket_stats<kStat>(x, lay, table);
      par_for(nt, tiles_of(f, ng, noise, NoPre{}), 2);
      return;
    }
    const InTileStats<kStat> pre{{{x, lay.view(), table}}, d};
    straddling_stats(pre);
    par_for(nt, tiles_of(f, ng, noise, pre), 2);
  }

  // Writes the payload; returns its size. `sum` receives the message checksum when the encoder
  // computed it on the way (left empty otherwise).
  std::uint64_t encode_payload(std::span<const float> xs, const RngKey& key, const LayoutData& lay,
                               std::byte* out, std::span<const std::byte, kHeaderSize> header,
                               std::optional<std::uint32_t>& sum) const {
    const float* x = xs.data();
    const std::uint64_t d = xs.size();
    const std::uint64_t nb = lay.bucket_base.back();
    const RngStreamKey noise = make_stream(key.seed, key.peer, key.round, RngStream::kElementNoise);
    BucketedArgs a{lay.view(), d, out, 0, false, noise};
    switch (p_.id) {
      case CodecId::kIdentity:
        sum = par_blocks_crc(d, 4, IdentityEncode{x, d, out}, out, header);
        break;
      case CodecId::kFp16:
        sum = par_blocks_crc(d, 2, HalfEncode<false>{x, d, out}, out, header);
        break;
      case CodecId::kBf16:
        sum = par_blocks_crc(d, 2, HalfEncode<true>{x, d, out}, out, header);
        break;
      case CodecId::kQsgd:
        a.param = p_.s;
        with_width(static_cast<int>(p_.qsgd_width()), [&](auto f) {
          stats_then_tiles<BucketStat::kL2>(
              x, lay, out, QsgdEncode<decltype(f)::value>{a, x, out + 4 * nb}, &noise);
        });
        break;
      case CodecId::kQuantize:
        a.param = (1u << p_.bits) - 1u;
        a.flag = p_.nearest;
        with_width(static_cast<int>(p_.bits), [&](auto f) {
          stats_then_tiles<BucketStat::kMinMax>(
              x, lay, out, QuantizeEncode<decltype(f)::value>{a, x, out + 8 * nb},
              p_.nearest ? nullptr : &noise);
        });
        break;
      case CodecId::kTerngrad:
        stats_then_tiles<BucketStat::kMaxAbs>(x, lay, out, TerngradEncode{a, x, out + 4 * nb},
                                              &noise);
        break;
      case CodecId::kSign:
        stats_then_tiles<BucketStat::kL1Mean>(x, lay, out, SignEncode{x, d, out + 4 * nb}, nullptr);
        break;
      case CodecId::kTopk: {
        std::vector<std::uint32_t>& idx = scratch<std::uint32_t, Scratch::kIndices>(0);
        for (std::uint64_t t = 0; t < lay.tensors(); ++t)
          select_topk(xs.subspan(lay.offsets[t], lay.size(t)), p_.k_for(lay.size(t)),
                      lay.offsets[t], idx);
        return write_sparse(idx, x, out);
      }
      case CodecId::kRandomk: {
        const RngStreamKey sk = make_stream(key.seed, key.peer, key.round, RngStream::kRandomkSeed);
        const Philox4 r = sk.block(0);
        const std::uint64_t seed = (static_cast<std::uint64_t>(r.v[1]) << 32) | r.v[0];
        store_le<std::uint64_t>(out, seed);
        const std::vector<std::uint32_t>& idx = randomk_all(seed, lay);
        const auto k = static_cast<std::int64_t>(idx.size());
        std::byte* val = out + 8;
#pragma omp parallel for schedule(static) if (k > 65536)
        for (std::int64_t e = 0; e < k; ++e)
          store_le<float>(val + 4 * e, x[idx[static_cast<std::size_t>(e)]]);
        return 8 + 4 * idx.size();
      }
      case CodecId::kThreshold: {
        std::vector<std::uint32_t>& idx = scratch<std::uint32_t, Scratch::kIndices>(0);
        select_threshold(xs, static_cast<float>(p_.tau), idx);
        return write_sparse(idx, x, out);
      }
    }
    return payload_size(lay, d);
  }

  // The indices of every tensor, in draw order (in this thread's scratch).
  const std::vector<std::uint32_t>& randomk_all(std::uint64_t seed, const LayoutData& lay) const {
    std::vector<std::uint32_t>& idx = scratch<std::uint32_t, Scratch::kIndices>(0);
    for (std::uint64_t t = 0; t < lay.tensors(); ++t)
      randomk_indices(seed, static_cast<std::uint32_t>(t), lay.size(t), p_.k_for(lay.size(t)),
                      lay.offsets[t], idx);
    return idx;
  }

  static std::uint64_t write_sparse(const std::vector<std::uint32_t>& idx, const float* x,
                                    std::byte* out) {
    const auto k = static_cast<std::int64_t>(idx.size());
    if (k > 0)
      std::memcpy(out, idx.data(), 4 * idx.size());  // an empty vector's data() may be null
    std::byte* val = out + 4 * idx.size();
#pragma omp parallel for schedule(static) if (k > 65536)
    for (std::int64_t e = 0; e < k; ++e)
      store_le<float>(val + 4 * e, x[idx[static_cast<std::size_t>(e)]]);
    return 8 * idx.size();
  }

  // Every check before the payload is touched; returns the validated header.
  WireHeader validate(std::span<const std::byte> wire, std::uint64_t d,
                      const LayoutData& lay) const {
    const WireHeader h = check_header(wire, wire.size(), d, lay);
    if (message_checksum(wire) != h.checksum) reject("checksum mismatch: message corrupted");
    if (p_.id == CodecId::kTopk || p_.id == CodecId::kThreshold) {
      const std::uint64_t count = h.payload_bytes / 8;
      if (!indices_valid(wire.subspan(kHeaderSize, 4 * count), count, d))
        reject("sparse indices not strictly increasing or out of range");
    }
    return h;
  }

  template <DecodeMode kMode>
  void run_decode(std::span<const std::byte> wire, float w, std::span<float> ys) const {
    const std::uint64_t d = ys.size();
    const LayoutData& lay = layout_reused(d);
    const WireHeader h = validate(wire, d, lay);
    const std::byte* in = wire.data() + kHeaderSize;
    float* y = ys.data();
    const std::uint64_t nb = lay.bucket_base.back();
    BucketedArgs a{lay.view(), d, in, 0, false, {}};
    if (kMode == DecodeMode::kAssign && is_sparse()) std::fill(ys.begin(), ys.end(), 0.0f);
    // Sparse codecs fill zeros first, then write their entries as plain assignments.
    constexpr DecodeMode kSparseMode = kMode;
    switch (p_.id) {
      case CodecId::kIdentity:
        par_groups(d, IdentityDecode<kMode>{in, d, w, y});
        break;
      case CodecId::kFp16:
        par_groups(d, HalfDecode<false, kMode>{in, d, w, y});
        break;
      case CodecId::kBf16:
        par_groups(d, HalfDecode<true, kMode>{in, d, w, y});
        break;
      case CodecId::kQsgd: {
        a.param = p_.s;
        a.flag = p_.scaled;
        // The AVX-512 decoder takes each bucket's unit once per tile anyway; the functors would
        // take it once per group, so they get a table (one more pass and parallel region).
        if (!use_avx512()) {
          std::vector<float>& units = scratch<float, Scratch::kUnits>(nb);
          par_for(nb, QsgdUnitFn{a.layout, in, p_.s, p_.scaled, units.data()});
          a.units = units.data();
        }
        with_width(static_cast<int>(p_.qsgd_width()), [&](auto f) {
          par_groups(d, QsgdDecode<decltype(f)::value, kMode>{a, in + 4 * nb, w, y});
        });
        break;
      }
      case CodecId::kQuantize:
        a.param = (1u << p_.bits) - 1u;
        with_width(static_cast<int>(p_.bits), [&](auto f) {
          par_groups(d, QuantizeDecode<decltype(f)::value, kMode>{a, in + 8 * nb, w, y});
        });
        break;
      case CodecId::kTerngrad:
        par_groups(d, TerngradDecode<kMode>{a, in + 4 * nb, w, y});
        break;
      case CodecId::kSign:
        par_groups(d, SignDecode<kMode>{a, in + 4 * nb, w, y});
        break;
      case CodecId::kTopk:
      case CodecId::kThreshold: {
        const std::uint64_t count = h.payload_bytes / 8;
        par_for(count, SparseDecode<kSparseMode>{in, in + 4 * count, w, y});
        break;
      }
      case CodecId::kRandomk: {
        const std::vector<std::uint32_t>& idx = randomk_all(load_le<std::uint64_t>(in), lay);
        const std::byte* val = in + 8;
        std::uint64_t e = 0;
        for (std::uint64_t t = 0; t < lay.tensors(); ++t) {
          const std::uint64_t k = p_.k_for(lay.size(t));
          const float scale = p_.randomk_scale(lay.size(t));
          for (std::uint64_t q = 0; q < k; ++q, ++e)
            emit<kMode>(y, idx[e], w, load_le<float>(val + 4 * e) * scale);
        }
        break;
      }
    }
  }
};

}  // namespace

std::unique_ptr<Codec> make_codec(std::string_view spec,
                                  std::span<const std::size_t> tensor_sizes) {
  return std::make_unique<HostCodec>(parse_spec(spec), tensor_sizes);
}

}  // namespace gossip::kernels
