// The centralized algorithms beside the all-reduce: delayed gradient averaging (DGA) and
// DoubleSqueeze. DGA: D = 0 is all-reduce SGD bit for bit; for every D the models follow the
// closed form x_i^{t+1} = x_0 − γ Σ_{s≤t−D} d̄^s − γ Σ_{t−D<s≤t} d_i^s (float64 reference from the
// recorded directions) and the mean moves as SGD on the current mean direction; the bytes of its
// direct messages are exact. DoubleSqueeze: identity is all-reduce SGD up to the order of
// the sum; with sign and 2-bit qsgd every peer's model is bit-identical after every round; both
// error memories are what their definitions say, bit for bit, from a re-encoding of the chunks;
// the bytes per round are the formula of docs/algorithms.md (2(n − 1) direct chunk messages).
// Both converge on least squares.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "algorithm_harness.hpp"
#include "gossip/algorithms/ring_allreduce.hpp"
#include "kernels/codec.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

ga::AlgorithmConfig config(std::string name, float lr = 0.05f) {
  ga::AlgorithmConfig c;
  c.name = std::move(name);
  c.lr = lr;
  c.seed = 11;
  return c;
}

// Every peer's direction (the gradient: no momentum) and model after every round, recorded by
// the gradient callback and the observer (each peer writes only its own row).
struct Recording {
  explicit Recording(int n, std::uint64_t rounds)
      : d(static_cast<std::size_t>(n)), x(static_cast<std::size_t>(n)) {
    for (int r = 0; r < n; ++r) {
      d[static_cast<std::size_t>(r)].reserve(rounds);
      x[static_cast<std::size_t>(r)].reserve(rounds);
    }
  }
  std::vector<std::vector<std::vector<float>>> d;  // d[i][t]
  std::vector<std::vector<std::vector<float>>> x;  // x[i][t] = x_i^{t+1}
};

std::vector<std::vector<float>> run_recorded(const ga::AlgorithmConfig& cfg,
                                             const gossip::topology::Topology& topo,
                                             std::span<const float> x0, std::uint64_t rounds,
                                             const gt::DiagonalQuadratic& problem, Recording& rec,
                                             const gt::Observer& also = {}) {
  return gt::run_algorithm(
      cfg, topo, x0, rounds,
      [&](int r, std::span<const float> x, std::span<float> g) {
        problem.gradient(r, x, g);
        rec.d[static_cast<std::size_t>(r)].emplace_back(g.begin(), g.end());
      },
      [&](int r, std::uint64_t round, ga::Algorithm& algo) {
        std::vector<float> x(algo.dim());
        algo.copy_params(x);
        rec.x[static_cast<std::size_t>(r)].push_back(std::move(x));
        if (also) also(r, round, algo);
      });
}

}  // namespace

// Bytes rank r sends in a round of a direct reduce-scatter and all-gather of d floats on n peers
// (docs/algorithms.md, "DGA"): chunk j of its vector to each rank j ≠ r, then its summed chunk r
// to each of them, every message with a 64-byte frame header.
std::uint64_t direct_allreduce_bytes(std::size_t d, std::size_t n, std::size_t r, bool scatter,
                                     bool gather) {
  auto len = [&](std::size_t c) { return d / n + (c < d % n ? 1 : 0); };
  std::uint64_t bytes = 0;
  for (std::size_t j = 0; j < n; ++j) {
    if (j == r) continue;
    if (scatter) bytes += 64 + 4 * len(j);
    if (gather) bytes += 64 + 4 * len(r);
  }
  return bytes;
}

TEST_CASE("DGA with delay 0 is all-reduce SGD, bit for bit; its bytes over all peers too") {
  for (const char* spec : {"ring:1", "ring:2", "ring:4", "ring:5"}) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const gt::DiagonalQuadratic problem(topo.size(), 37, 3, 0.5f);  // 37: uneven chunks
    const std::vector<float> x0(problem.d, 0.25f);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    auto a = config("allreduce"), b = config("dga");
    a.momentum = b.momentum = 0.5f;
    std::vector<std::uint64_t> bytes_a(static_cast<std::size_t>(topo.size())),
        bytes_b(bytes_a.size());
    const auto xa = gt::run_algorithm(a, topo, x0, 12, grad, [&](int r, auto, ga::Algorithm& al) {
      bytes_a[static_cast<std::size_t>(r)] = al.totals().bytes_sent;
    });
    const auto xb = gt::run_algorithm(b, topo, x0, 12, grad, [&](int r, auto, ga::Algorithm& al) {
      bytes_b[static_cast<std::size_t>(r)] = al.totals().bytes_sent;
    });
    for (std::size_t i = 0; i < xa.size(); ++i) CHECK(gt::bit_equal(xa[i], xb[i]));
    // The same bytes over all peers (every chunk sent 2(n − 1) times with a header each); per
    // peer the direct exchange's formula, equal to the ring's when the chunks are.
    const auto n = static_cast<std::size_t>(topo.size());
    std::uint64_t total_a = 0, total_b = 0;
    for (std::size_t r = 0; r < n; ++r) {
      total_a += bytes_a[r];
      total_b += bytes_b[r];
      CHECK(bytes_b[r] == 12 * direct_allreduce_bytes(problem.d, n, r, true, true));
    }
    CHECK(total_a == total_b);
  }
}

