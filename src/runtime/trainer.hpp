#pragma once
// The training loop of one peer: its shard of the data, its model replica, the algorithm, metrics
// (JSON Lines), evaluation and checkpoints. The same loop runs in `gossip peer` (ZeroMQ, one
// process per peer) and in `gossip simulate` (threads, in-process transport); only the transport
// and the collective `average` hook differ.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gossip/algorithms/algorithm.hpp"
#include "gossip/transport.hpp"
#include "gossip/virtual_clock.hpp"
#include "src/runtime/config.hpp"
#include "src/runtime/data.hpp"
#include "src/runtime/model.hpp"
#include "src/runtime/optimum.hpp"
#include "src/runtime/session.hpp"
#include "topology/topology.hpp"

namespace gossip::runtime {

struct PeerSummary {
  int rank = 0;
  std::uint64_t rounds = 0;
  std::uint64_t rounds_per_epoch = 1;
  double wall_seconds = 0.0;
  double train_loss = 0.0;        // mean over the last logging window
  Evaluation test;                // this peer's own model on the test set
  algorithms::RoundStats totals;  // bytes sent and received, time per phase
  bool stopped_early = false;
  // The round in which this peer's training loss stopped being finite. The peer then asks every
  // peer to stop (as on Ctrl-C), so a diverged run ends within a few rounds instead of training
  // NaNs to the last epoch.
  std::optional<std::uint64_t> diverged_at;
  // The run's divergence, the same on every peer: at the end of run() the peers agree (a ring
  // pass, Divergence below) on the earliest round in which any peer's loss stopped being finite
  // and on that peer (the lowest rank of that round). Set on every peer of a diverged run, also
  // when the divergence came too late for the stop request to reach everyone before the last
  // round; whoever sees it takes the divergence branch (no checkpoint, no summary, exit 3).
  struct Divergence {
    int rank = 0;
    std::uint64_t round = 0;
  };
  std::optional<Divergence> divergence;
  // Peers gone from the run (transport.on_peer_loss = "continue"), as this peer knew them at the
  // end: rank and the agreed round r* from which the others mixed without it.
  std::vector<net::Departure> departures;
  // Set when TrainHooks::leave_after_round made this peer leave: run() returned at once after
  // that round, without any collective (the caller ends as a crashed peer would).
  bool left = false;
};

// The run config as rank 0 started the run with, in the run folder.
inline constexpr const char* kConfigFile = "config.toml";

struct TrainHooks {
  // Asked before each round: true once the user asked to stop (Ctrl-C). The peer then asks the
  // transport for a stop a few rounds ahead (Transport::request_stop), and every peer of the run
  // stops before the same round.
  std::function<bool()> stop_requested;
  bool progress = false;  // print progress lines on stderr (rank 0 usually)
  // Tests of the divergence path: this peer's training loss of this round is taken as NaN (the
  // CLI sets it from GOSSIP_TEST_DIVERGE=RANK:ROUND).
  std::optional<std::uint64_t> nan_loss_round;
  // Tests of peer loss: this peer stops after this many rounds, as if its process had died
  // (PeerSummary::left; the CLI sets it from GOSSIP_TEST_LEAVE=RANK:ROUND and kills itself).
  std::optional<std::uint64_t> leave_after_round;
};

// A checkpoint that does not belong to this run, or a damaged one.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ‖x − avg‖ and ‖avg‖, summed in double.
struct Disagreement {
  double distance = 0.0;
  double average_norm = 0.0;
  double relative() const { return average_norm > 0.0 ? distance / average_norm : distance; }
};
Disagreement disagreement(std::span<const float> x, std::span<const float> avg);

// What an evaluation point measures: this peer's model, and with more than one peer the distance
// to the average of all models (one all-reduce) and, on the lowest rank still in the run (rank 0
// unless it is gone), the averaged model's accuracy. After a peer loss the average is over the
// peers left; while a departure is not yet known to every peer (before its r*) there is none.

struct EvalPoint {
  Evaluation own;
  std::optional<Evaluation> average;         // rank 0 only
  std::optional<Disagreement> disagreement;  // ‖x_i − x̄‖ and ‖x̄‖
};

// How peers map to GPUs when run.device = "cuda" (a topology file's `device` always wins).
enum class GpuPlacement {
  // One peer per process (`gossip peer`, `launch`, srun/mpirun): the local rank modulo the
  // visible GPUs (GOSSIP_LOCAL_RANK from `launch`, SLURM_LOCALID, OMPI_COMM_WORLD_LOCAL_RANK,
  // MPI_LOCALRANKID), else the rank modulo them.
  process,
  // Every peer a thread of one process (`gossip simulate`): the rank modulo the visible GPUs, so
  // one GPU is shared by all peers and several GPUs are used round-robin.
  thread,
};

class PeerTrainer {
 public:
  // `shards` from partition_all over data.train for every rank.
  PeerTrainer(const RunConfig& config, const topology::Topology& topo, int rank,
              net::Transport& transport, const TrainTest& data,
              const std::vector<std::vector<std::size_t>>& shards,
              GpuPlacement placement = GpuPlacement::process,
              std::shared_ptr<const KnownOptimum> optimum = nullptr);
  ~PeerTrainer();

