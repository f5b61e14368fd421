#pragma once
// fp16 and bf16 conversions with round-to-nearest-even, on integer bits so host and device agree
// bit for bit (no dependence on F16C, cuda_fp16.h or the current rounding mode).

#include <cstdint>

#include "kernels/hd.hpp"

namespace gossip::kernels {

// Every case is computed and the right one selected, so the compiler can vectorise the loop
// (after F. Giesen's float_to_half_fast3_rtne; subnormals round in the FPU: adding 0.5f aligns
// the half's subnormal unit with the float's last mantissa bit, an exact IEEE operation).
GOSSIP_HD inline std::uint16_t float_to_fp16_bits(float f) {
  const std::uint32_t x = bits_as<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  // >= 65536 (or inf/NaN): inf, or a quiet NaN.
  const std::uint32_t big = 0x7c00u | (static_cast<std::uint32_t>(ax > 0x7f800000u) << 9);
  // Normal half: rebias the exponent by -112 and round on the 13 dropped bits (ties to even);
  // [65520, 65536) carries into the exponent and becomes inf, as RNE demands.
  const std::uint32_t normal = (ax + 0xc8000fffu + ((ax >> 13) & 1u)) >> 13;
  // Below 2^-14: subnormal half or zero.
  const float magic = bits_as<float>(0x3f000000u);
  const std::uint32_t sub = bits_as<std::uint32_t>(bits_as<float>(ax) + magic) - 0x3f000000u;
  // Masks rather than ?: so g++ turns the selection into vector blends.
  const std::uint32_t is_big = 0u - static_cast<std::uint32_t>(ax >= 0x47800000u);
  const std::uint32_t is_sub = 0u - static_cast<std::uint32_t>(ax < 0x38800000u);
  const std::uint32_t mag = (big & is_big) | (sub & is_sub) | (normal & ~(is_big | is_sub));
  return static_cast<std::uint16_t>(sign | mag);
}

GOSSIP_HD inline float fp16_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t em = static_cast<std::uint32_t>(h & 0x7fffu) << 13;
  const std::uint32_t exp = em & 0x0f800000u;
  const std::uint32_t normal = em + 0x38000000u;   // rebias 15 -> 127
  const std::uint32_t special = em + 0x70000000u;  // inf / NaN: exponent 255
  // Subnormal half (or zero): m * 2^-24, formed exactly as (2^-14 + m * 2^-24) - 2^-14.
  const float sub = bits_as<float>(em + 0x38800000u) - bits_as<float>(0x38800000u);
  const std::uint32_t mag =
      exp == 0x0f800000u ? special : (exp == 0 ? bits_as<std::uint32_t>(sub) : normal);
  return bits_as<float>(sign | mag);
}

GOSSIP_HD inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = bits_as<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

GOSSIP_HD inline float bf16_bits_to_float(std::uint16_t h) {
  return bits_as<float>(static_cast<std::uint32_t>(h) << 16);
}

}  // namespace gossip::kernels
