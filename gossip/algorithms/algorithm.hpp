#pragma once
// The decentralised training algorithms of the gossip layer, written once against
// net::Transport and kernels::Codec (update rules: shared/ALGORITHMS.md, summary:
// docs/algorithms.md).
//
// How the runtime drives one peer:
//
//   AlgorithmConfig cfg{.name = "choco-sgd", .lr = 0.1f, .consensus_step = 0.1f,
//                       .codec = "qsgd:s=3,scaled=true"};
//   auto algo = make_algorithm(cfg, transport, topology, x0);   // all buffers allocated here
//   for (...) {
//     algo->step([&](std::span<const float> x, std::span<float> g) { model.grad(x, g); });
//     log(algo->last_round());                                   // bytes and timings
//   }
//   algo->save(file);   // ... later, on a fresh object made with the same config: algo->load(file)
//
// step() is bulk synchronous: every peer must call it the same number of times. It allocates
// nothing (the transport may, for its own framing); an algorithm owns a fixed set of model-sized
// buffers that does not grow with the number of neighbours, because neighbours' messages are
// decoded and accumulated straight into the state (Codec::decode_accumulate). The exception is
// RelaySum, which must remember two sums per tree neighbour (three when compressed).
//
// The state lives in a VectorSpace (gossip/algorithms/space.hpp): host memory by default, or one
// GPU's (AlgorithmConfig::cuda_device), where the element-wise work and the codec run too and only
// messages cross to the host. params(), state_buffers() and the gradient callback's spans are in
// that space; copy_params() and state() copy to the host.

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "gossip/algorithms/space.hpp"
#include "gossip/function_ref.hpp"
#include "gossip/transport.hpp"
#include "kernels/codec.hpp"
#include "topology/topology.hpp"

namespace gossip::algorithms {

struct AlgorithmConfig {
  // A canonical name or alias of gossip/algorithms/registry.hpp ("dpsgd", "choco-sgd", ...).
  std::string name = "dpsgd";
  float lr = 0.1f;              // γ
  float consensus_step = 1.0f;  // η (DeepSqueeze) or γ_c (CHOCO-SGD); ignored by the others
  float momentum = 0.0f;        // heavy ball on the local gradient, 0 disables the buffer
  bool nesterov = false;
  // Quasi-global momentum (Lin et al., ICML 2021, QG-DSGDm): the buffer averages the model's own
  // movement over a round, (x_t − x_{t+1})/γ, which includes the neighbours' pull, instead of
  // the local gradient; the direction is g + μ·buf (g + μ(g + μ·buf) with Nesterov). Meant for
  // heterogeneous (non-iid) data. Needs momentum > 0 and one more model-sized buffer.
  bool quasi_global = false;
  float weight_decay = 0.0f;  // g += weight_decay * x before momentum
  // Codec spec for the gossip message (kernels::make_codec), allowed by the algorithm's
  // registry row (CodecRule): D-PSGD and D2 "identity", "fp16" or "bf16"; all-reduce "identity".
  std::string codec = "identity";
  // Tensor boundaries inside the flat vector: empty means one tensor (granularity "model"),
  // otherwise the codec compresses each tensor on its own (granularity "layer"). Must sum to d.
  std::vector<std::size_t> tensor_sizes;
  std::uint64_t seed = 0;  // key of the codecs' counter-based RNG, with (rank, round)
  // Local steps H >= 1: round t communicates when (t + 1) mod H = 0 and runs the algorithm's
  // rule; the other rounds only step locally, x_i ← x_i − γ d_i, and send nothing. All-reduce
  // with H > 1 averages the models on communication rounds instead of the gradients (local
  // SGD). H = 1 is every round (and leaves both hashes as they were without the setting).
  std::uint32_t local_steps = 1;
  // Staleness τ >= 0 (overlapped gossip, D-PSGD only: the registry row's `staleness`): the
  // neighbours' values a communication round mixes are those of τ communication rounds earlier,
  // x_i ← W_ii x_i + Σ_j W_ij x_j^{c−τ} − γ d_i (x_j^s = x_0 for s < 0), so the message sent in
  // communication round c travels while rounds c+1 … c+τ compute. With local steps τ counts
  // communication rounds. 0 is the bulk-synchronous rule (and leaves both hashes as they were).
  std::uint32_t staleness = 0;
  // DGA only (delayed gradient averaging): the all-reduce of round t's direction is applied in
  // round t + D while the rounds between compute. D = 0 is all-reduce SGD. Enters both hashes
  // only when not 0.
  std::uint32_t delay = 0;
  // D-PSGD only: step(GradientFn) computes the gradient on a worker thread while this thread
  // encodes and exchanges x_i (both only read x_i). The gradient callback must then be safe to
  // run on another thread. Results are bit-identical either way, so it is not part of the config
  // hash. Ignored by the other algorithms, whose message depends on the gradient, and on a GPU.
  bool overlap_gradient = false;
  // -1: state, element-wise work and codec on the host. N >= 0: on CUDA GPU N (made current on
  // the calling thread), which needs a build with the CUDA backend. Where the state lives changes
  // no bit of it, so it is in neither hash: a checkpoint written on a GPU loads on the host.
  int cuda_device = -1;
};

// Why the algorithm `name` (canonical or alias) cannot run on a time-varying topology (one W^(t)
// per round, topology::Topology::schedule), "" when it can (its registry row's time_varying):
// D-PSGD mixes with whatever W^(t) the round has, and all-reduce uses no W. make_algorithm
// refuses the others with this reason.
std::string_view time_varying_refusal(std::string_view name);

// Hash of the settings every peer of one run must share (algorithm, lr, consensus step,
// momentum, Nesterov, weight decay, codec, tensor sizes, seed, local steps when not 1,
// staleness when not 0) and the
// model size d; the same on
// every rank. Meant for TransportOptions::run_hash, so peers with different settings refuse to
// start.
std::uint64_t settings_hash(const AlgorithmConfig& config, std::size_t d);

// What one round cost. Times in seconds of wall clock on this peer.
struct RoundStats {
  std::uint64_t rounds = 0;      // 1 for last_round(); the number of rounds for totals()
  std::uint64_t bytes_sent = 0;  // transport counters, framing included
  std::uint64_t bytes_received = 0;
  double compute_s = 0.0;  // the gradient callback (0 when the gradient is passed in)
  double encode_s = 0.0;   // forming the message and Codec::encode
  double wait_s = 0.0;     // inside Transport::exchange / ring_step
  double decode_s = 0.0;   // Codec::decode_accumulate of all messages, own included
  double update_s = 0.0;   // momentum, weight decay and the element-wise update
  RoundStats& operator+=(const RoundStats& o);
};

// Loading a saved state that does not belong to this algorithm object (other algorithm, size,
// config, topology or rank), or a damaged file. what() names the field and both values.
class StateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The gradient callback of step(): g = grad(x). A non-owning reference, so passing a lambda never
// allocates; the callable must outlive the call.
using GradientFn = FunctionRef<void(std::span<const float> x, std::span<float> g)>;

// One model-sized vector of an algorithm's state, by name ("x", "s", "x_hat", "delta", ...).
struct StateBuffer {
  std::string_view name;
  std::span<float> data;
};

class Algorithm {
 public:
  virtual ~Algorithm() = default;
  Algorithm(const Algorithm&) = delete;
  Algorithm& operator=(const Algorithm&) = delete;