TEST_CASE("DGA: the closed form from the recorded directions, and the mean follows SGD") {
  const int n = 4;  // S = 6 ring steps: D = 1, 2, 4 (uneven shares), 6 and 9 (> S)
  const auto topo = gt::make_topo("ring:4");
  const gt::DiagonalQuadratic problem(n, 29, 8, 1.0f);
  const std::vector<float> x0(problem.d, 0.5f);
  const std::uint64_t T = 25;
  const float lr = 0.1f;
  for (std::uint32_t D : {1u, 2u, 4u, 6u, 9u}) {
    CAPTURE(D);
    auto cfg = config("dga", lr);
    cfg.delay = D;
    Recording rec(n, T);
    run_recorded(cfg, topo, x0, T, problem, rec);
    double worst_form = 0.0, worst_mean = 0.0, spread = 0.0;
    for (std::uint64_t t = 0; t < T; ++t) {
      for (std::size_t k = 0; k < problem.d; ++k) {
        // Σ_{s≤t−D} d̄^s and, per peer, Σ_{t−D<s≤t} d_i^s, in double.
        double common = 0.0;
        for (std::uint64_t s = 0; s + D <= t; ++s)
          for (int i = 0; i < n; ++i) common += rec.d[i][s][k] / static_cast<double>(n);
        double mean_model = 0.0, mean_step = 0.0, mean_before = 0.0;
        for (int i = 0; i < n; ++i) {
          double own = 0.0;
          for (std::uint64_t s = t + 1 > D ? t + 1 - D : 0; s <= t; ++s) own += rec.d[i][s][k];
          const double expect = x0[k] - lr * common - lr * own;
          const double got = rec.x[i][t][k];
          worst_form = std::max(worst_form, std::abs(got - expect) / (1.0 + std::abs(expect)));
          spread = std::max(spread, std::abs(got - static_cast<double>(rec.x[0][t][k])));
          mean_model += got / n;
          mean_before += (t == 0 ? x0[k] : rec.x[i][t - 1][k]) / static_cast<double>(n);
          mean_step += rec.d[i][t][k] / static_cast<double>(n);
        }
        // x̄^{t+1} = x̄^t − γ d̄^t: SGD on the current mean direction, whatever D.
        worst_mean = std::max(worst_mean, std::abs(mean_model - (mean_before - lr * mean_step)));
      }
    }
    CHECK(worst_form < 2e-5);
    CHECK(worst_mean < 2e-6);
    CHECK(spread > 1e-3);  // the models do differ by their own last D directions
  }
}

