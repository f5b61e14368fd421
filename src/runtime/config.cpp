#include "src/runtime/config.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <utility>
#include <variant>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "gossip/algorithms/registry.hpp"
#include "kernels/params.hpp"

namespace gossip::runtime {

namespace {

using Member = std::variant<std::string RunConfig::*, int RunConfig::*, std::uint64_t RunConfig::*,
                            double RunConfig::*, bool RunConfig::*,
                            std::vector<double> RunConfig::*, std::vector<int> RunConfig::*>;

struct Key {
  std::string_view path;  // "section.key"
  Member member;
  std::string_view help;
};

// The help of algorithm.name: every canonical name of the registry.
const std::string kAlgorithmNames = algorithms::algorithm_names();

// Every key of the run config. docs/ARCHITECTURE.md lists the same table for users.
const Key kKeys[] = {
    {"run.name", &RunConfig::name, "name of the run"},
    {"run.output", &RunConfig::output, "output folder (default runs/<name>)"},
    {"run.seed", &RunConfig::seed, "seed of the model init, data order, partition and codecs"},
    {"run.epochs", &RunConfig::epochs,
     "passes over the training set (⌊mean shard / batch⌋ rounds each)"},
    {"run.batch_size", &RunConfig::batch_size, "mini-batch per peer"},
    {"run.eval_every", &RunConfig::eval_every, "epochs between test evaluations (0: at the end)"},
    {"run.eval_every_rounds", &RunConfig::eval_every_rounds,
     "rounds between test evaluations too (0: none)"},
    {"run.log_every", &RunConfig::log_every, "rounds between metric lines"},
    {"run.checkpoint_every", &RunConfig::checkpoint_every,
     "rounds between checkpoints (0: on stop)"},
    {"run.device", &RunConfig::device, "cpu or cuda (the model's forward and backward pass)"},
    {"topology.file", &RunConfig::topology, "topology file or generator spec such as ring:8"},
    {"algorithm.name", &RunConfig::algorithm, kAlgorithmNames},
    {"algorithm.lr", &RunConfig::lr, "learning rate"},
    {"algorithm.consensus_step", &RunConfig::consensus_step, "DeepSqueeze eta / CHOCO gamma_c"},
    {"algorithm.momentum", &RunConfig::momentum, "heavy-ball momentum on the local gradient"},
    {"algorithm.nesterov", &RunConfig::nesterov, "Nesterov momentum"},
    {"algorithm.quasi_global", &RunConfig::quasi_global,
     "momentum buffer from the model's movement (QG-DSGDm), for non-iid data"},
    {"algorithm.weight_decay", &RunConfig::weight_decay, "L2 weight decay"},
    {"algorithm.lr_decay_epochs", &RunConfig::lr_decay_epochs, "epochs at which lr is multiplied"},
    {"algorithm.lr_decay_factor", &RunConfig::lr_decay_factor, "the factor"},
    {"algorithm.lr_warmup_epochs", &RunConfig::lr_warmup_epochs,
     "epochs over which lr grows linearly to its value (0: none)"},
    {"algorithm.consensus_decay_factor", &RunConfig::consensus_decay_factor,
     "consensus step multiplier at the same epochs (1: constant)"},
    {"algorithm.local_steps", &RunConfig::local_steps,
     "H: rounds t with (t + 1) mod H = 0 communicate, the others only step locally (1: all)"},
    {"algorithm.staleness", &RunConfig::staleness,
     "tau: mix the neighbours' models of tau communication rounds earlier, so messages travel "
     "while the next rounds compute (dpsgd; 0: none)"},
    {"algorithm.delay", &RunConfig::delay,
     "dga: rounds between a direction and the all-reduce of it that is applied (0: all-reduce)"},
    {"compression.codec", &RunConfig::codec, "codec spec, e.g. qsgd:s=3,scaled=true"},
    {"compression.granularity", &RunConfig::granularity, "model or layer"},
    {"model.kind", &RunConfig::model, "mlp or softmax"},
    {"model.hidden", &RunConfig::hidden, "hidden layer widths of the mlp"},
    {"data.dataset", &RunConfig::dataset,
     "fashion-mnist, blobs, or a convex problem with a known optimum: least-squares, logistic"},
    {"data.path", &RunConfig::data_path, "folder of the Fashion-MNIST IDX files"},
    {"data.partition", &RunConfig::partition, "iid, label or dirichlet"},
    {"data.alpha", &RunConfig::dirichlet_alpha, "Dirichlet concentration"},
    {"data.train_limit", &RunConfig::train_limit, "use the first N training rows (0: all)"},
    {"data.test_limit", &RunConfig::test_limit, "use the first N test rows (0: all)"},
    {"transport.timeout_s", &RunConfig::timeout_s, "a silent neighbour ends the run after this"},
    {"transport.on_peer_loss", &RunConfig::on_peer_loss,
     "stop, or continue: the others mix without a neighbour silent past the timeout"},
    {"transport.connect_timeout_s", &RunConfig::connect_timeout_s, "start-up handshake limit"},
    {"transport.latency_ms", &RunConfig::latency_ms, "emulated latency per message"},
    {"transport.bandwidth_mbit", &RunConfig::bandwidth_mbit, "emulated bandwidth per link"},
    {"transport.uplink_mbit", &RunConfig::uplink_mbit,
     "emulated uplink per peer, shared by all its links (0: unlimited)"},
    {"transport.downlink_mbit", &RunConfig::downlink_mbit,
     "emulated downlink per peer, shared by all its links (0: unlimited)"},
    {"transport.clock", &RunConfig::clock,
     "real, or virtual (gossip simulate: modelled time, nobody waits)"},
    {"transport.compute_ms_per_round", &RunConfig::compute_ms_per_round,
     "virtual clock: work per round in ms instead of the measured CPU time (0: measured)"},
    {"transport.receive_window", &RunConfig::receive_window,
     "neighbour messages in flight (0: all at once; 1: memory flat in the degree)"},
    {"transport.io_threads", &RunConfig::io_threads,
     "libzmq I/O threads of this peer (CURVE encryption runs in them)"},
    {"transport.secret_key_file", &RunConfig::secret_key_file,
     "this peer's CURVE secret key ({rank}: the rank; \"\": GOSSIP_SECRET_KEY_FILE)"},
};

const Key* find_key(std::string_view path) {
  for (const auto& k : kKeys)
    if (k.path == path) return &k;
  return nullptr;
}

std::string known_keys_in(std::string_view section) {
  std::vector<std::string_view> names;
  for (const auto& k : kKeys)
    if (k.path.substr(0, k.path.find('.')) == section)
      names.push_back(k.path.substr(k.path.find('.') + 1));
  return fmt::format("{}", fmt::join(names, ", "));
}

// A TOML integer or float as a double; a negative zero as zero, since the canonical text writes
// it as "-0", which reads back as the integer 0 (the same setting, with other text and hashes).
std::optional<double> number(const toml::node& n) {
  if (n.is_integer()) return static_cast<double>(n.as_integer()->get());
  if (n.is_floating_point()) return n.as_floating_point()->get() + 0.0;
  return std::nullopt;
}

// Sets `key` from a TOML node; returns an error message or "" on success.
std::string assign(RunConfig& c, const Key& key, const toml::node& n) {
  return std::visit(
      [&](auto member) -> std::string {
        using T = std::remove_reference_t<decltype(c.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (!n.is_string()) return "must be a string";
          c.*member = n.as_string()->get();
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!n.is_boolean()) return "must be true or false";
          c.*member = n.as_boolean()->get();
        } else if constexpr (std::is_same_v<T, int>) {
          if (!n.is_integer()) return "must be an integer";
          const auto v = n.as_integer()->get();
          if (v < 0 || v > 1'000'000'000) return fmt::format("must lie in 0..1e9, got {}", v);
          c.*member = static_cast<int>(v);
        } else if constexpr (std::is_same_v<T, std::uint64_t>) {
          if (!n.is_integer() || n.as_integer()->get() < 0) return "must be a non-negative integer";
          c.*member = static_cast<std::uint64_t>(n.as_integer()->get());
        } else if constexpr (std::is_same_v<T, double>) {
          const auto x = number(n);
          if (!x) return "must be a number";
          c.*member = *x;
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          if (!n.is_array()) return "must be an array of numbers";
          T v;
          for (const auto& e : *n.as_array()) {
            const auto x = number(e);
            if (!x) return "must be an array of numbers";
            v.push_back(*x);
          }
          c.*member = v;
        } else {
          if (!n.is_array()) return "must be an array of integers";
          T v;
          for (const auto& e : *n.as_array()) {
            if (!e.is_integer() || e.as_integer()->get() <= 0)
              return "must be an array of positive integers";
            v.push_back(static_cast<int>(e.as_integer()->get()));
          }
          c.*member = v;
        }
        return "";
      },
      key.member);
}

std::string render(const RunConfig& c, const Key& key) {
  return std::visit(
      [&](auto member) -> std::string {
        const auto& v = c.*member;
        using T = std::remove_cvref_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          std::ostringstream s;
          s << toml::value<std::string>(v);  // quoted and escaped
          return s.str();
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return fmt::format("{}", v);
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          std::vector<std::string> parts;
          for (double d : v) parts.push_back(fmt::format("{}", d));
          return fmt::format("[{}]", fmt::join(parts, ", "));
        } else if constexpr (std::is_same_v<T, std::vector<int>>) {
          return fmt::format("[{}]", fmt::join(v, ", "));
        } else {
          return fmt::format("{}", v);
        }
      },
      key.member);
}

// Checks the values together; `where(key)` gives the place to name in a message.
template <class Where>
void check_values(const RunConfig& c, Where where) {
  auto fail = [&](std::string_view key, const std::string& msg) {
    throw ConfigError(fmt::format("{}: {} {}", where(key), key, msg));
  };
  auto one_of = [&](std::string_view key, const std::string& v,
                    std::initializer_list<std::string_view> allowed) {
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
      fail(key, fmt::format("is '{}'; allowed: {}", v, fmt::join(allowed, ", ")));
  };
  if (c.topology.empty())
    fail("topology.file", "is missing: name a topology file or a spec such as ring:8");
  // Finite, positive numbers: inf and nan fail every comparison but the one that says so.
  auto positive = [&](std::string_view key, double v) {
    if (!(v > 0 && std::isfinite(v))) fail(key, "must be a positive, finite number");
  };
  auto non_negative = [&](std::string_view key, double v) {
    if (!(v >= 0 && std::isfinite(v))) fail(key, "must be a non-negative, finite number");
  };
  positive("run.epochs", c.epochs);
  if (c.batch_size < 1) fail("run.batch_size", "must be at least 1");
  if (c.log_every < 1) fail("run.log_every", "must be at least 1");
  if (c.local_steps < 1) fail("algorithm.local_steps", "must be at least 1");
  // Each round of staleness keeps a model-sized buffer and up to two messages per neighbour.
  if (c.staleness > 100)
    fail("algorithm.staleness", "must be at most 100 (each round keeps a model-sized buffer)");
  if (c.staleness > 0 && c.receive_window > 0)
    fail("algorithm.staleness",
         fmt::format("= {} cannot be paced by transport.receive_window = {}: credits ask for the "
                     "message of the round being received, sent staleness rounds earlier; set "
                     "transport.receive_window = 0",
                     c.staleness, c.receive_window));
  if (c.delay < 0 || c.delay > 1000)
    fail("algorithm.delay",
         "must lie in [0, 1000] (each round in flight keeps two model-sized "
         "buffers)");
  positive("algorithm.lr", c.lr);
  if (!(c.consensus_step > 0 && c.consensus_step <= 1))
    fail("algorithm.consensus_step", "must lie in (0, 1]");
  if (!(c.consensus_decay_factor > 0 && c.consensus_decay_factor <= 1))
    fail("algorithm.consensus_decay_factor", "must lie in (0, 1]");
  // The algorithms keep momentum as a float: 0.99999999999 would round to 1.
  if (!(c.momentum >= 0 && static_cast<float>(c.momentum) < 1.0f))
    fail("algorithm.momentum", "must lie in [0, 1) (as a float)");
  non_negative("algorithm.lr_warmup_epochs", c.lr_warmup_epochs);
  positive("algorithm.lr_decay_factor", c.lr_decay_factor);
  for (double e : c.lr_decay_epochs)
    if (!(e >= 0 && std::isfinite(e)))
      fail("algorithm.lr_decay_epochs",
           fmt::format("holds {}; epochs must be non-negative, finite", e));
  non_negative("algorithm.weight_decay", c.weight_decay);
  non_negative("run.eval_every", c.eval_every);
  // Limits that keep the transport's nanosecond and millisecond arithmetic in range.
  constexpr double kMaxSeconds = 1e6;  // about 11.6 days
  for (auto [key, v] : {std::pair{"transport.timeout_s", c.timeout_s},
                        std::pair{"transport.connect_timeout_s", c.connect_timeout_s}})
    if (!(v > 0 && v <= kMaxSeconds))
      fail(key, fmt::format("must lie in (0, {:g}] seconds", kMaxSeconds));
  if (!(c.latency_ms >= 0 && c.latency_ms <= kMaxSeconds))
    fail("transport.latency_ms", fmt::format("must lie in [0, {:g}] milliseconds", kMaxSeconds));
  for (auto [key, v] : {std::pair{"transport.bandwidth_mbit", c.bandwidth_mbit},
                        std::pair{"transport.uplink_mbit", c.uplink_mbit},
                        std::pair{"transport.downlink_mbit", c.downlink_mbit}})
    if (!(v == 0 || (v >= 1e-3 && v <= 1e9)))
      fail(key, "must be 0 (unlimited) or lie in [0.001, 1e9] Mbit/s");
  one_of("transport.clock", c.clock, {"real", "virtual"});
  if (!(c.compute_ms_per_round >= 0 && c.compute_ms_per_round <= kMaxSeconds))
    fail("transport.compute_ms_per_round",
         fmt::format("must lie in [0, {:g}] milliseconds", kMaxSeconds));
  if (c.compute_ms_per_round > 0 && c.clock != "virtual")
    fail("transport.compute_ms_per_round",
         "applies to the virtual clock only: set transport.clock = \"virtual\" too");
  constexpr int kMaxIoThreads = 64;
  if (c.io_threads < 1 || c.io_threads > kMaxIoThreads)
    fail("transport.io_threads", fmt::format("must lie in [1, {}]", kMaxIoThreads));
  one_of("compression.granularity", c.granularity, {"model", "layer"});
  one_of("model.kind", c.model, {"mlp", "softmax"});
  one_of("data.dataset", c.dataset, {"fashion-mnist", "blobs", "least-squares", "logistic"});
  if (c.dataset == "least-squares" || c.dataset == "logistic") {
    // Convex problems with a known optimum (src/optimum.hpp).
    if (c.model == "mlp" && !c.hidden.empty())
      fail("model.kind",
           fmt::format("is \"mlp\" with hidden layers, but data.dataset = \"{}\" has a known "
                       "optimum only without them: set model.kind = \"softmax\"",
                       c.dataset));
    if (c.dataset == "logistic" && !(c.weight_decay > 0))
      fail("algorithm.weight_decay",
           "must be > 0 with data.dataset = \"logistic\" (softmax regression has a unique "
           "optimum only with it)");
    if (c.dataset == "least-squares" && c.device == "cuda")
      fail("run.device", "least squares runs on the CPU only (data.dataset = \"least-squares\")");
  }
  one_of("data.partition", c.partition, {"iid", "label", "dirichlet"});
  one_of("run.device", c.device, {"cpu", "cuda"});
  positive("data.alpha", c.dirichlet_alpha);
  if (c.quasi_global && c.momentum == 0)
    fail("algorithm.quasi_global", "needs algorithm.momentum > 0");
  // Names and codecs the library knows, checked here so that the message names the key and the
  // file; the rules are the algorithm's registry row.
  const algorithms::AlgorithmInfo* algorithm = nullptr;
  try {
    algorithm = &algorithms::find_algorithm(c.algorithm);
  } catch (const std::invalid_argument& e) {
    fail("algorithm.name", fmt::format("is invalid: {}", e.what()));
  }
  try {
    (void)kernels::parse_spec(c.codec);
  } catch (const std::invalid_argument& e) {
    fail("compression.codec", fmt::format("is invalid: {}", e.what()));
  }
  try {
    algorithms::check_codec(*algorithm, c.codec);
  } catch (const std::invalid_argument& e) {
    fail("compression.codec", e.what());
  }
  try {
    algorithms::check_staleness(*algorithm, static_cast<std::uint32_t>(c.staleness));
  } catch (const std::invalid_argument& e) {
    fail("algorithm.staleness", e.what());
  }
  one_of("transport.on_peer_loss", c.on_peer_loss, {"stop", "continue"});
  if (c.on_peer_loss == "continue") {
    try {
      algorithms::check_peer_loss(*algorithm);
    } catch (const std::invalid_argument& e) {
      fail("transport.on_peer_loss", e.what());
    }
    if (c.staleness > 0)
      fail("transport.on_peer_loss",
           fmt::format("= \"continue\" cannot run with algorithm.staleness = {}: a lost peer's "
                       "messages would stay in flight; use staleness 0 or \"stop\"",
                       c.staleness));
    if (c.receive_window > 0)
      fail("transport.on_peer_loss",
           fmt::format("= \"continue\" cannot run with transport.receive_window = {}: a credit "
                       "would wait for a lost peer; use receive_window 0 or \"stop\"",
                       c.receive_window));
  }
  if (c.delay != 0 && algorithm->name != "dga")
    fail("algorithm.delay",
         fmt::format("is a setting of dga (delayed gradient averaging), not of {}; leave it at 0",
                     algorithm->name));
  if (c.local_steps != 1 && !algorithm->local_steps)
    fail("algorithm.local_steps",
         fmt::format("must be 1 with {}, which corrects every round's direction; use allreduce "
                     "for local SGD",
                     algorithm->name));
}

}  // namespace

