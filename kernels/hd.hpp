#pragma once
// Marks code that must compile for both host and device. Element-wise kernels are written once as
// functors carrying this macro; g++ builds them for Thrust's host backend (OpenMP), nvcc for CUDA.

#if defined(__CUDACC__)
#define GOSSIP_HD __host__ __device__
#else
#define GOSSIP_HD
#endif

// Full unrolling of the fixed 32-element group loops turns bit positions into constants.
#if defined(__CUDA_ARCH__)
#define GOSSIP_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)
#define GOSSIP_UNROLL  // nvcc's host pass: cudafe rejects GCC pragmas, and host speed is g++'s job
#elif defined(__clang__)
#define GOSSIP_UNROLL _Pragma("clang loop unroll(full)")
#else
#define GOSSIP_UNROLL _Pragma("GCC unroll 32")
#endif

#include <cstdint>
#include <cstring>

namespace gossip::kernels {

// std::bit_cast is not usable in device code with every toolkit; memcpy is, and compiles to a move.
template <class To, class From>
GOSSIP_HD inline To bits_as(const From& from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

GOSSIP_HD inline std::uint64_t min_u64(std::uint64_t a, std::uint64_t b) {
  return a < b ? a : b;
}

// High 64 bits of a 64x64 product: maps a uniform 64-bit word onto [0, n) (Lemire, no rejection:
// the bias is below n / 2^64, far under anything a test or a training run can see).
GOSSIP_HD inline std::uint64_t mul_hi64(std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  __extension__ using U128 = unsigned __int128;  // GNU extension; -Wpedantic otherwise warns
  return static_cast<std::uint64_t>((static_cast<U128>(a) * b) >> 64);
#endif
}

}  // namespace gossip::kernels
