#include "gossip/algorithms/algorithm.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <istream>
#include <ostream>

#include <fmt/format.h>

#include "gossip/algorithms/gossip_base.hpp"
#include "gossip/algorithms/registry.hpp"

namespace gossip::algorithms {

namespace {

constexpr std::array<char, 8> kMagic = {'G', 'S', 'P', 'A', 'L', 'G', 'O', '1'};
constexpr std::uint32_t kVersion = 2;  // 2: the consensus step follows the learning rate

// FNV-1a, 64 bit: the config hash and the checksum of a saved state.
class Fnv1a {
 public:
  void add(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ULL;
    }
  }
  template <class T>
  requires std::is_trivially_copyable_v<T>
  void add(const T& v) { add(&v, sizeof v); }
  void add(std::string_view s) {
    add(static_cast<std::uint64_t>(s.size()));
    add(s.data(), s.size());
  }
  std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ULL;
};

class Writer {
 public:
  explicit Writer(std::ostream& out) : out_(out) {}
  void bytes(const void* p, std::size_t n) {
    sum_.add(p, n);
    out_.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
  }
  template <class T>
  void value(const T& v) {
    bytes(&v, sizeof v);
  }
  void string(std::string_view s) {
    value(static_cast<std::uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  void checksum() {
    const std::uint64_t c = sum_.value();
    out_.write(reinterpret_cast<const char*>(&c), sizeof c);
  }

 private:
  std::ostream& out_;
  Fnv1a sum_;
};

class Reader {
 public:
  explicit Reader(std::istream& in) : in_(in) {}
  void bytes(void* p, std::size_t n, const char* what) {
    in_.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    if (static_cast<std::size_t>(in_.gcount()) != n) {
      throw StateError(fmt::format("algorithm state: stream ends inside {}", what));
    }
    sum_.add(p, n);
  }
  template <class T>
  T value(const char* what) {
    T v{};
    bytes(&v, sizeof v, what);
    return v;
  }
  std::string string(const char* what, std::size_t max_len) {
    const auto n = value<std::uint32_t>(what);
    if (n > max_len) {
      throw StateError(
          fmt::format("algorithm state: {} has length {} (at most {})", what, n, max_len));
    }
    std::string s(n, '\0');
    bytes(s.data(), n, what);
    return s;
  }
  void checksum() {
    const std::uint64_t expected = sum_.value();
    std::uint64_t got = 0;
    in_.read(reinterpret_cast<char*>(&got), sizeof got);
    if (static_cast<std::size_t>(in_.gcount()) != sizeof got) {
      throw StateError("algorithm state: stream ends before the checksum");
    }
    if (got != expected) {
      throw StateError(fmt::format(
          "algorithm state: checksum mismatch (stored {:016x}, computed {:016x}): damaged file",
          got, expected));
    }
  }

 private:
  std::istream& in_;
  Fnv1a sum_;
};

}  // namespace

std::string_view time_varying_refusal(std::string_view name) {
  const AlgorithmInfo& algorithm = find_algorithm(name);
  if (algorithm.time_varying) return "";
  const std::string_view canonical = algorithm.name;
  if (canonical == "dcd-psgd" || canonical == "choco-sgd")
    return "it keeps s_i = sum_j W_ij x^_j up to date with each round's compressed differences, "
           "which equals the mix of the replicas only while W stays the same every round";
  if (canonical == "deepsqueeze")
    return "its error compensation is derived and tested for one fixed symmetric W only";
  if (canonical == "d2")
    return "its correction (2 x_t - x_{t-1}, Exact Diffusion) converges to the optimum only for "
           "one fixed symmetric W with eigenvalues above -1/3";
  if (canonical == "relaysum") return "it relays sums along the edges of one fixed tree";
  return "it is not known to work on a time-varying graph";
}

namespace {
// The settings both hashes cover: algorithm, d, codec, consensus step, momentum, Nesterov,
// quasi-global, weight decay, tensor sizes, seed, and local steps only when not 1 and staleness
// only when not 0, so that the hashes of runs without them (checkpoints, handshakes) are what they
// were before them.
void add_settings(Fnv1a& h, const AlgorithmConfig& config, std::size_t d) {
  h.add(find_algorithm(config.name).name);
  h.add(static_cast<std::uint64_t>(d));
  h.add(std::string_view(config.codec));
  h.add(std::bit_cast<std::uint32_t>(config.consensus_step));
  h.add(std::bit_cast<std::uint32_t>(config.momentum));
  h.add(static_cast<std::uint8_t>(config.nesterov));
  h.add(static_cast<std::uint8_t>(config.quasi_global));
  h.add(std::bit_cast<std::uint32_t>(config.weight_decay));
  h.add(static_cast<std::uint64_t>(config.tensor_sizes.size()));
  for (std::size_t s : config.tensor_sizes) h.add(static_cast<std::uint64_t>(s));
  h.add(config.seed);
  if (config.local_steps != 1) h.add(static_cast<std::uint64_t>(config.local_steps));
  // Prefixed, so that a run with staleness never hashes like one with other settings.
  if (config.staleness != 0) {
    h.add(std::string_view("staleness"));
    h.add(static_cast<std::uint64_t>(config.staleness));
  }
  // Likewise the delay (DGA), only when not 0.
  if (config.delay != 0) {
    h.add(std::string_view("delay"));
    h.add(static_cast<std::uint64_t>(config.delay));
  }
}

bool valid_consensus_step(float step) {
  return step > 0.0f && step <= 1.0f;
}
}  // namespace

std::uint64_t settings_hash(const AlgorithmConfig& config, std::size_t d) {
  Fnv1a h;
  add_settings(h, config, d);
  h.add(std::bit_cast<std::uint32_t>(config.lr));
  return h.value();
}

RoundStats& RoundStats::operator+=(const RoundStats& o) {
  rounds += o.rounds;
  bytes_sent += o.bytes_sent;
  bytes_received += o.bytes_received;
  compute_s += o.compute_s;
  encode_s += o.encode_s;
  wait_s += o.wait_s;
  decode_s += o.decode_s;
  update_s += o.update_s;
  return *this;
}

Algorithm::Algorithm(const AlgorithmConfig& config, net::Transport& transport,
                     const topology::Topology& topology, std::span<const float> x0)
    : config_(config), transport_(transport), rank_(transport.rank()), size_(transport.size()) {
  const AlgorithmInfo& row = find_algorithm(config.name);
  config_.name = row.name;
  try {
    check_staleness(row, config_.staleness);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("staleness {}", e.what()));
  }
  if (size_ != topology.size()) {
    throw std::invalid_argument(
        fmt::format("transport has {} peers but the topology has {}", size_, topology.size()));
  }
  if (rank_ < 0 || rank_ >= size_) {
    throw std::invalid_argument(fmt::format("transport rank {} outside [0, {})", rank_, size_));
  }
  if (!(config_.lr >= 0.0f) || !std::isfinite(config_.lr)) {
    throw std::invalid_argument(fmt::format("lr must be finite and >= 0, got {}", config_.lr));
  }
  if (!(config_.momentum >= 0.0f && config_.momentum < 1.0f)) {
    throw std::invalid_argument(
        fmt::format("momentum must be in [0, 1), got {}", config_.momentum));
  }
  if (config_.local_steps < 1) throw std::invalid_argument("local_steps must be at least 1, got 0");
  if (config_.local_steps != 1 && !find_algorithm(config_.name).local_steps)
    throw std::invalid_argument(fmt::format(
        "{} does not take local steps (local_steps = {}): it corrects every round's direction; "
        "use allreduce for local SGD",
        config_.name, config_.local_steps));
  if (config_.delay != 0 && config_.name != "dga")
    throw std::invalid_argument(
        fmt::format("delay = {} is a setting of dga (delayed gradient averaging), not of {}",
                    config_.delay, config_.name));
  if (config_.quasi_global && config_.momentum == 0.0f) {
    throw std::invalid_argument("quasi_global momentum needs momentum > 0");
  }
  if (!(config_.weight_decay >= 0.0f) || !std::isfinite(config_.weight_decay)) {
    throw std::invalid_argument(
        fmt::format("weight_decay must be finite and >= 0, got {}", config_.weight_decay));
  }
  if (!config_.tensor_sizes.empty()) {
    std::size_t total = 0;
    for (std::size_t s : config_.tensor_sizes) total += s;
    if (total != x0.size()) {
      throw std::invalid_argument(
          fmt::format("tensor_sizes sum to {} but the model has {} parameters", total, x0.size()));
    }
  }