std::string RunConfig::to_toml() const {
  std::string out;
  std::string section;
  for (const auto& k : kKeys) {
    const auto dot = k.path.find('.');
    const auto sec = std::string(k.path.substr(0, dot));
    if (sec != section) {
      out += fmt::format("{}[{}]\n", section.empty() ? "" : "\n", sec);
      section = sec;
    }
    out += fmt::format("{} = {}\n", k.path.substr(dot + 1), render(*this, k));
  }
  return out;
}

namespace {

// Keys no hash covers: they concern one process only.
bool local_key(std::string_view path) {
  return path.starts_with("transport.") || path == "run.name" || path == "run.output" ||
         path == "run.log_every" || path == "run.checkpoint_every" || path == "run.device" ||
         path == "data.path" || path == "data.test_limit" || path == "topology.file";
}

bool in_scope(std::string_view path, RunConfig::Scope scope) {
  if (local_key(path)) return false;
  // More epochs or other evaluation points change what the peers do together (rounds, the
  // evaluation all-reduce), not the state a checkpoint holds.
  return scope == RunConfig::Scope::peers ||
         (path != "run.epochs" && path != "run.eval_every" && path != "run.eval_every_rounds");
}

}  // namespace

std::uint64_t RunConfig::hash(Scope scope) const {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto& k : kKeys) {
    if (!in_scope(k.path, scope)) continue;
    // Added after runs were checkpointed: left out at its default, so their hashes still hold.
    if (k.path == "algorithm.local_steps" && local_steps == 1) continue;
    if (k.path == "algorithm.staleness" && staleness == 0) continue;
    if (k.path == "algorithm.delay" && delay == 0) continue;
    for (unsigned char ch : fmt::format("{}={}\n", k.path, render(*this, k)))
      h = (h ^ ch) * 0x100000001b3ULL;
  }
  return h;
}

