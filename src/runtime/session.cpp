#include "src/runtime/session.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "gossip/algorithms/registry.hpp"
#include "kernels/codec.hpp"

namespace gossip::runtime {

namespace fs = std::filesystem;

int rank_from_environment(int given) {
  if (given >= 0) return given;
  for (const char* var :
       {"GOSSIP_RANK", "RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"})
    if (const char* v = std::getenv(var)) {
      // The whole value, digits only: "3abc" or "1e3" is not rank 3 or 1.
      const std::string_view text(v);
      int rank = -1;
      const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), rank);
      if (err != std::errc() || end != text.data() + text.size() || rank < 0)
        throw std::invalid_argument(fmt::format("{}='{}' is not a rank", var, v));
      return rank;
    }
  throw std::invalid_argument(
      "no rank: pass one (--rank R), start under `gossip launch`, torchrun, srun or mpirun "
      "(GOSSIP_RANK, RANK, SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK)");
}

std::uint64_t run_nonce_from_environment() {
  const char* v = std::getenv(kRunNonceVariable);
  if (v == nullptr || *v == '\0') return 0;
  const std::string_view text(v);
  std::uint64_t nonce = 0;
  const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), nonce, 16);
  if (err != std::errc() || end != text.data() + text.size())
    throw std::invalid_argument(fmt::format(
        "{}='{}' is not a launch nonce (up to 16 hexadecimal digits)", kRunNonceVariable, v));
  return nonce;
}

void check_clock(const RunConfig& c, bool in_process) {
  if (c.clock != "virtual" || in_process) return;
  throw ConfigError(fmt::format(
      "{}: transport.clock = \"virtual\" works only under `gossip simulate` (every peer a thread "
      "of one process); `gossip peer`, `gossip launch` and the Python package run in real time: "
      "set transport.clock = \"real\" (with transport.latency_ms, uplink_mbit, ... the network "
      "is still emulated)",
      c.source.empty() ? "run config" : c.source));
}

net::TransportOptions transport_options(const RunConfig& c, std::size_t max_payload_bytes,
                                        bool in_process) {
  check_clock(c, in_process);
  net::TransportOptions o;
  o.run_nonce = run_nonce_from_environment();
  o.timeout = std::chrono::milliseconds(static_cast<long long>(c.timeout_s * 1000));
  o.connect_timeout = std::chrono::milliseconds(static_cast<long long>(c.connect_timeout_s * 1000));
  o.run_hash = c.hash(RunConfig::Scope::peers);
  o.max_payload_bytes = max_payload_bytes;
  o.link.all.latency = std::chrono::nanoseconds(static_cast<long long>(c.latency_ms * 1e6));
  o.link.all.bandwidth_bytes_per_s = c.bandwidth_mbit * 1e6 / 8.0;
  o.link.uplink_bytes_per_s = c.uplink_mbit * 1e6 / 8.0;
  o.link.downlink_bytes_per_s = c.downlink_mbit * 1e6 / 8.0;
  o.virtual_time = c.clock == "virtual";
  o.virtual_cpu = c.compute_ms_per_round == 0;
  o.receive_window = c.receive_window;
  o.on_peer_loss = c.on_peer_loss == "continue" ? net::PeerLoss::continue_run : net::PeerLoss::stop;
  o.io_threads = c.io_threads;
  // The lag, exchange interval, links and direct lag the algorithm needs, from its registry row.
  algorithms::fit_transport_options(algorithm_config(c, {}), o);
  // After a loss the runtime's all-reduces (evaluation, end of run) take the ring of the peers
  // left, which links each to the next remaining rank: any pair may be needed.
  if (o.on_peer_loss == net::PeerLoss::continue_run) o.all_links = true;
  return o;
}

std::optional<net::SecretKey> curve_secret_key(const RunConfig& c, const topology::Topology& topo,
                                               int rank) {
  std::string path = c.secret_key_file, from = "transport.secret_key_file";
  if (path.empty()) {
    if (const char* env = std::getenv("GOSSIP_SECRET_KEY_FILE"); env && *env) {
      path = env;
      from = "GOSSIP_SECRET_KEY_FILE";
    }
  }
  for (auto at = path.find("{rank}"); at != std::string::npos; at = path.find("{rank}", at))
    path.replace(at, 6, std::to_string(rank));
  std::optional<net::SecretKey> key;
  if (!path.empty()) {
    try {
      key = net::read_secret_key_file(path);
    } catch (const net::KeyError& e) {
      throw ConfigError(fmt::format("{} ({}): {}", from, c.source, e.what()));
    }
  }
  if (const auto why = net::secret_key_problem(topo, rank, key ? &*key : nullptr); !why.empty())
    throw ConfigError(path.empty() ? fmt::format("rank {}: {}", rank, why)
                                   : fmt::format("rank {}: {} = {}: {}", rank, from, path, why));
  return key;
}

MessageBytes message_bytes(const RunConfig& c, std::size_t d,
                           const std::vector<std::size_t>& tensor_sizes) {
  const auto sizes = c.granularity == "layer" ? tensor_sizes : std::vector<std::size_t>{};
  return {kernels::make_codec(c.codec, sizes)->wire_size(d),
          kernels::make_codec("identity")->wire_size(d)};
}

std::size_t max_payload_bytes(const RunConfig& c, std::size_t d,
                              const std::vector<std::size_t>& tensor_sizes, int peers) {
  const auto [wire, fp32_wire] = message_bytes(c, d, tensor_sizes);
  return std::max(
      {wire, fp32_wire, algorithms::largest_payload(algorithm_config(c, tensor_sizes), d, peers)});
}

