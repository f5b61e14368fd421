#include "src/runtime/trainer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <streambuf>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "gossip/algorithms/ring_allreduce.hpp"
#include "kernels/crc32c.hpp"

namespace gossip::runtime {

namespace fs = std::filesystem;

namespace {

// The last two characters are the format's version: 02 added the transport and time counters,
// 03 hashes only the settings the state depends on (RunConfig::Scope::resume), 04 ends with a
// CRC32C of every byte before it (a file cut short, damaged or with bytes appended is refused).
constexpr char kCheckpointMagic[8] = {'G', 'S', 'C', 'K', 'P', 'T', '0', '4'};
constexpr std::size_t kChecksumBytes = 4;
constexpr int kCheckpointsKept = 3;

// Passes what is written on to `out` and keeps the CRC32C of it, so the checksum costs no second
// pass and no copy of a model-sized state.
class CrcWriter : public std::streambuf {
 public:
  explicit CrcWriter(std::streambuf* out) : out_(out) {}
  std::uint32_t crc() const { return crc_; }

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    const char ch = traits_type::to_char_type(c);
    crc_ = kernels::crc32c(std::as_bytes(std::span(&ch, 1)), crc_);
    return out_->sputc(ch);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    crc_ = kernels::crc32c(std::as_bytes(std::span(s, static_cast<std::size_t>(n))), crc_);
    return out_->sputn(s, n);
  }

