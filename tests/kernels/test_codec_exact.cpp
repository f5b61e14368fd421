// decode(encode(x)) against the operator definitions: bit-exact against the scalar references of
// reference.hpp, for whole-vector and per-tensor granularity, plus decode_accumulate's formula
// and independence from the thread count.

#include <doctest/doctest.h>

#include <omp.h>
#include <limits>

#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "kernels/float16.hpp"
#include "kernels/wire.hpp"
#include "tests/kernels/reference.hpp"

using namespace gossip::kernels;
namespace r = gossip::kernels::ref;

namespace {

const std::size_t kSizes[] = {0, 1, 31, 32, 33, 100, 1000, 4097, 70001};
const std::vector<std::size_t> kLayout = {5, 0, 1000, 33, 4096, 1, 9000};  // 14135 elements

std::size_t total(const std::vector<std::size_t>& s) {
  std::size_t n = 0;
  for (auto v : s) n += v;
  return n;
}

// Checks every element's bits and reports the first mismatch.
void check_equal(std::span<const float> got, std::span<const float> want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (r::fbits(got[i]) != r::fbits(want[i])) {
      FAIL_CHECK(what << ": element " << i << " = " << got[i] << ", reference " << want[i]);
      return;
    }
  }
}

}  // namespace

TEST_CASE("identity, fp16, bf16 decode to the element-wise cast") {
  for (std::size_t d : kSizes) {
    const auto x = r::gaussian(d, 1, 300.0f);
    const RngKey key{1, 2, 3};
    check_equal(r::roundtrip(*make_codec("identity"), x, key), x, "identity");
    std::vector<float> h(d), b(d);
    for (std::size_t i = 0; i < d; ++i) {
      h[i] = fp16_bits_to_float(float_to_fp16_bits(x[i]));
      b[i] = bf16_bits_to_float(float_to_bf16_bits(x[i]));
    }
    check_equal(r::roundtrip(*make_codec("fp16"), x, key), h, "fp16");
    check_equal(r::roundtrip(*make_codec("bf16"), x, key), b, "bf16");
  }
}

TEST_CASE("qsgd (plain and scaled) equals the scalar reference for the same Philox stream") {
  for (std::uint32_t s : {1u, 3u, 7u, 15u, 255u, 1000u}) {
    for (std::size_t bucket : {0u, 1u, 100u, 512u}) {
      for (bool scaled : {false, true}) {
        const std::string spec = "qsgd:s=" + std::to_string(s) +
                                 ",bucket=" + std::to_string(bucket) +
                                 ",scaled=" + (scaled ? "true" : "false");
        const auto c = make_codec(spec);
        for (std::size_t d : kSizes) {
          const auto x = r::gaussian(d, static_cast<std::uint32_t>(d + s));
          const RngKey key{0x1234567890abcdefull + s, 7, (1ull << 33) + bucket};
          check_equal(r::roundtrip(*c, x, key), r::qsgd(x, {}, s, bucket, scaled, key),
                      spec + " d=" + std::to_string(d));
        }
      }
    }
  }
}

TEST_CASE("quantize (stochastic and nearest) equals the scalar reference") {
  for (std::uint32_t bits : {1u, 2u, 4u, 8u}) {
    for (std::size_t bucket : {0u, 7u, 512u}) {
      for (bool nearest : {false, true}) {
        const std::string spec = "quantize:bits=" + std::to_string(bits) +
                                 ",bucket=" + std::to_string(bucket) +
                                 ",rounding=" + (nearest ? "nearest" : "stochastic");
        const auto c = make_codec(spec);
        for (std::size_t d : kSizes) {
          auto x = r::gaussian(d, static_cast<std::uint32_t>(d * 3 + bits));
          if (d > 40) std::fill(x.begin() + 10, x.begin() + 30, 0.5f);  // a constant bucket
          const RngKey key{99, 1, 5};
          check_equal(r::roundtrip(*c, x, key), r::quantize(x, {}, bits, bucket, nearest, key),
                      spec + " d=" + std::to_string(d));
        }
      }
    }
  }
}

