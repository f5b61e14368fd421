// The CPU twins of the CUDA kernels (kernels/pack.hpp, radix_select.hpp, randomk_parallel.hpp,
// crc_combine.hpp) against the host codec: the same phase functions the GPU runs, called here
// thread by thread, must give the host's bytes. Runs everywhere; the GPU itself is checked by
// test_cuda_identity.cpp where there is one.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/crc32c.hpp"
#include "kernels/crc_combine.hpp"
#include "kernels/pack.hpp"
#include "kernels/plan.hpp"
#include "kernels/radix_select.hpp"
#include "kernels/randomk_parallel.hpp"
#include "kernels/sparse.hpp"
#include "tests/kernels/reference.hpp"

using namespace gossip::kernels;
namespace r = gossip::kernels::ref;

namespace {

const std::size_t kSizes[] = {0, 1, 31, 33, 1000, 4097, 70001};
const std::vector<std::size_t> kLayout = {5, 0, 1000, 33, 4096, 1, 9000, 70001};

std::size_t total(const std::vector<std::size_t>& s) {
  std::size_t n = 0;
  for (auto v : s) n += v;
  return n;
}

// Gaussian data with a few special values (signed zeros, a NaN, infinities) where d allows.
std::vector<float> data(std::size_t d, std::uint32_t seed, bool specials) {
  auto x = r::gaussian(d, seed);
  if (specials && d > 40) {
    x[3] = -0.0f;
    x[4] = 0.0f;
    x[d / 2] = std::numeric_limits<float>::infinity();
    x[d / 3] = -std::numeric_limits<float>::infinity();
    x[d - 7] = x[d - 9];
  }
  return x;
}

// Payload of the packed codec made by the twins (stats + tiles), to compare with the host's.
std::vector<std::byte> twin_payload(const CodecPlan& plan, const std::vector<float>& x,
                                    const RngKey& key) {
  const CodecParams& p = plan.params();
  const std::uint64_t d = x.size();
  std::optional<LayoutData> flat;
  const LayoutData& lay = plan.layout_for(d, flat);
  std::vector<std::byte> out(plan.payload_size(lay, d));
  tiles::with_stat(p, [&](auto st) {
    tiles::bucket_stats_host<decltype(st)::value>(x.data(), lay, out.data());
  });
  const std::uint64_t nb = lay.bucket_base.back();
  const BucketedArgs a =
      tiles::packed_args(p, lay.view(), d, out.data(),
                         make_stream(key.seed, key.peer, key.round, RngStream::kElementNoise));
  bool ran = false;
  tiles::with_codes(p, a, [&](auto f, const auto& codes) {
    tiles::encode_stream_host<decltype(f)::value>(codes, x.data(), d,
                                                  out.data() + nb * tiles::table_entry_bytes(p));
    ran = true;
  });
  REQUIRE(ran);
  return out;
}

template <DecodeMode kMode>
std::vector<float> twin_decode(const CodecPlan& plan, const std::byte* payload, std::uint64_t d,
                               float w, std::vector<float> y) {
  const CodecParams& p = plan.params();
  std::optional<LayoutData> flat;
  const LayoutData& lay = plan.layout_for(d, flat);
  const std::uint64_t nb = lay.bucket_base.back();
  const BucketedArgs a = tiles::packed_args(p, lay.view(), d, payload, {});
  tiles::with_values(p, a, [&](auto f, const auto& values) {
    tiles::decode_stream_host<decltype(f)::value, kMode>(
        values, payload + nb * tiles::table_entry_bytes(p), d, w, y.data());
  });
  return y;
}

void check_packed(const char* spec, const std::vector<std::size_t>& layout, std::size_t d) {
  CAPTURE(spec);
  CAPTURE(d);
  CAPTURE(layout.size());
  const auto x = data(d, static_cast<std::uint32_t>(d + 11), true);
  const RngKey key{99, 4, (1ull << 33) + 5};
  const auto host = make_codec(spec, layout);
  const CodecPlan plan(parse_spec(spec), layout);
  std::vector<std::byte> wire(host->wire_size(d));
  wire.resize(host->encode(x, key, wire));
  const auto twin = twin_payload(plan, x, key);
  REQUIRE(twin.size() + kHeaderSize == wire.size());
  CHECK(std::equal(twin.begin(), twin.end(), wire.begin() + kHeaderSize));

  const auto y0 = r::gaussian(d, 5);
  auto hy = y0;
  host->decode_accumulate(wire, 0.25f, hy);
  CHECK(r::same_bits(
      twin_decode<DecodeMode::kAccumulate>(plan, wire.data() + kHeaderSize, d, 0.25f, y0), hy));
  host->decode(wire, hy);
  CHECK(r::same_bits(twin_decode<DecodeMode::kAssign>(plan, wire.data() + kHeaderSize, d, 1.0f, y0),
                     hy));
}

}  // namespace

