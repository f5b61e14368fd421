// The host's vector paths (AVX-512 codec kernels, VPCLMULQDQ CRC32C) against its scalar paths,
// byte for byte, in one process (set_host_isa_cap switches them), and no heap allocation in
// steady-state encode / decode. This executable counts every operator new.

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "kernels/codec.hpp"
#include "kernels/cpu.hpp"
#include "kernels/crc32c.hpp"
#include "kernels/float16.hpp"
#include "kernels/wire.hpp"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

using namespace gossip::kernels;

namespace {

// Gaussian values with every kind of special float mixed in: NaN (several payloads), infinities,
// signed zeros, float and fp16 subnormals, fp16 rounding ties and overflow, arbitrary bit patterns.
std::vector<float> nasty(std::size_t d, std::uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(d);
  for (std::size_t i = 0; i < d; ++i) {
    float v = nd(g);
    const std::uint32_t r = g();
    switch (r % 24) {
      case 0:
        v = 0.0f;
        break;
      case 1:
        v = -0.0f;
        break;
      case 2:
        v = std::numeric_limits<float>::infinity();
        break;
      case 3:
        v = -std::numeric_limits<float>::infinity();
        break;
      case 4: {
        const std::uint32_t u = 0x7f800001u | (g() & 0x807fffffu);  // NaN, any payload and sign
        std::memcpy(&v, &u, 4);
        break;
      }
      case 5: {
        const std::uint32_t u = g();
        std::memcpy(&v, &u, 4);
        break;
      }
      case 6:
        v = std::ldexp(static_cast<float>(r >> 8), -40);  // fp16 subnormal range
        break;
      case 7:
        v = std::ldexp(static_cast<float>(r >> 20) + 0.5f, -24);  // fp16 ties
        break;
      case 8:
        v = 65519.0f + static_cast<float>(r >> 28);  // fp16 overflow boundary
        break;
      case 9:
        v = std::ldexp(1.0f, -130);  // float subnormal
        break;
      default:
        break;
    }
    x[i] = v;
  }
  return x;
}

// nasty(d, d + 7), made once per size.
const std::vector<float>& data(std::size_t d) {
  static std::map<std::size_t, std::vector<float>> cache;
  auto it = cache.find(d);
  if (it == cache.end()) it = cache.emplace(d, nasty(d, static_cast<std::uint32_t>(d + 7))).first;
  return it->second;
}

struct Result {
  std::vector<std::byte> wire;
  std::vector<float> y, z;
};

Result run(const Codec& c, const std::vector<float>& x, const RngKey& key) {
  Result r;
  r.wire.resize(c.wire_size(x.size()));
  r.wire.resize(c.encode(x, key, r.wire));
  r.y.assign(x.size(), 0.0f);
  r.z.assign(x.size(), 0.5f);
  c.decode(r.wire, r.y);
  c.decode_accumulate(r.wire, -0.75f, r.z);
  return r;
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
  // Empty vectors: data() may be null, which memcmp must not be given even for 0 bytes.
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 4 * a.size()) == 0);
}

const char* const kSpecs[] = {
    "identity",
    "fp16",
    "bf16",
    "qsgd:s=1,bucket=100",
    "qsgd:s=3,bucket=512",
    "qsgd:s=3,bucket=33,scaled=true",
    "qsgd:s=7",
    "qsgd:s=15,bucket=7",
    "qsgd:s=100,bucket=96",
    "qsgd:s=255,bucket=64",
    "qsgd:s=1000,bucket=1000",
    "qsgd:s=65535,bucket=48",
    "quantize:bits=1,bucket=100",
    "quantize:bits=2,bucket=512",
    "quantize:bits=4,bucket=33",
    "quantize:bits=8",
    "quantize:bits=1,bucket=64,rounding=nearest",
    "quantize:bits=2,rounding=nearest",
    "quantize:bits=4,bucket=100,rounding=nearest",
    "quantize:bits=8,bucket=512,rounding=nearest",
    "terngrad:bucket=512",
    "terngrad:bucket=33",
    "terngrad",
    "sign:bucket=512",
    "sign:bucket=31",
    "sign",
    // Buckets below a group of 32: every group straddles a boundary (per-lane constants).
    "qsgd:s=3,bucket=16,scaled=true",
    "qsgd:s=15,bucket=1",
    "quantize:bits=2,bucket=16",
    "quantize:bits=4,bucket=5,rounding=nearest",
    "terngrad:bucket=16",
    "sign:bucket=1",
    "sign:bucket=16",
    "topk:ratio=0.01",
    "randomk:ratio=0.05",
    "threshold:tau=1.5",
};

}  // namespace

