// The registry of algorithms (gossip/algorithms/registry.hpp): every row constructs and runs, its
// aliases resolve to it, the unknown-name error lists every name, and make_algorithm enforces the
// row's codec and topology rules.

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "algorithm_harness.hpp"
#include "gossip/algorithms/registry.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;

namespace {

// A topology the row accepts: a path (a tree) for tree algorithms, a ring otherwise.
const char* topology_for(const ga::AlgorithmInfo& a) {
  return a.topology == ga::TopologyNeed::tree ? "grid:4" : "ring:4";
}

std::string error_of(const ga::AlgorithmConfig& cfg, const char* spec) {
  const auto topo = gt::make_topo(spec);
  gt::InprocNetwork net(topo);
  const std::vector<float> x0(8, 0.0f);
  try {
    ga::make_algorithm(cfg, *net.transports[0], topo, x0);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("every registry row constructs, runs a few rounds and converges towards the mean") {
  const std::size_t d = 16;
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    CAPTURE(a.name);
    CHECK(!a.description.empty());
    const auto topo = gt::make_topo(topology_for(a));
    gt::DiagonalQuadratic problem(topo.size(), d, 5, 0.5f);
    std::vector<float> x0(d, 0.0f);
    ga::AlgorithmConfig cfg;
    cfg.name = std::string(a.name);
    cfg.lr = 0.05f;
    cfg.consensus_step = 0.5f;
    std::string made;
    const auto models = gt::run_algorithm(
        cfg, topo, x0, 60,
        [&](int r, std::span<const float> x, std::span<float> g) { problem.gradient(r, x, g); },
        [&](int r, std::uint64_t round, ga::Algorithm& algo) {
          if (r == 0 && round == 1) made = algo.name();
        });
    CHECK(made == a.name);  // the object the factory made carries the canonical name
    // 60 steps from 0 towards the optimum (contraction 1 - lr a_k >= 0.9 per step).
    std::vector<float> mean(d, 0.0f);
    for (const auto& x : models)
      for (std::size_t k = 0; k < d; ++k) mean[k] += x[k] / static_cast<float>(models.size());
    CHECK(gt::relative_error(mean, problem.optimum) < 0.5);
  }
}

TEST_CASE("names and aliases resolve to their row; unknown names list every canonical name") {
  std::set<std::string_view> seen;
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    CHECK(seen.insert(a.name).second);
    CHECK(&ga::find_algorithm(a.name) == &a);
    for (std::string_view alias : a.aliases) {
      CAPTURE(alias);
      CHECK(seen.insert(alias).second);  // no name or alias twice
      CHECK(&ga::find_algorithm(alias) == &a);
    }
  }
  CHECK(ga::find_algorithm("choco").consensus_step);
  CHECK(ga::find_algorithm("deepsqueeze").consensus_step);
  CHECK_FALSE(ga::find_algorithm("d-psgd").consensus_step);
  CHECK(ga::find_algorithm("c-psgd").centralized);
  std::string message;
  try {
    ga::find_algorithm("gossip-magic");
  } catch (const std::invalid_argument& e) {
    message = e.what();
  }
  CHECK(message.find("unknown algorithm 'gossip-magic'") != std::string::npos);
  const std::string help = ga::algorithm_help();
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    CAPTURE(a.name);
    CHECK(message.find(std::string(a.name)) != std::string::npos);
    CHECK(ga::algorithm_names().find(std::string(a.name)) != std::string::npos);
    CHECK(help.find(std::string(a.description)) != std::string::npos);
    for (std::string_view alias : a.aliases)
      CHECK(message.find(std::string(alias)) != std::string::npos);
  }
}

TEST_CASE("make_algorithm enforces each row's codec rule") {
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    CAPTURE(a.name);
    ga::AlgorithmConfig cfg;
    cfg.name = std::string(a.name);
    cfg.consensus_step = 0.5f;
    for (const char* codec : {"identity", "fp16", "bf16", "qsgd:s=3", "topk:ratio=0.5"}) {
      CAPTURE(codec);
      cfg.codec = codec;
      const std::string c = codec;
      const bool lossless = c == "identity" || c == "fp16" || c == "bf16";
      const bool allowed = a.codecs == ga::CodecRule::any ||
                           (a.codecs == ga::CodecRule::lossless && lossless) ||
                           (a.codecs == ga::CodecRule::identity && c == "identity");
      const std::string err = error_of(cfg, topology_for(a));
      if (allowed) {
        CHECK(err == "no error");
      } else {
        CHECK(err.find("codec is \"" + c + "\", but " + std::string(a.name)) != std::string::npos);
        CHECK_THROWS_AS(ga::check_codec(a, codec), std::invalid_argument);
      }
    }
  }
  CHECK(ga::find_algorithm("dpsgd").codecs == ga::CodecRule::lossless);
  CHECK(ga::find_algorithm("allreduce").codecs == ga::CodecRule::identity);
  CHECK(ga::find_algorithm("choco-sgd").codecs == ga::CodecRule::any);
}

TEST_CASE("make_algorithm enforces each row's topology need") {
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    CAPTURE(a.name);
    ga::AlgorithmConfig cfg;
    cfg.name = std::string(a.name);
    cfg.consensus_step = 0.5f;
    // A ring is no tree; a transport that links other neighbours than W's is refused by every
    // row that gossips over W.
    const std::string on_ring = error_of(cfg, "ring:4");
    if (a.topology == ga::TopologyNeed::tree)
      CHECK(on_ring.find("needs a tree") != std::string::npos);
    else
      CHECK(on_ring == "no error");
    const auto topo = gt::make_topo("complete:4");
    const auto ring = gt::make_topo("ring:4");
    gt::InprocNetwork net(ring);  // the transport links a ring, W is the complete graph's
    const std::vector<float> x0(8, 0.0f);
    std::string err = "no error";
    try {
      ga::make_algorithm(cfg, *net.transports[0], topo, x0);
    } catch (const std::invalid_argument& e) {
      err = e.what();
    }
    if (a.topology == ga::TopologyNeed::peers || a.topology == ga::TopologyNeed::all_pairs)
      CHECK(err == "no error");  // only n matters: no W (the links are the transport's concern)
    else
      CHECK(err.find("exchanges with") != std::string::npos);
  }
  // D-PSGD mixes with each round's W^(t) and all-reduce uses no W: only they may run on a
  // time-varying graph, and the refusal of every other row says why.
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    CAPTURE(a.name);
    CHECK(a.time_varying == (a.name == "dpsgd" || a.centralized));
    CHECK(ga::time_varying_refusal(a.name).empty() == a.time_varying);
  }
}