std::uint64_t stop_margin(const topology::Topology& topo, int local_steps, int staleness,
                          int delay) {
  const auto dist = topo.graph.distances_from(0);
  // A stop request rides on exchanges, one hop per exchange: a neighbour reads it in its next
  // exchange, when it may be up to 1 + τ exchanges ahead of the sender (staleness τ: it needs
  // the sender's message of τ exchanges before), so each hop costs at most 2 + τ exchanges. With
  // local steps H an exchange comes every H rounds, so everything scales by H (the request made
  // in round t leaves with the exchange of t's period, the same as a request before exchange
  // round ⌊t/H⌋ with H = 1).
  // On a time-varying topology a request travels only along each round's links: on the one-peer
  // exponential schedule it reaches every peer within a period (the hops of p consecutive rounds
  // sum to every offset), and a peer cannot finish a round whose frame of the chain it lacks.
  const auto diameter = static_cast<std::uint64_t>(*std::max_element(dist.begin(), dist.end()));
  const std::uint64_t exchanges = std::max<std::uint64_t>(
      (2 + static_cast<std::uint64_t>(std::max(staleness, 0))) * diameter + 2,
      topo.time_varying() ? topo.period() + 2 : 0);
  const std::uint64_t margin = exchanges * static_cast<std::uint64_t>(std::max(local_steps, 1));
  // DGA's request rides on its direct messages, one hop to every peer, which collects the round-t
  // chunks by round t + ⌈D/2⌉ at the latest: n + D + 1 (the bound of the ring version, which
  // needed n − 1 hops of one ring call a round) is more than enough, and kept.
  if (delay > 0)
    return std::max<std::uint64_t>(margin, static_cast<std::uint64_t>(topo.size() + delay + 1));
  return margin;
}

algorithms::AlgorithmConfig algorithm_config(const RunConfig& config,
                                             const std::vector<std::size_t>& tensor_sizes) {
  algorithms::AlgorithmConfig a;
  a.name = config.algorithm;
  a.lr = static_cast<float>(config.lr);
  a.consensus_step = static_cast<float>(config.consensus_step);
  a.momentum = static_cast<float>(config.momentum);
  a.nesterov = config.nesterov;
  a.quasi_global = config.quasi_global;
  a.weight_decay = static_cast<float>(config.weight_decay);
  a.codec = config.codec;
  if (config.granularity == "layer") a.tensor_sizes = tensor_sizes;
  a.seed = config.seed;
  a.local_steps = static_cast<std::uint32_t>(config.local_steps);
  a.staleness = static_cast<std::uint32_t>(config.staleness);
  a.delay = static_cast<std::uint32_t>(config.delay);
  return a;
}

namespace {
void keep_metrics_until(const fs::path& path, std::uint64_t round) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline: cut short
    try {
      if (nlohmann::json::parse(line).at("round").get<std::uint64_t>() <= round)
        kept += line + '\n';
    } catch (const std::exception&) {
      // Not a whole metrics line: dropped.
    }
  }
  in.close();
  const auto tmp = fs::path(path.string() + ".tmp");
  std::ofstream(tmp) << kept;
  fs::rename(tmp, path);
}
}  // namespace

MetricsFile::MetricsFile(const RunConfig& config, int rank, std::uint64_t round)
    : path_(fs::path(config.output_dir()) / fmt::format("metrics-{}.jsonl", rank)) {
  fs::create_directories(path_.parent_path());
  if (round > 0) keep_metrics_until(path_, round);
  out_.open(path_, round > 0 ? std::ios::app : std::ios::trunc);
  if (!out_) throw std::runtime_error(fmt::format("{}: cannot write", path_.string()));
}

void MetricsFile::write(const nlohmann::json& line) {
  out_ << line.dump() << '\n';
  out_.flush();
}

nlohmann::json round_stats_json(const algorithms::RoundStats& stats) {
  return {{"rounds", stats.rounds},
          {"bytes_sent", stats.bytes_sent},
          {"bytes_received", stats.bytes_received},
          {"compute_seconds", stats.compute_s},
          {"encode_seconds", stats.encode_s},
          {"wait_seconds", stats.wait_s},
          {"decode_seconds", stats.decode_s},
          {"update_seconds", stats.update_s}};
}

nlohmann::json metrics_line(const algorithms::Algorithm& algo, const net::Transport& transport,
                            int rank, double wall_seconds) {
  auto j = round_stats_json(algo.totals());
  j.erase("rounds");  // "round" says it
  j["rank"] = rank;
  j["round"] = algo.round();
  j["wall_seconds"] = wall_seconds;
  // Which clock wall_seconds is on: "real", or "virtual" (docs/transport.md, "Virtual time").
  j["clock"] = transport.virtual_clock() ? "virtual" : "real";
  j["lr"] = algo.lr();
  if (algorithms::find_algorithm(algo.name()).consensus_step)
    j["consensus_step"] = algo.consensus_step();
  const auto& drops = transport.drops().all;
  j["frames_dropped"] = drops.total;
  if (drops.total > 0) {
    auto& by = j["frames_dropped_by_reason"] = nlohmann::json::object();
    for (std::size_t r = 0; r < net::kDropReasonCount; ++r)
      if (drops.by_reason[r] > 0)
        by[std::string(net::drop_reason_name(static_cast<net::DropReason>(r)))] =
            drops.by_reason[r];
  }
  return j;
}

}  // namespace gossip::runtime
