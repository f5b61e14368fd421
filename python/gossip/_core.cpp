// gossip._core: the compiled half of the Python package. A thin layer over the runtime library
// (src/runtime) and the algorithms (gossip/algorithms): a Peer (run config, topology, rank) and
// the Algorithm it runs, whose model and gradient buffers numpy sees without a copy. It never
// links libtorch: memory crosses as numpy arrays, which torch.from_numpy views in place. The
// friendly parts (defaults, signal handling, the torch optimizer) are Python, in __init__.py and
// torch.py.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gossip/algorithms/algorithm.hpp"
#include "gossip/algorithms/ring_allreduce.hpp"
#include "gossip/zmq_transport.hpp"
#include "src/runtime/config.hpp"
#include "src/runtime/session.hpp"
#include "topology/topology_file.hpp"

namespace py = pybind11;

namespace gossip::python {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kStateMagic[8] = {'G', 'S', 'P', 'Y', 'S', 'T', '0', '1'};

// Thrown through the transport by the poll hook when Python has an exception to raise (a second
// Ctrl-C, or the first one left unanswered for a second while a round waits). The Python error
// itself is kept and restored once the GIL is held again.
struct Interrupted {};

// Raised in Python as gossip.Stopped: the run's agreed stop round has come.
class StoppedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One process's place in a run: its config, the topology and its rank. The transport comes with
// the algorithm, whose model size bounds the messages.
class Peer {
 public:
  Peer(const std::string& config_path, int rank, const std::vector<std::string>& overrides)
      : config_(runtime::load_run_config(config_path, overrides)),
        topo_(topology::load_topology_or_spec(config_.topology)),
        rank_(runtime::rank_from_environment(rank)) {
    if (rank_ >= topo_.size())
      throw runtime::ConfigError(fmt::format("rank {} is out of range: {} has ranks 0..{}", rank_,
                                             config_.topology, topo_.size() - 1));
    if (config_.device != "cpu")
      throw runtime::ConfigError(
          fmt::format("{}: run.device = \"{}\": the Python package keeps the algorithm's state in "
                      "host memory; use run.device = \"cpu\"",
                      config_.source, config_.device));
  }

  int rank() const { return rank_; }
  int size() const { return topo_.size(); }
  const runtime::RunConfig& config() const { return config_; }
  const topology::Topology& topology() const { return topo_; }

  // Keys of the run config that only the CLI's trainer reads (its epoch-based schedule), set to
  // something other than their defaults: the package warns that they have no effect.
  std::vector<std::string> trainer_only_keys() const {
    const runtime::RunConfig defaults;
    std::vector<std::string> keys;
    if (!config_.lr_decay_epochs.empty()) keys.push_back("algorithm.lr_decay_epochs");
    if (config_.lr_warmup_epochs != defaults.lr_warmup_epochs)
      keys.push_back("algorithm.lr_warmup_epochs");
    if (config_.consensus_decay_factor != defaults.consensus_decay_factor)
      keys.push_back("algorithm.consensus_decay_factor");
    return keys;
  }

  // Ctrl-C, as the Python signal handler reports it: ask for the agreed stop.
  void interrupt() { interrupted_.store(true); }
  bool interrupted() const { return interrupted_.load(); }

