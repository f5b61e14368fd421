// `gossip simulate`, `gossip peer` and `gossip launch`: training runs.

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <latch>
#include <limits>
#include <mutex>
#include <new>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gossip/algorithms/registry.hpp"
#include "gossip/algorithms/ring_allreduce.hpp"
#include "gossip/frame.hpp"
#include "gossip/inproc_transport.hpp"
#include "gossip/zmq_transport.hpp"
#include "kernels/codec.hpp"
#include "src/cli/cli.hpp"
#include "src/runtime/hosts.hpp"
#include "src/runtime/launcher.hpp"
#include "src/runtime/threads.hpp"
#include "src/runtime/trainer.hpp"
#include "topology/topology_file.hpp"

namespace gossip::cli {

namespace {

namespace fs = std::filesystem;
using runtime::RunConfig;

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) {
  g_stop.store(true);
}

void install_stop_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  bool resume = false;
  long long resume_round = -1;
  int rank = -1;
  bool progress = false;
  bool every_rank = false;  // launch: start every rank here, whatever host its endpoint names
  bool rejoin = false;      // peer: a restarted peer of a running run
  int restarts = 0;         // launch: restarts of a lost peer
  double restart_delay = 1.0;
};

void add_common_options(CLI::App* cmd, TrainArgs& a) {
  cmd->add_option("--config,-c", a.config, "Run config (TOML), e.g. configs/ring8_deepsqueeze.toml")
      ->required();
  cmd->add_option("--set", a.sets, "Override a config key: --set algorithm.lr=0.05 (repeatable)");
  cmd->footer("algorithm.name is one of (aliases in parentheses):\n" +
              algorithms::algorithm_help());
  cmd->add_flag("--resume", a.resume,
                "Continue from the latest round every peer has a checkpoint of (run folder)");
  cmd->add_option("--resume-round", a.resume_round, "Continue from this round's checkpoints")
      ->check(CLI::Range(0, std::numeric_limits<int>::max()));
}

RunConfig load_config(const TrainArgs& a) {
  return runtime::load_run_config(a.config, a.sets);
}

std::optional<std::uint64_t> resume_round(const TrainArgs& a, const RunConfig& c, int peers) {
  if (a.resume_round >= 0) return static_cast<std::uint64_t>(a.resume_round);
  if (!a.resume) return std::nullopt;
  auto r = runtime::PeerTrainer::latest_common_checkpoint(c, peers);
  if (!r)
    throw runtime::CheckpointError(
        fmt::format("--resume: no round with a checkpoint of all {} peers in {}/checkpoints", peers,
                    c.output_dir()));
  return r;
}

net::TransportOptions stoppable_transport_options(const RunConfig& c, std::size_t wire_bytes,
                                                  bool in_process) {
  auto o = runtime::transport_options(c, wire_bytes, in_process);
  o.cancelled = [] { return g_stop.load(); };
  return o;
}

// What each peer reports at the end, gathered in rank order (simulate: from its threads; peer:
// by an all-reduce).
struct PeerEnd {
  runtime::Evaluation test;                                                // its own model
  double bytes_sent = 0.0, wall_seconds = 0.0, distance_to_average = 0.0;  // relative
};

// PeerEnd as floats, for the all-reduce that gathers them under `gossip peer`. The byte count
// travels in 8-bit pieces: each piece times the number of peers (< 2^16) stays exact in a float,
// and rounding recovers it after the mean's division.
constexpr std::size_t kBytePieces = 8;
constexpr std::size_t kPeerEndFields = 6 + kBytePieces;
std::vector<double> pack(const PeerEnd& e) {
  std::vector<double> v{
      e.test.accuracy,
      e.test.loss,
      e.test.optimality_gap.value_or(std::numeric_limits<double>::quiet_NaN()),
      e.test.distance_to_optimum.value_or(std::numeric_limits<double>::quiet_NaN()),
      e.wall_seconds,
      e.distance_to_average};
  auto bytes = static_cast<std::uint64_t>(e.bytes_sent);
  for (std::size_t k = 0; k < kBytePieces; ++k, bytes >>= 8)
    v.push_back(static_cast<double>(bytes & 0xFF));
  return v;
}
PeerEnd unpack(std::span<const double> v) {
  PeerEnd e;
  e.test.accuracy = v[0];
  e.test.loss = v[1];
  if (!std::isnan(v[2])) e.test.optimality_gap = v[2];
  if (!std::isnan(v[3])) e.test.distance_to_optimum = v[3];
  e.wall_seconds = v[4];
  e.distance_to_average = v[5];
  std::uint64_t bytes = 0;
  for (std::size_t k = kBytePieces; k-- > 0;)
    bytes = (bytes << 8) | static_cast<std::uint64_t>(std::llround(v[6 + k]));
  e.bytes_sent = static_cast<double>(bytes);
  return e;
}

