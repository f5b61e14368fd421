#pragma once
// CRC32C of one 64 KiB checksum block computed by many threads: each takes a 256-byte piece, and
// the pieces' CRCs merge pairwise in a fixed tree with the GF(2) shift of zlib's crc32_combine
// (crc(A B) = crc(A) * x^(8|B|) mod P  xor  crc(B)). Written once for host and device: the CUDA
// checksum kernel runs one block of kCrcThreads threads per payload block, and
// crc_block_tree_host() is its CPU twin, tested against crc32c()
// (tests/kernels/test_gpu_twins.cpp).

#include <array>
#include <cstddef>
#include <cstdint>

#include "kernels/hd.hpp"

namespace gossip::kernels {

inline constexpr std::uint32_t kCrcPoly = 0x82f63b78u;  // reflected Castagnoli polynomial
inline constexpr std::uint32_t kCrcThreads = 256;       // pieces per 64 KiB block
inline constexpr std::uint32_t kCrcPiece = 256;         // bytes per piece

// a * b mod P, polynomials in reflected bit order (x^0 = bit 31).
GOSSIP_HD constexpr std::uint32_t crc_multmodp(std::uint32_t a, std::uint32_t b) {
  std::uint32_t m = 1u << 31, p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = (b & 1u) ? (b >> 1) ^ kCrcPoly : b >> 1;
  }
  return p;
}

// x^(8 * 2^i) mod P for i = 0..63: appending 2^i zero bytes.
constexpr std::array<std::uint32_t, 64> crc_x8_pow2_table() {
  std::array<std::uint32_t, 64> t{};
  std::uint32_t sq = 1u << 30;                            // x^1
  for (int k = 0; k < 3; ++k) sq = crc_multmodp(sq, sq);  // x^8
  for (int i = 0; i < 64; ++i) {
    t[static_cast<std::size_t>(i)] = sq;
    sq = crc_multmodp(sq, sq);
  }
  return t;
}

// x^(8n) mod P from the table above.
GOSSIP_HD inline std::uint32_t crc_x8n(const std::uint32_t* pow2, std::uint64_t n) {
  std::uint32_t p = 1u << 31;  // x^0
  for (int k = 0; n; ++k, n >>= 1)
    if (n & 1) p = crc_multmodp(pow2[k], p);
  return p;
}

// CRC32C of A followed by B from crc(A), crc(B) and |B| (standard init and final xor).
GOSSIP_HD inline std::uint32_t crc_combine(const std::uint32_t* pow2, std::uint32_t crc_a,
                                           std::uint32_t crc_b, std::uint64_t len_b) {
  return len_b ? crc_multmodp(crc_x8n(pow2, len_b), crc_a) ^ crc_b : crc_a ^ crc_b;
}

// Table-driven CRC32C of n bytes (table[i] = CRC of byte i, reflected). On the device a 16-byte
// aligned run is read 16 bytes per load (bytes in little-endian order: the same sequence).
GOSSIP_HD inline std::uint32_t crc_bytes(const std::uint32_t* table, const std::byte* p,
                                         std::uint64_t n) {
  std::uint32_t c = 0xffffffffu;
#if defined(__CUDA_ARCH__)
  if (reinterpret_cast<std::uintptr_t>(p) % 16 == 0) {
    for (; n >= 16; n -= 16, p += 16) {
      const uint4 v = *reinterpret_cast<const uint4*>(p);
      const std::uint32_t w[4] = {v.x, v.y, v.z, v.w};
      for (int k = 0; k < 4; ++k)
        for (int b = 0; b < 4; ++b) c = (c >> 8) ^ table[(c ^ (w[k] >> (8 * b))) & 0xffu];
    }
  }
#endif
  for (std::uint64_t i = 0; i < n; ++i)
    c = (c >> 8) ^ table[(c ^ static_cast<std::uint32_t>(p[i])) & 0xffu];
  return ~c;
}

// Phase 1 of the block CRC: thread t's piece of a block of `len` bytes (crc and length).
GOSSIP_HD inline void crc_piece(const std::uint32_t* table, const std::byte* block,
                                std::uint64_t len, std::uint32_t t, std::uint32_t* crc,
                                std::uint32_t* plen) {
  const std::uint64_t off = static_cast<std::uint64_t>(t) * kCrcPiece;
  const std::uint64_t n = off < len ? min_u64(kCrcPiece, len - off) : 0;
  crc[t] = crc_bytes(table, block + off, n);
  plen[t] = static_cast<std::uint32_t>(n);
}

// Tree level `stride` (1, 2, 4, .., kCrcThreads / 2): thread t with t % (2 stride) == 0 merges
// its range with the next one. After the last level crc[0] is the block's CRC32C.
GOSSIP_HD inline void crc_merge(const std::uint32_t* pow2, std::uint32_t stride, std::uint32_t t,
                                std::uint32_t* crc, std::uint32_t* plen) {
  if (t % (2 * stride) != 0) return;
  crc[t] = crc_combine(pow2, crc[t], crc[t + stride], plen[t + stride]);
  plen[t] += plen[t + stride];
}

// The host twin: the same phases, threads run one after the other.
inline std::uint32_t crc_block_tree_host(const std::uint32_t* table, const std::uint32_t* pow2,
                                         const std::byte* block, std::uint64_t len) {
  std::uint32_t crc[kCrcThreads], plen[kCrcThreads];
  for (std::uint32_t t = 0; t < kCrcThreads; ++t) crc_piece(table, block, len, t, crc, plen);
  for (std::uint32_t s = 1; s < kCrcThreads; s *= 2)
    for (std::uint32_t t = 0; t < kCrcThreads; ++t) crc_merge(pow2, s, t, crc, plen);
  return crc[0];
}

constexpr std::array<std::uint32_t, 256> crc_byte_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1u) ? kCrcPoly : 0u);
    t[i] = c;
  }
  return t;
}

}  // namespace gossip::kernels