TEST_CASE("DGA: one direct reduce-scatter and all-gather a round, 2(n - 1) messages") {
  // Rounds t < A = ceil(D/2) post only their chunks; from round A on, a round also posts the sum
  // of reduction t − A: the bytes of one all-reduce (equal chunks: exactly the ring's) in 2(n − 1)
  // messages. It receives chunks r of round t − A (t >= A) and the sums of round t − D (t >= D).
  const auto topo = gt::make_topo("ring:5");
  const std::size_t n = 5;
  const gt::DiagonalQuadratic problem(5, 43, 2);
  const std::vector<float> x0(problem.d, 0.0f);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  for (std::uint32_t D : {0u, 1u, 2u, 3u, 8u}) {
    CAPTURE(D);
    auto cfg = config("dga");
    cfg.delay = D;
    const std::uint64_t T = D + 3, A = (D + 1) / 2;
    std::vector<std::vector<std::uint64_t>> sent(n), received(n);
    gt::run_algorithm(cfg, topo, x0, T, grad, [&](int r, auto, ga::Algorithm& a) {
      sent[static_cast<std::size_t>(r)].push_back(a.last_round().bytes_sent);
      received[static_cast<std::size_t>(r)].push_back(a.last_round().bytes_received);
    });
    for (std::size_t r = 0; r < n; ++r) {
      CAPTURE(r);
      for (std::uint64_t t = 0; t < T; ++t) {
        CAPTURE(t);
        CHECK(sent[r][t] == direct_allreduce_bytes(problem.d, n, r, true, t >= A));
        // What it collects: the chunks r of round t − A and the sums of round t − D.
        std::uint64_t in = 0;
        for (std::size_t j = 0; j < n; ++j) {
          if (j == r) continue;
          const std::size_t len_r = problem.d / n + (r < problem.d % n ? 1 : 0);
          const std::size_t len_j = problem.d / n + (j < problem.d % n ? 1 : 0);
          if (t >= A) in += 64 + 4 * len_r;
          if (t >= D) in += 64 + 4 * len_j;
        }
        if (t > 0) CHECK(received[r][t] == in);  // round 0 also counts the hellos
      }
    }
  }
}