TEST_CASE("quantize: a NaN at the start of a later segment does not hide that segment's extremes") {
  // Whole-vector buckets take the long-bucket statistics path (segments of 4096 elements). The
  // definition scans left to right: a NaN after the first element is skipped, nothing else is.
  for (const char* spec :
       {"quantize:bits=8,bucket=0,rounding=nearest", "quantize:bits=2,bucket=0"}) {
    auto x = r::gaussian(70001, 5);
    x[4096] = std::numeric_limits<float>::quiet_NaN();
    x[5000] = -30.0f;
    x[8192] = std::numeric_limits<float>::quiet_NaN();
    x[9000] = 30.0f;
    const RngKey key{3, 1, 4};
    const bool nearest = std::string(spec).find("nearest") != std::string::npos;
    const std::uint32_t bits = std::string(spec).find("bits=8") != std::string::npos ? 8 : 2;
    auto got = r::roundtrip(*make_codec(spec), x, key);
    auto want = r::quantize(x, {}, bits, 0, nearest, key);
    for (std::size_t i : {4096u, 8192u}) got[i] = want[i] = 0.0f;  // a code cannot carry NaN
    check_equal(got, want, spec);
  }
}

TEST_CASE("terngrad and sign equal their scalar references") {
  for (std::size_t bucket : {0u, 3u, 512u}) {
    const auto t = make_codec("terngrad:bucket=" + std::to_string(bucket));
    const auto sg = make_codec("sign:bucket=" + std::to_string(bucket));
    for (std::size_t d : kSizes) {
      auto x = r::gaussian(d, static_cast<std::uint32_t>(d + 11));
      if (d > 3) x[2] = 0.0f;  // sign(0) = +1 by the tie rule
      const RngKey key{5, 6, 7};
      check_equal(r::roundtrip(*t, x, key), r::terngrad(x, {}, bucket, key), t->spec());
      check_equal(r::roundtrip(*sg, x, key), r::sign(x, {}, bucket), sg->spec());
    }
  }
}

TEST_CASE("topk equals std::nth_element with the lower-index tie rule") {
  for (std::size_t d : {0u, 1u, 31u, 1000u, 70001u, 300000u}) {
    auto x = r::gaussian(d, static_cast<std::uint32_t>(d));
    // Heavy ties: many equal magnitudes with both signs, straddling the k-th place.
    for (std::size_t i = 0; i < d; i += 3) x[i] = (i % 2 ? -1.0f : 1.0f) * 1.5f;
    for (std::size_t k : {1u, 7u, 100u, 5000u}) {
      const auto c = make_codec("topk:k=" + std::to_string(k));
      check_equal(r::roundtrip(*c, x, {}), r::topk(x, k), c->spec() + " d=" + std::to_string(d));
    }
    const auto c = make_codec("topk:ratio=0.01");
    check_equal(r::roundtrip(*c, x, {}), r::topk(x, (d + 99) / 100),
                "topk ratio d=" + std::to_string(d));
  }
}

TEST_CASE("threshold keeps exactly |x| >= tau") {
  for (std::size_t d : kSizes) {
    auto x = r::gaussian(d, static_cast<std::uint32_t>(d + 5));
    if (d > 2) x[1] = -1.0f;  // exactly tau: kept
    const auto c = make_codec("threshold:tau=1");
    std::vector<std::byte> wire(c->wire_size(d));
    const std::size_t n = c->encode(x, {}, wire);
    const auto want = r::threshold(x, 1.0f);
    std::size_t kept = 0;
    for (float v : want) kept += v != 0.0f;
    CHECK(n == kHeaderSize + 8 * kept);
    std::vector<float> y(d, 9.0f);
    c->decode(std::span<const std::byte>(wire.data(), n), y);
    check_equal(y, want, "threshold d=" + std::to_string(d));
  }
}

