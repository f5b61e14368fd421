#pragma once
// The run config (TOML, edited by hand, see configs/*.toml): topology, algorithm, codec, model,
// data, schedule, transport and outputs. Every key can be overridden on the command line with
// `--set section.key=value`. Unknown keys and badly typed values are errors naming the file and
// line (or the --set argument).

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace gossip::runtime {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RunConfig {
  // [run]
  std::string name = "run";
  std::string output;  // folder for metrics, checkpoints, plots; default runs/<name>
  std::uint64_t seed = 1;
  double epochs = 1.0;  // may be fractional for quick runs
  int batch_size = 32;
  double eval_every = 0.0;     // epochs between evaluations; 0: only at the end
  int eval_every_rounds = 0;   // rounds between evaluations too (finer than an epoch); 0: none
  int log_every = 50;          // rounds between metric lines
  int checkpoint_every = 0;    // rounds between checkpoints; 0: only on a clean stop
  std::string device = "cpu";  // "cpu" or "cuda": where the model computes (src/model.hpp)

  // [topology]
  std::string topology;  // topology file path or generator spec ("ring:8")

  // [algorithm]
  std::string algorithm = "dpsgd";
  double lr = 0.1;
  double consensus_step = 1.0;  // DeepSqueeze's eta, CHOCO's gamma_c
  double momentum = 0.0;
  bool nesterov = false;
  bool quasi_global = false;
  double weight_decay = 0.0;
  std::vector<double> lr_decay_epochs;  // multiply lr by lr_decay_factor at these epochs
  double lr_decay_factor = 0.1;
  double lr_warmup_epochs = 0.0;  // lr grows linearly from lr/rounds to lr over these epochs
  // At the same epochs the consensus step (η, γ_c) is multiplied by this; 1 keeps it constant.
  double consensus_decay_factor = 1.0;
  // Local steps H: only every H-th round communicates (AlgorithmConfig::local_steps). In the
  // hashes only when not 1, so the hashes of configs without it are what they were.
  int local_steps = 1;
  // Staleness τ of overlapped gossip (AlgorithmConfig::staleness; D-PSGD only). In the hashes
  // only when not 0.
  int staleness = 0;
  // DGA's delay D: round t's all-reduce is applied in round t + D (AlgorithmConfig::delay).
  int delay = 0;

  // [compression]
  std::string codec = "identity";
  std::string granularity = "model";  // "model" or "layer"

  // [model]
  std::string model = "mlp";  // "mlp" or "softmax"
  std::vector<int> hidden{256, 128};

  // [data]
  std::string dataset = "fashion-mnist";  // or "blobs" (synthetic)
  std::string data_path = "/usr/share/datasets/fashion-mnist";
  std::string partition = "iid";  // "iid", "label", "dirichlet"
  double dirichlet_alpha = 0.5;
  std::size_t train_limit = 0;  // use only the first N training rows (0: all)
  std::size_t test_limit = 0;

  // [transport]
  double timeout_s = 60.0;
  double connect_timeout_s = 60.0;
  double latency_ms = 0.0;      // per message, emulated on every link
  double bandwidth_mbit = 0.0;  // per link, emulated; 0: unlimited
  // Each peer's NIC, emulated: one uplink shared by everything it sends, one downlink shared by
  // everything it receives (docs/transport.md, "Network model"); 0: unlimited.
  double uplink_mbit = 0.0;
  double downlink_mbit = 0.0;
  // "real": the emulated network delays messages in real time. "virtual" (`gossip simulate`
  // only): nobody waits; each peer's clock advances by its work and the modelled network, and
  // the metrics report that time.
  std::string clock = "real";
  // Virtual time only: each round's work counts as this many milliseconds instead of the peer
  // thread's measured CPU time (a faster device); 0: measured.
  double compute_ms_per_round = 0.0;
  // "stop": a neighbour silent past timeout_s ends the run; "continue": the remaining peers agree
  // on the round from which it is gone and mix without it (docs/transport.md, "Peers that leave").
  std::string on_peer_loss = "stop";
  int receive_window = 0;  // neighbour messages in flight per peer; 0: all at once
  int io_threads = 1;      // libzmq I/O threads of this peer (CURVE encrypts in them)
  // This peer's CURVE secret key file ("{rank}" becomes the rank); "" : GOSSIP_SECRET_KEY_FILE,
  // if set. Needed exactly when the topology has public keys (session.hpp, curve_secret_key).
  std::string secret_key_file;

  std::string source;  // file the config came from, for messages

  std::string output_dir() const { return output.empty() ? "runs/" + name : output; }
  // Which settings a hash covers. Neither covers the keys that only concern one process (run
  // name and output, logging and checkpoint intervals, device, data path, test_limit, topology
  // file name: the topology's own hash is checked beside it, transport settings).
  enum class Scope {
    peers,   // what peers must agree on to run together (start-up handshake)
    resume,  // what a checkpoint's state depends on: peers' keys but run.epochs, run.eval_every
  };
  std::uint64_t hash(Scope scope) const;
  // The keys of `scope` whose values differ, as "key = ours (theirs: other)", for messages.
  std::vector<std::string> differences(const RunConfig& other, Scope scope) const;
  // The canonical TOML text of this config (all keys, overrides applied).
  std::string to_toml() const;
};

// Parses TOML text; `name` is used in messages (usually the path). The overrides
// ("section.key=value", as apply_override) are applied before the values are checked together,
// so an override can mend a value the text gets wrong; messages name the file and line of a key,
// or the override that set it.
RunConfig parse_run_config(const std::string& text, const std::string& name,
                           const std::vector<std::string>& overrides = {});
// The same from a file (or a pipe): a directory, or more than 1 MiB, is refused.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Applies one "section.key=value" override; value is TOML (strings may omit quotes). Throws
// ConfigError and leaves `config` unchanged when the key or the value is refused.
void apply_override(RunConfig& config, const std::string& assignment);

}  // namespace gossip::runtime