 private:
  std::streambuf* out_;
  std::uint32_t crc_ = 0;
};

// fsync of a file or folder: the data (and a rename in the folder) reach the disk before we go on.
void sync_path(const fs::path& path, bool folder) {
  const int fd = ::open(path.c_str(), folder ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    throw CheckpointError(
        fmt::format("{}: cannot sync to disk: {}", path.string(), std::strerror(err)));
  }
  ::close(fd);
}

// Digits as a u64; nullopt when they overflow (a stray file name must not stop a run).
std::optional<std::uint64_t> parse_u64(const std::string& digits) {
  std::uint64_t v = 0;
  const auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (err != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return v;
}

template <class T>
void put(std::ostream& out, const T& v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
T get(std::istream& in, const std::string& path) {
  T v{};
  if (!in.read(reinterpret_cast<char*>(&v), sizeof v))
    throw CheckpointError(fmt::format("{}: truncated checkpoint header", path));
  return v;
}

std::string eval_text(const EvalPoint& e) {
  std::string s;
  if (e.own.optimality_gap) {
    s = fmt::format("  F-F* {:.3g}", *e.own.optimality_gap);
    if (e.average) s += fmt::format(" (avg model {:.3g})", *e.average->optimality_gap);
  } else {
    s = fmt::format("  test acc {:.4f}", e.own.accuracy);
    if (e.average) s += fmt::format(" (avg model {:.4f})", e.average->accuracy);
  }
  if (e.disagreement) s += fmt::format("  |x-avg|/|avg| {:.3g}", e.disagreement->relative());
  return s;
}

// The earliest divergence any peer saw, known to every peer: n − 1 steps of a ring in which each
// peer passes on the smallest (round, rank) it has seen (16 bytes a step), in ring round
// `ring_round`. Exact for any number of peers, unlike a mean.
std::optional<PeerSummary::Divergence> agree_on_divergence(
    net::Transport& transport, std::uint64_t ring_round,
    std::optional<PeerSummary::Divergence> own) {
  constexpr std::uint64_t kNone = UINT64_MAX;
  std::array<std::uint64_t, 2> best{kNone, kNone}, got{};
  if (own) best = {own->round, static_cast<std::uint64_t>(own->rank)};
  const int n = transport.size();
  // After a peer loss: the ring of the peers left, once every one of them knows the departures.
  // A loss too close to the end to be agreed on leaves each peer with its own verdict.
  if (!net::departures_settled(transport.departures(), ring_round)) {
    fmt::print(stderr,
               "peer {}: a peer left too close to the end of the run for the others to agree on "
               "it: the divergence verdict is this peer's own\n",
               transport.rank());
    return own;
  }
  const auto members = static_cast<int>(algorithms::ring_members(transport).size());
  for (int step = 0; step + 1 < members; ++step) {
    transport.ring_step(ring_round, static_cast<std::uint32_t>(step),
                        std::as_bytes(std::span(best)), std::as_writable_bytes(std::span(got)));
    if (transport.ring_cut()) {
      fmt::print(stderr,
                 "peer {}: a peer left during the divergence agreement: the verdict is this "
                 "peer's own\n",
                 transport.rank());
      return own;
    }
    best = std::min(best, got);
  }
  if (best[0] == kNone) return std::nullopt;
  if (best[1] >= static_cast<std::uint64_t>(n))
    throw std::runtime_error(
        fmt::format("the divergence agreement named rank {} of {} peers", best[1], n));
  return PeerSummary::Divergence{static_cast<int>(best[1]), best[0]};
}

std::vector<std::size_t> hidden_widths(const RunConfig& config) {
  std::vector<std::size_t> hidden;
  if (config.model == "mlp")
    for (int h : config.hidden) hidden.push_back(static_cast<std::size_t>(h));
  return hidden;
}

}  // namespace

MlpLayout model_layout(const RunConfig& config, const Dataset& train) {
  if (train.regression()) return MlpLayout(train.dim, {}, 1);
  return MlpLayout(train.dim, hidden_widths(config), static_cast<std::size_t>(train.classes));
}

void check_device(const RunConfig& config) {
  if (config.device != "cuda") return;
  const std::string where = config.source.empty() ? "run config" : config.source;
  if (!cuda_model_built())
    throw ConfigError(fmt::format(
        "{}: run.device = \"cuda\", but this gossip was built without the CUDA backend "
        "(rebuild with nvcc on PATH: meson setup -Dcuda=enabled), or set run.device = \"cpu\"",
        where));
  std::string why;
  if (cuda_device_count(&why) == 0)
    throw ConfigError(fmt::format(
        "{}: run.device = \"cuda\", but no CUDA GPU is visible here ({}); run on a machine with "
        "a GPU (check CUDA_VISIBLE_DEVICES and nvidia-smi), or set run.device = \"cpu\"",
        where, why));
}

std::unique_ptr<Model> make_model(const RunConfig& config, const Dataset& train, int gpu) {
  const auto hidden = hidden_widths(config);
  const auto max_batch = static_cast<std::size_t>(std::max(config.batch_size, 256));
  const auto classes = static_cast<std::size_t>(train.classes);
  if (train.regression()) {
    if (config.device == "cuda")
      throw std::invalid_argument("least squares runs on the CPU only (run.device = \"cpu\")");
    return std::make_unique<LeastSquares>(train.dim);
  }
  if (config.device == "cuda") {
    check_device(config);
    return make_cuda_mlp(train.dim, hidden, classes, max_batch, gpu);
  }
  return std::make_unique<Mlp>(train.dim, hidden, classes, max_batch);
}

GpuChoice gpu_for_peer(const topology::Topology& topo, int rank, GpuPlacement placement) {
  const auto& peer = topo.peers.at(static_cast<std::size_t>(rank));
  return choose_gpu(
      peer.device, rank,
      placement == GpuPlacement::process ? local_rank_from_environment() : std::nullopt,
      cuda_device_count());
}

TrainTest load_data(const RunConfig& config) {
  TrainTest tt = config.dataset == "blobs" ? synthetic_blobs(32, 10, 20000, 4000, config.seed)
                 : config.dataset == "least-squares"
                     ? synthetic_least_squares(32, 16000, 4000, config.seed)
                 : config.dataset == "logistic" ? synthetic_logistic(32, 16000, 4000, config.seed)
                                                : load_fashion_mnist(config.data_path);
  auto trim = [](Dataset& d, std::size_t limit) {
    if (limit == 0 || limit >= d.size()) return;
    d.labels.resize(limit);
    d.features.resize(limit * d.dim);
  };
  trim(tt.train, config.train_limit);
  trim(tt.test, config.test_limit);
  return tt;
}

PeerTrainer::PeerTrainer(const RunConfig& config, const topology::Topology& topo, int rank,
                         net::Transport& transport, const TrainTest& data,
                         const std::vector<std::vector<std::size_t>>& shards,
                         GpuPlacement placement, std::shared_ptr<const KnownOptimum> optimum)
    : config_(config),
      topo_(topo),
      rank_(rank),
      transport_(transport),
      data_(data),
      shard_(shards.at(static_cast<std::size_t>(rank))) {
  // Bulk synchronous: every peer runs the same number of rounds. An epoch is one pass over the
  // training set on average: ⌊mean shard / batch⌋ rounds. Each peer cycles through its own shard
  // in passes of ⌊shard / batch⌋ batches, so a peer with a small shard (Dirichlet partitions) sees
  // its rows more often and a large shard is not cut short.
  // Checked first: a batch larger than any shard must not size the model's batch buffers.
  std::size_t smallest = shards.front().size(), total = 0, smallest_rank = 0;
  for (std::size_t r = 0; r < shards.size(); ++r) {
    if (shards[r].size() < smallest) {
      smallest = shards[r].size();
      smallest_rank = r;
    }
    total += shards[r].size();
  }
  const auto batch = static_cast<std::size_t>(config.batch_size);
  if (smallest < batch)
    throw std::invalid_argument(fmt::format(
        "the smallest shard (peer {}'s) holds {} rows, fewer than run.batch_size = {}: {}",
        smallest_rank, smallest, batch,
        config.partition == "dirichlet"
            ? "raise data.alpha (more even shares) or data.train_limit, lower the batch size, or "
              "use fewer peers"
        : config.train_limit > 0 ? "raise data.train_limit, lower the batch size or use fewer peers"
                                 : "lower the batch size or use fewer peers"));
  rounds_per_epoch_ = total / shards.size() / batch;
  const double rounds = std::ceil(config.epochs * static_cast<double>(rounds_per_epoch_));
  if (rounds > 1e15)
    throw std::invalid_argument(
        fmt::format("run.epochs = {} makes {:.3g} rounds: too many", config.epochs, rounds));
  total_rounds_ = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(rounds));
  std::optional<int> gpu_device;
  if (config.device == "cuda") {
    check_device(config);
    const auto gpu = gpu_for_peer(topo, rank, placement);
    model_ = make_model(config, data.train, gpu.device);
    gpu_device = gpu.device;
    fmt::print(stderr, "peer {}: model, algorithm state and codec on {} (GPU chosen by {})\n", rank,
               model_->device(), gpu.reason);
  } else {
    model_ = make_model(config, data.train);
  }
  // A stop request travels one hop per round: it must outrun the diameter (at most twice the
  // eccentricity of any peer) before its round comes.
  stop_margin_ = stop_margin(topo, config.local_steps, config.staleness, config.delay);
  std::vector<float> x0(model_->size());
  model_->init(x0, config.seed);  // the same x0 on every peer, whatever its backend
  auto algorithm = algorithm_config(config, model_->layout().tensor_sizes());
  // On a GPU the state stays there: the model reads x and writes g in device memory.
  if (gpu_device) algorithm.cuda_device = *gpu_device;
  algo_ = algorithms::make_algorithm(algorithm, transport, topo, x0);
  optimum_ = optimum ? std::move(optimum) : known_optimum(config, data.train, shards);
}

std::shared_ptr<const KnownOptimum> known_optimum(
    const RunConfig& config, const Dataset& train,
    const std::vector<std::vector<std::size_t>>& shards) {
  if (config.dataset != "least-squares" && config.dataset != "logistic") return nullptr;
  // λ as the algorithms apply it: a float.
  return std::make_shared<KnownOptimum>(
      model_layout(config, train), train, shards,
      static_cast<double>(static_cast<float>(config.weight_decay)));
}

Evaluation PeerTrainer::assess(std::span<const float> x) {
  auto e = model_->evaluate(x, data_.test);
  if (optimum_) {
    e.optimality_gap = optimum_->objective(x) - optimum_->value();
    e.distance_to_optimum = optimum_->distance(x);
  }
  return e;
}

PeerTrainer::~PeerTrainer() = default;

std::uint64_t PeerTrainer::round() const {
  return algo_->round();
}
std::span<const float> PeerTrainer::params() const {
  if (!algo_->on_device()) return algo_->params();
  host_params_.resize(algo_->dim());
  algo_->copy_params(host_params_);
  return host_params_;
}

std::pair<double, double> PeerTrainer::schedule_at(std::uint64_t round) const {
  const double per_epoch = static_cast<double>(rounds_per_epoch_);
  const double epoch = static_cast<double>(round) / per_epoch;
  const double warmup_rounds = config_.lr_warmup_epochs * per_epoch;
  double lr = config_.lr, eta = config_.consensus_step;
  // Round t of a warm-up of T rounds steps with lr·(t+1)/T: never a zero step.
  if (static_cast<double>(round) + 1.0 < warmup_rounds)
    lr *= (static_cast<double>(round) + 1.0) / warmup_rounds;
  for (double e : config_.lr_decay_epochs) {
    if (epoch >= e) {
      lr *= config_.lr_decay_factor;
      eta *= config_.consensus_decay_factor;
    }
  }
  return {lr, eta};
}

std::string PeerTrainer::checkpoint_path(const RunConfig& config, int rank, std::uint64_t round) {
  return (fs::path(config.output_dir()) / "checkpoints" /
          fmt::format("peer-{}-round-{}.ckpt", rank, round))
      .string();
}

std::optional<std::uint64_t> PeerTrainer::latest_common_checkpoint(const RunConfig& config,
                                                                   int peers) {
  const fs::path dir = fs::path(config.output_dir()) / "checkpoints";
  if (!fs::is_directory(dir)) return std::nullopt;
  std::map<std::uint64_t, std::vector<fs::path>> files;  // by round, one per rank that has it
  const std::regex name(R"(peer-(\d+)-round-(\d+)\.ckpt)");
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string file = e.path().filename().string();
    if (!std::regex_match(file, m, name)) continue;
    const auto rank = parse_u64(m[1].str()), round = parse_u64(m[2].str());
    if (rank && round && *rank < static_cast<std::uint64_t>(peers))
      files[*round].push_back(e.path());
  }
  // Newest first; a round any of whose files is unusable (a power loss mid-write on an older
  // build, a damaged disk) gives way to an older one, and stderr says why.
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    if (it->second.size() != static_cast<std::size_t>(peers)) continue;
    bool intact = true;
    for (const auto& f : it->second)
      if (const auto problem = checkpoint_problem(f.string())) {
        fmt::print(stderr, "checkpoints of round {} skipped: {}\n", it->first, *problem);
        intact = false;
        break;
      }
    if (intact) return it->first;
  }
  return std::nullopt;
}