TEST_CASE("tile kernels' twin: packed payloads and decodes equal the host codec's") {
  for (const char* spec : r::kPackedSpecs) {
    for (std::size_t d : kSizes) check_packed(spec, {}, d);
    check_packed(spec, kLayout, total(kLayout));
  }
}

TEST_CASE("tile twin: a NaN at a bucket's start or inside it gives minmax_range's table") {
  // quantize's min/max: a NaN first element makes the bucket's (min, max) that NaN; a NaN
  // elsewhere is skipped. Checked against the definition (the host codec's single-segment path).
  for (std::size_t d : {100u, 5000u, 70001u}) {
    auto x = data(d, 3, false);
    x[0] = std::numeric_limits<float>::quiet_NaN();
    x[d / 2] = std::numeric_limits<float>::quiet_NaN();
    const CodecPlan plan(parse_spec("quantize:bits=4,bucket=50"), {});
    std::optional<LayoutData> flat;
    const LayoutData& lay = plan.layout_for(d, flat);
    std::vector<std::byte> twin(8 * lay.bucket_base.back()), def(twin.size());
    tiles::bucket_stats_host<BucketStat::kMinMax>(x.data(), lay, twin.data());
    const LayoutView v = lay.view();
    for (std::uint64_t j = 0; j < v.buckets(); ++j)
      BucketStatFn<BucketStat::kMinMax>{x.data(), v, def.data()}(j);
    CHECK(twin == def);
  }
}

TEST_CASE("radix select twin equals select_topk, ties and specials included") {
  std::mt19937 gen(7);
  for (std::size_t n : {1u, 2u, 31u, 1000u, 4097u, 70001u, 300000u}) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> x(n);
      std::uniform_int_distribution<int> small(-6, 6);
      for (std::size_t i = 0; i < n; ++i) {
        switch (kind) {
          case 0:  // few distinct values: heavy ties
            x[i] = static_cast<float>(small(gen)) * 0.5f;
            break;
          case 1:
            x[i] = std::normal_distribution<float>(0.0f, 1.0f)(gen);
            break;
          case 2:  // ties in the low digits only
            x[i] = 1.0f + static_cast<float>(small(gen)) * 1e-7f;
            break;
          default:
            x[i] = 0.0f;
        }
      }
      if (n > 10) {
        x[1] = std::numeric_limits<float>::quiet_NaN();
        x[2] = -std::numeric_limits<float>::infinity();
        x[5] = -0.0f;
      }
      for (std::uint64_t k :
           {std::uint64_t{1}, std::uint64_t{7}, std::uint64_t{n / 100 + 1}, std::uint64_t{n / 2},
            std::uint64_t{n > 1 ? n - 1 : 1}, std::uint64_t{n}, std::uint64_t{n + 3}}) {
        CAPTURE(n);
        CAPTURE(kind);
        CAPTURE(k);
        std::vector<std::uint32_t> want{9}, got{9};  // both append after existing entries
        select_topk(x, k, 100, want);
        select_topk_radix(x, k, 100, got);
        CHECK(got == want);
      }
    }
  }
}

