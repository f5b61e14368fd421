// Philox against Random123's known answers, CRC32C against its check value, and the fp16/bf16
// casts against round-to-nearest-even references written without any bit tricks.

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/crc32c.hpp"
#include "kernels/float16.hpp"
#include "kernels/philox.hpp"

using namespace gossip::kernels;

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors") {
  struct Kat {
    Philox4 ctr;
    std::uint32_t k0, k1;
    Philox4 want;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       0xffffffff,
       0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       0xa4093822,
       0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& k : kats) {
    const Philox4 got = philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) CHECK(got.v[i] == k.want.v[i]);
  }
}

TEST_CASE("uniform01 covers [0, 1) with 24-bit resolution") {
  CHECK(uniform01(0) == 0.0f);
  CHECK(uniform01(0xffffffffu) == 1.0f - std::ldexp(1.0f, -24));
  CHECK(uniform01(0xffffffffu) < 1.0f);
}

TEST_CASE("crc32c: check value and hardware path equals the table path") {
  const char* s = "123456789";
  CHECK(crc32c(std::as_bytes(std::span<const char>(s, 9))) == 0xE3069283u);
  CHECK(crc32c_portable(std::as_bytes(std::span<const char>(s, 9))) == 0xE3069283u);
  std::mt19937 g(7);
  std::vector<unsigned char> buf(100000);
  for (auto& b : buf) b = static_cast<unsigned char>(g());
  // Past 3 * 4096 bytes the hardware path runs three interleaved streams and merges them.
  for (std::size_t n :
       {0u, 1u, 7u, 8u, 9u, 63u, 1000u, 4999u, 12287u, 12288u, 12289u, 24576u, 50001u, 100000u}) {
    auto sp = std::as_bytes(std::span<const unsigned char>(buf.data(), n));
    CHECK(crc32c(sp) == crc32c_portable(sp));
    // Continuing from a partial CRC equals one pass.
    CHECK(crc32c(sp.subspan(n / 2), crc32c(sp.first(n / 2))) == crc32c(sp));
  }
}

namespace {

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Value of a non-negative half pattern; the all-ones exponent stands for 2^16 so that overflow
// falls out of "nearest" (65520 is the tie between 65504 and 2^16, and RNE picks 2^16 = inf).
double half_value(std::uint32_t h) {
  const int e = static_cast<int>(h >> 10), m = static_cast<int>(h & 0x3ff);
  if (e == 31) return 65536.0;
  if (e == 0) return std::ldexp(m, -24);
  return std::ldexp(1024 + m, e - 25);
}

// Nearest-even by search over all non-negative half values: no bit manipulation involved.
std::uint16_t ref_fp16(float x) {
  if (std::isnan(x)) return 0x7e00;  // checked separately: any quiet NaN
  const double a = std::fabs(static_cast<double>(x));
  std::uint32_t lo = 0, hi = 0x7c00;  // half_value(lo) <= a < half_value(hi) unless a >= 2^16
  if (a >= 65536.0)
    lo = 0x7c00;
  else {
    while (hi - lo > 1) {
      const std::uint32_t mid = (lo + hi) / 2;
      (half_value(mid) <= a ? lo : hi) = mid;
    }
    const double dl = a - half_value(lo), dh = half_value(hi) - a;
    if (dh < dl || (dh == dl && (hi & 1) == 0)) lo = hi;
  }
  return static_cast<std::uint16_t>((std::signbit(x) ? 0x8000 : 0) | lo);
}

std::uint16_t ref_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  const std::uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
  if (mag == 0x7f800000u) return static_cast<std::uint16_t>(u >> 16);  // +-inf stays inf
  const std::uint32_t lo = mag & 0xffff0000u, hi = lo + 0x10000u;
  auto val = [](std::uint32_t m) {
    return (m >> 23) == 255 ? std::ldexp(1.0, 128) : static_cast<double>(from_bits(m));
  };
  const double a = static_cast<double>(from_bits(mag));
  const double dl = a - val(lo), dh = val(hi) - a;
  const std::uint32_t pick = (dh < dl || (dh == dl && ((hi >> 16) & 1) == 0)) ? hi : lo;
  return static_cast<std::uint16_t>((sign | pick) >> 16);
}

std::vector<float> probe_floats() {
  std::vector<float> v;
  for (std::uint64_t u = 0; u < (1ull << 32); u += 4099)
    v.push_back(from_bits(static_cast<std::uint32_t>(u)));
  // Exact midpoints between neighbouring halves and bf16s (the tie cases) and their neighbours.
  for (std::uint32_t h = 0; h < 0x7c00; ++h) {
    const float mid = static_cast<float>((half_value(h) + half_value(h + 1)) / 2);
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
      v.push_back(f);
      v.push_back(-f);
    }
  }
  for (std::uint32_t b = 0; b < 0x7f80; b += 3) {
    const std::uint32_t mid = (b << 16) | 0x8000u;
    for (std::uint32_t m : {mid, mid - 1, mid + 1}) {
      v.push_back(from_bits(m));
      v.push_back(from_bits(m | 0x80000000u));
    }
  }
  for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 1e-8f, 3e38f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::denorm_min()})
    v.push_back(f);
  return v;
}

}  // namespace

TEST_CASE("fp16 cast is round-to-nearest-even, and decodes exactly") {
  std::size_t bad = 0;
  for (float f : probe_floats()) {
    if (std::isnan(f)) continue;
    const std::uint16_t got = float_to_fp16_bits(f), want = ref_fp16(f);
    if (got != want && bad++ < 5) FAIL_CHECK("fp16(" << f << ") = " << got << ", want " << want);
  }
  CHECK(bad == 0);
  // Decoding every finite half and re-encoding it is the identity.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN
    const float f = fp16_bits_to_float(static_cast<std::uint16_t>(h));
    REQUIRE(float_to_fp16_bits(f) == h);
    if ((h & 0x7fff) < 0x7c00) CHECK(std::fabs(static_cast<double>(f)) == half_value(h & 0x7fff));
  }
  const std::uint16_t nan = float_to_fp16_bits(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7c00) == 0x7c00);
  CHECK((nan & 0x3ff) != 0);
}

TEST_CASE("bf16 cast is round-to-nearest-even") {
  std::size_t bad = 0;
  for (float f : probe_floats()) {
    if (std::isnan(f)) continue;
    const std::uint16_t got = float_to_bf16_bits(f), want = ref_bf16(f);
    if (got != want && bad++ < 5) FAIL_CHECK("bf16(" << f << ") = " << got << ", want " << want);
  }
  CHECK(bad == 0);
  CHECK(
      std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(
      bf16_bits_to_float(float_to_bf16_bits(from_bits(0x7f800001u)))));  // signalling NaN stays NaN
}
