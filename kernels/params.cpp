#include "kernels/params.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace gossip::kernels {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

[[noreturn]] void bad(std::string_view codec, std::string_view key, std::string_view value,
                      std::string_view allowed) {
  throw std::invalid_argument("codec '" + std::string(codec) + "': parameter '" + std::string(key) +
                              "' must be " + std::string(allowed) + " (got '" + std::string(value) +
                              "')");
}

std::uint64_t parse_uint(std::string_view codec, std::string_view key, std::string_view v,
                         std::uint64_t lo, std::uint64_t hi, std::string_view allowed) {
  std::uint64_t out = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < lo || out > hi)
    bad(codec, key, v, allowed);
  return out;
}

double parse_double(std::string_view codec, std::string_view key, std::string_view v, double lo,
                    double hi, bool lo_open, std::string_view allowed) {
  double out = 0.0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || !std::isfinite(out) || out < lo ||
      (lo_open && out == lo) || out > hi)
    bad(codec, key, v, allowed);
  return out;
}

bool parse_bool(std::string_view codec, std::string_view key, std::string_view v) {
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  bad(codec, key, v, "true or false");
}

std::string fmt_double(double v) {
  char buf[64];
  const auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, p);
}

struct Known {
  std::string_view name;
  CodecId id;
  std::string_view params;  // allowed parameter names, for messages
};
constexpr Known kKnown[] = {
    {"identity", CodecId::kIdentity, ""},
    {"fp16", CodecId::kFp16, ""},
    {"bf16", CodecId::kBf16, ""},
    {"qsgd", CodecId::kQsgd, "s, bucket, scaled"},
    {"quantize", CodecId::kQuantize, "bits, bucket, rounding"},
    {"terngrad", CodecId::kTerngrad, "bucket"},
    {"sign", CodecId::kSign, "bucket"},
    {"topk", CodecId::kTopk, "k, ratio"},
    {"randomk", CodecId::kRandomk, "k, ratio, unbiased"},
    {"threshold", CodecId::kThreshold, "tau"},
};

}  // namespace

std::uint32_t CodecParams::qsgd_width() const {
  std::uint32_t w = 0;
  while ((1ull << w) < static_cast<std::uint64_t>(s) + 1) ++w;
  return 1 + w;
}

float CodecParams::randomk_scale(std::uint64_t n) const {
  const std::uint64_t kn = k_for(n);
  return unbiased && kn ? static_cast<float>(static_cast<double>(n) / static_cast<double>(kn))
                        : 1.0f;
}

std::uint64_t CodecParams::k_for(std::uint64_t n) const {
  if (n == 0) return 0;
  if (ratio > 0.0) {
    // The tiny shave keeps ratio * n that is an integer up to rounding (0.01 * 1000) from
    // becoming one more.
    const double want = std::ceil(ratio * static_cast<double>(n) * (1.0 - 1e-12));
    return std::min<std::uint64_t>(n, std::max<std::uint64_t>(1, static_cast<std::uint64_t>(want)));
  }
  return std::min(k, n);
}

