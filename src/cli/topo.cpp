// `gossip topo`: generate, inspect and compare topologies.

#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "src/cli/cli.hpp"
#include "topology/generators.hpp"
#include "topology/spectral.hpp"
#include "topology/topology_file.hpp"

namespace gossip::cli {

namespace {

using nlohmann::json;
namespace topo = gossip::topology;

json report_json(const topo::Topology& t, const topo::SpectralReport& r, bool with_matrix) {
  json j;
  j["topology"] = t.description;
  j["peers"] = r.peers;
  j["edges"] = r.edges;
  j["degree_min"] = r.degree_min;
  j["degree_mean"] = r.degree_mean;
  j["degree_max"] = r.degree_max;
  j["diameter"] = r.diameter;
  j["diameter_exact"] = r.diameter_exact;
  j["tree"] = t.graph.is_tree();
  j["authenticated"] = t.authenticated();
  j["solver"] = r.solver;
  j["lambda_2"] = r.lambda_2 ? json(*r.lambda_2) : json(nullptr);
  j["lambda_n"] = r.lambda_n;
  j["rho"] = r.rho;
  j["spectral_gap"] = r.spectral_gap;
  j["beta"] = r.beta;
  j["rounds_to_1e-6"] = r.rounds_to_1e6 ? json(*r.rounds_to_1e6) : json(nullptr);
  j["measured_contraction"] = r.measured_contraction;
  j["measured_rounds"] = r.measured_rounds;
  j["min_diagonal"] = r.min_diagonal;
  j["negative_diagonal"] = r.min_diagonal < 0.0;
  if (!r.eigenvalues.empty()) j["eigenvalues"] = r.eigenvalues;
  if (with_matrix) {
    json rows = json::array();
    for (int i = 0; i < t.size(); ++i) {
      std::vector<double> row(static_cast<std::size_t>(t.size()), 0.0);
      for (const auto& nb : t.W[static_cast<std::size_t>(i)])
        row[static_cast<std::size_t>(nb.rank)] = nb.weight;
      rows.push_back(row);
    }
    j["W"] = rows;
  }
  return j;
}

std::string rounds_text(const std::optional<long long>& r) {
  return r ? std::to_string(*r) : std::string("never (rho >= 1)");
}

// Rounds to shrink disagreement 1e6 times on a time-varying topology: whole periods.
std::optional<long long> schedule_rounds(const topo::ScheduleReport& s) {
  if (!s.rounds_to_1e6) return std::nullopt;
  return *s.rounds_to_1e6 * static_cast<long long>(s.period);
}

json schedule_json(const topo::Topology& t, const topo::SpectralReport& g,
                   const topo::ScheduleReport& s, bool with_matrix) {
  json j;
  j["topology"] = t.description;
  j["time_varying"] = true;
  j["peers"] = g.peers;
  j["period"] = s.period;
  j["union_edges"] = g.edges;
  j["union_degree_min"] = g.degree_min;
  j["union_degree_max"] = g.degree_max;
  j["diameter"] = g.diameter;
  j["diameter_exact"] = g.diameter_exact;
  j["send_degree_min"] = s.send_degree_min;
  j["send_degree_max"] = s.send_degree_max;
  j["receive_degree_min"] = s.receive_degree_min;
  j["receive_degree_max"] = s.receive_degree_max;
  j["doubly_stochastic"] = s.doubly_stochastic;
  j["authenticated"] = t.authenticated();
  if (s.product_computed) {
    j["exact_average"] = s.exact_average;
    j["product_deviation"] = s.product_deviation;
    j["rho_period"] = s.rho_period;
    const auto rounds = schedule_rounds(s);
    j["rounds_to_1e-6"] = rounds ? json(*rounds) : json(nullptr);
  } else {
    j["exact_average"] = nullptr;
    j["rho_period"] = nullptr;
  }
  j["measured_contraction_period"] = s.measured_contraction_period;
  j["measured_contraction"] = s.measured_contraction;
  j["measured_periods"] = s.measured_periods;
  if (with_matrix) {
    json rounds = json::array();
    for (std::size_t r = 0; r < s.period; ++r) {
      json rows = json::array();
      for (int i = 0; i < t.size(); ++i) {
        std::vector<double> row(static_cast<std::size_t>(t.size()), 0.0);
        for (const auto& nb : t.mixing(r)[static_cast<std::size_t>(i)])
          row[static_cast<std::size_t>(nb.rank)] = nb.weight;
        rows.push_back(row);
      }
      rounds.push_back(rows);
    }
    j["W"] = rounds;
  }
  return j;
}

void print_schedule(const topo::Topology& t, const topo::SpectralReport& g,
                    const topo::ScheduleReport& s, bool with_matrix) {
  auto row = [](std::string_view key, const std::string& value) {
    fmt::print("{:<22}{}\n", key, value);
  };
  row("topology", t.description);
  row("peers", std::to_string(g.peers));
  row("schedule", fmt::format("time-varying, W^(t) repeats every {} rounds", s.period));
  row("per-round degree",
      fmt::format("sends to {}..{}, takes from {}..{} peers", s.send_degree_min, s.send_degree_max,
                  s.receive_degree_min, s.receive_degree_max));
  row("union graph",
      fmt::format("{} edges, degree {}..{}, diameter {}{} (the links opened at start-up)", g.edges,
                  g.degree_min, g.degree_max, g.diameter_exact ? "" : ">= ", g.diameter));
  row("doubly stochastic", s.doubly_stochastic ? "yes, every W^(t)" : "NO");
  row("authenticated", t.authenticated()
                           ? fmt::format("yes: CURVE, {} public keys", t.public_keys.size())
                           : std::string("no: plaintext links"));
  if (!s.product_computed) {
    row("period product",
        fmt::format("not computed above --dense-limit peers (P is dense, n x n = {} x {})", g.peers,
                    g.peers));
  } else if (s.exact_average) {
    row("period product",
        fmt::format("P = (1/n) 11^T (max |P_ij - 1/n| = {:.3g}): every {} rounds average "
                    "exactly",
                    s.product_deviation, s.period));
  } else {
    row("period product",
        fmt::format("not the average (max |P_ij - 1/n| = {:.6g})", s.product_deviation));
  }
  if (s.product_computed) {
    row("rho of the period",
        fmt::format("{:.12f}   ||P - J||_2 = sqrt(rho(P^T P)), P = W^({})...W^(0)", s.rho_period,
                    s.period - 1));
    row("rounds to 1e-6",
        s.rounds_to_1e6 ? fmt::format("{}   {} whole period{} of ||P - J||_2", *schedule_rounds(s),
                                      *s.rounds_to_1e6, *s.rounds_to_1e6 == 1 ? "" : "s")
                        : rounds_text(std::nullopt));
  }
  row("measured contraction",
      fmt::format("{:.12f} per period, {:.12f} per round, x <- W^(t) x from a seeded random x "
                  "({} periods)",
                  s.measured_contraction_period, s.measured_contraction, s.measured_periods));
  if (with_matrix) {
    for (std::size_t r = 0; r < s.period; ++r) {
      fmt::print("W^({})\n", r);
      for (int i = 0; i < t.size(); ++i) {
        std::vector<std::string> cells;
        for (int j = 0; j < t.size(); ++j)
          cells.push_back(fmt::format("{:8.5f}", topo::row_weight(t.mixing(r), i, j)));
        fmt::print("  {}\n", fmt::join(cells, " "));
      }
    }
  }
}

void print_report(const topo::Topology& t, const topo::SpectralReport& r, bool all_eigenvalues,
                  bool with_matrix) {
  auto row = [](std::string_view key, const std::string& value) {
    fmt::print("{:<22}{}\n", key, value);
  };
  row("topology", t.description);
  row("peers", std::to_string(r.peers));
  row("edges", std::to_string(r.edges));
  row("degree",
      fmt::format("min {}, mean {:.2f}, max {}", r.degree_min, r.degree_mean, r.degree_max));
  row("diameter", r.diameter_exact ? std::to_string(r.diameter)
                                   : fmt::format(">= {} (four-sweep BFS bound)", r.diameter));
  row("tree", t.graph.is_tree()
                  ? fmt::format("yes: RelaySum averages every peer, the farthest {} rounds "
                                "late",
                                std::max(r.diameter - 1, 0))
                  : std::string("no: RelaySum needs a tree (connected, n - 1 edges)"));
  row("authenticated",
      t.authenticated()
          ? fmt::format("yes: CURVE, {} public keys; links are encrypted and only these keys are "
                        "admitted",
                        t.public_keys.size())
          : std::string("no: plaintext links (no public_key in the file)"));
  row("eigensolver", r.solver);
  row("lambda_2", r.lambda_2 ? fmt::format("{:.12f}", *r.lambda_2) : "- (one peer)");
  row("lambda_n", fmt::format("{:.12f}", r.lambda_n));
  row("rho", fmt::format("{:.12f}   max(|lambda_2|, |lambda_n|)", r.rho));
  row("spectral gap", fmt::format("{:.12f}   1 - rho", r.spectral_gap));
  row("beta", fmt::format("{:.12f}   ||I - W||_2", r.beta));
  row("rounds to 1e-6", fmt::format("{}   ceil(ln 1e6 / ln(1/rho))", rounds_text(r.rounds_to_1e6)));
  row("measured contraction",
      fmt::format("{:.12f}   per round, x <- Wx from a seeded random x ({} rounds)",
                  r.measured_contraction, r.measured_rounds));
  row("weights", fmt::format("min diagonal {:.6g}, min off-diagonal {:.6g}", r.min_diagonal,
                             r.min_offdiagonal));
  if (r.min_diagonal < 0.0)
    fmt::print(
        "note: W has a negative diagonal entry ({:.6g}). Best-constant weights allow this; the "
        "matrix is still symmetric and doubly stochastic, but W is not non-negative.\n",
        r.min_diagonal);
  if (!r.eigenvalues.empty()) {
    const std::size_t shown =
        all_eigenvalues ? r.eigenvalues.size() : std::min<std::size_t>(12, r.eigenvalues.size());
    std::vector<std::string> ev;
    for (std::size_t k = 0; k < shown; ++k) ev.push_back(fmt::format("{:.6f}", r.eigenvalues[k]));
    row("eigenvalues",
        fmt::format("{}{}", fmt::join(ev, " "),
                    shown < r.eigenvalues.size()
                        ? fmt::format(" ... ({} more; --eigenvalues)", r.eigenvalues.size() - shown)
                        : ""));
  }
  if (with_matrix) {
    fmt::print("W\n");
    for (int i = 0; i < t.size(); ++i) {
      std::vector<std::string> cells;
      for (int j = 0; j < t.size(); ++j) cells.push_back(fmt::format("{:8.5f}", t.weight(i, j)));
      fmt::print("  {}\n", fmt::join(cells, " "));
    }
  }
}

void check_matrix_size(const topo::Topology& t) {
  if (t.size() > 2000)
    throw std::invalid_argument(fmt::format(
        "--matrix prints n x n = {} x {} numbers; refused above 2000 peers", t.size(), t.size()));
}

}  // namespace

void add_topo_commands(CLI::App& app) {
  auto* topo_cmd = app.add_subcommand("topo", "Topologies: generate, inspect, compare");
  topo_cmd->require_subcommand(1);

  // --- generate ---
  struct GenerateArgs {
    std::string kind;
    std::vector<std::string> sizes;
    std::string weights, endpoint, output;
    std::string seed = "1";  // parse_seed checks it: CLI11 wraps -1 to 2^64 - 1, saturates 2^64
    double p = 0.0;          // p, degree and seed go into the spec only when given
    int degree = 0;
  };
  auto gen = std::make_shared<GenerateArgs>();
  auto* g = topo_cmd->add_subcommand(
      "generate",
      "Write a topology file (explicit form) from a generator.\n"
      "Kinds: ring N, torus A B [C...], grid A B [C...], complete N, star N, hypercube N (power of "
      "2), exponential N, erdos-renyi N --p P, random-regular N --degree D, one-peer-exponential N "
      "(time-varying: one peer per round, N >= 2).\n"
      "Default weights: ring: 1/3 to self and to each neighbour; all others: metropolis.\n"
      "Random kinds redraw a disconnected graph up to 100 times, then fail.");
  g->add_option("kind", gen->kind, "Generator kind")->required();
  g->add_option("sizes", gen->sizes, "Sizes: N, or A B for a 2-D torus/grid (also AxB)")
      ->required();
  g->add_option("--weights", gen->weights,
                "Weight scheme: ring, metropolis, max-degree, best-constant");
  auto* seed_opt =
      g->add_option("--seed", gen->seed, "Seed of random generators, an integer in [0, 2^64 - 1]")
          ->capture_default_str();
  auto* p_opt = g->add_option("--p", gen->p, "Edge probability (erdos-renyi)");
  auto* degree_opt = g->add_option("--degree,-d", gen->degree, "Degree (random-regular)");
  g->add_option(
      "--endpoint", gen->endpoint,
      "Base endpoint: tcp://host:port gives rank r port+r; or a pattern with {rank} "
      "(default tcp://127.0.0.1:29500, or ipc:///tmp/gossip-{rank}.sock when ports run out)");
  g->add_option("-o,--output", gen->output, "Output file (default: standard output)");
  g->callback([gen, seed_opt, p_opt, degree_opt] {
    std::string spec_text = gen->kind + ":";
    for (std::size_t k = 0; k < gen->sizes.size(); ++k) spec_text += (k ? "x" : "") + gen->sizes[k];
    // Every option given goes into the spec, which checks its value (p = nan, d = -1) and refuses
    // one the kind does not use; the seed, which every kind takes, is checked as seed= is.
    if (p_opt->count() > 0) spec_text += fmt::format(",p={}", gen->p);
    if (degree_opt->count() > 0) spec_text += fmt::format(",d={}", gen->degree);
    auto spec = topo::parse_spec(spec_text);
    if (seed_opt->count() > 0) spec.seed = topo::parse_seed(gen->seed);
    spec.endpoint = gen->endpoint;
    if (!gen->weights.empty()) spec.weights = topo::parse_scheme(gen->weights);
    const auto t = topo::make_topology(spec);
    if (gen->output.empty()) {
      topo::write_topology(t, std::cout);
      return;
    }
    std::ofstream out(gen->output);
    if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", gen->output));
    topo::write_topology(t, out);
    out.close();
    if (!out) throw std::runtime_error(fmt::format("writing '{}' failed", gen->output));
    if (t.time_varying())
      fmt::print(stderr, "wrote {} ({} peers, time-varying: period {}, {} edges in the union)\n",
                 gen->output, t.size(), t.period(), t.graph.edge_count());
    else
      fmt::print(stderr, "wrote {} ({} peers, {} edges)\n", gen->output, t.size(),
                 t.graph.edge_count());
  });

  // --- inspect ---
  struct InspectArgs {
    std::string target;
    bool json = false, matrix = false, eigenvalues = false;
    int dense_limit = 2000;
  };
  auto ins = std::make_shared<InspectArgs>();
  auto* i = topo_cmd->add_subcommand(
      "inspect",
      "Validate a topology file (or spec such as torus:4x4) and print its spectral report");
  i->add_option("file", ins->target, "Topology file, or a generator spec like ring:16")->required();
  i->add_flag("--json", ins->json, "Print JSON instead of a table");
  i->add_flag("--matrix", ins->matrix, "Also print W (JSON key \"W\", a list of rows)");
  i->add_flag("--eigenvalues", ins->eigenvalues, "Print every eigenvalue in the table");
  i->add_option("--dense-limit", ins->dense_limit,
                "Largest n for the dense eigensolver; above it Lanczos gives lambda_2 and lambda_n")
      ->capture_default_str()
      ->check(CLI::Range(0, std::numeric_limits<int>::max()));
  i->callback([ins] {
    const auto t = topo::load_topology_or_spec(ins->target);
    if (ins->matrix) check_matrix_size(t);
    topo::InspectOptions opt;
    opt.dense_limit = ins->dense_limit;
    if (t.time_varying()) {
      const auto g = topo::graph_report(t, opt);
      const auto s = topo::inspect_schedule(t, opt);
      if (ins->json)
        fmt::print("{}\n", schedule_json(t, g, s, ins->matrix).dump(2));
      else
        print_schedule(t, g, s, ins->matrix);
      return;
    }
    const auto r = topo::inspect(t, opt);
    if (ins->json)
      fmt::print("{}\n", report_json(t, r, ins->matrix).dump(2));
    else
      print_report(t, r, ins->eigenvalues, ins->matrix);
  });

  // --- compare ---
  struct CompareArgs {
    std::vector<std::string> targets;
    bool json = false;
  };
  auto cmp = std::make_shared<CompareArgs>();
  auto* c = topo_cmd->add_subcommand(
      "compare",
      "One table comparing topologies (files or specs). Without arguments: ring, torus, "
      "exponential and random-regular (d=4) at 16, 64 and 256 peers.");
  c->add_option("topologies", cmp->targets, "Topology files or specs (ring:16 torus:8x8 ...)");
  c->add_flag("--json", cmp->json, "Print JSON Lines, one object per topology");
  c->callback([cmp] {
    auto targets = cmp->targets;
    if (targets.empty())
      targets = {"ring:16",  "torus:4x4",   "exponential:16",  "random-regular:16,d=4",
                 "ring:64",  "torus:8x8",   "exponential:64",  "random-regular:64,d=4",
                 "ring:256", "torus:16x16", "exponential:256", "random-regular:256,d=4"};
    // Load every topology before printing anything: a bad one fails without half a table.
    std::vector<topo::Topology> loaded;
    for (const auto& target : targets) loaded.push_back(topo::load_topology_or_spec(target));
    // One space between columns whatever their values (a long name, 10^7 edges, "never (rho >=
    // 1)" are wider than their columns and push the rest of the row right).
    constexpr std::string_view kRow =
        "{:<34} {:>8} {:>8} {:>6.2f} {:>5} {:>10.6f} {:>10.6f} {:>9.6f} {:>9.6f} {:>16}\n";
    if (!cmp->json)
      fmt::print("{:<34} {:>8} {:>8} {:>6} {:>5} {:>10} {:>10} {:>9} {:>9} {:>16}\n", "topology",
                 "peers", "edges", "deg", "diam", "lambda_2", "rho", "gap", "beta", "rounds 1e-6");
    for (std::size_t k = 0; k < targets.size(); ++k) {
      const auto& target = targets[k];
      const auto& t = loaded[k];
      if (t.time_varying()) {
        // One message per round: deg is the per-round send degree; rho and gap are per round,
        // the period's ||P - J||_2 to the power 1/period; there is no single lambda_2 or beta.
        const auto g = topo::graph_report(t);
        const auto s = topo::inspect_schedule(t);
        if (cmp->json) {
          auto j = schedule_json(t, g, s, false);
          j["name"] = target;
          fmt::print("{}\n", j.dump());
          continue;
        }
        const double rho = std::pow(s.rho_period, 1.0 / static_cast<double>(s.period));
        const bool known = s.product_computed;  // not above the dense limit
        fmt::print("{:<34} {:>8} {:>8} {:>6.2f} {:>5} {:>10} {:>10} {:>9} {:>9} {:>16}\n", target,
                   g.peers, g.edges, static_cast<double>(s.send_degree_max), g.diameter, "-",
                   known ? fmt::format("{:.6f}", rho) : "-",
                   known ? fmt::format("{:.6f}", 1.0 - rho) : "-", "-",
                   known ? rounds_text(schedule_rounds(s)) : "-");
        continue;
      }
      const auto r = topo::inspect(t);
      if (cmp->json) {
        auto j = report_json(t, r, false);
        j.erase("eigenvalues");
        j["name"] = target;
        fmt::print("{}\n", j.dump());
        continue;
      }
      fmt::print(fmt::runtime(kRow), target, r.peers, r.edges, r.degree_mean, r.diameter,
                 r.lambda_2.value_or(0.0), r.rho, r.spectral_gap, r.beta,
                 rounds_text(r.rounds_to_1e6));
    }
  });
}

}  // namespace gossip::cli
