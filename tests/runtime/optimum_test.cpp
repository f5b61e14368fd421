// The convex synthetic problems and their known optimum: the optimum is checked with the models'
// own gradients (a second implementation), and full-batch runs show which algorithms reach it on
// data that differs between peers.

#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "gossip/inproc_transport.hpp"
#include "src/runtime/config.hpp"
#include "src/runtime/data.hpp"
#include "src/runtime/model.hpp"
#include "src/runtime/optimum.hpp"
#include "src/runtime/trainer.hpp"
#include "tests/common/scratch.hpp"
#include "topology/generators.hpp"

using namespace gossip;
using namespace gossip::runtime;
using gossip::testing::Scratch;

namespace {

// ∇F(x) = (1/n) Σ_r (mean gradient of the model over shard r) + λx, from the model's loss_grad.
std::vector<double> objective_gradient(Model& model, const Dataset& train,
                                       const std::vector<std::vector<std::size_t>>& shards,
                                       double lambda, std::span<const float> x) {
  std::vector<double> total(x.size(), 0.0);
  std::vector<float> g(x.size());
  for (const auto& shard : shards) {
    // Batches of at most 256 rows (the MLP's batch buffers), weighted by their share.
    for (std::size_t start = 0; start < shard.size(); start += 256) {
      const std::size_t rows = std::min<std::size_t>(256, shard.size() - start);
      model.loss_grad(x, train, std::span(shard).subspan(start, rows), g);
      const double w = static_cast<double>(rows) /
                       (static_cast<double>(shard.size()) * static_cast<double>(shards.size()));
      for (std::size_t i = 0; i < x.size(); ++i) total[i] += w * g[i];
    }
  }
  for (std::size_t i = 0; i < x.size(); ++i) total[i] += lambda * x[i];
  return total;
}

double norm(const std::vector<double>& v) {
  return std::sqrt(std::inner_product(v.begin(), v.end(), v.begin(), 0.0));
}

}  // namespace

TEST_CASE("least squares: the model's gradient against central finite differences") {
  const auto tt = synthetic_least_squares(5, 64, 8, 3);
  REQUIRE(tt.train.regression());
  LeastSquares model(5);
  std::vector<float> x(model.size());
  model.init(x, 1);
  std::vector<std::size_t> batch{0, 3, 17, 40};
  std::vector<float> g(x.size()), scratch(x.size());
  model.loss_grad(x, tt.train, batch, g);
  for (std::size_t i = 0; i < x.size(); ++i) {
    auto xp = x, xm = x;
    xp[i] += 1e-2f;
    xm[i] -= 1e-2f;
    const double fd = (model.loss_grad(xp, tt.train, batch, scratch) -
                       model.loss_grad(xm, tt.train, batch, scratch)) /
                      2e-2;
    CHECK(g[i] ==
          doctest::Approx(fd).epsilon(1e-3));  // the loss is quadratic: exact up to rounding
  }
  const auto e = model.evaluate(x, tt.test);
  CHECK(std::isnan(e.accuracy));
  CHECK(e.loss > 0.0);
  CHECK_THROWS_WITH(model.loss_grad(x, synthetic_blobs(5, 3, 50, 1, 1).train, batch, g),
                    doctest::Contains("needs a data set with targets"));
}

