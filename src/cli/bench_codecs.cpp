// `gossip bench codecs`: encode and decode_accumulate throughput of every codec beside the memcpy
// bandwidth of the same machine, measured in the same run on the same buffers. `--device cuda`
// runs the CUDA codecs (kernels/cuda/) on device buffers beside cudaMemcpy device-to-device on the
// same buffers (needs a build with the CUDA kernels and a GPU; otherwise an error, exit 1).

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kernels/codec.hpp"
#include "kernels/wire.hpp"
#include "src/cli/cli.hpp"

#if defined(GOSSIP_HAVE_CUDA_KERNELS)
#include "kernels/cuda/device_codec.hpp"
#endif

namespace gossip::cli {
namespace {

struct Row {
  std::string codec, params;
  std::size_t elements = 0, wire_bytes = 0;
  double encode_gbps = 0, decode_gbps = 0, memcpy_gbps = 0;
  double encode_vs_memcpy = 0, decode_vs_memcpy = 0;  // median of back-to-back time ratios
};

// Approximately N(0, 1) data (Irwin-Hall of 4 hashed uniforms), filled in parallel: realistic
// magnitudes for top-k / threshold without spending seconds in std::normal_distribution.
void fill_data(std::vector<float>& x) {
  const auto n = static_cast<std::int64_t>(x.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    std::uint64_t z = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    float s = 0;
    for (int k = 0; k < 4; ++k) {
      z ^= z >> 31;
      z *= 0xBF58476D1CE4E5B9ull;
      z ^= z >> 29;
      s += static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
    }
    x[static_cast<std::size_t>(i)] = (s - 2.0f) * 1.7320508f;
  }
}

int reps_for(std::size_t elements) {
  return elements <= (1u << 20) ? 30 : (elements <= (1u << 24) ? 10 : 5);
}

template <class F>
double seconds(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// memcpy on all threads (each copies its contiguous share): the bandwidth the codecs compete with.
void parallel_memcpy(float* dst, const float* src, std::size_t n) {
  const int threads = omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
    const auto t = static_cast<std::size_t>(omp_get_thread_num());
    const std::size_t per =
        (n + static_cast<std::size_t>(threads) - 1) / static_cast<std::size_t>(threads);
    const std::size_t b = std::min(n, t * per), e = std::min(n, b + per);
    std::memcpy(dst + b, src + b, (e - b) * sizeof(float));
  }
}

// Every repetition times a copy right before the encode and another right before the decode, on
// the same buffers: on a shared machine the load changes from one second to the next, so a
// back-to-back pair is what compares. Reported: the best time of each, and the median of the
// paired ratios. `encode(r)` returns the bytes written; `decode(n)` decodes those n bytes.
template <class Copy, class Encode, class Decode>
Row measure(const std::string& canon, std::size_t d, const Copy& copy, const Encode& encode,
            const Decode& decode) {
  std::vector<double> tm, te, td, re, rd;
  std::size_t n = 0;
  for (int r = 0; r < reps_for(d); ++r) {
    const double m1 = seconds(copy);
    const double e = seconds([&] { n = encode(static_cast<std::uint64_t>(r)); });
    const double m2 = seconds(copy);
    const double dd = seconds([&] { decode(n); });
    tm.push_back(std::min(m1, m2));
    te.push_back(e);
    td.push_back(dd);
    re.push_back(m1 / e);
    rd.push_back(m2 / dd);
  }
  const double bytes = 4.0 * static_cast<double>(d);
  Row row;
  const auto colon = canon.find(':');
  row.codec = canon.substr(0, colon);
  row.params = colon == std::string::npos ? "" : canon.substr(colon + 1);
  row.elements = d;
  row.wire_bytes = n;
  row.encode_gbps = bytes / *std::min_element(te.begin(), te.end()) / 1e9;
  row.decode_gbps = bytes / *std::min_element(td.begin(), td.end()) / 1e9;
  row.memcpy_gbps = bytes / *std::min_element(tm.begin(), tm.end()) / 1e9;
  row.encode_vs_memcpy = median(re);
  row.decode_vs_memcpy = median(rd);
  return row;
}

std::vector<Row> run(const std::vector<std::string>& specs, const std::vector<std::size_t>& sizes) {
  std::vector<Row> rows;
  for (std::size_t d : sizes) {
    std::vector<float> x(d), y(d), scratch(d);
    fill_data(x);
    std::fill(y.begin(), y.end(), 0.0f);
    std::fill(scratch.begin(), scratch.end(), 0.0f);
    for (const std::string& spec : specs) {
      fmt::print(stderr, "bench codecs: {} elements, {} ...\n", d, spec);
      const auto codec = kernels::make_codec(spec);
      std::vector<std::byte> wire(codec->wire_size(d));
      codec->encode(x, {7, 1, 0}, wire);  // warm-up: pages, code, caches
      rows.push_back(measure(
          codec->spec(), d, [&] { parallel_memcpy(scratch.data(), x.data(), d); },
          [&](std::uint64_t r) {
            return codec->encode(x, {7, 1, r}, wire);
          },
          [&](std::size_t n) {
            codec->decode_accumulate(std::span<const std::byte>(wire.data(), n), 0.5f, y);
          }));
    }
  }
  return rows;
}

// The same measurement on the GPU: x, y, a scratch copy and the wire live in device memory; the
// reference is cudaMemcpy device to device of x (4d bytes) into the scratch buffer, timed like
// the codec calls (host wall clock around a call that returns when the device is done). GB/s
// count the 4d bytes of x, as on the host.
std::vector<Row> run_cuda(const std::vector<std::string>& specs,
                          const std::vector<std::size_t>& sizes) {
#if !defined(GOSSIP_HAVE_CUDA_KERNELS)
  (void)specs;
  (void)sizes;
  throw std::runtime_error(
      "bench codecs --device cuda: this gossip was built without the CUDA kernels (configure "
      "with nvcc on the PATH and -Dcuda=enabled)");
#else
  namespace kc = kernels::cuda;
  if (kc::device_count() == 0)
    throw std::runtime_error(
        "bench codecs --device cuda: no CUDA device (no GPU or no driver on this machine)");
  fmt::print(stderr, "bench codecs (cuda): device {}\n", kc::device_name());
  std::vector<Row> rows;
  for (std::size_t d : sizes) {
    std::vector<float> hx(d), hy(d, 0.0f);
    fill_data(hx);
    std::size_t cap = 0;
    for (const std::string& spec : specs) cap = std::max(cap, kc::DeviceCodec(spec).wire_size(d));
    const auto x = kc::device_alloc(4 * d), y = kc::device_alloc(4 * d),
               scratch = kc::device_alloc(4 * d), wire = kc::device_alloc(cap);
    kc::copy_to_device(x.get(), hx.data(), 4 * d);
    kc::copy_to_device(y.get(), hy.data(), 4 * d);
    kc::copy_to_device(scratch.get(), hy.data(), 4 * d);
    const auto* dx = static_cast<const float*>(x.get());
    auto* dy = static_cast<float*>(y.get());
    auto* dw = static_cast<std::byte*>(wire.get());
    for (const std::string& spec : specs) {
      fmt::print(stderr, "bench codecs (cuda): {} elements, {} ...\n", d, spec);
      const kc::DeviceCodec codec(spec);
      const std::size_t n = codec.encode(dx, d, {7, 1, 0}, dw, cap);  // warm-up: pools, modules
      codec.decode_accumulate(dw, n, 0.5f, dy, d);
      rows.push_back(measure(
          codec.spec(), d, [&] { kc::copy_device_to_device(scratch.get(), dx, 4 * d); },
          [&](std::uint64_t r) {
            return codec.encode(dx, d, {7, 1, r}, dw, cap);
          },
          [&](std::size_t bytes) { codec.decode_accumulate(dw, bytes, 0.5f, dy, d); }));
    }
  }
  return rows;
#endif
}

}  // namespace

void add_bench_codecs(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "codecs", "Encode / decode_accumulate throughput of every codec beside memcpy bandwidth");
  struct Opts {
    std::vector<std::size_t> sizes;
    std::vector<std::string> codecs;
    bool json = false;
    std::string device = "cpu";
  };
  auto opts = std::make_shared<Opts>();
  // At least one element (0 gives no time to divide by); at most 2^30 (4 GiB of floats per buffer).
  cmd->add_option("--size", opts->sizes, "Element counts (default: 1M 16M 64M)")
      ->expected(1, 8)
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  cmd->add_option("--codec", opts->codecs, "Codec specs to run (default: the standard set)");
  cmd->add_flag("--json", opts->json, "One JSON object per row on stdout");
  cmd->add_option("--device", opts->device,
                  "cpu (host codecs beside memcpy) or cuda (CUDA codecs on device buffers beside "
                  "cudaMemcpy device to device)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([opts] {
    std::vector<std::size_t> sizes = opts->sizes;
    if (sizes.empty()) sizes = {1u << 20, 1u << 24, 1u << 26};
    std::vector<std::string> specs = opts->codecs;
    if (specs.empty())
      specs = {"identity",
               "fp16",
               "bf16",
               "qsgd:s=3,bucket=512",
               "qsgd:s=3,bucket=512,scaled=true",
               "quantize:bits=2,bucket=512",
               "quantize:bits=8,bucket=512,rounding=nearest",
               "terngrad:bucket=512",
               "sign:bucket=512",
               "topk:ratio=0.01",
               "randomk:ratio=0.01",
               "threshold:tau=2.5"};
    for (const auto& s : specs) (void)kernels::make_codec(s);  // reject bad specs before running
    const bool cuda = opts->device == "cuda";
    const auto rows = cuda ? run_cuda(specs, sizes) : run(specs, sizes);
    if (opts->json) {
      for (const Row& r : rows) {
        nlohmann::json j{{"codec", r.codec},
                         {"params", r.params},
                         {"elements", r.elements},
                         {"wire_bytes", r.wire_bytes},
                         {"ratio_to_fp32", static_cast<double>(r.wire_bytes) /
                                               (4.0 * static_cast<double>(r.elements))},
                         {"encode_gbps", r.encode_gbps},
                         {"decode_gbps", r.decode_gbps},
                         {"memcpy_gbps", r.memcpy_gbps},
                         {"encode_vs_memcpy", r.encode_vs_memcpy},
                         {"decode_vs_memcpy", r.decode_vs_memcpy}};
        if (cuda) {
          // memcpy_gbps holds the device-to-device copy bandwidth too, so scripts reading either
          // field compare a codec with the copy of the same machine.
          j["d2d_gbps"] = r.memcpy_gbps;
          j["device"] = "cuda";
        } else {
          j["threads"] = omp_get_max_threads();
        }
        fmt::print("{}\n", j.dump());
      }
      return;
    }
    fmt::print("{:<10} {:<34} {:>10} {:>12} {:>7} {:>8} {:>8} {:>8} {:>6} {:>6}\n", "codec",
               "params", "elements", "wire bytes", "ratio", "enc GB/s", "dec GB/s",
               cuda ? "d2d" : "memcpy", "enc/mc", "dec/mc");
    for (const Row& r : rows)
      fmt::print(
          "{:<10} {:<34} {:>10} {:>12} {:>7.4f} {:>8.2f} {:>8.2f} {:>8.2f} {:>6.2f} {:>6.2f}\n",
          r.codec, r.params, r.elements, r.wire_bytes,
          static_cast<double>(r.wire_bytes) / (4.0 * static_cast<double>(r.elements)),
          r.encode_gbps, r.decode_gbps, r.memcpy_gbps, r.encode_vs_memcpy, r.decode_vs_memcpy);
  });
}

}  // namespace gossip::cli