CodecParams parse_spec(std::string_view spec) {
  spec = trim(spec);
  const auto colon = spec.find(':');
  const std::string_view name = trim(spec.substr(0, colon));
  const std::string_view rest = colon == std::string_view::npos ? "" : spec.substr(colon + 1);
  const Known* known = nullptr;
  for (const auto& k : kKnown)
    if (k.name == name) known = &k;
  if (!known)
    throw std::invalid_argument("unknown codec '" + std::string(name) +
                                "' (allowed: identity, fp16, bf16, qsgd, quantize, terngrad, "
                                "sign, topk, randomk, threshold)");
  CodecParams p;
  p.id = known->id;
  std::vector<std::string_view> seen;
  bool have_k = false, have_ratio = false, have_tau = false;
  std::string_view items = rest;
  while (!trim(items).empty()) {
    const auto comma = items.find(',');
    const std::string_view item = trim(items.substr(0, comma));
    items = comma == std::string_view::npos ? "" : items.substr(comma + 1);
    const auto eq = item.find('=');
    const std::string_view key = trim(item.substr(0, eq));
    if (eq == std::string_view::npos)
      throw std::invalid_argument("codec '" + std::string(name) + "': expected key=value, got '" +
                                  std::string(item) + "'");
    const std::string_view v = trim(item.substr(eq + 1));
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      throw std::invalid_argument("codec '" + std::string(name) + "': parameter '" +
                                  std::string(key) + "' given twice");
    seen.push_back(key);
    // A key is valid only if it appears in the codec's list.
    bool allowed = false;
    for (std::string_view list = known->params; !list.empty();) {
      const auto c = list.find(',');
      if (trim(list.substr(0, c)) == key) allowed = true;
      list = c == std::string_view::npos ? "" : list.substr(c + 1);
    }
    if (!allowed)
      throw std::invalid_argument(
          "codec '" + std::string(name) + "': unknown parameter '" + std::string(key) +
          "' (allowed: " + (known->params.empty() ? "none" : std::string(known->params)) + ")");
    if (key == "s") {
      p.s = static_cast<std::uint32_t>(
          parse_uint(name, key, v, 1, 65535, "an integer in [1, 65535]"));
    } else if (key == "bucket") {
      p.bucket = static_cast<std::uint32_t>(parse_uint(
          name, key, v, 0, 0xffffffffu, "an integer in [1, 2^32-1], or 0 for the whole tensor"));
    } else if (key == "scaled") {
      p.scaled = parse_bool(name, key, v);
    } else if (key == "unbiased") {
      p.unbiased = parse_bool(name, key, v);
    } else if (key == "bits") {
      if (v == "1" || v == "2" || v == "4" || v == "8")
        p.bits = static_cast<std::uint32_t>(v[0] - '0');
      else
        bad(name, key, v, "one of 1, 2, 4, 8");
    } else if (key == "rounding") {
      if (v == "stochastic")
        p.nearest = false;
      else if (v == "nearest")
        p.nearest = true;
      else
        bad(name, key, v, "stochastic or nearest");
    } else if (key == "k") {
      p.k = parse_uint(name, key, v, 1, 0xffffffffu, "an integer in [1, 2^32-1]");
      have_k = true;
    } else if (key == "ratio") {
      p.ratio = parse_double(name, key, v, 0.0, 1.0, true, "a number in (0, 1]");
      have_ratio = true;
    } else if (key == "tau") {
      p.tau = parse_double(name, key, v, 0.0, 3.4e38, false, "a finite number >= 0");
      have_tau = true;
    }
  }
  if (p.id == CodecId::kTopk || p.id == CodecId::kRandomk) {
    if (have_k == have_ratio)
      throw std::invalid_argument(
          "codec '" + std::string(name) +
          "': give exactly one of 'k' (integer >= 1) or 'ratio' (in (0, 1])");
  }
  if (p.id == CodecId::kThreshold && !have_tau)
    throw std::invalid_argument(
        "codec 'threshold': parameter 'tau' is required (a finite number >= 0)");
  return p;
}

std::string canonical_spec(const CodecParams& p) {
  const std::string b = std::to_string(p.bucket);
  const auto kr = [&] {
    return p.ratio > 0.0 ? "ratio=" + fmt_double(p.ratio) : "k=" + std::to_string(p.k);
  };
  switch (p.id) {
    case CodecId::kIdentity:
      return "identity";
    case CodecId::kFp16:
      return "fp16";
    case CodecId::kBf16:
      return "bf16";
    case CodecId::kQsgd:
      return "qsgd:s=" + std::to_string(p.s) + ",bucket=" + b +
             ",scaled=" + (p.scaled ? "true" : "false");
    case CodecId::kQuantize:
      return "quantize:bits=" + std::to_string(p.bits) + ",bucket=" + b +
             ",rounding=" + (p.nearest ? "nearest" : "stochastic");
    case CodecId::kTerngrad:
      return "terngrad:bucket=" + b;
    case CodecId::kSign:
      return "sign:bucket=" + b;
    case CodecId::kTopk:
      return "topk:" + kr();
    case CodecId::kRandomk:
      return "randomk:" + kr() + ",unbiased=" + (p.unbiased ? "true" : "false");
    case CodecId::kThreshold:
      return "threshold:tau=" + fmt_double(p.tau);
  }
  return "identity";
}

}  // namespace gossip::kernels