 private:
  runtime::RunConfig config_;
  topology::Topology topo_;
  int rank_;
  std::atomic<bool> interrupted_{false};
};

class PyAlgorithm {
 public:
  // `overrides` ("section.key=value") change this algorithm's settings from the run config's;
  // every peer must pass the same (the handshake compares them).
  PyAlgorithm(std::shared_ptr<Peer> peer, py::array_t<float, py::array::c_style> x0,
              std::vector<std::size_t> tensor_sizes, const std::vector<std::string>& overrides)
      : peer_(std::move(peer)) {
    if (x0.ndim() != 1) throw std::invalid_argument("x0 must be a one-dimensional float32 array");
    const std::size_t d = static_cast<std::size_t>(x0.shape(0));
    if (d == 0) throw std::invalid_argument("x0 is empty: the model has no parameters");
    if (!tensor_sizes.empty()) {
      std::size_t sum = 0;
      for (auto s : tensor_sizes) sum += s;
      if (sum != d)
        throw std::invalid_argument(
            fmt::format("tensor_sizes sum to {}, x0 has {} elements", sum, d));
    }
    // Parsed again with the overrides, so that they are checked together with the rest.
    const auto c = overrides.empty() ? peer_->config()
                                     : runtime::parse_run_config(peer_->config().to_toml(),
                                                                 peer_->config().source, overrides);
    auto algo_config = runtime::algorithm_config(c, tensor_sizes);
    margin_ = runtime::stop_margin(peer_->topology(), c.local_steps, c.staleness, c.delay);
    const auto bytes = runtime::message_bytes(c, d, tensor_sizes);
    auto options = runtime::transport_options(
        c, runtime::max_payload_bytes(c, d, tensor_sizes, peer_->topology().size()));
    // Peers whose models differ in size or settings refuse each other at the handshake.
    options.run_hash =
        options.run_hash * 0x9E3779B97F4A7C15ull ^ algorithms::settings_hash(algo_config, d);
    options.cancelled = [this] { return handshake_cancelled(); };
    options.poll = [this] { poll(); };
    options.curve_secret_key = runtime::curve_secret_key(c, peer_->topology(), peer_->rank());
    wire_bytes_ = bytes.wire;
    // The handshake waits for every linked peer (transport.connect_timeout_s): without the GIL,
    // and Ctrl-C ends it (options.cancelled).
    try {
      py::gil_scoped_release release;
      transport_ = std::make_unique<net::ZmqTransport>(peer_->topology(), peer_->rank(), options);
      algo_ = algorithms::make_algorithm(algo_config, *transport_, peer_->topology(),
                                         std::span<const float>(x0.data(), d));
    } catch (const net::TransportCancelled&) {
      if (!error_) PyErr_SetString(PyExc_KeyboardInterrupt, "");
      restore_python_error();
    }
    last_return_ = Clock::now();
  }

  ~PyAlgorithm() { close(); }

  std::size_t dim() const { return algo_->dim(); }
  std::uint64_t round() const { return algo_->round(); }
  std::size_t wire_bytes() const { return wire_bytes_; }
  double last_step_seconds() const { return last_step_seconds_; }
  const algorithms::Algorithm& algorithm() const { return *algo_; }

  // A numpy view of x_i or of the gradient buffer; the array keeps this object alive.
  py::array_t<float> view(py::object self, bool gradient) {
    const auto s = gradient ? algo_->gradient_buffer() : algo_->mutable_params();
    return py::array_t<float>({static_cast<py::ssize_t>(s.size())},
                              {static_cast<py::ssize_t>(sizeof(float))}, s.data(), self);
  }

  // One round. `grad`: a float32 array of dim() elements (copied in), or none: the gradient is
  // already in the gradient buffer (the torch optimizer's case: no copy).
  // `loss`, when given, goes into the metrics lines (the mean over each logging window).
  void step(std::optional<py::array_t<float, py::array::c_style>> grad,
            std::optional<double> loss) {
    check_usable();
    const std::uint64_t t = algo_->round();
    if (peer_->interrupted() && !stop_asked_) ask_stop(t + margin_);
    if (const auto stop = transport_->stop_round(); stop && t >= *stop)
      throw StoppedError(fmt::format("rank {}: the run stopped before round {} (Ctrl-C{})",
                                     peer_->rank(), *stop,
                                     stop_asked_ ? " here" : " on another peer"));
    const double outside = std::chrono::duration<double>(Clock::now() - last_return_).count();
    const float* g = nullptr;
    if (grad) {
      if (grad->ndim() != 1 || static_cast<std::size_t>(grad->shape(0)) != algo_->dim())
        throw std::invalid_argument(
            fmt::format("gradient has {} elements, the model {}", grad->size(), algo_->dim()));
      g = grad->data();
      if (g == algo_->gradient_buffer().data()) g = nullptr;  // the buffer itself: in place
    }
    in_round_ = true;
    const auto round_start = Clock::now();
    try {
      py::gil_scoped_release release;
      if (g != nullptr)
        algo_->step(std::span<const float>(g, algo_->dim()));
      else
        algo_->step(algorithms::GradientFn([](std::span<const float>, std::span<float>) {}));
    } catch (const Interrupted&) {
      broken_ = fmt::format("round {} was abandoned on Ctrl-C", t);
      in_round_ = false;
      restore_python_error();
    } catch (const net::TransportError& e) {
      broken_ = e.what();
      in_round_ = false;
      throw;
    }
    in_round_ = false;
    last_step_seconds_ = std::chrono::duration<double>(Clock::now() - round_start).count();
    // The caller's time between rounds (forward, backward, data) is this round's compute.
    auto totals = algo_->totals();
    totals.compute_s += outside;
    algo_->restore_totals(totals);
    if (!start_) start_ = last_return_;
    last_return_ = Clock::now();
    if (loss) {
      window_loss_ += *loss;
      ++window_;
    }
    const auto every = static_cast<std::uint64_t>(std::max(1, peer_->config().log_every));
    if (algo_->round() % every == 0) log("{}");
  }