std::vector<std::string> RunConfig::differences(const RunConfig& other, Scope scope) const {
  std::vector<std::string> out;
  for (const auto& k : kKeys) {
    if (!in_scope(k.path, scope)) continue;
    const auto ours = render(*this, k), theirs = render(other, k);
    if (ours != theirs) out.push_back(fmt::format("{} = {} (there: {})", k.path, ours, theirs));
  }
  return out;
}

namespace {

// One "section.key=value" assigned to c without the cross-key checks; returns the key's path.
std::string assign_override(RunConfig& c, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos)
    throw ConfigError(fmt::format("--set {}: write section.key=value", assignment));
  const std::string path = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  const Key* k = find_key(path);
  if (!k) {
    const auto section = path.substr(0, path.find('.'));
    const auto known = known_keys_in(section);
    throw ConfigError(fmt::format("--set {}: unknown key '{}'{}", assignment, path,
                                  known.empty()
                                      ? " (sections: run, topology, algorithm, compression, "
                                        "model, data, transport)"
                                      : fmt::format(" (known in [{}]: {})", section, known)));
  }
  // The value is TOML; a bare word that is not valid TOML is taken as a string.
  toml::table t;
  try {
    t = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    t = toml::table{{"v", value}};
    // The config is written and compared as TOML text, which is UTF-8: a bare word that is not
    // would be written as other characters (a byte 0xFF as U+00FF) and read back as another.
    std::ostringstream written;
    written << t;
    bool same = false;
    try {
      same = toml::parse(written.str())["v"].value<std::string>() == value;
    } catch (const toml::parse_error&) {
    }
    if (!same)
      throw ConfigError(
          fmt::format("--set {}: {}: the value is not valid UTF-8 text", assignment, path));
  }
  if (auto err = assign(c, *k, *t.get("v")); !err.empty())
    throw ConfigError(fmt::format("--set {}: {} {}", assignment, path, err));
  return path;
}

}  // namespace