// A number, or null where there is none (the accuracy of a regression model is NaN).
nlohmann::json number(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

nlohmann::json summary_json(const RunConfig& c, const topology::Topology& topo,
                            const runtime::MlpLayout& model, std::uint64_t rounds,
                            const std::vector<PeerEnd>& peers, const runtime::Evaluation& avg,
                            std::span<const net::Departure> departures) {
  const auto [wire, fp32_wire] = runtime::message_bytes(c, model.size(), model.tensor_sizes());
  // Messages a peer sends per round, on average: its degree, or over the period of a
  // time-varying topology (one-peer exponential: 1).
  double degree = 0.0;
  for (std::size_t t = 0; t < topo.period(); ++t)
    for (int i = 0; i < topo.size(); ++i) degree += static_cast<double>(topo.send_to(i, t).size());
  degree /= static_cast<double>(topo.size()) * static_cast<double>(topo.period());
  const double n = static_cast<double>(peers.size());
  double acc = 0.0, bytes = 0.0, wall = 0.0, spread = 0.0;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  nlohmann::json per_peer = nlohmann::json::array();
  for (const auto& p : peers) {
    acc += p.test.accuracy / n;
    lo = std::min(lo, p.test.accuracy);
    hi = std::max(hi, p.test.accuracy);
    bytes += p.bytes_sent / n;
    wall = std::max(wall, p.wall_seconds);  // the run ends with its slowest peer
    spread += p.distance_to_average / n;
    per_peer.push_back(number(p.test.accuracy));
  }
  // What fp32 D-PSGD sends in as many rounds: one identity message (and frame header) per
  // receiver of each round.
  const double fp32_bytes =
      static_cast<double>(rounds) * degree * static_cast<double>(fp32_wire + net::kFrameHeaderSize);
  const std::size_t samples =
      rounds * static_cast<std::size_t>(c.batch_size) * static_cast<std::size_t>(peers.size());
  nlohmann::json j{{"name", c.name},
                   {"algorithm", c.algorithm},
                   {"codec", c.codec},
                   {"granularity", c.granularity},
                   {"topology", topo.description},
                   {"peers", topo.size()},
                   {"dataset", c.dataset},
                   {"partition", c.partition},
                   {"model", model.describe()},
                   {"parameters", model.size()},
                   {"epochs", c.epochs},
                   {"rounds", rounds},
                   {"test_accuracy_mean", number(acc)},
                   {"test_accuracy_min", number(lo)},
                   {"test_accuracy_max", number(hi)},
                   {"test_accuracy_per_peer", per_peer},
                   {"test_accuracy_avg_model", number(avg.accuracy)},
                   {"test_loss_avg_model", number(avg.loss)},
                   {"distance_to_average_relative_mean", number(spread)},
                   {"bytes_sent_per_peer", bytes},
                   {"message_wire_bytes", wire},
                   {"fp32_dpsgd_bytes_per_peer", fp32_bytes},
                   {"compression_ratio_vs_fp32_dpsgd", bytes > 0 ? fp32_bytes / bytes : 0.0},
                   {"wall_seconds", wall},
                   {"clock", c.clock},
                   {"samples_per_second", wall > 0 ? static_cast<double>(samples) / wall : 0.0}};
  // After a peer loss the means are over the peers that finished (test_accuracy_per_peer in
  // rank order of those), the averaged model is theirs.
  nlohmann::json gone = nlohmann::json::array();
  for (const net::Departure& d : departures) {
    nlohmann::json one = {{"rank", d.rank}, {"round", d.round}};
    if (d.back) one["back"] = *d.back;  // it rejoined from this round on
    gone.push_back(one);
  }
  j["departures"] = gone;
  j["peers_finished"] = peers.size();
  if (avg.optimality_gap) {
    double gap = 0.0, dist = 0.0;
    for (const auto& p : peers) {
      gap += p.test.optimality_gap.value_or(0.0) / n;
      dist += p.test.distance_to_optimum.value_or(0.0) / n;
    }
    j["optimality_gap_mean"] = gap;
    j["optimality_gap_avg_model"] = *avg.optimality_gap;
    j["distance_to_optimum_mean"] = dist;
    j["distance_to_optimum_avg_model"] = *avg.distance_to_optimum;
  }
  return j;
}

void write_summary(const RunConfig& c, const nlohmann::json& j) {
  fs::create_directories(c.output_dir());
  const auto path = fs::path(c.output_dir()) / "summary.json";
  std::ofstream(path) << j.dump(2) << '\n';
  if (j.contains("optimality_gap_avg_model"))
    fmt::print(
        "optimality gap F(x) - F(x*): {:.4g} mean over peers, {:.4g} averaged model; distance to "
        "x*: {:.4g} / {:.4g} of |x*|\n",
        j["optimality_gap_mean"].get<double>(), j["optimality_gap_avg_model"].get<double>(),
        j["distance_to_optimum_mean"].get<double>(),
        j["distance_to_optimum_avg_model"].get<double>());
  for (const auto& d : j["departures"]) {
    if (d.contains("back"))
      fmt::print(
          "peer {} left the run and rejoined (the others mixed without it in rounds {} to {})\n",
          d["rank"].get<int>(), d["round"].get<std::uint64_t>(),
          d["back"].get<std::uint64_t>() - 1);
    else
      fmt::print(
          "peer {} left the run (the others mixed without it from round {}); figures are "
          "over the {} peers that finished\n",
          d["rank"].get<int>(), d["round"].get<std::uint64_t>(),
          j["peers_finished"].get<std::size_t>());
  }
  if (!j["test_accuracy_mean"].is_null())
    fmt::print("test accuracy: {:.4f} mean over peers, {} averaged model\n",
               j["test_accuracy_mean"].get<double>(),
               j["test_accuracy_avg_model"].is_null()
                   ? std::string("no")
                   : fmt::format("{:.4f}", j["test_accuracy_avg_model"].get<double>()));
  if (!j["distance_to_average_relative_mean"].is_null())
    fmt::print("peers' distance to the averaged model: {:.3g} of its norm (mean over peers)\n",
               j["distance_to_average_relative_mean"].get<double>());
  if (j["fp32_dpsgd_bytes_per_peer"].get<double>() > 0)
    fmt::print("bytes sent per peer: {:.2f} MB ({:.2f} MB for fp32 D-PSGD, {:.1f}x less)\n",
               j["bytes_sent_per_peer"].get<double>() / 1e6,
               j["fp32_dpsgd_bytes_per_peer"].get<double>() / 1e6,
               j["compression_ratio_vs_fp32_dpsgd"].get<double>());
  else
    fmt::print("bytes sent per peer: {:.2f} MB (one peer: no neighbours to send to)\n",
               j["bytes_sent_per_peer"].get<double>() / 1e6);
  fmt::print("summary: {}\n", path.string());
}

// A diverged run: no checkpoint after the round that diverged, no summary, a hint, exit status 3.
// Every peer says the same (PeerSummary::divergence is agreed by all).
int report_divergence(const RunConfig& c, const runtime::PeerSummary& s) {
  const auto& d = *s.divergence;
  fmt::print(
      stderr,
      "diverged: peer {}'s training loss stopped being finite in round {} (epoch {:.2f}); "
      "every peer stopped, no checkpoint written after it. Try a smaller algorithm.lr{}, or a "
      "contractive codec (e.g. scaled=true for qsgd); a neighbour that sends non-finite values "
      "looks the same.\n",
      d.rank, d.round, static_cast<double>(d.round) / static_cast<double>(s.rounds_per_epoch),
      algorithms::find_algorithm(c.algorithm).consensus_step ? " or algorithm.consensus_step" : "");
  return 3;
}

// GOSSIP_TEST_DIVERGE=RANK:ROUND, for tests of the divergence path: peer RANK takes its training
// loss of round ROUND as NaN (TrainHooks::nan_loss_round). GOSSIP_TEST_LEAVE=RANK:ROUND, for
// tests of peer loss: peer RANK stops after ROUND rounds as if it had crashed
// (TrainHooks::leave_after_round; `gossip peer` then kills itself with SIGKILL).
std::optional<std::uint64_t> test_round(const char* name, int rank) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  const std::string text(v);
  const auto colon = text.find(':');
  int r = -1;
  std::uint64_t round = 0;
  const auto r_end = text.data() + (colon == std::string::npos ? 0 : colon);
  if (colon == std::string::npos || std::from_chars(text.data(), r_end, r).ptr != r_end ||
      std::from_chars(r_end + 1, text.data() + text.size(), round).ptr != text.data() + text.size())
    throw std::invalid_argument(fmt::format("{}='{}' is not RANK:ROUND", name, text));
  return r == rank ? std::optional(round) : std::nullopt;
}