  // This peer's model (its backend: run.device); evaluates any parameter vector of its layout.
  Model& model() { return *model_; }

  std::uint64_t rounds_per_epoch() const { return rounds_per_epoch_; }
  std::uint64_t total_rounds() const { return total_rounds_; }
  std::uint64_t round() const;
  std::span<const float> params() const;
  // The model `x` (host memory, this layout) on the test set, and against the known optimum when
  // the problem has one.
  Evaluation assess(std::span<const float> x);

  // Loads this peer's checkpoint of round `round` from the run folder.
  void resume(std::uint64_t round);
  // Writes this peer's checkpoint of the current round; returns its path.
  std::string checkpoint() const;
  // A restarted peer (TransportOptions::rejoin): waits for a neighbour's state of the round the
  // peers agreed on and takes it (Algorithm::adopt): model, momentum, round, learning rate. run()
  // then goes on from that round. Returns it. Throws TransportError when none comes or it does
  // not fit this run.
  std::uint64_t rejoin();

  PeerSummary run(const TrainHooks& hooks);

  // Path of rank's checkpoint of `round` in the run folder of `config`.
  static std::string checkpoint_path(const RunConfig& config, int rank, std::uint64_t round);
  // The largest round for which every one of `peers` ranks has an intact checkpoint in the run
  // folder (checkpoint_problem); a newer round with a file that is not is skipped, and stderr
  // says why.
  static std::optional<std::uint64_t> latest_common_checkpoint(const RunConfig& config, int peers);
  // Why the checkpoint file at `path` cannot be used, naming it: empty, not a checkpoint, another
  // format version, cut short, or a checksum that does not match (damage, bytes appended).
  // nullopt for a file whose bytes are as written (its settings are checked by resume()).
  static std::optional<std::string> checkpoint_problem(const std::string& path);

 private:
  // Learning rate and consensus step in `round`: linear warm-up, then the step schedule.
  std::pair<double, double> schedule_at(std::uint64_t round) const;
  EvalPoint evaluate(std::uint64_t round);
  void log_line(MetricsFile& out, double train_loss, const std::optional<EvalPoint>& eval,
                double wall) const;

  RunConfig config_;
  const topology::Topology& topo_;
  int rank_;
  net::Transport& transport_;
  const TrainTest& data_;
  std::vector<std::size_t> shard_;
  std::unique_ptr<Model> model_;
  std::vector<float> average_;  // the all-reduced mean of the models, at evaluation points
  mutable std::vector<float> host_params_;  // params() of a GPU peer, copied out
  std::unique_ptr<algorithms::Algorithm> algo_;
  std::shared_ptr<const KnownOptimum> optimum_;  // null: the problem has none
  std::uint64_t rounds_per_epoch_ = 1;
  std::uint64_t total_rounds_ = 1;
  // Wall seconds of the run so far: earlier segments (a resumed run's), plus this run() if one is
  // under way.
  double wall_seconds() const;

  double wall_before_ = 0.0;  // wall seconds of earlier segments: resumed runs, finished run()s
  std::optional<std::chrono::steady_clock::time_point> segment_start_;  // while run() runs
  std::uint64_t stop_margin_ = 2;  // rounds a stop request needs to reach every peer
};

// The model's shape for this config and data (no backend, no buffers).
// The known optimum of the run's problem (data.dataset = "least-squares" or "logistic") over
// these shards; null for other data sets. A solve (Newton's method for logistic): peers in one
// process share one (`gossip simulate` passes it to every PeerTrainer).
std::shared_ptr<const KnownOptimum> known_optimum(
    const RunConfig& config, const Dataset& train,
    const std::vector<std::vector<std::size_t>>& shards);
MlpLayout model_layout(const RunConfig& config, const Dataset& train);
// Checks that run.device can be used here: "cuda" needs a binary built with the CUDA backend and a
// visible GPU. Otherwise a ConfigError naming run.device, the config and the reason.
void check_device(const RunConfig& config);
// The model of this config on its run.device; `gpu` is the GPU index for "cuda" (ignored for
// "cpu"). Checks the device first (check_device).
std::unique_ptr<Model> make_model(const RunConfig& config, const Dataset& train, int gpu = 0);
// The GPU of peer `rank` under `placement` (see GpuPlacement), with the reason for the log.
GpuChoice gpu_for_peer(const topology::Topology& topo, int rank, GpuPlacement placement);
// Loads the data set named in the config (and trims it to train_limit/test_limit).
TrainTest load_data(const RunConfig& config);

}  // namespace gossip::runtime