TEST_CASE("randomk keeps k distinct coordinates scaled by d/k, reproducible from the seed") {
  for (std::size_t d : {1u, 33u, 1000u, 70001u}) {
    const auto x = r::gaussian(d, 3);
    for (bool unbiased : {true, false}) {
      const auto c =
          make_codec(std::string("randomk:ratio=0.1,unbiased=") + (unbiased ? "true" : "false"));
      const std::size_t k = (d + 9) / 10;
      const auto y = r::roundtrip(*c, x, {42, 1, 2});
      const auto y2 = r::roundtrip(*c, x, {42, 1, 2});
      check_equal(y, y2, "same key, same result");
      const float scale = unbiased ? static_cast<float>(double(d) / double(k)) : 1.0f;
      std::size_t nonzero = 0;
      for (std::size_t i = 0; i < d; ++i) {
        if (y[i] != 0.0f) {
          ++nonzero;
          CHECK(r::fbits(y[i]) == r::fbits(x[i] * scale));
        }
      }
      CHECK(nonzero == k);  // x has no zeros, so k kept entries show as k nonzeros
      if (d >= 1000) {
        const auto other = r::roundtrip(*c, x, {43, 1, 2});
        CHECK_FALSE(r::same_bits(y, other));
      }
    }
  }
}