TEST_CASE("DoubleSqueeze with the identity codec is all-reduce SGD up to the order of the sum") {
  for (const char* spec : {"ring:1", "ring:3", "ring:4", "ring:8"}) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const gt::DiagonalQuadratic problem(topo.size(), 37, 5, 0.5f);
    const std::vector<float> x0(problem.d, 0.25f);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    auto a = config("allreduce"), b = config("doublesqueeze");
    a.momentum = b.momentum = 0.5f;
    const auto xa = gt::run_algorithm(a, topo, x0, 30, grad);
    const auto xb = gt::run_algorithm(b, topo, x0, 30, grad);
    double worst = 0.0;
    for (std::size_t i = 0; i < xa.size(); ++i) {
      CHECK(gt::bit_equal(xb[i], xb[0]));
      for (std::size_t k = 0; k < xa[i].size(); ++k)
        worst = std::max(worst, static_cast<double>(std::abs(xa[i][k] - xb[i][k])));
    }
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("DoubleSqueeze: every model bit-identical after every round; error memories exact") {
  const int n = 4;
  const auto topo = gt::make_topo("ring:4");
  const gt::DiagonalQuadratic problem(n, 42, 6, 1.0f);  // 42 = 11 + 11 + 10 + 10
  const std::vector<float> x0(problem.d, 0.5f);
  const std::uint64_t T = 12;
  for (const char* codec : {"sign", "qsgd:s=3", "qsgd:s=3,scaled=true,bucket=4"}) {
    CAPTURE(codec);
    auto cfg = config("doublesqueeze", 0.05f);
    cfg.codec = codec;
    Recording rec(n, T);
    std::vector<std::vector<std::vector<float>>> delta(n), error(n);
    run_recorded(cfg, topo, x0, T, problem, rec, [&](int r, auto, ga::Algorithm& a) {
      delta[static_cast<std::size_t>(r)].push_back(a.state("delta"));
      error[static_cast<std::size_t>(r)].push_back(a.state("server_error"));
    });
    // The chunks and a host codec per chunk, as the algorithm cuts them.
    const std::size_t d = problem.d;
    auto begin = [&](std::size_t c) { return c * (d / n) + std::min<std::size_t>(c, d % n); };
    const auto codec_of = gossip::kernels::make_codec(codec);
    auto encode = [&](std::span<const float> v, int rank, std::uint64_t slot, std::uint64_t t) {
      std::vector<std::byte> wire(codec_of->wire_size(v.size()));
      codec_of->encode(v, {11, static_cast<std::uint32_t>(rank), t * 2 * n + slot}, wire);
      std::vector<float> out(v.size());
      codec_of->decode(wire, out);
      return out;
    };
    bool same = true, workers = true, servers = true, models = true;
    std::vector<std::vector<float>> dprev(n, std::vector<float>(d, 0.0f)), eprev(n);
    for (std::size_t c = 0; c < n; ++c) eprev[c].assign(begin(c + 1) - begin(c), 0.0f);
    std::vector<float> x = x0;
    for (std::uint64_t t = 0; t < T; ++t) {
      for (int i = 1; i < n; ++i) same = same && gt::bit_equal(rec.x[i][t], rec.x[0][t]);
      // Workers: v = d + δ, C chunk by chunk, δ ← v − C(v).
      std::vector<std::vector<float>> cv(n, std::vector<float>(d));
      for (int i = 0; i < n; ++i) {
        std::vector<float> v(d);
        for (std::size_t k = 0; k < d; ++k) v[k] = rec.d[i][t][k] + dprev[i][k];
        for (std::size_t c = 0; c < n; ++c) {
          const auto part = std::span(v).subspan(begin(c), begin(c + 1) - begin(c));
          const auto q = encode(part, i, c, t);
          std::copy(q.begin(), q.end(), cv[i].begin() + static_cast<std::ptrdiff_t>(begin(c)));
        }
        for (std::size_t k = 0; k < d; ++k) dprev[i][k] = v[k] - cv[i][k];
        workers = workers && gt::bit_equal(delta[i][t], dprev[i]);
      }
      // Servers: u = (1/n) Σ_j c_j[r] (own first, then r + 1, r + 2, …) + e; e ← u − C(u).
      std::vector<float> chat(d);
      for (int r = 0; r < n; ++r) {
        const std::size_t b = begin(r), len = begin(r + 1) - b;
        std::vector<float> u(len);
        for (std::size_t k = 0; k < len; ++k) {
          float s = cv[r][b + k];
          for (int j = 1; j < n; ++j) s += cv[(r + j) % n][b + k];
          u[k] = (1.0f / n) * s + eprev[r][k];
        }
        const auto q = encode(u, r, n + r, t);
        for (std::size_t k = 0; k < len; ++k) {
          eprev[r][k] = u[k] - q[k];
          chat[b + k] = q[k];
        }
        servers = servers && gt::bit_equal(error[r][t], eprev[r]);
      }
      for (std::size_t k = 0; k < d; ++k) x[k] += -0.05f * chat[k];
      models = models && gt::bit_equal(rec.x[0][t], x);
    }
    CHECK(same);
    CHECK(workers);
    CHECK(servers);
    CHECK(models);
    CHECK(!gt::bit_equal(x, x0));
  }
}

TEST_CASE("DoubleSqueeze: bytes per round are 2(n - 1) direct chunk messages plus frame headers") {
  // docs/algorithms.md: with chunk messages of w_c bytes, rank r sends chunk j's message to each
  // rank j ≠ r and its served chunk to each of them: Σ_{j≠r} (w_j + 64) + (n − 1)(w_r + 64).
  // Equal chunks: 2(n − 1)(w + 64).
  for (const char* codec : {"sign", "qsgd:s=3", "topk:k=2", "identity"}) {
    for (const char* spec : {"ring:4", "ring:5"}) {
      CAPTURE(codec);
      CAPTURE(spec);
      const auto topo = gt::make_topo(spec);
      const std::size_t n = static_cast<std::size_t>(topo.size()), d = 40;
      const gt::DiagonalQuadratic problem(topo.size(), d, 9);
      const std::vector<float> x0(d, 0.0f);
      auto cfg = config("doublesqueeze");
      cfg.codec = codec;
      std::vector<std::uint64_t> sent(n);
      gt::run_algorithm(
          cfg, topo, x0, 3,
          [&](int r, std::span<const float> x, std::span<float> g) { problem.gradient(r, x, g); },
          [&](int r, auto, ga::Algorithm& a) {
            sent[static_cast<std::size_t>(r)] = a.last_round().bytes_sent;
          });
      const auto c = gossip::kernels::make_codec(codec);
      auto w = [&](std::size_t chunk) {
        const std::size_t len = (chunk + 1) * (d / n) + std::min(chunk + 1, d % n) -
                                (chunk * (d / n) + std::min(chunk, d % n));
        return static_cast<std::uint64_t>(c->wire_size(len));
      };
      for (std::size_t r = 0; r < n; ++r) {
        std::uint64_t expect = 0;
        for (std::size_t j = 0; j < n; ++j)
          if (j != r) expect += w(j) + 64 + w(r) + 64;
        CHECK(sent[r] == expect);
        if (d % n == 0) CHECK(sent[r] == 2 * (n - 1) * (w(0) + 64));
      }
    }
  }
}

TEST_CASE("DGA and DoubleSqueeze approach the least-squares optimum") {
  const auto topo = gt::make_topo("ring:8");
  const gt::LeastSquares problem(8, 20, 10, 41);
  const std::vector<float> x0(problem.d, 0.0f);
  const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
    problem.gradient(r, x, g);
  };
  auto worst = [&](const std::vector<std::vector<float>>& x) {
    double e = 0.0;
    for (const auto& xi : x) {
      const double ei = gt::relative_error(xi, problem.optimum);
      e = std::isfinite(ei) ? std::max(e, ei) : INFINITY;
    }
    return e;
  };
  auto mean_of = [&](const std::vector<std::vector<float>>& x) {
    std::vector<float> m(problem.d, 0.0f);
    for (const auto& xi : x)
      for (std::size_t k = 0; k < m.size(); ++k) m[k] += xi[k] / static_cast<float>(x.size());
    return m;
  };
  const double start = gt::relative_error(x0, problem.optimum);
  // DGA: at its fixed point Σ_i ∇F_i(x_i) = 0 with each x_i = x̄ − γ Σ_{window} d_i, so every
  // peer, and with unequal curvatures the mean too, stays O(γ·D·ζ) from x* (ζ: the spread of the
  // peers' gradients there): both errors shrink with γ, as for gossip.
  std::vector<double> dga_worst, dga_mean;
  for (float lr : {0.04f, 0.02f}) {
    auto cfg = config("dga", lr);
    cfg.delay = 3;
    const auto x = gt::run_algorithm(cfg, topo, x0, 1500, grad);
    dga_worst.push_back(worst(x));
    dga_mean.push_back(gt::relative_error(mean_of(x), problem.optimum));
    MESSAGE("dga D = 3, lr " << lr << ": worst peer " << dga_worst.back() << ", mean "
                             << dga_mean.back() << " (start " << start << ")");
  }
  CHECK(dga_worst[0] < 0.1 * start);
  CHECK(dga_worst[1] < 0.7 * dga_worst[0]);
  CHECK(dga_mean[0] < dga_worst[0]);
  CHECK(dga_mean[1] < 0.7 * dga_mean[0]);
  // DoubleSqueeze with sign and 2-bit qsgd: every model identical, close to x*.
  for (const char* codec : {"sign", "qsgd:s=3"}) {
    auto cfg = config("doublesqueeze", 0.02f);
    cfg.codec = codec;
    const auto x = gt::run_algorithm(cfg, topo, x0, 1500, grad);
    const double e = worst(x);
    MESSAGE("doublesqueeze " << std::string(codec) << ", lr 0.02: relative error " << e
                             << " (start " << start << ")");
    CHECK(e < 0.05 * start);
  }
}