  // Wall seconds of training: from the first round (earlier segments of a loaded state
  // included) to the end of the last one.
  double wall_seconds() const {
    return wall_before_ +
           (start_ ? std::chrono::duration<double>(last_return_ - *start_).count() : 0.0);
  }

  // Writes a metrics line now: the runtime's fields, the mean loss since the last line (null
  // when none was passed) and `extra` (a JSON object: test_accuracy, ...).
  void log(const std::string& extra) {
    auto line = runtime::metrics_line(*algo_, *transport_, peer_->rank(), wall_seconds());
    line["train_loss"] = window_ > 0 ? nlohmann::json(window_loss_ / static_cast<double>(window_))
                                     : nlohmann::json(nullptr);
    const auto more = nlohmann::json::parse(extra);
    if (!more.is_object()) throw std::invalid_argument("metrics: extra fields must be a dict");
    line.update(more);
    if (!metrics_) metrics_.emplace(peer_->config(), peer_->rank(), algo_->round());
    metrics_->write(line);
    last_logged_ = algo_->round();
    window_loss_ = 0.0;
    window_ = 0;
  }

  // The mean of every peer's x (a ring all-reduce in fp32): a collective, every peer calls it at
  // the same point. Before the first round every peer holds x0, the mean itself.
  py::array_t<float> average() {
    check_usable();
    py::array_t<float> out(static_cast<py::ssize_t>(algo_->dim()));
    std::span<float> avg(out.mutable_data(), algo_->dim());
    algo_->copy_params(avg);
    if (algo_->round() == 0 || peer_->size() == 1) return out;
    collective_mean(avg);
    return out;
  }

  // The element-wise mean over every peer of `values` (the same length on every peer; a
  // collective, after the first round).
  py::array_t<float> mean(py::array_t<float, py::array::c_style | py::array::forcecast> values) {
    check_usable();
    if (values.ndim() != 1) throw std::invalid_argument("mean: values must be one-dimensional");
    py::array_t<float> out(values.size());
    std::copy(values.data(), values.data() + values.size(), out.mutable_data());
    if (peer_->size() == 1) return out;
    if (algo_->round() == 0)
      throw std::invalid_argument(
          "mean and gather are collectives of a round: call them after "
          "the first step()");
    collective_mean(std::span<float>(out.mutable_data(), static_cast<std::size_t>(out.size())));
    return out;
  }

  // The algorithm's whole state (Algorithm::save), then the running totals and the wall seconds
  // so far, so that a loaded state goes on counting where it stopped.
  py::bytes save() const {
    std::ostringstream out(std::ios::binary);
    out.write(kStateMagic, sizeof kStateMagic);
    algo_->save(out);
    const auto& t = algo_->totals();
    const std::uint64_t counts[] = {t.rounds, t.bytes_sent, t.bytes_received};
    const double seconds[] = {t.compute_s, t.encode_s, t.wait_s,
                              t.decode_s,  t.update_s, wall_seconds()};
    out.write(reinterpret_cast<const char*>(counts), sizeof counts);
    out.write(reinterpret_cast<const char*>(seconds), sizeof seconds);
    return py::bytes(out.str());
  }

