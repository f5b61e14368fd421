// `gossip bench codecs`: encode and decode_accumulate throughput of every codec beside the memcpy
// bandwidth of the same machine, measured in the same run on the same buffers.

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kernels/codec.hpp"
#include "kernels/wire.hpp"
#include "src/cli.hpp"

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

std::vector<Row> run(const std::vector<std::string>& specs, const std::vector<std::size_t>& sizes) {
  std::vector<Row> rows;
  for (std::size_t d : sizes) {
    std::vector<float> x(d), y(d), scratch(d);
    fill_data(x);
    std::fill(y.begin(), y.end(), 0.0f);
    std::fill(scratch.begin(), scratch.end(), 0.0f);
    const double bytes = 4.0 * static_cast<double>(d);
    for (const std::string& spec : specs) {
      fmt::print(stderr, "bench codecs: {} elements, {} ...\n", d, spec);
      const auto codec = kernels::make_codec(spec);
      std::vector<std::byte> wire(codec->wire_size(d));
      std::size_t n = codec->encode(x, {7, 1, 0}, wire);  // warm-up: pages, code, caches
      // Every repetition times a memcpy right before the encode and another right before the
      // decode, on the same buffers: on a shared machine the load changes from one second to the
      // next, so a back-to-back pair is what compares. Reported: the best time of each, and the
      // median of the paired ratios.
      std::vector<double> tm, te, td, re, rd;
      for (int r = 0; r < reps_for(d); ++r) {
        const double m1 = seconds([&] { parallel_memcpy(scratch.data(), x.data(), d); });
        const double e = seconds([&] {
          n = codec->encode(x, {7, 1, static_cast<std::uint64_t>(r)}, wire);
        });
        const std::span<const std::byte> msg(wire.data(), n);
        const double m2 = seconds([&] { parallel_memcpy(scratch.data(), x.data(), d); });
        const double dd = seconds([&] { codec->decode_accumulate(msg, 0.5f, y); });
        tm.push_back(std::min(m1, m2));
        te.push_back(e);
        td.push_back(dd);
        re.push_back(m1 / e);
        rd.push_back(m2 / dd);
      }
      Row row;
      const std::string canon = codec->spec();
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
      rows.push_back(row);
    }
  }
  return rows;
}

}  // namespace

void add_bench_codecs(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "codecs", "Encode / decode_accumulate throughput of every codec beside memcpy bandwidth");
  struct Opts {
    std::vector<std::size_t> sizes;
    std::vector<std::string> codecs;
    bool json = false;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("--size", opts->sizes, "Element counts (default: 1M 16M 64M)")->expected(1, 8);
  cmd->add_option("--codec", opts->codecs, "Codec specs to run (default: the standard set)");
  cmd->add_flag("--json", opts->json, "One JSON object per row on stdout");
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
    const auto rows = run(specs, sizes);
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
                         {"decode_vs_memcpy", r.decode_vs_memcpy},
                         {"threads", omp_get_max_threads()}};
        fmt::print("{}\n", j.dump());
      }
      return;
    }
    fmt::print("{:<10} {:<34} {:>10} {:>12} {:>7} {:>8} {:>8} {:>8} {:>6} {:>6}\n", "codec",
               "params", "elements", "wire bytes", "ratio", "enc GB/s", "dec GB/s", "memcpy",
               "enc/mc", "dec/mc");
    for (const Row& r : rows)
      fmt::print(
          "{:<10} {:<34} {:>10} {:>12} {:>7.4f} {:>8.2f} {:>8.2f} {:>8.2f} {:>6.2f} {:>6.2f}\n",
          r.codec, r.params, r.elements, r.wire_bytes,
          static_cast<double>(r.wire_bytes) / (4.0 * static_cast<double>(r.elements)),
          r.encode_gbps, r.decode_gbps, r.memcpy_gbps, r.encode_vs_memcpy, r.decode_vs_memcpy);
  });
}

}  // namespace gossip::cli