std::optional<std::string> PeerTrainer::checkpoint_problem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (!in || ec) return fmt::format("{}: cannot read", path);
  if (size == 0) return fmt::format("{}: empty (a write cut short?)", path);
  char magic[sizeof kCheckpointMagic];
  if (!in.read(magic, sizeof magic) || std::memcmp(magic, kCheckpointMagic, 6) != 0)
    return fmt::format("{}: not a gossip checkpoint", path);
  if (std::memcmp(magic, kCheckpointMagic, sizeof magic) != 0)
    return fmt::format(
        "{}: checkpoint format {} (this build reads {}); start afresh without --resume", path,
        std::string_view(magic + 6, 2), std::string_view(kCheckpointMagic + 6, 2));
  if (size < sizeof magic + kChecksumBytes)
    return fmt::format("{}: truncated ({} bytes)", path, size);
  std::uint32_t crc = kernels::crc32c(std::as_bytes(std::span(magic)));
  std::vector<char> chunk(static_cast<std::size_t>(std::min<std::uintmax_t>(size, 1 << 20)));
  for (std::uintmax_t left = size - sizeof magic - kChecksumBytes; left > 0;) {
    const auto n = static_cast<std::size_t>(std::min<std::uintmax_t>(left, chunk.size()));
    if (!in.read(chunk.data(), static_cast<std::streamsize>(n)))
      return fmt::format("{}: cannot read", path);
    crc = kernels::crc32c(std::as_bytes(std::span(chunk.data(), n)), crc);
    left -= n;
  }
  std::uint32_t stored = 0;
  if (!in.read(reinterpret_cast<char*>(&stored), sizeof stored))
    return fmt::format("{}: cannot read", path);
  if (stored != crc)
    return fmt::format(
        "{}: checksum mismatch (stored {:08x}, computed {:08x} over {} bytes): the file is "
        "damaged, cut short or has bytes appended",
        path, stored, crc, size - kChecksumBytes);
  return std::nullopt;
}