  // One round: g_i = grad(x_i), then the algorithm's update and exchange.
  void step(GradientFn grad);
  // One round with a gradient the caller computed at params(), in host memory. g.size() must be
  // dim().
  void step(std::span<const float> g);

  // This peer's model x_i, in the algorithm's space (device memory on a GPU).
  std::span<const float> params() const { return x_; }
  // x_i copied into host memory of dim() floats.
  void copy_params(std::span<float> host) const;
  // x_i and the gradient buffer, writable, in the algorithm's space: the Python package makes a
  // framework's parameters and gradients views of them, so a round copies neither. Writing x_i
  // between rounds changes the state. step(GradientFn) hands the gradient buffer to its callback
  // (a callback that leaves it as it is steps with what is there); after a round it holds
  // scratch.
  std::span<float> mutable_params() { return x_; }
  std::span<float> gradient_buffer() { return g_; }
  std::size_t dim() const { return x_.size(); }
  // The state lives on a GPU.
  bool on_device() const { return space_->on_device(); }
  std::uint64_t round() const { return round_; }
  // Whether round t exchanges (local steps: (t + 1) mod H = 0) or only steps locally.
  bool communicates(std::uint64_t t) const { return (t + 1) % config_.local_steps == 0; }
  const std::string& name() const { return config_.name; }
  const AlgorithmConfig& config() const { return config_; }

  // The learning rate and the consensus step (η, γ_c) may follow a schedule; their current values
  // are part of the saved state, the values the object was made with part of config_hash().
  void set_lr(float lr) { config_.lr = lr; }
  float lr() const { return config_.lr; }
  // Throws std::invalid_argument unless step is in (0, 1].
  void set_consensus_step(float step);
  float consensus_step() const { return config_.consensus_step; }

  const RoundStats& last_round() const { return last_; }
  const RoundStats& totals() const { return totals_; }
  // Sets the running totals, as a checkpoint recorded them (they are not part of save()).
  void restore_totals(const RoundStats& totals) { totals_ = totals; }

  // Every model-sized vector the algorithm keeps (x first), in its space, for tests and
  // diagnostics.
  std::vector<StateBuffer> state_buffers();
  // A host copy of the buffer called `name`; throws std::invalid_argument when there is none.
  std::vector<float> state(std::string_view name);
  // How many model-sized float buffers this object owns (state, gradient and scratch); constant
  // in the degree of the peer except for RelaySum (two more per neighbour, three compressed).
  std::size_t model_sized_buffers() const { return model_sized_buffers_; }