  space_ = config_.cuda_device < 0 ? make_host_space() : make_cuda_space(config_.cuda_device);
  x_ = space_->alloc(x0.size(), 0.0f);
  space_->upload(x0, x_);
  ++model_sized_buffers_;
  g_ = model_buffer();
  if (config_.momentum > 0.0f) momentum_ = model_buffer();
  if (config_.quasi_global) {
    x_prev_ = model_buffer();
    space_->copy(x_, x_prev_);
  }

  if (transport_.exchange_interval() != config_.local_steps) {
    throw std::invalid_argument(fmt::format(
        "local_steps {} needs a transport made with TransportOptions::exchange_interval = {} (it "
        "has {}): exchanges come every local_steps rounds",
        config_.local_steps, config_.local_steps, transport_.exchange_interval()));
  }
  if (transport_.exchange_lag() != config_.staleness) {
    throw std::invalid_argument(fmt::format(
        "staleness {} needs a transport made with TransportOptions::exchange_lag = {} (it has {}): "
        "neighbours' messages stay in flight for that many exchanges",
        config_.staleness, config_.staleness, transport_.exchange_lag()));
  }

  Fnv1a h;
  add_settings(h, config_, x_.size());
  Fnv1a team = h;  // the same without the rank: what a neighbour's state must match (adopt)
  h.add(static_cast<std::int64_t>(rank_));
  for (Fnv1a* x : {&h, &team}) {
    x->add(static_cast<std::int64_t>(size_));
    x->add(topology.hash());
  }
  config_hash_ = h.value();
  peer_hash_ = team.value();
}

Buffer Algorithm::model_buffer(float fill) {
  ++model_sized_buffers_;
  return space_->alloc(x_.size(), fill);
}

void Algorithm::copy_params(std::span<float> host) const {
  space_->download(x_, host);
}

void Algorithm::set_consensus_step(float step) {
  if (!valid_consensus_step(step))
    throw std::invalid_argument(fmt::format("consensus step must be in (0, 1], got {}", step));
  config_.consensus_step = step;
}

void Algorithm::step(GradientFn grad) {
  begin_round();
  const net::TrafficCounters before = transport_.counters();
  if (!(config_.overlap_gradient && communicates(round_) && run_round_with(grad))) {
    Clock::time_point mark = Clock::now();
    grad(std::span<const float>(x_), std::span<float>(g_));
    last_.compute_s = seconds_since(mark);
    apply_direction();
    run_round_or_local_step();
  }
  end_round(before);
}

void Algorithm::step(std::span<const float> g) {
  if (g.size() != x_.size()) {
    throw std::invalid_argument(
        fmt::format("gradient has {} elements, the model {}", g.size(), x_.size()));
  }
  begin_round();
  const net::TrafficCounters before = transport_.counters();
  space_->upload(g, g_);
  apply_direction();
  run_round_or_local_step();
  end_round(before);
}

void Algorithm::run_round_or_local_step() {
  if (communicates(round_)) {
    run_round();
    return;
  }
  // A local step: nothing is sent, the algorithm's other state waits for the next exchange.
  Clock::time_point mark = Clock::now();
  run(ew::Axpy{-config_.lr, g_.data(), x_.data()});
  last_.update_s += seconds_since(mark);
}

void Algorithm::apply_direction() {
  Clock::time_point mark = Clock::now();
  if (config_.weight_decay > 0.0f) run(ew::Axpy{config_.weight_decay, x_.data(), g_.data()});
  const float mu = config_.momentum;
  if (config_.quasi_global) {
    // QG-DSGDm: m = μ buf + g is this round's local momentum; the buffer itself only changes at
    // the end of the round, from the model's movement.
    run(ew::QgDirection{mu, config_.nesterov, momentum_.data(), g_.data()});
  } else if (!momentum_.empty()) {
    // torch.optim.SGD's form (what ChocoSGD uses): buf = μ buf + g; direction = buf, or
    // g + μ buf with Nesterov.
    run(ew::HeavyBall{mu, config_.nesterov, momentum_.data(), g_.data()});
  }
  last_.update_s += seconds_since(mark);
}

void Algorithm::begin_round() {
  last_ = RoundStats{};
  if (communicates(round_)) before_exchange();
}

void Algorithm::end_round(const net::TrafficCounters& before) {
  if (config_.quasi_global) {
    // buf ← μ buf + (1 − μ)(x_t − x_{t+1})/γ: the round's whole movement, the neighbours' pull
    // included, per unit of step (with γ = 0 nothing moved by a step: the buffer stays); x_prev
    // becomes x_{t+1} in the same pass.
    Clock::time_point mark = Clock::now();
    if (config_.lr > 0.0f) {
      const float mu = config_.momentum, c = (1.0f - mu) / config_.lr;
      run(ew::QgBuffer{mu, c, x_.data(), momentum_.data(), x_prev_.data()});
    } else {
      space_->copy(x_, x_prev_);
    }
    last_.update_s += seconds_since(mark);
  }
  ++round_;
  const net::TrafficCounters& after = transport_.counters();
  last_.rounds = 1;
  last_.bytes_sent = after.bytes_sent - before.bytes_sent;
  last_.bytes_received = after.bytes_received - before.bytes_received;
  totals_ += last_;
}

std::vector<StateBuffer> Algorithm::state_buffers() {
  std::vector<StateBuffer> out;
  out.push_back({"x", x_});
  for (const StateBuffer& b : extra_state()) out.push_back(b);
  if (!momentum_.empty()) out.push_back({"momentum", momentum_});
  return out;
}

std::vector<float> Algorithm::state(std::string_view name) {
  for (const StateBuffer& b : state_buffers()) {
    if (b.name == name) {
      std::vector<float> host(b.data.size());
      space_->download(b.data, host);
      return host;
    }
  }
  throw std::invalid_argument(
      fmt::format("algorithm {} keeps no state buffer '{}'", config_.name, name));
}

void Algorithm::save(std::ostream& out) const {
  write_state(out, config_hash_);
}

void Algorithm::save_for_peer(std::ostream& out) const {
  write_state(out, peer_hash_);
}

void Algorithm::load(std::istream& in) {
  read_state(in, false);
}

void Algorithm::adopt(std::istream& in) {
  read_state(in, true);
}

void Algorithm::write_state(std::ostream& out, std::uint64_t hash) const {
  // state_buffers() is non-const only because it hands out mutable spans for load().
  auto buffers = const_cast<Algorithm*>(this)->state_buffers();
  Writer w(out);
  w.bytes(kMagic.data(), kMagic.size());
  w.value(kVersion);
  w.string(config_.name);
  w.value(static_cast<std::uint64_t>(x_.size()));
  w.value(hash);
  w.value(round_);
  w.value(config_.lr);
  w.value(config_.consensus_step);
  w.value(static_cast<std::uint32_t>(buffers.size()));
  std::vector<float> host(x_.size());
  for (const StateBuffer& b : buffers) {
    w.string(b.name);
    w.value(static_cast<std::uint64_t>(b.data.size()));
    host.resize(b.data.size());
    space_->download(b.data, host);
    w.bytes(host.data(), b.data.size_bytes());
  }
  w.checksum();
  if (!out) throw StateError("algorithm state: write failed");
}

void Algorithm::read_state(std::istream& in, bool adopt) {
  Reader r(in);
  std::array<char, 8> magic{};
  r.bytes(magic.data(), magic.size(), "the magic");
  if (magic != kMagic) {
    throw StateError("algorithm state: bad magic, this is not a gossip algorithm state");
  }
  const auto version = r.value<std::uint32_t>("the version");
  if (version != kVersion) {
    throw StateError(
        fmt::format("algorithm state: format version {} (this build reads {})", version, kVersion));
  }
  const std::string name = r.string("the algorithm name", 64);
  if (name != config_.name) {
    throw StateError(fmt::format("algorithm state is of algorithm '{}', cannot load it into '{}'",
                                 name, config_.name));
  }
  const auto d = r.value<std::uint64_t>("the dimension");
  if (d != x_.size()) {
    throw StateError(
        fmt::format("algorithm state has d = {}, this model has d = {}", d, x_.size()));
  }
  const auto hash = r.value<std::uint64_t>("the config hash");
  if (adopt && hash != peer_hash_) {
    throw StateError(fmt::format(
        "a peer's algorithm state has settings hash {:016x}, this run's is {:016x}: another "
        "codec, consensus step, momentum, weight decay, tensor sizes, seed or topology",
        hash, peer_hash_));
  }
  if (!adopt && hash != config_hash_) {
    throw StateError(fmt::format(
        "algorithm state config hash {:016x} differs from this run's {:016x}: codec, consensus "
        "step, momentum, weight decay, tensor sizes, seed, rank or topology changed",
        hash, config_hash_));
  }
  const auto round = r.value<std::uint64_t>("the round");
  const auto lr = r.value<float>("the learning rate");
  const auto consensus_step = r.value<float>("the consensus step");
  auto buffers = state_buffers();
  const auto count = r.value<std::uint32_t>("the buffer count");
  if (count != buffers.size()) {
    throw StateError(fmt::format("algorithm state has {} buffers, {} keeps {}", count, config_.name,
                                 buffers.size()));
  }
  std::vector<std::vector<float>> staged(buffers.size());
  for (std::size_t b = 0; b < buffers.size(); ++b) {
    const std::string bname = r.string("a buffer name", 64);
    if (bname != buffers[b].name) {
      throw StateError(fmt::format("algorithm state buffer {} is '{}', expected '{}'", b, bname,
                                   buffers[b].name));
    }
    const auto n = r.value<std::uint64_t>("a buffer length");
    if (n != buffers[b].data.size()) {
      throw StateError(fmt::format("algorithm state buffer '{}' has {} elements, expected {}",
                                   bname, n, buffers[b].data.size()));
    }
    staged[b].resize(n);
    r.bytes(staged[b].data(), n * sizeof(float), "a buffer");
  }
  r.checksum();
  // Everything checked: only now touch the state. A peer's state gives the model and the
  // momentum; what this peer keeps of its own messages (error memories, replicas) starts at zero,
  // as a peer that has sent nothing yet.
  for (std::size_t b = 0; b < buffers.size(); ++b) {
    if (adopt && buffers[b].name != "x" && buffers[b].name != "momentum")
      std::fill(staged[b].begin(), staged[b].end(), 0.0f);
    space_->upload(staged[b], buffers[b].data);
  }
  round_ = round;
  config_.lr = lr;
  config_.consensus_step = consensus_step;
  if (config_.quasi_global) space_->copy(x_, x_prev_);  // x_t of round t
  if (!adopt) after_load();
}

std::unique_ptr<Algorithm> make_algorithm(const AlgorithmConfig& config, net::Transport& transport,
                                          const topology::Topology& topology,
                                          std::span<const float> x0) {
  const AlgorithmInfo& algorithm = find_algorithm(config.name);
  if (topology.time_varying()) {
    if (const auto why = time_varying_refusal(algorithm.name); !why.empty())
      throw std::invalid_argument(
          fmt::format("{} cannot run on the time-varying topology {}: {}; use dpsgd (or a static "
                      "topology such as exponential:{})",
                      algorithm.name, topology.description, why, topology.size()));
  }
  try {
    check_codec(algorithm, config.codec);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("codec {}", e.what()));
  }
  if (transport.continues_after_peer_loss()) {
    try {
      check_peer_loss(algorithm);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(fmt::format("on_peer_loss {}", e.what()));
    }
  }
  // A tree is checked by the algorithm itself, which can say what is wrong with the graph.
  if (algorithm.topology != TopologyNeed::peers && algorithm.topology != TopologyNeed::all_pairs)
    detail::validate_mixing(transport, topology);
  return algorithm.make(config, transport, topology, x0);
}