TEST_CASE("parallel randomk resolution twin equals Floyd's sequential algorithm") {
  for (std::uint64_t seed : {1ull, 0x123456789abcdefull, 42ull}) {
    for (std::uint64_t n : {1u, 2u, 3u, 5u, 10u, 100u, 1000u, 70001u}) {
      for (std::uint64_t k : {std::uint64_t{1}, std::uint64_t{2}, n / 100 + 1, n / 2, n - 1, n}) {
        if (k == 0) continue;
        CAPTURE(seed);
        CAPTURE(n);
        CAPTURE(k);
        std::vector<std::uint32_t> want, got;
        randomk_indices(seed, 3, n, k, 17, want);
        randomk_indices_parallel(seed, 3, n, k, 17, got);
        CHECK(got == want);
      }
    }
  }
}

TEST_CASE("block CRC tree twin equals crc32c") {
  constexpr auto table = crc_byte_table();
  constexpr auto pow2 = crc_x8_pow2_table();
  std::vector<std::byte> buf(kChecksumBlock);
  std::mt19937 gen(3);
  for (auto& b : buf) b = static_cast<std::byte>(gen() & 0xffu);
  for (std::uint64_t len :
       {0ull, 1ull, 255ull, 256ull, 257ull, 1000ull, 4099ull, 65535ull, 65536ull}) {
    CAPTURE(len);
    const std::span<const std::byte> s(buf.data(), len);
    CHECK(crc_block_tree_host(table.data(), pow2.data(), buf.data(), len) == crc32c(s));
    CHECK(crc_bytes(table.data(), buf.data(), len) == crc32c(s));
  }
}

TEST_CASE("the devices' layer-wise pipelines (chunks, scans, global sort) equal the host codec") {
  // Tensors around the 16384-element chunk size, an empty one, ties across chunk boundaries.
  const std::vector<std::size_t> sizes = {5, 0, 1000, 33, 40000, 1, 70001, 16384, 16385};
  std::vector<std::uint64_t> offsets(1, 0);
  for (std::size_t n : sizes) offsets.push_back(offsets.back() + n);
  const std::size_t d = offsets.back();
  std::mt19937 gen(11);
  std::uniform_int_distribution<int> small(-20, 20);
  std::vector<float> x(d);
  for (auto& v : x) v = static_cast<float>(small(gen)) * 0.25f;  // heavy ties
  for (const char* spec : {"topk:ratio=0.01", "topk:k=7", "topk:ratio=0.5", "topk:ratio=1"}) {
    CAPTURE(spec);
    const CodecParams p = parse_spec(spec);
    std::vector<std::uint64_t> k;
    for (std::size_t n : sizes) k.push_back(p.k_for(n));
    std::vector<std::uint32_t> want;
    for (std::size_t t = 0; t < sizes.size(); ++t)
      select_topk(std::span<const float>(x).subspan(offsets[t], sizes[t]), k[t], offsets[t], want);
    CHECK(topk_chunked_host(x, offsets, k) == want);
  }
  for (const char* spec : {"randomk:ratio=0.01", "randomk:k=7", "randomk:ratio=1"}) {
    CAPTURE(spec);
    const CodecParams p = parse_spec(spec);
    std::vector<std::uint64_t> kbase(1, 0);
    for (std::size_t n : sizes) kbase.push_back(kbase.back() + p.k_for(n));
    for (std::uint64_t seed : {5ull, 0xfeedfacecafebeefull}) {
      std::vector<std::uint32_t> want;
      for (std::size_t t = 0; t < sizes.size(); ++t)
        randomk_indices(seed, static_cast<std::uint32_t>(t), sizes[t], p.k_for(sizes[t]),
                        offsets[t], want);
      CHECK(randomk_layout_host(seed, offsets, kbase) == want);
    }
  }
}