  // The whole state: header (magic, version, algorithm, d, config hash), round, learning rate,
  // then every state buffer, then a checksum. Restoring into an object made with the same config,
  // transport rank and topology and continuing gives results bit-identical to not stopping.
  // Little-endian hosts only (the bytes are written as they are in memory).
  void save(std::ostream& out) const;
  // Throws StateError (and leaves this object unchanged) on any mismatch or a damaged stream.
  void load(std::istream& in);
  // Rejoin (a restarted peer takes a neighbour's state): save_for_peer writes this state for
  // another rank of the same run; adopt loads it into a peer's object: the round, the learning
  // rate, the model and the momentum, with every other buffer (error memories) at zero. Same
  // format and checks as save/load, but the settings hash leaves the rank out.
  void save_for_peer(std::ostream& out) const;
  void adopt(std::istream& in);

  // Hash of everything that must agree for a saved state to be loadable: algorithm, d, codec,
  // consensus step as made, momentum, weight decay, tensor sizes, seed, rank, n and the topology
  // hash. The learning rate is left out and the scheduled consensus step too (both are saved as
  // state).
  std::uint64_t config_hash() const { return config_hash_; }

 protected:
  Algorithm(const AlgorithmConfig& config, net::Transport& transport,
            const topology::Topology& topology, std::span<const float> x0);

  // The algorithm's rule for one communication round. On entry g_ holds the update direction
  // (gradient after weight decay and momentum) at x_ and round_ is the current round. Rounds
  // without communication (local steps) never reach it: their x_ ← x_ − γ g_ is the base's.
  virtual void run_round() = 0;
  // A whole round that computes the gradient itself (D-PSGD's overlap). Returns false when the
  // algorithm has no such form; then step() computes g and calls run_round().
  virtual bool run_round_with(GradientFn) { return false; }
  // Weight decay and momentum applied to g_ in place: g_ becomes the update direction.
  // (Quasi-global momentum updates its buffer at the end of the round instead.)
  void apply_direction();
  // Extra state vectors beyond x and the momentum buffer, in a fixed order.
  virtual std::vector<StateBuffer> extra_state() { return {}; }
  // Called at the end of a successful load(): overlapped D-PSGD re-sends its messages that were in
  // flight when the state was saved.
  virtual void after_load() {}
  // Called at the start of a communication round, before the rule: the gossip algorithms
  // re-weigh here after a peer loss (Transport::departures).
  virtual void before_exchange() {}

  // Allocates one model-sized buffer in the space and counts it.
  Buffer model_buffer(float fill = 0.0f);
  VectorSpace& space() { return *space_; }
  // Applies an element-wise functor to every index of the model.
  void run(const ew::Op& op) { space_->run(op, x_.size()); }

  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point& t) {
    const auto now = Clock::now();
    const double s = std::chrono::duration<double>(now - t).count();
    t = now;
    return s;
  }

  AlgorithmConfig config_;
  net::Transport& transport_;
  int rank_ = 0;
  int size_ = 1;
  std::uint64_t round_ = 0;
  std::unique_ptr<VectorSpace> space_;  // first: every buffer below is freed before it
  Buffer x_;                            // x_i
  Buffer g_;  // gradient, then update direction; also the algorithms' scratch
  RoundStats last_{};

 private:
  void begin_round();
  // run_round() on a communication round, else the local step x_ ← x_ − γ g_.
  void run_round_or_local_step();
  void end_round(const net::TrafficCounters& before);
  void write_state(std::ostream& out, std::uint64_t hash) const;
  void read_state(std::istream& in, bool adopt);

  Buffer momentum_;  // empty when momentum == 0
  Buffer x_prev_;    // x at the start of the round (kept equal to x between rounds); quasi-global
                     // momentum only
  RoundStats totals_{};
  std::uint64_t config_hash_ = 0;
  std::uint64_t peer_hash_ = 0;  // config_hash_ without the rank (save_for_peer, adopt)
  std::size_t model_sized_buffers_ = 0;
};

// Builds the algorithm named in config for this peer (rank = transport.rank()) from its registry
// row (registry.hpp). x0 must be the same on every peer. Checks the codec against the row's rule
// and, for a gossip algorithm, that the transport's neighbours are this peer's neighbours in the
// topology and that W is symmetric and doubly stochastic (on a time-varying topology: that the
// algorithm can run on one, and that every W^(t) is doubly stochastic and matches the
// transport's per-round ranks). Throws std::invalid_argument naming the bad setting.
std::unique_ptr<Algorithm> make_algorithm(const AlgorithmConfig& config, net::Transport& transport,
                                          const topology::Topology& topology,
                                          std::span<const float> x0);

}  // namespace gossip::algorithms