std::string PeerTrainer::checkpoint() const {
  const std::string path = checkpoint_path(config_, rank_, algo_->round());
  fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    if (!file) throw CheckpointError(fmt::format("{}: cannot write", tmp));
    CrcWriter crc(file.rdbuf());
    std::ostream out(&crc);
    out.write(kCheckpointMagic, sizeof kCheckpointMagic);
    put(out, config_.hash(RunConfig::Scope::resume));
    put(out, topo_.hash());
    put(out, static_cast<std::int32_t>(rank_));
    put(out, algo_->round());
    put(out, wall_seconds());
    const algorithms::RoundStats& t = algo_->totals();
    put(out, t.rounds);
    put(out, t.bytes_sent);
    put(out, t.bytes_received);
    for (double v : {t.compute_s, t.encode_s, t.wait_s, t.decode_s, t.update_s}) put(out, v);
    algo_->save(out);
    const std::uint32_t sum = crc.crc();
    std::array<char, kChecksumBytes> trailer{};
    std::memcpy(trailer.data(), &sum, sizeof sum);  // little-endian, as every field here
    file.write(trailer.data(), trailer.size());
    if (!out || !file.flush()) throw CheckpointError(fmt::format("{}: write failed", tmp));
  }
  // Data on disk before the rename, the rename on disk before we report the checkpoint: a power
  // loss leaves the old name or the whole new file, never an empty or torn one under the name.
  sync_path(tmp, false);
  fs::rename(tmp, path);
  sync_path(fs::path(path).parent_path(), true);
  // Keep the newest few of this peer, and always the one just written (a run resumed from an
  // older round may find newer ones of the history it left).
  std::vector<std::pair<std::uint64_t, fs::path>> mine;
  const std::regex name(fmt::format(R"(peer-{}-round-(\d+)\.ckpt)", rank_));
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path())) {
    std::smatch m;
    const std::string file = e.path().filename().string();
    if (!std::regex_match(file, m, name)) continue;
    if (const auto round = parse_u64(m[1].str())) mine.emplace_back(*round, e.path());
  }
  std::sort(mine.rbegin(), mine.rend());
  for (std::size_t k = kCheckpointsKept; k < mine.size(); ++k)
    if (mine[k].second != fs::path(path)) fs::remove(mine[k].second);
  return path;
}