TEST_CASE("the delay enters the settings and config hashes only when not 0; other rows refuse it") {
  auto cfg = config("dga");
  const std::uint64_t d0 = ga::settings_hash(cfg, 50);
  cfg.delay = 2;
  CHECK(ga::settings_hash(cfg, 50) != d0);
  // Saved states of another delay are refused (the config hash covers it).
  const auto topo = gt::make_topo("ring:2");
  const std::vector<float> x0(10, 0.0f);
  std::string saved, refused;
  {
    gt::InprocNetwork net(topo);
    auto a2 = ga::make_algorithm(cfg, *net.transports[0], topo, x0);
    std::ostringstream out;
    a2->save(out);
    saved = out.str();
    auto other = cfg;
    other.delay = 3;
    auto a3 = ga::make_algorithm(other, *net.transports[0], topo, x0);
    std::istringstream in(saved);
    try {
      a3->load(in);
    } catch (const ga::StateError& e) {
      refused = e.what();
    }
  }
  CHECK(refused.find("config hash") != std::string::npos);
  // Only DGA has a delay.
  auto wrong = config("allreduce");
  wrong.delay = 1;
  gt::InprocNetwork net(topo);
  CHECK_THROWS_WITH_AS(ga::make_algorithm(wrong, *net.transports[0], topo, x0),
                       doctest::Contains("delay = 1 is a setting of dga"), std::invalid_argument);
  // DoubleSqueeze takes a codec whose messages vary in length too (each is one direct message):
  // threshold keeps every model bit-identical.
  auto ds = config("doublesqueeze");
  ds.codec = "threshold:tau=0.1";
  const auto four = gt::make_topo("ring:4");
  const gt::DiagonalQuadratic problem(4, 30, 3);
  const auto xs = gt::run_algorithm(
      ds, four, std::vector<float>(30, 0.5f), 5,
      [&](int r, std::span<const float> x, std::span<float> g) { problem.gradient(r, x, g); });
  for (const auto& xi : xs) CHECK(gt::bit_equal(xi, xs[0]));
  CHECK_FALSE(gt::bit_equal(xs[0], std::vector<float>(30, 0.5f)));
}