runtime::TrainHooks test_hooks(int rank) {
  runtime::TrainHooks hooks;
  hooks.nan_loss_round = test_round("GOSSIP_TEST_DIVERGE", rank);
  hooks.leave_after_round = test_round("GOSSIP_TEST_LEAVE", rank);
  return hooks;
}

// No averaged model (a loss too close to the end): null in the summary.
runtime::Evaluation no_evaluation() {
  runtime::Evaluation e;
  e.loss = e.accuracy = std::numeric_limits<double>::quiet_NaN();
  return e;
}

// The averaged model over the peers still in the run, or nullopt (and a line saying why) when a
// loss too close to the end left them without an agreed set of members.
std::optional<std::vector<float>> final_average(net::Transport& transport,
                                                const runtime::PeerTrainer& trainer) {
  std::vector<float> avg(trainer.params().begin(), trainer.params().end());
  const std::uint64_t round = trainer.total_rounds() + 1;
  if (net::departures_settled(transport.departures(), trainer.round()) &&
      algorithms::allreduce_mean(transport, round, avg))
    return avg;
  fmt::print(stderr,
             "peer {}: a peer left too close to the end for the others to agree on it: no "
             "averaged model\n",
             transport.rank());
  return std::nullopt;
}

int run_simulate(const TrainArgs& a) {
  const RunConfig c = load_config(a);
  const auto topo = topology::load_topology_or_spec(c.topology);
  const int n = topo.size();
  runtime::check_device(c);  // before loading data: a missing GPU is an early, clear error
  fmt::print(stderr, "simulate: {} peers in one process ({}), loading data\n", n, topo.description);
  // The peers share this process's cores: one BLAS pool for all, an OpenMP count per thread.
  const auto threads = runtime::threads_per_peer(n);
  fmt::print(stderr, "simulate: {}\n", runtime::describe_threads(n, threads));
  if (threads) runtime::use_threads(*threads);
  const auto data = runtime::load_data(c);
  const auto shards = runtime::partition_all(data.train, runtime::parse_partition(c.partition), n,
                                             c.seed, c.dirichlet_alpha);
  const auto model = runtime::model_layout(c, data.train);
  const auto optimum = runtime::known_optimum(c, data.train, shards);  // once for all peers
  const auto opts = stoppable_transport_options(
      c, runtime::max_payload_bytes(c, model.size(), model.tensor_sizes(), n), true);
  auto hub = std::make_shared<net::InprocHub>(topo);
  const auto resume = resume_round(a, c, n);
  install_stop_handlers();

  std::vector<runtime::PeerSummary> summaries(static_cast<std::size_t>(n));
  // The first peer to fail and its exception: a peer that fails makes its neighbours time out
  // later, so the first error is the one to report.
  std::mutex error_mu;
  int failed_rank = -1;
  std::exception_ptr first_error;
  // Every peer builds its trainer (and loads its checkpoint) before any trains: one that fails
  // there stops them all at once instead of leaving its neighbours to time out.
  std::latch built(n);
  std::atomic<bool> build_failed{false};
  std::vector<PeerEnd> ends(static_cast<std::size_t>(n));
  runtime::Evaluation avg_eval = no_evaluation();
  std::uint64_t total_rounds = 0;
  std::vector<std::thread> peer_threads;
  for (int r = 0; r < n; ++r) {
    peer_threads.emplace_back([&, r] {
      bool arrived = false;
      if (threads) runtime::use_openmp_threads(*threads);
      try {
        net::InprocTransport transport(hub, r, opts);
        // Peers are threads: with run.device = "cuda" they share the GPUs round-robin.
        runtime::PeerTrainer trainer(c, topo, r, transport, data, shards,
                                     runtime::GpuPlacement::thread, optimum);
        if (resume) trainer.resume(*resume);
        arrived = true;
        built.arrive_and_wait();
        if (build_failed) return;
        runtime::TrainHooks hooks = test_hooks(r);
        hooks.stop_requested = [] { return g_stop.load(); };
        hooks.progress = r == 0;
        auto s = trainer.run(hooks);
        if (s.left) {
          // As a crashed peer: no collective, its transport goes with the thread.
          fmt::print(stderr, "peer {}: leaves the run after round {} (GOSSIP_TEST_LEAVE)\n", r,
                     s.rounds);
        } else if (s.divergence) {
          // No checkpoint of a model that is not finite.
        } else if (s.stopped_early) {
          const auto path = trainer.checkpoint();
          if (r == 0)
            fmt::print(stderr, "stopped at round {}: checkpoints written ({} ...)\n", s.rounds,
                       path);
        } else {
          const auto avg = final_average(transport, trainer);
          ends[static_cast<std::size_t>(r)] = {
              s.test, static_cast<double>(s.totals.bytes_sent), s.wall_seconds,
              avg ? runtime::disagreement(trainer.params(), *avg).relative()
                  : std::numeric_limits<double>::quiet_NaN()};
          if (r == algorithms::ring_members(transport).front()) {
            const auto e = avg ? trainer.assess(*avg) : no_evaluation();
            const std::lock_guard<std::mutex> lock(error_mu);
            avg_eval = e;
            total_rounds = s.rounds;
          }
        }
        summaries[static_cast<std::size_t>(r)] = s;
      } catch (const std::exception&) {
        {
          const std::lock_guard<std::mutex> lock(error_mu);
          if (!first_error) {
            failed_rank = r;
            first_error = std::current_exception();
          }
        }
        if (!arrived) {
          build_failed = true;
          built.arrive_and_wait();
        }
      }
    });
  }
  for (auto& t : peer_threads) t.join();
  if (first_error) {
    try {
      std::rethrow_exception(first_error);
    } catch (const std::bad_alloc&) {
      throw;  // main says it in words
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("peer {}: {}", failed_rank, e.what()));
    }
  }
  // Every peer agreed on the verdict: the first remaining peer's is the run's.
  const auto first = std::find_if(summaries.begin(), summaries.end(),
                                  [](const runtime::PeerSummary& s) { return !s.left; });
  if (first == summaries.end()) throw std::runtime_error("every peer left the run");
  if (first->divergence) return report_divergence(c, *first);
  if (first->stopped_early) return 130;
  std::vector<PeerEnd> remaining;
  for (int r = 0; r < n; ++r)
    if (!summaries[static_cast<std::size_t>(r)].left)
      remaining.push_back(ends[static_cast<std::size_t>(r)]);
  write_summary(c,
                summary_json(c, topo, model, total_rounds, remaining, avg_eval, first->departures));
  return 0;
}