void PeerTrainer::resume(std::uint64_t round) {
  const std::string path = checkpoint_path(config_, rank_, round);
  if (fs::is_directory(path)) throw CheckpointError(fmt::format("{}: is a directory", path));
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw CheckpointError(
        fmt::format("{}: no checkpoint of rank {} at round {}", path, rank_, round));
  if (auto problem = checkpoint_problem(path)) throw CheckpointError(*problem);
  in.seekg(sizeof kCheckpointMagic);
  const auto config_hash = get<std::uint64_t>(in, path);
  if (const auto ours = config_.hash(RunConfig::Scope::resume); config_hash != ours) {
    // The run folder's config.toml (written by rank 0 when the run started) names the keys.
    std::string which;
    try {
      const auto before = load_run_config((fs::path(config_.output_dir()) / kConfigFile).string());
      if (before.hash(RunConfig::Scope::resume) == config_hash)
        which = fmt::format("; changed: {}",
                            fmt::join(config_.differences(before, RunConfig::Scope::resume), "; "));
    } catch (const std::exception&) {
      // No readable config.toml: the hashes alone.
    }
    throw CheckpointError(fmt::format(
        "{}: written by a run with other settings (config hash {:016x}, this run {:016x}){}; "
        "resume with the same settings (run.epochs, run.eval_every, logging, checkpoint and "
        "transport settings may change), or start afresh without --resume",
        path, config_hash, ours, which));
  }
  const auto topo_hash = get<std::uint64_t>(in, path);
  if (topo_hash != topo_.hash())
    throw CheckpointError(
        fmt::format("{}: written for another topology (hash {:016x}, this run {:016x})", path,
                    topo_hash, topo_.hash()));
  const auto rank = get<std::int32_t>(in, path);
  const auto saved_round = get<std::uint64_t>(in, path);
  if (rank != rank_ || saved_round != round)
    throw CheckpointError(fmt::format("{}: holds rank {} round {}, expected rank {} round {}", path,
                                      rank, saved_round, rank_, round));
  const auto wall = get<double>(in, path);
  algorithms::RoundStats t;
  t.rounds = get<std::uint64_t>(in, path);
  t.bytes_sent = get<std::uint64_t>(in, path);
  t.bytes_received = get<std::uint64_t>(in, path);
  for (double* v : {&t.compute_s, &t.encode_s, &t.wait_s, &t.decode_s, &t.update_s})
    *v = get<double>(in, path);
  try {
    algo_->load(in);
  } catch (const algorithms::StateError& e) {
    throw CheckpointError(fmt::format("{}: {}", path, e.what()));
  }
  // The checksum passed, so only a file written so (not by us) has bytes between the state and it.
  const auto state_end = static_cast<std::uintmax_t>(in.tellg());
  if (const auto size = fs::file_size(path); state_end + kChecksumBytes != size)
    throw CheckpointError(fmt::format("{}: {} bytes between the saved state and the checksum", path,
                                      size - kChecksumBytes - state_end));
  // Only once everything has loaded: a refused checkpoint leaves the trainer as it was.
  wall_before_ = wall;
  algo_->restore_totals(t);
}