  // Throws StateError, changing nothing, when `state` is not a whole state of this algorithm.
  void load(const py::bytes& state) {
    check_usable();
    const std::string all(state);
    std::uint64_t counts[3] = {};
    double seconds[6] = {};
    const std::size_t tail = sizeof counts + sizeof seconds;
    if (all.size() < sizeof kStateMagic + tail ||
        !std::equal(kStateMagic, kStateMagic + sizeof kStateMagic, all.data()))
      throw algorithms::StateError("not a saved gossip state (no GSPYST01 header, or cut short)");
    std::memcpy(counts, all.data() + all.size() - tail, sizeof counts);
    std::memcpy(seconds, all.data() + all.size() - sizeof seconds, sizeof seconds);
    std::istringstream body(all.substr(sizeof kStateMagic, all.size() - sizeof kStateMagic - tail),
                            std::ios::binary);
    std::ostringstream before(std::ios::binary);  // to undo a load the tail then refuses
    algo_->save(before);
    algo_->load(body);
    if (body.peek() != std::char_traits<char>::eof()) {
      std::istringstream undo(before.str(), std::ios::binary);
      algo_->load(undo);
      throw algorithms::StateError("saved state has bytes after the algorithm's state");
    }
    algorithms::RoundStats t;
    t.rounds = counts[0];
    t.bytes_sent = counts[1];
    t.bytes_received = counts[2];
    t.compute_s = seconds[0];
    t.encode_s = seconds[1];
    t.wait_s = seconds[2];
    t.decode_s = seconds[3];
    t.update_s = seconds[4];
    algo_->restore_totals(t);
    wall_before_ = seconds[5];
    start_.reset();
    last_return_ = Clock::now();
  }

  // last_round or totals as JSON text, under the metrics lines' names (round_stats_json).
  std::string stats(bool totals) const {
    return runtime::round_stats_json(totals ? algo_->totals() : algo_->last_round()).dump();
  }

  std::optional<std::uint64_t> stop_round() const { return transport_->stop_round(); }

  void set_lr(double lr) {
    if (!(lr > 0.0) || !std::isfinite(lr))
      throw std::invalid_argument(fmt::format("lr must be a positive number, got {}", lr));
    algo_->set_lr(static_cast<float>(lr));
  }

  // Writes the last metrics line (rounds since the last one), then closes the sockets; the
  // buffers (and numpy views of them) stay.
  void close() {
    if (!transport_) return;
    if (broken_.empty() && algo_->round() > last_logged_) {
      try {
        log("{}");
      } catch (const std::exception&) {
        // A metrics file that cannot be written must not keep the sockets open.
      }
    }
    closed_ = true;
    py::gil_scoped_release release;
    algo_.reset();
    transport_.reset();
  }

 private:
  // A ring all-reduce of `data` in the round just done, on ring steps past the C-PSGD baseline's
  // and past any earlier collective of the same round.
  void collective_mean(std::span<float> data) {
    const std::uint64_t t = algo_->round() - 1;
    if (avg_round_ != t) avg_calls_ = 0;
    const std::uint32_t first = algorithms::kDiagnosticFirstStep +
                                avg_calls_ * 2u * static_cast<std::uint32_t>(peer_->size());
    ++avg_calls_;
    avg_round_ = t;
    // A loss (or a rejoin) still being agreed on: the peers may count different members, and a
    // ring of them would not line up. No ring, and the same error as a collective cut by a loss.
    if (!net::departures_settled(transport_->departures(), t))
      throw net::TransportError(fmt::format(
          "rank {}: round {}: a peer left (or rejoins) and the others are still agreeing on the "
          "round, so this collective has no result; the next one after a few rounds runs over the "
          "peers present",
          peer_->rank(), t + 1));
    bool whole = false;
    try {
      py::gil_scoped_release release;
      whole = algorithms::allreduce_mean(*transport_, t, data, first);
    } catch (const Interrupted&) {
      broken_ = "a collective was abandoned on Ctrl-C";
      restore_python_error();
    } catch (const net::TransportError& e) {
      broken_ = e.what();
      throw;
    }
    // A peer left during it (transport.on_peer_loss = "continue"): `data` is no mean. The
    // transport stays usable; a later collective runs over the peers left.
    if (!whole)
      throw net::TransportError(fmt::format(
          "rank {}: round {}: a peer left during this collective, so it has no result; the next "
          "one runs over the peers left",
          peer_->rank(), t + 1));
  }