int run_peer(const TrainArgs& a) {
  const RunConfig c = load_config(a);
  runtime::check_clock(c, false);  // before any work: a clear error at once
  const auto topo = topology::load_topology_or_spec(c.topology);
  const int n = topo.size();
  const int rank = runtime::rank_from_environment(a.rank);
  if (rank < 0 || rank >= n)
    throw std::invalid_argument(
        fmt::format("rank {} is out of range: {} has ranks 0..{}", rank, c.topology, n - 1));
  if (a.rejoin && (a.resume || a.resume_round >= 0))
    throw std::invalid_argument(
        "--rejoin takes the state of the running run from a neighbour; it cannot go with "
        "--resume");
  if (a.rejoin && c.on_peer_loss != "continue")
    throw std::invalid_argument(fmt::format(
        "--rejoin: {} has transport.on_peer_loss = \"{}\"; the others go on without a lost peer "
        "(and take it back) only with \"continue\"",
        c.source.empty() ? "the run config" : c.source, c.on_peer_loss));
  runtime::check_device(c);  // before loading data: a missing GPU is an early, clear error
  const auto secret = runtime::curve_secret_key(c, topo, rank);  // as early: a key is refused
  // Under launch the threads are chosen already (OMP_NUM_THREADS in the environment). A process
  // confined to some of the cores (srun --cpu-bind, taskset) has its share already.
  const int here = runtime::usable_cores() < runtime::online_cores()
                       ? 1
                       : runtime::peers_on_host_of(topo, rank, runtime::this_host_names());
  if (const auto threads = runtime::threads_per_peer(here)) {
    runtime::use_threads(*threads);
    fmt::print(stderr, "peer {}: {}\n", rank, runtime::describe_threads(here, threads));
  }
  const auto data = runtime::load_data(c);
  const auto shards = runtime::partition_all(data.train, runtime::parse_partition(c.partition), n,
                                             c.seed, c.dirichlet_alpha);
  const auto model = runtime::model_layout(c, data.train);
  const auto resume = resume_round(a, c, n);
  install_stop_handlers();
  // The trainer's buffers go before the transport: safe because a transport holds a caller's
  // buffer only inside a call, and an exception out of one aborts it first (the zero-copy sends
  // are released or torn down before the exception reaches us).
  auto options = stoppable_transport_options(
      c, runtime::max_payload_bytes(c, model.size(), model.tensor_sizes(), topo.size()), false);
  options.curve_secret_key = secret;
  options.rejoin = a.rejoin;
  net::ZmqTransport transport(topo, rank, std::move(options));
  runtime::PeerTrainer trainer(c, topo, rank, transport, data, shards);
  if (resume) trainer.resume(*resume);
  if (a.rejoin) {
    fmt::print(stderr, "peer {}: rejoining the run: waiting for a neighbour's state\n", rank);
    fmt::print(stderr, "peer {}: rejoined at round {}\n", rank, trainer.rejoin());
  }
  runtime::TrainHooks hooks = test_hooks(rank);
  hooks.stop_requested = [] { return g_stop.load(); };
  hooks.progress = a.progress || rank == 0;
  const auto s = trainer.run(hooks);
  if (s.left) {
    fmt::print(stderr, "peer {}: killing itself after round {} (GOSSIP_TEST_LEAVE)\n", rank,
               s.rounds);
    std::fflush(stderr);
    std::raise(SIGKILL);
  }
  if (s.divergence) return report_divergence(c, s);
  if (s.stopped_early) {
    fmt::print(stderr, "peer {}: stopped at round {}, checkpoint {}\n", rank, s.rounds,
               trainer.checkpoint());
    return 130;
  }
  // Averaged model and the means over the peers (those left after a loss), by all-reduce.
  const auto avg = final_average(transport, trainer);
  const auto members = algorithms::ring_members(transport);
  const auto m = static_cast<double>(members.size());
  const auto slot =
      static_cast<std::size_t>(std::find(members.begin(), members.end(), rank) - members.begin());
  // Every remaining peer's end figures, gathered by an all-reduce of the mean: each peer puts m
  // times its own figures in its slot and zeros elsewhere.
  std::vector<float> gathered(members.size() * kPeerEndFields, 0.0f);
  const PeerEnd mine{s.test, static_cast<double>(s.totals.bytes_sent), s.wall_seconds,
                     avg ? runtime::disagreement(trainer.params(), *avg).relative()
                         : std::numeric_limits<double>::quiet_NaN()};
  const auto own = pack(mine);
  for (std::size_t k = 0; k < kPeerEndFields; ++k)
    gathered[slot * kPeerEndFields + k] = static_cast<float>(own[k] * m);
  const bool all_ends =
      avg && algorithms::allreduce_mean(transport, trainer.total_rounds() + 2, gathered);
  if (rank == members.front()) {
    std::vector<PeerEnd> ends;
    if (!all_ends) {
      fmt::print(stderr, "peer {}: the summary holds this peer's figures only\n", rank);
      ends.push_back(mine);
    } else {
      for (std::size_t r = 0; r < members.size(); ++r) {
        std::vector<double> v(kPeerEndFields);
        for (std::size_t k = 0; k < kPeerEndFields; ++k) v[k] = gathered[r * kPeerEndFields + k];
        ends.push_back(unpack(v));
      }
    }
    write_summary(c, summary_json(c, topo, model, s.rounds, ends,
                                  avg ? trainer.assess(*avg) : no_evaluation(), s.departures));
  }
  return 0;
}