std::uint64_t PeerTrainer::rejoin() {
  const net::JoinState st = transport_.receive_state();
  std::istringstream in(
      std::string(reinterpret_cast<const char*>(st.bytes.data()), st.bytes.size()));
  try {
    algo_->adopt(in);
  } catch (const algorithms::StateError& e) {
    throw net::TransportError(fmt::format("rank {}: rejoin: the state from {}: {}", rank_,
                                          transport_.peer_name(st.donor), e.what()));
  }
  if (algo_->round() != st.round)
    throw net::TransportError(
        fmt::format("rank {}: rejoin: the state from {} is of round {}, sent as round {}", rank_,
                    transport_.peer_name(st.donor), algo_->round(), st.round));
  return st.round;
}

Disagreement disagreement(std::span<const float> x, std::span<const float> avg) {
  double dist = 0.0, norm = 0.0;
  for (std::size_t k = 0; k < x.size(); ++k) {
    const double a = avg[k], diff = static_cast<double>(x[k]) - a;
    dist += diff * diff;
    norm += a * a;
  }
  return {std::sqrt(dist), std::sqrt(norm)};
}

EvalPoint PeerTrainer::evaluate(std::uint64_t round) {
  EvalPoint e;
  const auto x = params();
  e.own = assess(x);
  if (transport_.size() == 1) return e;
  // A departure not yet in effect: some peers may not know of it, and a ring over all of them
  // would wait for the one gone. No averaged model at this point; the next one has it.
  if (!net::departures_settled(transport_.departures(), round)) {
    fmt::print(stderr,
               "peer {}: round {}: no averaged model: a peer left and the others are still "
               "agreeing on it\n",
               rank_, round + 1);
    return e;
  }
  // Ring steps past the C-PSGD baseline's, in the round just done: every peer evaluates at the
  // same rounds, so the all-reduce lines up; its bytes are diagnostics, not the algorithm's.
  // After a loss the ring is that of the peers left.
  average_.assign(x.begin(), x.end());
  if (!algorithms::allreduce_mean(transport_, round, average_, algorithms::kDiagnosticFirstStep)) {
    fmt::print(stderr, "peer {}: round {}: no averaged model: a peer left during the all-reduce\n",
               rank_, round + 1);
    return e;
  }
  e.disagreement = disagreement(x, average_);
  if (rank_ == algorithms::ring_members(transport_).front()) e.average = assess(average_);
  return e;
}