RunConfig parse_run_config(const std::string& text, const std::string& name,
                           const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("{}:{}: {}", name, e.source().begin.line, e.description()));
  }
  RunConfig c;
  c.source = name;
  // Where each key was set, for messages: FILE:LINE, or the --set argument that set it last.
  std::map<std::string, std::string, std::less<>> origin;
  for (const auto& [section, node] : root) {
    const auto line = static_cast<long>(node.source().begin.line);
    if (!node.is_table())
      throw ConfigError(fmt::format("{}:{}: '{}' must be a section, e.g. [{}]", name, line,
                                    section.str(), section.str()));
    if (known_keys_in(section.str()).empty())
      throw ConfigError(
          fmt::format("{}:{}: unknown section [{}] (known: run, topology, algorithm, "
                      "compression, model, data, transport)",
                      name, line, section.str()));
    for (const auto& [key, value] : *node.as_table()) {
      const std::string path = fmt::format("{}.{}", section.str(), key.str());
      const long vline = static_cast<long>(value.source().begin.line);
      const Key* k = find_key(path);
      if (!k)
        throw ConfigError(fmt::format("{}:{}: unknown key '{}' in [{}] (known: {})", name, vline,
                                      key.str(), section.str(), known_keys_in(section.str())));
      if (auto err = assign(c, *k, value); !err.empty())
        throw ConfigError(fmt::format("{}:{}: {} {}", name, vline, path, err));
      origin[path] = fmt::format("{}:{}", name, vline);
    }
  }
  // Overrides before the checks: --set can mend a value the file gets wrong.
  for (const std::string& o : overrides) origin[assign_override(c, o)] = "--set " + o;
  check_values(c, [&](std::string_view key) {
    auto it = origin.find(key);
    return it == origin.end() ? name : it->second;
  });
  return c;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw ConfigError(fmt::format("{}: is a directory, not a run config", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot open the run config", path));
  // Run configs are a few hundred bytes: read at most one byte past the limit, so an endless
  // source (/dev/zero) is refused, while a pipe (--config <(...)) still works.
  constexpr std::size_t kMaxBytes = 1 << 20;
  std::string text(kMaxBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxBytes)
    throw ConfigError(fmt::format("{}: more than {} bytes; a run config may have at most {}", path,
                                  kMaxBytes, kMaxBytes));
  return parse_run_config(text, path, overrides);
}

void apply_override(RunConfig& c, const std::string& assignment) {
  // Applied to a copy: a refused override leaves `c` as it was.
  RunConfig changed = c;
  assign_override(changed, assignment);
  check_values(changed, [&](std::string_view) { return fmt::format("--set {}", assignment); });
  c = std::move(changed);
}

}  // namespace gossip::runtime