TEST_CASE("vector paths give the scalar paths' bytes and floats") {
  if (host_isa() != HostIsa::kAvx512)
    MESSAGE("this CPU (or GOSSIP_KERNELS_ISA) has no AVX-512 path: comparing narrower levels only");
  const std::vector<std::size_t> layout = {5, 0, 1000, 33, 4096, 1, 9000};
  const HostIsa levels[] = {HostIsa::kAvx2, HostIsa::kScalar};
  for (const char* spec : kSpecs) {
    for (int layered = 0; layered < 2; ++layered) {
      const auto c = layered ? make_codec(spec, layout) : make_codec(spec);
      std::vector<std::size_t> sizes = {0, 1, 31, 33, 1000, 70001};
      if (layered) sizes = {14135};
      for (std::size_t d : sizes) {
        const auto& x = data(d);
        const RngKey key{0x9e3779b97f4a7c15ull, 3, (1ull << 35) + 11};
        set_host_isa_cap(HostIsa::kAvx512);
        const Result want = run(*c, x, key);
        for (HostIsa lv : levels) {
          set_host_isa_cap(lv);
          const Result got = run(*c, x, key);
          CAPTURE(spec);
          CAPTURE(layered);
          CAPTURE(d);
          CAPTURE(static_cast<int>(lv));
          CHECK(got.wire == want.wire);
          CHECK(same(got.y, want.y));
          CHECK(same(got.z, want.z));
        }
      }
    }
  }
  set_host_isa_cap(HostIsa::kAvx512);
}

TEST_CASE(
    "fp16 and bf16: every level rounds as the reference, for every rounding-relevant pattern") {
  // Every sign, exponent and kept mantissa (the high 19 bits for fp16, 16 for bf16) with the
  // dropped bits at 0, just below half, half, just above half and all ones: each rounding case at
  // every representable value, NaN payloads and subnormals included.
  auto patterns = [](int keep, std::initializer_list<std::uint32_t> lows) {
    std::vector<float> x;
    for (std::uint32_t hi = 0; hi < (1u << keep); ++hi)
      for (std::uint32_t lo : lows) {
        const std::uint32_t bits = hi << (32 - keep) | lo;
        float f;
        std::memcpy(&f, &bits, 4);
        x.push_back(f);
      }
    return x;
  };
  const auto x16 = patterns(19, {0u, 0xfffu, 0x1000u, 0x1001u, 0x1fffu});
  const auto xb = patterns(16, {0u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu});
  for (HostIsa lv : {HostIsa::kAvx512, HostIsa::kAvx2, HostIsa::kScalar}) {
    set_host_isa_cap(lv);
    for (const bool bf : {false, true}) {
      const auto& x = bf ? xb : x16;
      const auto codec = make_codec(bf ? "bf16" : "fp16");
      std::vector<std::byte> wire(codec->wire_size(x.size()));
      codec->encode(x, {}, wire);
      std::vector<float> y(x.size());
      codec->decode(wire, y);
      std::size_t bad = 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        std::uint16_t h;
        std::memcpy(&h, wire.data() + kHeaderSize + 2 * i, 2);
        const std::uint16_t want = bf ? float_to_bf16_bits(x[i]) : float_to_fp16_bits(x[i]);
        const float back = bf ? bf16_bits_to_float(want) : fp16_bits_to_float(want);
        if (h != want || std::memcmp(&y[i], &back, 4) != 0) ++bad;
      }
      CAPTURE(static_cast<int>(lv));
      CAPTURE(bf);
      CHECK(bad == 0);
    }
  }
  set_host_isa_cap(HostIsa::kAvx512);
}

TEST_CASE("crc32c: every dispatch level equals the table path") {
  std::mt19937 g(11);
  std::vector<std::byte> buf(300000);
  for (auto& b : buf) b = static_cast<std::byte>(g());
  std::vector<std::size_t> lens;
  for (std::size_t n = 0; n < 1200; ++n) lens.push_back(n);
  for (std::size_t n : {4095u, 4096u, 12288u, 12289u, 65536u, 65537u, 131071u, 299990u})
    lens.push_back(n);
  for (HostIsa lv : {HostIsa::kAvx512, HostIsa::kAvx2, HostIsa::kScalar}) {
    set_host_isa_cap(lv);
    for (std::size_t n : lens)
      for (std::size_t off : {0u, 1u, 5u}) {
        const auto s = std::span<const std::byte>(buf.data() + off, n);
        CAPTURE(n);
        CAPTURE(off);
        REQUIRE(crc32c(s, 0xdeadbeefu) == crc32c_portable(s, 0xdeadbeefu));
      }
  }
  set_host_isa_cap(HostIsa::kAvx512);
}

TEST_CASE("steady-state encode and decode allocate nothing") {
  const std::vector<std::size_t> layout = {5, 0, 1000, 33, 4096, 1, 300000};
  for (const char* spec : kSpecs) {
    for (int layered = 0; layered < 2; ++layered) {
      const auto c = layered ? make_codec(spec, layout) : make_codec(spec);
      const std::size_t d = layered ? 305135 : 300001;  // topk takes its radix path
      const auto& x = data(d);
      std::vector<std::byte> wire(c->wire_size(d));
      std::vector<float> y(d);
      long during = 0;
      for (int rep = 0; rep < 3; ++rep) {  // the first two grow the per-thread scratch
        const long before = g_allocations.load();
        const std::size_t n = c->encode(x, {1, 2, static_cast<std::uint64_t>(rep)}, wire);
        const std::span<const std::byte> msg(wire.data(), n);
        c->decode(msg, y);
        c->decode_accumulate(msg, 0.5f, y);
        (void)c->wire_size(d);
        during = g_allocations.load() - before;
      }
      CAPTURE(spec);
      CAPTURE(layered);
      CHECK(during == 0);
    }
  }
}
