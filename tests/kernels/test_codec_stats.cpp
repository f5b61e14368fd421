// Statistical properties over many seeds: unbiasedness of the stochastic operators, the qsgd
// variance bound, and the contraction bounds of sign, topk and scaled qsgd.

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/kernels/reference.hpp"

using namespace gossip::kernels;
namespace r = gossip::kernels::ref;

namespace {

constexpr int kSeeds = 4000;

double norm2(std::span<const float> v) {
  double s = 0;
  for (float f : v) s += double(f) * f;
  return s;
}

// Mean of C(x) over kSeeds keys, and mean of ||C(x) - x||^2.
struct Moments {
  std::vector<double> mean;
  double err2 = 0;
};
Moments moments(const Codec& c, std::span<const float> x) {
  Moments m;
  m.mean.assign(x.size(), 0.0);
  for (int s = 0; s < kSeeds; ++s) {
    const auto y = r::roundtrip(c, x, {static_cast<std::uint64_t>(s) * 7919u + 1, 3, 11});
    for (std::size_t i = 0; i < x.size(); ++i) {
      m.mean[i] += y[i] / double(kSeeds);
      m.err2 += (double(y[i]) - x[i]) * (double(y[i]) - x[i]) / kSeeds;
    }
  }
  return m;
}

// Each C(x)_i takes values whose standard deviation is at most sigma[i], so the mean of kSeeds
// independent draws has standard deviation sigma[i] / sqrt(kSeeds). We allow 5.5 of those (a
// false alarm has probability ~4e-8 per element) plus float rounding of the decoded values.
void check_unbiased(const Moments& m, std::span<const float> x, std::span<const double> sigma,
                    const std::string& what) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double bound =
        5.5 * sigma[i] / std::sqrt(double(kSeeds)) + 1e-5 * (std::fabs(x[i]) + 1e-3);
    if (std::fabs(m.mean[i] - x[i]) > bound && bad++ < 3)
      FAIL_CHECK(what << ": element " << i << " mean " << m.mean[i] << " vs x " << x[i]
                      << " (bound " << bound << ")");
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("qsgd is unbiased and within its variance bound; scaled qsgd contracts") {
  const std::size_t d = 200;
  const auto x = r::gaussian(d, 1);
  for (std::uint32_t s : {1u, 3u, 15u}) {
    for (std::size_t b : {0u, 50u}) {
      const std::string spec = "qsgd:s=" + std::to_string(s) + ",bucket=" + std::to_string(b);
      const auto m = moments(*make_codec(spec), x);
      // C_i is norm/s times a Bernoulli shifted by an integer: variance <= (norm/s)^2 / 4.
      std::vector<double> sigma(d);
      double tau_norm2 = 0;  // sum over buckets of tau(len) * ||x_bucket||^2
      for (const auto& bk : r::buckets({}, d, b)) {
        const double nb2 = norm2(std::span<const float>(&x[bk.begin], bk.end - bk.begin));
        for (std::size_t i = bk.begin; i < bk.end; ++i) sigma[i] = std::sqrt(nb2) / s / 2;
        const double len = double(bk.end - bk.begin);
        tau_norm2 += std::min(len / (double(s) * s), std::sqrt(len) / s) * nb2;
      }
      check_unbiased(m, x, sigma, spec);
      // E||C(x) - x||^2 <= min(b/s^2, sqrt(b)/s) ||x||^2; the empirical mean of a bounded variable
      // over 4000 draws sits well within 10% of its expectation.
      CHECK_MESSAGE(m.err2 <= 1.1 * tau_norm2, spec << ": " << m.err2 << " vs " << tau_norm2);

      const auto ms = moments(*make_codec(spec + ",scaled=true"), x);
      double contract = 0;  // sum over buckets of (1 - 1/(1+tau)) ||x_bucket||^2
      for (const auto& bk : r::buckets({}, d, b)) {
        const double len = double(bk.end - bk.begin);
        const double tau = std::min(len / (double(s) * s), std::sqrt(len) / s);
        contract +=
            (1 - 1 / (1 + tau)) * norm2(std::span<const float>(&x[bk.begin], bk.end - bk.begin));
      }
      CHECK_MESSAGE(ms.err2 <= 1.1 * contract,
                    spec << " scaled: " << ms.err2 << " vs " << contract);
      CHECK(ms.err2 < norm2(x));
    }
  }
}

TEST_CASE("stochastic quantize is unbiased; nearest is deterministic and within half a step") {
  const std::size_t d = 200;
  const auto x = r::gaussian(d, 2);
  for (std::uint32_t bits : {1u, 2u, 4u}) {
    const std::string spec = "quantize:bucket=64,bits=" + std::to_string(bits);
    const auto m = moments(*make_codec(spec), x);
    std::vector<double> sigma(d);
    for (const auto& bk : r::buckets({}, d, 64)) {
      const float lo = *std::min_element(&x[bk.begin], &x[bk.begin] + (bk.end - bk.begin));
      const float hi = *std::max_element(&x[bk.begin], &x[bk.begin] + (bk.end - bk.begin));
      for (std::size_t i = bk.begin; i < bk.end; ++i)
        sigma[i] = (hi - lo) / ((1 << bits) - 1) / 2.0;
    }
    check_unbiased(m, x, sigma, spec);
    const auto c = make_codec(spec + ",rounding=nearest");
    const auto y = r::roundtrip(*c, x, {1, 0, 0});
    CHECK(r::same_bits(y, r::roundtrip(*c, x, {2, 5, 9})));  // no dependence on the key
    for (std::size_t i = 0; i < d; ++i) CHECK(std::fabs(y[i] - x[i]) <= sigma[i] * 1.0001 + 1e-6);
  }
}

TEST_CASE("terngrad and scaled randomk are unbiased") {
  const std::size_t d = 200;
  const auto x = r::gaussian(d, 3);
  {
    const auto m = moments(*make_codec("terngrad:bucket=64"), x);
    std::vector<double> sigma(d);
    for (const auto& bk : r::buckets({}, d, 64)) {
      float s = 0;
      for (std::size_t i = bk.begin; i < bk.end; ++i) s = std::max(s, std::fabs(x[i]));
      // C_i = s * sign * Bernoulli(|x_i|/s): variance s|x_i| - x_i^2.
      for (std::size_t i = bk.begin; i < bk.end; ++i)
        sigma[i] = std::sqrt(std::max(0.0, double(s) * std::fabs(x[i]) - double(x[i]) * x[i]));
    }
    check_unbiased(m, x, sigma, "terngrad");
  }
  {
    const auto m = moments(*make_codec("randomk:k=20"), x);
    // C_i = (d/k) x_i with probability k/d, else 0: variance x_i^2 (d/k - 1).
    std::vector<double> sigma(d);
    for (std::size_t i = 0; i < d; ++i) sigma[i] = std::fabs(x[i]) * std::sqrt(double(d) / 20 - 1);
    check_unbiased(m, x, sigma, "randomk");
  }
}

TEST_CASE("sign and topk are contractions with their delta") {
  for (std::size_t d : {1u, 33u, 1000u, 5000u}) {
    const auto x = r::gaussian(d, static_cast<std::uint32_t>(d));
    for (std::size_t b : {0u, 7u, 512u}) {
      const auto y = r::roundtrip(*make_codec("sign:bucket=" + std::to_string(b)), x, {});
      for (const auto& bk : r::buckets({}, d, b)) {
        double e2 = 0, n2 = 0, n1 = 0;
        for (std::size_t i = bk.begin; i < bk.end; ++i) {
          e2 += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
          n2 += double(x[i]) * x[i];
          n1 += std::fabs(x[i]);
        }
        const double delta = n1 * n1 / (double(bk.end - bk.begin) * n2);
        CHECK(e2 <= (1 - delta) * n2 * (1 + 1e-5) + 1e-9);
      }
    }
    for (std::size_t k : {1u, 10u, 100u}) {
      const auto y = r::roundtrip(*make_codec("topk:k=" + std::to_string(k)), x, {});
      double e2 = 0;
      for (std::size_t i = 0; i < d; ++i) e2 += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
      const double delta = double(std::min(k, d)) / double(d);
      CHECK(e2 <= (1 - delta) * norm2(x) + 1e-9);
    }
  }
}
