#include "kernels/crc32c.hpp"

#include "kernels/x86_intrinsics.hpp"

#include <array>
#include <cstring>

#include "kernels/cpu.hpp"
#include "kernels/crc_combine.hpp"

namespace gossip::kernels {
namespace {

constexpr std::array<std::array<std::uint32_t, 256>, 8> make_tables() {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  t[0] = crc_byte_table();
  for (std::size_t j = 1; j < 8; ++j)
    for (std::uint32_t i = 0; i < 256; ++i)
      t[j][i] = (t[j - 1][i] >> 8) ^ t[0][t[j - 1][i] & 0xffu];
  return t;
}
constexpr auto kTables = make_tables();

// x^n mod P in reflected bit order (x^0 = bit 31): multiplying a CRC register by x^(8n) appends
// n zero bytes (as in zlib's crc32_combine).
constexpr std::uint32_t xnmodp(std::uint64_t n) {
  std::uint32_t p = 1u << 31, sq = 1u << 30;  // p = x^0, sq = x^1
  while (n) {
    if (n & 1) p = crc_multmodp(sq, p);
    sq = crc_multmodp(sq, sq);
    n >>= 1;
  }
  return p;
}

#if defined(__x86_64__)
constexpr std::size_t kLane = 4096;  // bytes per stream in the 3-way interleaved loop
constexpr std::uint32_t kShiftLane = xnmodp(8 * kLane);

// The bytes the folding loops leave, eight at a time, then one at a time; returns the final CRC.
__attribute__((target("sse4.2"))) std::uint32_t crc32c_tail(std::uint64_t c, const unsigned char* p,
                                                            std::size_t n) {
  while (n >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(const unsigned char* p, std::size_t n,
                                                             std::uint32_t crc) {
  std::uint64_t c = ~crc;
  // crc32q has 3-cycle latency and 1-cycle throughput: run three streams over adjacent 4 KiB
  // lanes and merge them with the GF(2) shift (c_a * x^(8*4096) ^ c_b, then again with c_c).
  while (n >= 3 * kLane) {
    std::uint64_t c1 = 0, c2 = 0;
    for (std::size_t i = 0; i < kLane; i += 8) {
      std::uint64_t v0, v1, v2;
      std::memcpy(&v0, p + i, 8);
      std::memcpy(&v1, p + kLane + i, 8);
      std::memcpy(&v2, p + 2 * kLane + i, 8);
      c = __builtin_ia32_crc32di(c, v0);
      c1 = __builtin_ia32_crc32di(c1, v1);
      c2 = __builtin_ia32_crc32di(c2, v2);
    }
    c = crc_multmodp(kShiftLane, static_cast<std::uint32_t>(c)) ^ c1;
    c = crc_multmodp(kShiftLane, static_cast<std::uint32_t>(c)) ^ c2;
    p += 3 * kLane;
    n -= 3 * kLane;
  }
  return crc32c_tail(c, p, n);
}

// Carry-less multiplication folding (Intel, "Fast CRC computation for generic polynomials using
// PCLMULQDQ", 2009), four 64-byte accumulators of four 128-bit lanes each. A 128-bit lane A
// (bytes in message order, little-endian) moved forward by n bytes becomes
// clmul(A.lo, x^(8n+31) mod P) ^ clmul(A.hi, x^(8n-33) mod P) in the reflected domain; the folded
// 16 bytes are then an ordinary message for the crc32 instruction.
// Fold constants as a 128-bit lane's (lo, hi) pair for moving it forward by `bytes`.
constexpr long long fold_lo(std::uint64_t bytes) {
  return xnmodp(8 * bytes + 31);
}
constexpr long long fold_hi(std::uint64_t bytes) {
  return xnmodp(8 * bytes - 33);
}
constexpr long long kLo256 = fold_lo(256), kHi256 = fold_hi(256), kLo64 = fold_lo(64),
                    kHi64 = fold_hi(64), kLo48 = fold_lo(48), kHi48 = fold_hi(48),
                    kLo32 = fold_lo(32), kHi32 = fold_hi(32), kLo16 = fold_lo(16),
                    kHi16 = fold_hi(16);

#define GOSSIP_TARGET_CLMUL \
  __attribute__((target("avx512f,avx512bw,avx512vl,vpclmulqdq,pclmul,sse4.2")))

// x' = clmul(x.lo, k.lo) ^ clmul(x.hi, k.hi) ^ data (0x96: three-way xor).
GOSSIP_TARGET_CLMUL inline __m512i fold(__m512i x, __m512i k, __m512i data) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                   _mm512_clmulepi64_epi128(x, k, 0x11), data, 0x96);
}

GOSSIP_TARGET_CLMUL std::uint32_t crc32c_vpclmul(const unsigned char* p, std::size_t n,
                                                 std::uint32_t crc) {
  std::uint64_t c = ~crc;
  if (n >= 512) {
    const __m512i k256 = _mm512_broadcast_i32x4(_mm_set_epi64x(kHi256, kLo256));
    const __m512i k64 = _mm512_broadcast_i32x4(_mm_set_epi64x(kHi64, kLo64));
    __m512i x0 = _mm512_loadu_si512(p), x1 = _mm512_loadu_si512(p + 64);
    __m512i x2 = _mm512_loadu_si512(p + 128), x3 = _mm512_loadu_si512(p + 192);
    x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(c))));
    p += 256;
    n -= 256;
    while (n >= 256) {
      x0 = fold(x0, k256, _mm512_loadu_si512(p));
      x1 = fold(x1, k256, _mm512_loadu_si512(p + 64));
      x2 = fold(x2, k256, _mm512_loadu_si512(p + 128));
      x3 = fold(x3, k256, _mm512_loadu_si512(p + 192));
      p += 256;
      n -= 256;
    }
    x1 = fold(x0, k64, x1);
    x2 = fold(x1, k64, x2);
    x3 = fold(x2, k64, x3);
    // Lanes 0, 1, 2 move forward by 48, 32, 16 bytes onto lane 3.
    const __m512i kl = _mm512_set_epi64(0, 0, kHi16, kLo16, kHi32, kLo32, kHi48, kLo48);
    const __m512i t = _mm512_xor_si512(_mm512_clmulepi64_epi128(x3, kl, 0x00),
                                       _mm512_clmulepi64_epi128(x3, kl, 0x11));
    __m128i r = _mm_xor_si128(_mm512_extracti32x4_epi32(x3, 3), _mm512_castsi512_si128(t));
    r = _mm_ternarylogic_epi64(r, _mm512_extracti32x4_epi32(t, 1), _mm512_extracti32x4_epi32(t, 2),
                               0x96);
    c = __builtin_ia32_crc32di(0, static_cast<std::uint64_t>(_mm_cvtsi128_si64(r)));
    c = __builtin_ia32_crc32di(c, static_cast<std::uint64_t>(_mm_extract_epi64(r, 1)));
  }
  return crc32c_tail(c, p, n);
}
#endif

}  // namespace

std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t n = data.size();
  std::uint32_t c = ~crc;
  while (n >= 8) {
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^
        kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xffu];
  return ~c;
}

std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc) {
#if defined(__x86_64__)
  static const bool has_sse42 = __builtin_cpu_supports("sse4.2");
  if (data.size() >= 512 && host_has_vpclmul())
    return crc32c_vpclmul(reinterpret_cast<const unsigned char*>(data.data()), data.size(), crc);
  if (has_sse42)
    return crc32c_sse42(reinterpret_cast<const unsigned char*>(data.data()), data.size(), crc);
#endif
  return crc32c_portable(data, crc);
}

}  // namespace gossip::kernels