void PeerTrainer::log_line(MetricsFile& out, double train_loss,
                           const std::optional<EvalPoint>& eval, double wall) const {
  auto j = metrics_line(*algo_, transport_, rank_, wall);
  j["epoch"] = static_cast<double>(algo_->round()) / static_cast<double>(rounds_per_epoch_);
  j["train_loss"] = train_loss;
  auto add = [&j](const Evaluation& e, const std::string& suffix) {
    if (!std::isnan(e.accuracy)) j["test_accuracy" + suffix] = e.accuracy;
    j["test_loss" + suffix] = e.loss;
    if (e.optimality_gap) j["optimality_gap" + suffix] = *e.optimality_gap;
    if (e.distance_to_optimum) j["distance_to_optimum" + suffix] = *e.distance_to_optimum;
  };
  if (eval) {
    add(eval->own, "");
    if (eval->disagreement) {
      j["distance_to_average"] = eval->disagreement->distance;
      j["average_norm"] = eval->disagreement->average_norm;
    }
    if (eval->average) add(*eval->average, "_avg_model");
  }
  out.write(j);
}

double PeerTrainer::wall_seconds() const {
  if (!segment_start_) return wall_before_;
  if (auto* clock = transport_.virtual_clock())
    return wall_before_ + static_cast<double>(clock->now_ns()) * 1e-9;
  return wall_before_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - *segment_start_).count();
}

