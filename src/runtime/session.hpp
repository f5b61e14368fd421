#pragma once
// What every way of starting a peer shares — `gossip peer`, `gossip simulate` and the Python
// package: which rank this process is, the transport settings of a run config, how far ahead a
// stop must be asked for, and the per-peer metrics file.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gossip/algorithms/algorithm.hpp"
#include "gossip/curve_keys.hpp"
#include "gossip/transport.hpp"
#include "gossip/transport_options.hpp"
#include "src/runtime/config.hpp"
#include "topology/topology.hpp"

namespace gossip::runtime {

// The rank of this process: `given` when it is >= 0, else the first of GOSSIP_RANK (set by
// `gossip launch`), RANK (torchrun), SLURM_PROCID, OMPI_COMM_WORLD_RANK and PMI_RANK that is set.
// A value that is not a whole non-negative integer is an error naming the variable; none set is
// an error saying how to give one.
int rank_from_environment(int given = -1);

// The environment variable by which `gossip launch` gives its peers the nonce of this launch
// (TransportOptions::run_nonce), as hexadecimal digits.
inline constexpr const char* kRunNonceVariable = "GOSSIP_RUN_NONCE";
// GOSSIP_RUN_NONCE, or 0 when it is unset or empty (a peer started by hand). A value that is not
// hexadecimal digits (up to 16) is an error naming the variable.
std::uint64_t run_nonce_from_environment();

// The transport settings of a run: timeouts, the handshake hash (the config's peers scope), link
// emulation, the receive window, the launch nonce (run_nonce_from_environment), and the largest
// payload a neighbour may send (`max_payload_bytes`: the larger of the codec's wire size and fp32
// ring chunks of the model).
// The network model: link latency and bandwidth, each peer's uplink and downlink; and with
// transport.clock = "virtual", virtual time (compute_ms_per_round > 0: the runtime adds the work,
// else the peer thread's CPU time counts). `in_process`: the peers are threads of this process
// (`gossip simulate`), the only place virtual time works (check_clock).
// `cancelled` is left to the caller.
net::TransportOptions transport_options(const RunConfig& config, std::size_t max_payload_bytes,
                                        bool in_process = false);
// Throws ConfigError naming the config when transport.clock = "virtual" and the peers are not
// threads of one process (`gossip peer`, `gossip launch`, the Python package): one peer's clock
// cannot wait for another's there.
void check_clock(const RunConfig& config, bool in_process);

// This peer's CURVE secret key (docs/transport.md, "CURVE"): read from transport.secret_key_file
// or, when that is "", from the file GOSSIP_SECRET_KEY_FILE names (the config, --set included,
// wins: it is what the user wrote for this run; the variable suits launchers that hand each rank
// its own file). "{rank}" in the path becomes `rank`, so one config serves every peer
// ("keys/peer-{rank}.key"). nullopt when neither names a file and the topology has no keys.
// Throws ConfigError naming the file when it is refused (readable by group or others, not one
// key), when the topology has keys and no file is named, when a file is named and the topology
// has no keys, and when the key is not the one the topology lists for `rank`.
std::optional<net::SecretKey> curve_secret_key(const RunConfig& config,
                                               const topology::Topology& topo, int rank);

// Bytes of one gossip message of a d-element model under the run's codec (tensor_sizes: the
// layer-wise tensors when compression.granularity = "layer", else ignored), and of fp32's.
struct MessageBytes {
  std::size_t wire = 0;
  std::size_t fp32_wire = 0;
};
MessageBytes message_bytes(const RunConfig& config, std::size_t d,
                           const std::vector<std::size_t>& tensor_sizes);
// The largest payload a peer of the run may receive in one transport call (for
// transport_options): one codec message of the model, an fp32 ring chunk, or what the algorithm
// sends larger than both (algorithms::largest_payload: DGA's chunks of every reduction in flight,
// DoubleSqueeze's forwarded chunk messages).
std::size_t max_payload_bytes(const RunConfig& config, std::size_t d,
                              const std::vector<std::size_t>& tensor_sizes, int peers);

// Rounds between asking for a stop and the round before which every peer stops: a request
// travels one hop per exchange, so it must outrun the diameter (at most twice any peer's
// eccentricity), plus two, exchanges (on a time-varying topology at least its period plus two);
// with local steps H an exchange every H rounds; with staleness τ each hop costs 2 + τ exchanges
// instead of 2. DGA with a delay D > 0 (one ring call a round, none in its first rounds) needs at
// least n + D + 1.
std::uint64_t stop_margin(const topology::Topology& topo, int local_steps, int staleness,
                          int delay);

// The algorithm settings of a run config; `tensor_sizes` are used when
// compression.granularity = "layer".
algorithms::AlgorithmConfig algorithm_config(const RunConfig& config,
                                             const std::vector<std::size_t>& tensor_sizes);

// metrics-R.jsonl in the run folder: one JSON object per line. Opened at `round`: 0 starts the
// file afresh; a resumed run keeps the whole lines up to its round (lines a run logged past its
// last checkpoint would repeat, and a line cut short by a kill would break the file).
class MetricsFile {
 public:
  MetricsFile(const RunConfig& config, int rank, std::uint64_t round);
  // Writes `line` and flushes, so a killed run keeps every line written.
  void write(const nlohmann::json& line);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

// rounds, bytes_sent, bytes_received and compute/encode/wait/decode/update_seconds of `stats`:
// the names metrics lines use (and the Python package's last_round and totals).
nlohmann::json round_stats_json(const algorithms::RoundStats& stats);

// The fields every metrics line has, from the algorithm's running totals: rank, round,
// wall_seconds and the clock it is on ("real" or "virtual"), lr, consensus_step (where the
// algorithm has one), bytes_sent, bytes_received and the seconds per phase (compute, encode, wait,
// decode, update); and from the transport's drop counters frames_dropped (every frame dropped so
// far: strangers', bad, stale, duplicate) and, when there are any, frames_dropped_by_reason ({"bad
// checksum": 3, ...}).
nlohmann::json metrics_line(const algorithms::Algorithm& algo, const net::Transport& transport,
                            int rank, double wall_seconds);

}  // namespace gossip::runtime