// `gossip launch`: `gossip peer`, or the user's command (after --), once per peer on this host.
int run_launch(const TrainArgs& a, const std::vector<std::string>& command) {
  const RunConfig c = load_config(a);
  const auto topo = topology::load_topology_or_spec(c.topology);
  const bool peers = command.empty();
  runtime::check_clock(c, false);  // once here rather than in every process
  if (!peers && (a.resume || a.resume_round >= 0))
    throw std::invalid_argument(
        "--resume and --resume-round are for gossip's own peers; a command resumes by itself");
  if (peers) runtime::check_device(c);  // one clear error here rather than one per peer
  std::vector<int> ranks;
  const auto names = runtime::this_host_names();
  for (const auto& p : topo.peers)
    if (a.every_rank || runtime::on_this_host(p.endpoint, names)) ranks.push_back(p.rank);
  if (ranks.empty())
    throw std::invalid_argument(fmt::format(
        "no peer of {} lives on this host: no ipc:// or loopback endpoint, and none names one of "
        "its {} host names and addresses",
        c.topology, names.size()));
  const fs::path logs = fs::path(c.output_dir()) / "logs";
  fs::create_directories(logs);

  runtime::LaunchRequest q;
  q.ranks = ranks;
  q.world_size = topo.size();
  q.logs = logs.string();
  // Every process gets its share of the cores (unless the user set the thread counts).
  const int local = static_cast<int>(ranks.size());
  q.threads = runtime::threads_per_peer(local);
  q.thread_share = q.threads.value_or(std::max(1, runtime::usable_cores() / local));
  if (peers) {
    q.gossip = fs::read_symlink("/proc/self/exe").string();
    q.config = a.config;
    q.sets = a.sets;
    q.resume = a.resume;
    q.resume_round = a.resume_round;
    q.progress_everywhere = c.on_peer_loss == "continue";
  } else {
    // The command's processes read the run config from here, overrides applied.
    q.command = command;
    // An absolute path: a process that changes its folder still finds it.
    q.config_copy = fs::absolute(fs::path(c.output_dir()) / "launch-config.toml").string();
    std::ofstream out(q.config_copy);
    out << c.to_toml();
    if (!out.flush()) throw std::runtime_error(fmt::format("cannot write {}", q.config_copy));
  }
  const bool all_here = ranks.size() == static_cast<std::size_t>(topo.size());
  // A nonce of this launch: a process left over from an earlier launch of the same run is then
  // refused by name at the handshake. Peers on other hosts come from other launches, which would
  // draw other nonces: with peers elsewhere only one the user gives (GOSSIP_RUN_NONCE, the same
  // on every host) is passed on.
  q.nonce = runtime::run_nonce_from_environment();
  if (q.nonce == 0 && all_here) {
    std::random_device entropy;
    while (q.nonce == 0)
      q.nonce =
          (static_cast<std::uint64_t>(entropy()) << 32) ^ static_cast<std::uint64_t>(entropy());
  }
  auto spec = runtime::launch_spec(q);
  spec.survive_loss = c.on_peer_loss == "continue";
  if (spec.survive_loss && peers && q.nonce != 0)
    fmt::print(stderr,
               "launch: a lost peer restarted by hand (gossip peer --rejoin) needs "
               "GOSSIP_RUN_NONCE={:016x}\n",
               q.nonce);
  if (a.restarts > 0) {
    if (!peers || !spec.survive_loss)
      throw std::invalid_argument(
          "launch --restart: restarts gossip's own peers, and only with transport.on_peer_loss = "
          "\"continue\" (the others go on without the lost peer until it rejoins)");
    spec.restarts = a.restarts;
    spec.restart_delay =
        std::chrono::milliseconds(static_cast<long long>(std::llround(a.restart_delay * 1000)));
    spec.rejoin_args = {"--rejoin"};
  }
  fmt::print(stderr, "launch: {}\n", runtime::describe_threads(local, q.threads));
  fmt::print(stderr, "launch: starting {} {} on this host; logs in {}/\n", ranks.size(),
             peers ? "peers" : "processes of " + command.front(), logs.string());
  const auto out = runtime::supervise(spec);
  if (out.exit_code == 130) {
    const bool all_stopped =
        std::all_of(out.wait_statuses.begin(), out.wait_statuses.end(), [](int s) {
          return runtime::classify(s, runtime::LaunchMode::peers) == runtime::ExitKind::stopped;
        });
    const auto common = peers && all_here && all_stopped
                            ? runtime::PeerTrainer::latest_common_checkpoint(c, topo.size())
                            : std::nullopt;
    if (!peers)
      fmt::print(stderr, "launch: stopped\n");
    else if (!all_here || !all_stopped)
      fmt::print(stderr, "launch: the peers on this host stopped; continue with --resume\n");
    else if (common)
      fmt::print(stderr,
                 "launch: every peer stopped; checkpoints of round {} in {}/checkpoints: "
                 "continue with --resume\n",
                 *common, c.output_dir());
    else
      fmt::print(stderr,
                 "launch: every peer stopped before training began; no checkpoint to resume "
                 "from\n");
  } else if (out.exit_code == 0 && peers) {
    // The lowest rank that finished printed the summary into its log: show it here too.
    std::size_t first = 0;
    while (std::find(out.lost.begin(), out.lost.end(), first) != out.lost.end()) ++first;
    std::ifstream log(spec.processes[first].log);
    for (std::string line; std::getline(log, line);) fmt::print("{}\n", line);
    for (std::size_t k : out.lost)
      fmt::print(stderr, "launch: {} was lost; the other peers finished without it\n",
                 spec.processes[k].name);
  } else if (out.exit_code == 0) {
    // The first process's stderr was the terminal's already; everyone's stdout is in its log,
    // which may be a whole run of prints: not repeated here.
    fmt::print(stderr, "launch: every process ended with 0; their output is in {}/\n",
               logs.string());
  }
  return out.exit_code;
}

}  // namespace