// Floyd's algorithm written out with std::set and the Philox stream of docs/kernels.md.
std::vector<float> randomk_reference(std::span<const float> x, std::uint64_t seed, std::size_t k,
                                     bool unbiased) {
  const std::size_t n = x.size();
  std::vector<float> c(n, 0.0f);
  std::set<std::size_t> taken;
  for (std::size_t j = n - k; j < n; ++j) {
    const Philox4 r =
        philox4x32_10(Philox4{{static_cast<std::uint32_t>(j), 0u, 0u, 3u << 24}},
                      static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
    const std::uint64_t word = (std::uint64_t{r.v[1]} << 32) | r.v[0];
    __extension__ using U128 = unsigned __int128;
    std::size_t t = static_cast<std::size_t>((static_cast<U128>(word) * (j + 1)) >> 64);  // [0, j]
    if (taken.count(t)) t = j;
    taken.insert(t);
  }
  const float scale = unbiased ? static_cast<float>(double(n) / double(k)) : 1.0f;
  for (std::size_t i : taken) c[i] = x[i] * scale;
  return c;
}

TEST_CASE("randomk equals Floyd's algorithm on the seeded Philox stream") {
  for (std::size_t d : {1u, 10u, 1000u, 70001u}) {
    const auto x = r::gaussian(d, 21);
    for (std::size_t k : {1u, 5u, 300u}) {
      const std::size_t kk = std::min(k, d);
      const auto c = make_codec("randomk:k=" + std::to_string(k));
      std::vector<std::byte> wire(c->wire_size(d));
      c->encode(x, {9, 8, 7}, wire);
      std::uint64_t seed;
      std::memcpy(&seed, wire.data() + kHeaderSize, 8);
      // The sent seed is Philox stream 2, block 0, of the (seed, peer, round) key.
      const Philox4 sk = philox4x32_10(Philox4{{0u, 8u, 7u, 2u << 24}}, 9u, 0u);
      CHECK(seed == ((std::uint64_t{sk.v[1]} << 32) | sk.v[0]));
      std::vector<float> y(d, 1.0f);
      c->decode(wire, y);
      check_equal(y, randomk_reference(x, seed, kk, true), c->spec() + " d=" + std::to_string(d));
    }
  }
}

TEST_CASE("per-tensor granularity: each tensor compressed on its own") {
  const std::size_t d = total(kLayout);
  const auto x = r::gaussian(d, 77);
  const RngKey key{1, 0, 9};
  {
    const auto c = make_codec("qsgd:s=3,scaled=true", kLayout);
    check_equal(r::roundtrip(*c, x, key), r::qsgd(x, kLayout, 3, 0, true, key), "qsgd layered");
    const auto c2 = make_codec("qsgd:s=7,bucket=100", kLayout);
    check_equal(r::roundtrip(*c2, x, key), r::qsgd(x, kLayout, 7, 100, false, key),
                "qsgd layered bucket");
  }
  {
    const auto c = make_codec("quantize:bits=2,bucket=64", kLayout);
    check_equal(r::roundtrip(*c, x, key), r::quantize(x, kLayout, 2, 64, false, key),
                "quantize layered");
    const auto s = make_codec("sign", kLayout);
    check_equal(r::roundtrip(*s, x, key), r::sign(x, kLayout, 0), "sign layered");
    const auto t = make_codec("terngrad:bucket=10", kLayout);
    check_equal(r::roundtrip(*t, x, key), r::terngrad(x, kLayout, 10, key), "terngrad layered");
  }
  {
    const auto c = make_codec("topk:ratio=0.05", kLayout);
    std::vector<float> want(d, 0.0f);
    std::size_t off = 0;
    for (std::size_t n : kLayout) {
      const std::span<const float> part(x.data() + off, n);
      const auto tk = r::topk(part, static_cast<std::size_t>(std::ceil(0.05 * double(n) - 1e-9)));
      std::copy(tk.begin(), tk.end(), want.begin() + static_cast<std::ptrdiff_t>(off));
      off += n;
    }
    check_equal(r::roundtrip(*c, x, key), want, "topk layered");
  }
  // A codec made for a layout refuses another total length.
  CHECK_THROWS_AS((void)make_codec("identity", kLayout)->wire_size(d + 1), std::invalid_argument);
}

TEST_CASE("decode_accumulate computes y + w * C(x), bit for bit") {
  const char* specs[] = {"identity",
                         "fp16",
                         "bf16",
                         "qsgd:s=3,bucket=512",
                         "qsgd:s=3,scaled=true",
                         "quantize:bits=4,bucket=100",
                         "terngrad:bucket=64",
                         "sign:bucket=128",
                         "topk:k=50",
                         "randomk:k=50",
                         "threshold:tau=1.5"};
  for (const char* spec : specs) {
    const auto c = make_codec(spec);
    for (std::size_t d : {0u, 33u, 5000u}) {
      const auto x = r::gaussian(d, 8);
      const auto y0 = r::gaussian(d, 9);
      const RngKey key{3, 4, 5};
      std::vector<std::byte> wire(c->wire_size(d));
      const std::size_t n = c->encode(x, key, wire);
      const std::span<const std::byte> msg(wire.data(), n);
      std::vector<float> cx(d);
      c->decode(msg, cx);
      auto y = y0;
      c->decode_accumulate(msg, -0.375f, y);
      std::vector<float> want(d);
      for (std::size_t i = 0; i < d; ++i) want[i] = y0[i] + -0.375f * cx[i];
      check_equal(y, want, std::string(spec) + " d=" + std::to_string(d));
    }
  }
}

TEST_CASE("encodings are the same bytes with 1 and 2 OpenMP threads") {
  const char* specs[] = {"identity",
                         "fp16",
                         "bf16",
                         "qsgd:s=3,bucket=512",
                         "qsgd:s=15",
                         "quantize:bits=2",
                         "quantize:bits=8,rounding=nearest,bucket=4096",
                         "terngrad",
                         "sign:bucket=512",
                         "sign",
                         "topk:ratio=0.01",
                         "randomk:ratio=0.01",
                         "threshold:tau=2"};
  const std::size_t d = 300001;  // several 64 KiB checksum blocks, many groups, ragged tail
  const auto x = r::gaussian(d, 10);
  const int saved = omp_get_max_threads();
  for (const char* spec : specs) {
    const auto c = make_codec(spec);
    std::vector<std::vector<std::byte>> out;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      std::vector<std::byte> wire(c->wire_size(d));
      wire.resize(c->encode(x, {11, 12, 13}, wire));
      out.push_back(wire);
    }
    CHECK_MESSAGE(out[0] == out[1], spec);
    CHECK_MESSAGE(out[0] == out[2], spec);
  }
  omp_set_num_threads(saved);
}