  void check_usable() const {
    if (closed_) throw std::runtime_error("this algorithm was closed");
    if (!broken_.empty())
      throw net::TransportError(
          fmt::format("rank {}: the algorithm cannot go on: {}; load a saved state into a new one",
                      peer_->rank(), broken_));
  }

  void ask_stop(std::uint64_t before) {
    stop_asked_ = true;
    if (!transport_->stop_round() || *transport_->stop_round() > before)
      transport_->request_stop(before);
  }

  // Runs Python's signal handlers (the GIL held); true, with the error kept in error_, when one
  // raised (a second Ctrl-C).
  bool python_signal_raised() {
    if (PyErr_CheckSignals() == 0) return false;
    error_ = std::make_unique<py::error_already_set>();
    return true;
  }

  bool handshake_cancelled() {
    py::gil_scoped_acquire gil;
    return python_signal_raised() || peer_->interrupted();
  }

  // While a round waits (GIL released): let Python's signal handlers run. Gossip's SIGINT
  // handler only flags the peer (the agreed stop is asked for here); anything they raise (a
  // second Ctrl-C) abandons the round, and so does a flag left unanswered for a second.
  void poll() {
    py::gil_scoped_acquire gil;
    if (python_signal_raised()) throw Interrupted{};
    if (!peer_->interrupted()) return;
    const auto now = Clock::now();
    if (!interrupted_at_) interrupted_at_ = now;
    if (!stop_asked_) ask_stop(algo_->round() + 1 + margin_);
    if (in_round_ && now - *interrupted_at_ > std::chrono::seconds(1)) {
      PyErr_SetString(PyExc_KeyboardInterrupt, "");
      error_ = std::make_unique<py::error_already_set>();
      throw Interrupted{};
    }
  }

  [[noreturn]] void restore_python_error() {
    auto e = std::move(error_);
    if (e) throw py::error_already_set(std::move(*e));
    throw py::error_already_set();
  }

  std::shared_ptr<Peer> peer_;
  std::uint64_t margin_ = 2;  // stop_margin of the topology, local steps and staleness
  std::size_t wire_bytes_ = 0;
  std::unique_ptr<net::ZmqTransport> transport_;
  std::unique_ptr<algorithms::Algorithm> algo_;  // after the transport: freed first
  Clock::time_point last_return_;
  std::optional<Clock::time_point> start_;  // end of the first round's wait for the caller
  double wall_before_ = 0.0;                // wall seconds of a loaded state
  double last_step_seconds_ = 0.0;          // the last Algorithm::step, GIL released
  std::optional<runtime::MetricsFile> metrics_;
  double window_loss_ = 0.0;
  std::uint64_t window_ = 0;
  std::uint64_t last_logged_ = 0;  // round of the last metrics line
  std::optional<Clock::time_point> interrupted_at_;
  std::unique_ptr<py::error_already_set> error_;
  std::string broken_;
  bool stop_asked_ = false;
  bool in_round_ = false;
  bool closed_ = false;
  std::uint64_t avg_round_ = UINT64_MAX;
  std::uint32_t avg_calls_ = 0;
};

}  // namespace
}  // namespace gossip::python