namespace detail {

namespace {
// A time-varying topology: every W^(t) non-negative and doubly stochastic (not symmetric), the
// union graph connected, and the transport sending to and taking from this round's ranks.
void validate_schedule(const net::Transport& transport, const topology::Topology& topology) {
  constexpr double kTol = 1e-9;
  const int n = topology.size();
  for (std::size_t t = 0; t < topology.period(); ++t) {
    const topology::MixingRows& w = topology.mixing(t);
    std::vector<double> column(static_cast<std::size_t>(n), 0.0);
    for (int i = 0; i < n; ++i) {
      double sum = 0.0;
      for (const topology::Neighbor& nb : w[static_cast<std::size_t>(i)]) {
        if (nb.weight < 0.0)
          throw std::invalid_argument(
              fmt::format("W^({})[{}][{}] = {} is negative: gossip needs non-negative weights", t,
                          i, nb.rank, nb.weight));
        sum += nb.weight;
        column[static_cast<std::size_t>(nb.rank)] += nb.weight;
      }
      if (std::abs(sum - 1.0) > kTol)
        throw std::invalid_argument(
            fmt::format("W^({}) is not stochastic: row {} sums to {}", t, i, sum));
    }
    for (int j = 0; j < n; ++j)
      if (std::abs(column[static_cast<std::size_t>(j)] - 1.0) > kTol)
        throw std::invalid_argument(fmt::format(
            "W^({}) is not doubly stochastic: column {} sums to {} (the models' mean would drift)",
            t, j, column[static_cast<std::size_t>(j)]));
    const int rank = transport.rank();
    // Phase t is the exchange of round number t·H (one phase per exchange).
    const std::uint64_t round = t * transport.exchange_interval();
    const auto check = [&](std::string_view what, std::span<const int> got,
                           const std::vector<int>& expected) {
      if (!std::equal(expected.begin(), expected.end(), got.begin(), got.end()))
        throw std::invalid_argument(
            fmt::format("transport of rank {} {} [{}] in round {} but W^({}) names [{}]", rank,
                        what, fmt::join(got, ", "), round, t, fmt::join(expected, ", ")));
    };
    check("sends to", transport.send_to(round), topology.send_to(rank, t));
    check("takes from", transport.receive_from(round), topology.receive_from(rank, t));
  }
  if (!topology.graph.connected())
    throw std::invalid_argument(
        fmt::format("{}: the rounds' links do not connect every peer, so the peers never agree",
                    topology.description));
}
}  // namespace

void validate_mixing(const net::Transport& transport, const topology::Topology& topology) {
  const int n = topology.size();
  if (transport.size() != n) {
    throw std::invalid_argument(
        fmt::format("transport has {} peers but the topology has {}", transport.size(), n));
  }
  if (topology.time_varying()) return validate_schedule(transport, topology);
  constexpr double kTol = 1e-9;
  for (int i = 0; i < n; ++i) {
    double sum = 0.0;
    for (const topology::Neighbor& nb : topology.W[static_cast<std::size_t>(i)]) {
      sum += nb.weight;
      if (nb.rank != i && nb.weight < 0.0) {
        throw std::invalid_argument(
            fmt::format("W[{}][{}] = {} is negative: gossip needs non-negative off-diagonal "
                        "weights",
                        i, nb.rank, nb.weight));
      }
      if (std::abs(nb.weight - topology.weight(nb.rank, i)) > kTol) {
        throw std::invalid_argument(
            fmt::format("W is not symmetric: W[{}][{}] = {}, W[{}][{}] = {}", i, nb.rank, nb.weight,
                        nb.rank, i, topology.weight(nb.rank, i)));
      }
    }
    if (std::abs(sum - 1.0) > kTol) {
      throw std::invalid_argument(
          fmt::format("W is not doubly stochastic: row {} sums to {}", i, sum));
    }
  }
  // rho < 1, or the peers never agree: the positive entries of W must connect every peer, and
  // must not form a bipartite graph with a zero diagonal (then -1 is an eigenvalue of W: flipping
  // the sign of one side maps W to -W, and the models oscillate between the two sides).
  std::vector<int> side(static_cast<std::size_t>(n), -1);
  side[0] = 0;
  std::vector<int> queue{0};
  bool bipartite = true, diagonal = false;
  for (std::size_t head = 0; head < queue.size(); ++head) {
    const int i = queue[head];
    for (const topology::Neighbor& nb : topology.W[static_cast<std::size_t>(i)]) {
      if (nb.rank == i) {
        diagonal = diagonal || nb.weight != 0.0;
        continue;
      }
      if (!(nb.weight > 0.0)) continue;
      auto& s = side[static_cast<std::size_t>(nb.rank)];
      if (s < 0) {
        s = 1 - side[static_cast<std::size_t>(i)];
        queue.push_back(nb.rank);
      } else if (s == side[static_cast<std::size_t>(i)]) {
        bipartite = false;
      }
    }
  }
  if (queue.size() < static_cast<std::size_t>(n)) {
    const auto lost = std::find(side.begin(), side.end(), -1) - side.begin();
    throw std::invalid_argument(fmt::format(
        "{}: peer {} cannot be reached from peer 0 through positive weights of W, so the peers "
        "never agree (rho = 1); connect the graph",
        topology.description, lost));
  }
  if (bipartite && !diagonal)
    throw std::invalid_argument(fmt::format(
        "{}: W has period 2 (a bipartite graph and every self-weight W_ii zero), so -1 is an "
        "eigenvalue and the models swing between the two sides (rho = 1); give the peers a "
        "positive self-weight (e.g. weights = \"metropolis\")",
        topology.description));
  const int rank = transport.rank();
  std::vector<int> expected;
  // Every off-diagonal entry listed in the row, zero weights included: the transport links the
  // graph's edges, and a zero weight only makes that message count for nothing.
  for (const topology::Neighbor& nb : topology.neighbors(rank)) expected.push_back(nb.rank);
  std::sort(expected.begin(), expected.end());
  const auto got = transport.neighbors();
  if (!std::equal(expected.begin(), expected.end(), got.begin(), got.end())) {
    throw std::invalid_argument(
        fmt::format("transport of rank {} exchanges with [{}] but W row {} names [{}]", rank,
                    fmt::join(got, ", "), rank, fmt::join(expected, ", ")));
  }
}

GossipAlgorithm::GossipAlgorithm(const AlgorithmConfig& config, net::Transport& transport,
                                 const topology::Topology& topology, std::span<const float> x0)
    : Algorithm(config, transport, topology, x0),
      codec_(space().make_codec(config.codec, config.tensor_sizes, x_.size())) {
  // One set of weights per phase of the period (one on a static topology), in the order the
  // transport hands the phase's messages over (the topology's, which the transport follows; not
  // transport.receive_from(t), whose argument is a round number, t / H phases in).
  for (std::size_t t = 0; t < topology.period(); ++t) {
    const topology::MixingRows& w = topology.mixing(t);
    self_weights_.push_back(static_cast<float>(topology::row_weight(w, rank_, rank_)));
    auto& row = weights_.emplace_back();
    for (int j : topology.receive_from(rank_, t))
      row.push_back(static_cast<float>(topology::row_weight(w, rank_, j)));
  }
  // Kept to re-weigh after a peer loss (static topologies only: the transport refuses the rest).
  if (transport.continues_after_peer_loss()) {
    graph_ = topology.graph;
    base_row_ = topology.W.at(static_cast<std::size_t>(rank_));
    const auto from = topology.receive_from(rank_, 0);
    mixing_with_.assign(from.begin(), from.end());
  }
}

void GossipAlgorithm::before_exchange() {
  if (!transport_.continues_after_peer_loss()) return;
  const std::vector<int> effective = net::absent_at(transport_.departures(), round_);
  const auto from = transport_.receive_from(round_);
  if (effective == mixed_without_ &&
      std::equal(from.begin(), from.end(), mixing_with_.begin(), mixing_with_.end()))
    return;
  mixed_without_ = effective;
  mixing_with_.assign(from.begin(), from.end());
  // Before r* the old row (topology W) without the peers found gone, their weight on our own
  // model; from r* on Metropolis-Hastings on the graph left: symmetric, so doubly stochastic.
  // Once every peer gone is back (a rejoin), the topology's W again.
  const topology::Graph left = graph_.without(effective);
  auto weight = [&](int j) {
    if (effective.empty()) {
      for (const topology::Neighbor& nb : base_row_)
        if (nb.rank == j) return nb.weight;
      return 0.0;
    }
    return 1.0 / (1.0 + static_cast<double>(std::max(left.degree(rank_), left.degree(j))));
  };
  double sum = 0.0;
  weights_[0].clear();
  for (int j : from) {
    const double w = weight(j);
    sum += w;
    weights_[0].push_back(static_cast<float>(w));
  }
  self_weights_[0] = static_cast<float>(1.0 - sum);
}

void GossipAlgorithm::fold_missing(float scale, std::span<float> y) {
  if (!transport_.continues_after_peer_loss()) return;  // a missing message was an error
  const std::vector<float>& weights = round_weights();
  for (std::size_t k = 0; k < weights.size(); ++k)
    if (!delivered_[k]) accumulate_own(scale * weights[k], y);
}

void GossipAlgorithm::require_consensus_step(const AlgorithmConfig& config, std::string_view what) {
  if (!valid_consensus_step(config.consensus_step)) {
    throw std::invalid_argument(
        fmt::format("{} must be in (0, 1], got {}", what, config.consensus_step));
  }
}

void GossipAlgorithm::encode(std::span<const float> v) {
  encode(v, round_);
}

void GossipAlgorithm::encode(std::span<const float> v, std::uint64_t round) {
  Clock::time_point mark = Clock::now();
  const kernels::RngKey key{config_.seed, static_cast<std::uint32_t>(rank_), round};
  codec_->encode(v, key);
  last_.encode_s += seconds_since(mark);
}

const std::vector<std::span<const std::byte>>& GossipAlgorithm::exchange() {
  if (round_weights().empty()) return no_messages_;
  Clock::time_point mark = Clock::now();
  const auto& messages = transport_.exchange(round_, codec_->message());
  last_.wait_s += seconds_since(mark);
  if (messages.size() != round_weights().size()) {
    throw net::TransportError(
        fmt::format("rank {} round {}: transport returned {} messages for {} "
                    "neighbours",
                    rank_, round_, messages.size(), round_weights().size()));
  }
  return messages;
}

void GossipAlgorithm::exchange_accumulate(float scale, std::span<float> y) {
  exchange_accumulate_from(round_, scale, y);
}

void GossipAlgorithm::exchange_accumulate_from(std::optional<std::uint64_t> receive, float scale,
                                               std::span<float> y) {
  if (round_weights().empty()) return;
  Clock::time_point mark = Clock::now();
  double decode_s = 0.0;
  // An overlapped exchange mixes in the messages of the round received, with that round's W (on a
  // time-varying topology, another phase's), so every message keeps its column's weights.
  const std::vector<float>& weights = receive ? weights_at(*receive) : round_weights();
  delivered_.assign(weights.size(), 0);
  auto on_message = [&](std::size_t k, std::span<const std::byte> message) {
    const auto start = Clock::now();
    delivered_[k] = 1;
    decode_from(k, [&] { codec_->decode_accumulate(message, scale * weights[k], y); });
    decode_s += std::chrono::duration<double>(Clock::now() - start).count();
  };
  if (receive == round_) {
    transport_.exchange_each(round_, codec_->message(), on_message);
  } else {
    transport_.exchange_lagged(round_, codec_->message(), receive, on_message);
  }
  if (receive) fold_missing(scale, y);  // a call that only sends delivers nothing
  const double total = seconds_since(mark);
  last_.decode_s += decode_s;
  last_.wait_s += total - decode_s;
}

void GossipAlgorithm::exchange_decode_each(std::span<float> scratch, NeighborFn use) {
  if (round_weights().empty()) return;
  Clock::time_point mark = Clock::now();
  double decode_s = 0.0, use_s = 0.0;
  const std::vector<float>& weights = round_weights();
  transport_.exchange_each(round_, codec_->message(),
                           [&](std::size_t k, std::span<const std::byte> message) {
                             const auto start = Clock::now();
                             decode_from(k, [&] { codec_->decode(message, scratch); });
                             const auto decoded = Clock::now();
                             use(k, weights[k], scratch);
                             decode_s += std::chrono::duration<double>(decoded - start).count();
                             use_s += std::chrono::duration<double>(Clock::now() - decoded).count();
                           });
  const double total = seconds_since(mark);
  last_.decode_s += decode_s;
  last_.update_s += use_s;
  last_.wait_s += total - decode_s - use_s;
}

void GossipAlgorithm::resend(std::uint64_t round, std::span<const float> v) {
  if (round_weights().empty()) return;
  encode(v, round);
  Clock::time_point mark = Clock::now();
  transport_.resend(round, codec_->message());
  last_.wait_s += seconds_since(mark);
}

float GossipAlgorithm::neighbor_weight_sum() const {
  float sum = 0.0f;
  for (float w : round_weights()) sum += w;
  return sum;
}

void GossipAlgorithm::decode_own(std::span<float> y) {
  Clock::time_point mark = Clock::now();
  codec_->decode_own(y);
  last_.decode_s += seconds_since(mark);
}

void GossipAlgorithm::accumulate_own(float w, std::span<float> y) {
  Clock::time_point mark = Clock::now();
  codec_->accumulate_own(w, y);
  last_.decode_s += seconds_since(mark);
}

void GossipAlgorithm::accumulate_neighbors(const std::vector<std::span<const std::byte>>& messages,
                                           float scale, std::span<float> y) {
  Clock::time_point mark = Clock::now();
  const std::vector<float>& weights = round_weights();
  delivered_.assign(weights.size(), 0);
  for (std::size_t k = 0; k < messages.size(); ++k) {
    if (messages[k].empty()) continue;  // the neighbour is gone (Transport::departures)
    delivered_[k] = 1;
    decode_from(k, [&] { codec_->decode_accumulate(messages[k], scale * weights[k], y); });
  }
  fold_missing(scale, y);
  last_.decode_s += seconds_since(mark);
}

void GossipAlgorithm::neighbor_message_error(std::size_t k, const kernels::WireError& e) const {
  const int peer = transport_.receive_from(round_)[k];
  throw kernels::WireError(fmt::format("rank {}: round {}: message from {}: {}", rank_, round_,
                                       transport_.peer_name(peer), e.what()));
}

}  // namespace detail

}  // namespace gossip::algorithms