TEST_CASE("the known optimum zeroes the objective's gradient, computed by the models") {
  for (const bool logistic : {false, true}) {
    CAPTURE(logistic);
    const auto tt =
        logistic ? synthetic_logistic(6, 900, 10, 5) : synthetic_least_squares(6, 900, 10, 5);
    // Unequal shards, by label: the weights 1/(n |S_r|) matter.
    auto shards = partition_all(tt.train, PartitionKind::dirichlet, 3, 7, 0.5);
    const double lambda = logistic ? 0.01 : 0.001;
    std::unique_ptr<Model> model;
    if (logistic)
      model = std::make_unique<Mlp>(6, std::vector<std::size_t>{}, 2);
    else
      model = std::make_unique<LeastSquares>(6);
    const KnownOptimum opt(model->layout(), tt.train, shards, lambda);
    CHECK(opt.gradient_norm() < 1e-9);
    const std::vector<float> xs(opt.x().begin(), opt.x().end());
    // The float models' gradient at x* vanishes up to float rounding...
    const auto at_opt = objective_gradient(*model, tt.train, shards, lambda, xs);
    CHECK(norm(at_opt) < 1e-5);
    // ... and elsewhere it does not, and F is larger there.
    auto moved = xs;
    moved[0] += 0.1f;
    CHECK(norm(objective_gradient(*model, tt.train, shards, lambda, moved)) > 1e-3);
    CHECK(opt.objective(moved) > opt.value());
    CHECK(opt.objective(xs) == doctest::Approx(opt.value()).epsilon(1e-6));
    CHECK(opt.distance(xs) < 1e-6);
    // A different weighting of the same rows has another optimum: the shards count.
    const KnownOptimum pooled(model->layout(), tt.train, {[&] {
                                std::vector<std::size_t> all;
                                for (const auto& s : shards)
                                  all.insert(all.end(), s.begin(), s.end());
                                return all;
                              }()},
                              lambda);
    CHECK(pooled.distance(xs) > 1e-4);
  }
  const auto tt = synthetic_logistic(4, 100, 10, 5);
  const std::vector<std::vector<std::size_t>> one{{0, 1, 2, 3, 4, 5, 6, 7}};
  CHECK_THROWS_WITH(KnownOptimum(MlpLayout(4, {}, 2), tt.train, one, 0.0),
                    doctest::Contains("only with algorithm.weight_decay > 0"));
  CHECK_THROWS_WITH(KnownOptimum(MlpLayout(4, {3}, 2), tt.train, one, 0.1),
                    doctest::Contains("without hidden layers"));
}

TEST_CASE(
    "full-batch least squares by label: D², RelaySum and all-reduce reach x*, D-PSGD does not") {
  // Four peers, each holding other groups (other local optima), full-batch gradients (batch =
  // shard), constant lr: D-PSGD's fixed point is off the optimum by its heterogeneity bias; the
  // exact methods converge to x* up to float rounding.
  for (const char* algorithm : {"allreduce", "d2", "relaysum", "dpsgd"}) {
    const std::string name = algorithm;
    CAPTURE(name);
    const Scratch scratch("optimum_" + name);
    auto c = parse_run_config("[topology]\nfile = \"ring:4\"\n", "test.toml");
    apply_override(c, "run.output=\"" + scratch.dir().string() + "\"");
    apply_override(c, "model.kind=softmax");
    apply_override(c, "data.dataset=least-squares");
    apply_override(c, "data.partition=label");
    apply_override(c, "data.train_limit=2000");
    apply_override(c, "data.test_limit=100");
    apply_override(c, "run.batch_size=500");
    apply_override(c, "run.epochs=400");
    apply_override(c, "run.log_every=1000");
    apply_override(c, "algorithm.name=" + name);
    apply_override(c, "algorithm.lr=0.1");
    apply_override(c, "algorithm.momentum=0");
    apply_override(c, "algorithm.weight_decay=0.001");
    if (name == "relaysum") apply_override(c, "topology.file=\"grid:4\"");  // a path: a tree
    const auto topo = topology::make_topology(topology::parse_spec(c.topology));
    const auto data = load_data(c);
    const auto shards = partition_all(data.train, parse_partition(c.partition), 4, c.seed);
    auto hub = std::make_shared<net::InprocHub>(topo);
    std::vector<double> distance(4);
    std::vector<std::thread> threads;
    for (int r = 0; r < 4; ++r)
      threads.emplace_back([&, r] {
        net::InprocTransport t(hub, r);
        PeerTrainer trainer(c, topo, r, t, data, shards);
        const auto s = trainer.run({});
        distance[static_cast<std::size_t>(r)] = s.test.distance_to_optimum.value();
      });
    for (auto& t : threads) t.join();
    for (double d : distance) {
      if (name == "dpsgd")
        CHECK(d > 1e-2);
      else
        CHECK(d < 1e-4);
    }
  }
}