PYBIND11_MODULE(_core, m) {
  using namespace gossip;
  using namespace gossip::python;
  m.doc() = "gossip's compiled core: peers, algorithms and their buffers as numpy views";

  static py::exception<void> base(m, "GossipError", PyExc_RuntimeError);
  static py::exception<void> config_error(m, "ConfigError", base.ptr());
  static py::exception<void> peer_error(m, "PeerError", base.ptr());
  static py::exception<void> state_error(m, "StateError", base.ptr());
  static py::exception<void> stopped(m, "Stopped", PyExc_KeyboardInterrupt);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StoppedError& e) {
      PyErr_SetString(stopped.ptr(), e.what());
    } catch (const net::TransportError& e) {
      PyErr_SetString(peer_error.ptr(), e.what());
    } catch (const algorithms::StateError& e) {
      PyErr_SetString(state_error.ptr(), e.what());
    } catch (const runtime::ConfigError& e) {
      PyErr_SetString(config_error.ptr(), e.what());
    } catch (const topology::TopologyFileError& e) {
      PyErr_SetString(config_error.ptr(), e.what());
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(config_error.ptr(), e.what());
    }
  });

  py::class_<Peer, std::shared_ptr<Peer>>(m, "Peer")
      .def(py::init<const std::string&, int, const std::vector<std::string>&>(), py::arg("config"),
           py::arg("rank") = -1, py::arg("overrides") = std::vector<std::string>{})
      .def_property_readonly("rank", &Peer::rank)
      .def_property_readonly("size", &Peer::size)
      .def_property_readonly("config_toml", [](const Peer& p) { return p.config().to_toml(); })
      .def_property_readonly("config_source", [](const Peer& p) { return p.config().source; })
      .def_property_readonly("output_dir", [](const Peer& p) { return p.config().output_dir(); })
      .def_property_readonly("log_every", [](const Peer& p) { return p.config().log_every; })
      .def_property_readonly("checkpoint_every",
                             [](const Peer& p) { return p.config().checkpoint_every; })
      .def_property_readonly("granularity", [](const Peer& p) { return p.config().granularity; })
      .def_property_readonly("neighbors",
                             [](const Peer& p) { return p.topology().graph.neighbors(p.rank()); })
      .def_property_readonly("trainer_only_keys", &Peer::trainer_only_keys)
      .def("interrupt", &Peer::interrupt)
      .def_property_readonly("interrupted", &Peer::interrupted)
      .def(
          "algorithm",
          [](std::shared_ptr<Peer> self, py::array_t<float, py::array::c_style> x0,
             std::vector<std::size_t> tensor_sizes, const std::vector<std::string>& overrides) {
            return std::make_unique<PyAlgorithm>(std::move(self), x0, std::move(tensor_sizes),
                                                 overrides);
          },
          py::arg("x0").noconvert(), py::arg("tensor_sizes") = std::vector<std::size_t>{},
          py::arg("overrides") = std::vector<std::string>{});

  py::class_<PyAlgorithm>(m, "Algorithm")
      .def_property_readonly(
          "params", [](py::object self) { return self.cast<PyAlgorithm&>().view(self, false); })
      .def_property_readonly(
          "grad", [](py::object self) { return self.cast<PyAlgorithm&>().view(self, true); })
      .def("step", &PyAlgorithm::step, py::arg("grad").noconvert() = py::none(),
           py::arg("loss") = py::none())
      .def("average", &PyAlgorithm::average)
      .def("mean", &PyAlgorithm::mean, py::arg("values"))
      .def("save", &PyAlgorithm::save)
      .def("load", &PyAlgorithm::load, py::arg("state"))
      .def("close", &PyAlgorithm::close)
      .def_property_readonly("round", &PyAlgorithm::round)
      .def_property_readonly("dim", &PyAlgorithm::dim)
      .def_property_readonly("name", [](const PyAlgorithm& a) { return a.algorithm().name(); })
      .def_property_readonly("codec",
                             [](const PyAlgorithm& a) { return a.algorithm().config().codec; })
      .def_property_readonly(
          "tensor_sizes", [](const PyAlgorithm& a) { return a.algorithm().config().tensor_sizes; })
      .def_property(
          "lr", [](const PyAlgorithm& a) { return a.algorithm().lr(); }, &PyAlgorithm::set_lr)
      .def_property_readonly("momentum",
                             [](const PyAlgorithm& a) { return a.algorithm().config().momentum; })
      .def_property_readonly(
          "weight_decay", [](const PyAlgorithm& a) { return a.algorithm().config().weight_decay; })
      .def_property_readonly("wire_bytes", &PyAlgorithm::wire_bytes)
      .def_property_readonly("last_round", [](const PyAlgorithm& a) { return a.stats(false); })
      .def_property_readonly("totals", [](const PyAlgorithm& a) { return a.stats(true); })
      .def("log", &PyAlgorithm::log, py::arg("extra") = "{}")
      .def_property_readonly("wall_seconds", &PyAlgorithm::wall_seconds)
      .def_property_readonly("last_step_seconds", &PyAlgorithm::last_step_seconds)
      .def_property_readonly("stop_round", &PyAlgorithm::stop_round);
}