PeerSummary PeerTrainer::run(const TrainHooks& hooks) {
  net::VirtualClock* clock = transport_.virtual_clock();
  // Virtual time starts at 0 with training, as the real clock of a segment starts here.
  if (clock) clock->reset();
  const auto compute_per_round =
      static_cast<std::uint64_t>(std::llround(config_.compute_ms_per_round * 1e6));
  segment_start_ = std::chrono::steady_clock::now();
  fs::create_directories(config_.output_dir());
  if (rank_ == 0) {
    // The settings of this run, for people and for naming what a later --resume changed.
    const auto path = fs::path(config_.output_dir()) / kConfigFile;
    const auto tmp = fs::path(path.string() + ".tmp");
    std::ofstream(tmp) << "# written by gossip when this run (or its last resume) started\n"
                       << config_.to_toml();
    fs::rename(tmp, path);
  }
  MetricsFile metrics(config_, rank_, algo_->round());

  PeerSummary s;
  s.rank = rank_;
  s.rounds_per_epoch = rounds_per_epoch_;
  ShardOrder order(shard_, static_cast<std::size_t>(config_.batch_size), config_.seed, rank_);
  double window_loss = 0.0;
  std::uint64_t window = 0;
  const double eval_rounds = config_.eval_every * static_cast<double>(rounds_per_epoch_);
  for (std::uint64_t t = algo_->round(); t < total_rounds_; ++t) {
    if (hooks.stop_requested && !transport_.stop_round() && hooks.stop_requested())
      transport_.request_stop(t + stop_margin_);
    if (const auto stop = transport_.stop_round(); stop && t >= *stop) {
      s.stopped_early = true;
      break;
    }
    // A peer that rejoins in this round takes its state from us (we are its donor).
    for (int k : transport_.state_wanted(t)) {
      std::ostringstream state;
      algo_->save_for_peer(state);
      const std::string bytes = std::move(state).str();
      transport_.send_state(k, t, std::as_bytes(std::span(bytes.data(), bytes.size())));
    }
    const auto [lr, eta] = schedule_at(t);
    algo_->set_lr(static_cast<float>(lr));
    algo_->set_consensus_step(static_cast<float>(eta));
    // A faster device than this one: each round's work costs a fixed time (the clock then
    // counts no CPU time).
    if (clock && compute_per_round > 0) clock->advance(compute_per_round);
    const auto rows = order.batch(t);
    double loss = 0.0;
    algo_->step([&](std::span<const float> x, std::span<float> g) {
      loss = model_->loss_grad(x, data_.train, rows, g);
    });
    if (hooks.nan_loss_round == t) loss = std::numeric_limits<double>::quiet_NaN();
    if (hooks.leave_after_round == t + 1) {
      s.left = true;
      s.rounds = t + 1;
      return s;
    }
    if (!std::isfinite(loss) && !s.diverged_at) {
      s.diverged_at = t;
      if (!transport_.stop_round()) transport_.request_stop(t + 1 + stop_margin_);
      fmt::print(stderr, "peer {}: training loss is {} in round {}: the run diverged, stopping\n",
                 rank_, loss, t);
    }
    window_loss += loss;
    ++window;
    const std::uint64_t done = t + 1;
    if (config_.checkpoint_every > 0 && !s.diverged_at &&
        done % static_cast<std::uint64_t>(config_.checkpoint_every) == 0)
      checkpoint();
    std::optional<EvalPoint> eval;
    const bool epoch_eval = eval_rounds > 0 && std::floor(static_cast<double>(done) / eval_rounds) >
                                                   std::floor(static_cast<double>(t) / eval_rounds);
    const bool round_eval = config_.eval_every_rounds > 0 &&
                            done % static_cast<std::uint64_t>(config_.eval_every_rounds) == 0;
    if (epoch_eval || round_eval) {
      // Measuring is no part of training: in virtual time neither its work nor its all-reduce
      // moves the clock, so time to a target does not depend on how often it is measured.
      if (clock) clock->pause();
      eval = evaluate(t);
      if (clock) clock->resume();
    }
    if (done % static_cast<std::uint64_t>(config_.log_every) == 0 || done == total_rounds_ ||
        eval) {
      s.train_loss = window_loss / static_cast<double>(window);
      log_line(metrics, s.train_loss, eval, wall_seconds());
      if (hooks.progress) {
        const double w = wall_seconds();
        fmt::print(stderr,
                   "epoch {:6.2f}/{:g}  round {:>6}/{}  loss {:.4f}{}  sent {:8.2f} MB  {:6.1f} "
                   "rounds/s\n",
                   static_cast<double>(done) / static_cast<double>(rounds_per_epoch_),
                   config_.epochs, done, total_rounds_, s.train_loss,
                   eval ? eval_text(*eval) : std::string(),
                   static_cast<double>(algo_->totals().bytes_sent) / 1e6,
                   static_cast<double>(done) / std::max(w, 1e-9));
      }
      window_loss = 0.0;
      window = 0;
    }
  }
  s.rounds = algo_->round();
  // How the run ends is the peers' decision, not each one's: a peer that diverged in the last
  // rounds asks for a stop that cannot reach everyone before the end, and its neighbours would
  // otherwise go on to the end-of-run all-reduce and wait for it until their timeout. Every peer
  // ends here at the same round (the stop agreement or the last one), so a ring in round s.rounds
  // (no ring step of it was taken) tells them all the same verdict.
  std::optional<PeerSummary::Divergence> own;
  if (s.diverged_at) own = PeerSummary::Divergence{rank_, *s.diverged_at};
  s.divergence = transport_.size() > 1 ? agree_on_divergence(transport_, s.rounds, own) : own;
  const auto gone = transport_.departures();
  s.departures.assign(gone.begin(), gone.end());
  s.wall_seconds = wall_seconds();
  wall_before_ = s.wall_seconds;
  segment_start_.reset();
  s.test = assess(params());
  s.totals = algo_->totals();
  return s;
}

}  // namespace gossip::runtime