void add_train_commands(CLI::App& app) {
  auto sim = std::make_shared<TrainArgs>();
  auto* s = app.add_subcommand("simulate",
                               "Train with every peer of the topology as a thread of this process");
  add_common_options(s, *sim);
  s->callback([sim] {
    if (int code = run_simulate(*sim); code != 0) throw CLI::RuntimeError(code);
  });

  auto peer = std::make_shared<TrainArgs>();
  auto* p = app.add_subcommand("peer", "Run one peer of a training run (ZeroMQ to its neighbours)");
  add_common_options(p, *peer);
  p->add_option(
       "--rank,-r", peer->rank,
       "This peer's rank (else GOSSIP_RANK, RANK, SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK)")
      ->check(CLI::Range(0, std::numeric_limits<int>::max()));
  p->add_flag("--progress", peer->progress, "Print progress lines (rank 0 always does)");
  p->add_flag("--rejoin", peer->rejoin,
              "This peer restarted after the others went on without it "
              "(transport.on_peer_loss = \"continue\"): take the current state from a neighbour "
              "and mix again");
  p->callback([peer] {
    int code = 0;
    try {
      code = run_peer(*peer);
    } catch (const net::TransportCancelled& e) {
      // Ctrl-C before the peers had all met: nothing trained, nothing to resume.
      fmt::print(stderr, "{}: nothing was trained, no checkpoint written\n", e.what());
      code = 130;
    }
    if (code != 0) throw CLI::RuntimeError(code);
  });

  auto launch = std::make_shared<TrainArgs>();
  auto command = std::make_shared<std::vector<std::string>>();
  auto* l = app.add_subcommand(
      "launch",
      "Start every peer of the topology that lives on this host, one process each: `gossip peer`, "
      "or the command after --");
  add_common_options(l, *launch);
  // One value per --set here: CLI11 lets a list option swallow the `--` that ends it, and the
  // command after it would be read as launch's own options (its -c as --config).
  l->get_option("--set")->expected(1)->allow_extra_args(false)->multi_option_policy(
      CLI::MultiOptionPolicy::TakeAll);
  l->add_option("--restart", launch->restarts,
                "With transport.on_peer_loss = \"continue\": start a lost peer again (it "
                "rejoins), up to N times each")
      ->check(CLI::Range(0, 1000));
  l->add_option("--restart-delay", launch->restart_delay,
                "Seconds between a peer's loss and its restart (default 1)")
      ->check(CLI::Range(0.0, 86400.0));
  l->add_flag("--every-rank", launch->every_rank,
              "Start every rank of the topology on this host, whatever host its endpoint names "
              "(peers in network namespaces of this host: scripts/netns.sh)");
  l->add_option("command", *command,
                "After --: a command to start once per peer instead of `gossip peer`, with "
                "GOSSIP_RANK, GOSSIP_WORLD_SIZE, GOSSIP_LOCAL_RANK, GOSSIP_CONFIG, RANK, "
                "WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE in its environment");
  l->callback([launch, command, l] {
    // Only what follows `--` is a command (CLI11 keeps the `--` among the remaining arguments):
    // a stray word after the options is an error, not a program to run.
    const auto rest = l->remaining();
    const bool dashes = std::find(rest.begin(), rest.end(), "--") != rest.end();
    if (!command->empty() && !dashes)
      throw std::invalid_argument(fmt::format(
          "launch: unexpected argument '{}': a command to launch goes after --", command->front()));
    if (command->empty() && dashes) throw std::invalid_argument("launch: no command after --");
    if (int code = run_launch(*launch, *command); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace gossip::cli
