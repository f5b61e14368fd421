// The peer training loop over the in-process transport: resuming from checkpoints gives the same
// model as an uninterrupted run, a checkpoint of another run is refused, and the simulated peers
// learn.

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "gossip/algorithms/ring_allreduce.hpp"
#include "gossip/frame.hpp"
#include "gossip/inproc_transport.hpp"
#include "kernels/codec.hpp"
#include "src/runtime/config.hpp"
#include "src/runtime/trainer.hpp"
#include "tests/common/scratch.hpp"
#include "topology/generators.hpp"

using namespace gossip;
using namespace gossip::runtime;
using gossip::testing::Scratch;

namespace {

RunConfig small_config(const std::string& out, const std::string& algorithm,
                       const std::string& codec) {
  auto c = parse_run_config("[topology]\nfile = \"ring:4\"\n", "test.toml");
  apply_override(c, "data.dataset=blobs");
  apply_override(c, "data.train_limit=4000");
  apply_override(c, "data.test_limit=1000");
  apply_override(c, "model.hidden=[16]");
  apply_override(c, "run.output=\"" + out + "\"");
  apply_override(c, "run.log_every=10");
  apply_override(c, "algorithm.name=" + algorithm);
  apply_override(c, "compression.codec=\"" + codec + "\"");
  apply_override(c, "algorithm.momentum=0.9");
  apply_override(c, "run.epochs=2");  // 31 rounds per epoch
  return c;
}

// Every peer of `c` as a thread over one in-process hub, with the run config's transport settings
// (network model, clock, lags, links: as `gossip simulate`) and `timeout`; `body` runs each
// peer's trainer. Returns each peer's error text ("" when none).
using PeerBody = std::function<void(int, net::InprocTransport&, PeerTrainer&)>;
std::size_t peer_count(const RunConfig& c) {
  return static_cast<std::size_t>(topology::make_topology(topology::parse_spec(c.topology)).size());
}
std::vector<std::string> run_peers(const RunConfig& c, const PeerBody& body,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto topo = topology::make_topology(topology::parse_spec(c.topology));
  const auto data = load_data(c);
  const int n = topo.size();
  const auto shards = partition_all(data.train, parse_partition(c.partition), n, c.seed);
  auto hub = std::make_shared<net::InprocHub>(topo);
  std::vector<std::string> errors(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        auto o = transport_options(c, 0, true);
        o.timeout = timeout;
        net::InprocTransport t(hub, r, o);
        PeerTrainer trainer(c, topo, r, t, data, shards);
        body(r, t, trainer);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

// Runs all peers as threads; `resume` and `stop_at` control resume and stopping; returns each
// peer's final parameters.
std::vector<std::vector<float>> run_all(const RunConfig& c, std::optional<std::uint64_t> resume,
                                        std::optional<std::uint64_t> stop_at,
                                        bool checkpoint_at_stop) {
  std::vector<std::vector<float>> params(peer_count(c));
  const auto errors = run_peers(c, [&](int r, net::InprocTransport& t, PeerTrainer& trainer) {
    if (resume) trainer.resume(*resume);
    // Only rank 0 asks: the request must reach every peer through the frames.
    if (stop_at && r == 0) t.request_stop(*stop_at);
    trainer.run({});
    if (checkpoint_at_stop) trainer.checkpoint();
    params[static_cast<std::size_t>(r)].assign(trainer.params().begin(), trainer.params().end());
  });
  for (const auto& e : errors)
    if (!e.empty()) throw std::runtime_error(e);
  return params;
}

}  // namespace

TEST_CASE("resume from a checkpoint continues to the same result as an uninterrupted run") {
  for (auto [algorithm, codec] : {std::pair{"deepsqueeze", "qsgd:s=3,scaled=true"},
                                  {"choco-sgd", "topk:ratio=0.1"},
                                  {"dcd-psgd", "identity"},
                                  {"dpsgd", "identity"},
                                  {"dga", "identity"},
                                  {"doublesqueeze", "sign"}}) {
    const std::string name = algorithm;
    CAPTURE(name);
    const Scratch scratch("resume_" + name);  // a run folder for each algorithm
    auto c = small_config(scratch.dir().string(), algorithm, codec);
    if (name == "dga") apply_override(c, "algorithm.delay=4");  // reductions in flight at 40
    // The schedule warms lr up over 15.5 rounds and changes lr and the consensus step at round
    // 31, both before the stop.
    apply_override(c, "algorithm.lr_warmup_epochs=0.5");
    apply_override(c, "algorithm.lr_decay_epochs=[1]");
    apply_override(c, "algorithm.consensus_decay_factor=0.5");
    const auto straight = run_all(c, std::nullopt, std::nullopt, false);
    {
      std::ifstream in(std::filesystem::path(c.output_dir()) / "metrics-0.jsonl");
      std::string line, first, last;
      while (std::getline(in, line)) {
        if (first.empty()) first = line;
        last = line;
      }
      const auto j0 = nlohmann::json::parse(first);
      const auto round = j0.at("round").get<double>();  // rounds done; the last one was round - 1
      REQUIRE(round < 15.5);
      CHECK(j0.at("lr").get<double>() == doctest::Approx(c.lr * round / 15.5));
      const auto j = nlohmann::json::parse(last);
      CHECK(j.at("lr").get<double>() == doctest::Approx(c.lr * 0.1));
      const bool has_step = name == "deepsqueeze" || name == "choco-sgd";
      CHECK(j.contains("consensus_step") == has_step);
      if (has_step) CHECK(j.at("consensus_step").get<double>() == doctest::Approx(0.5));
    }
    run_all(c, std::nullopt, 40, true);  // stops before round 40 and checkpoints there
    CHECK(PeerTrainer::latest_common_checkpoint(c, 4) == 40u);
    const auto resumed = run_all(c, 40, std::nullopt, false);
    for (std::size_t r = 0; r < 4; ++r) CHECK(resumed[r] == straight[r]);
  }
}

TEST_CASE("a resumed run carries on the byte counters and the wall clock of the checkpoint") {
  const Scratch scratch("counters");
  auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
  apply_override(c, "run.checkpoint_every=10");  // 62 rounds: checkpoints 40, 50, 60 are kept
  run_all(c, std::nullopt, std::nullopt, false);
  const auto metrics = std::filesystem::path(c.output_dir()) / "metrics-0.jsonl";
  std::map<std::uint64_t, nlohmann::json> straight;
  {
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      straight[j.at("round").get<std::uint64_t>()] = j;
    }
  }
  REQUIRE(straight.count(30));
  REQUIRE(straight.count(40));
  REQUIRE(straight.count(62));
  // The periodic checkpoint of round 40 was written between the log lines of rounds 30 and 40;
  // its wall clock (after magic, two hashes, rank and round) lies between theirs.
  double wall = -1.0;
  {
    std::ifstream in(PeerTrainer::checkpoint_path(c, 0, 40), std::ios::binary);
    in.seekg(8 + 8 + 8 + 4 + 8);
    in.read(reinterpret_cast<char*>(&wall), sizeof wall);
  }
  CHECK(wall >= straight[30].at("wall_seconds").get<double>());
  CHECK(wall <= straight[40].at("wall_seconds").get<double>());
  std::ofstream(metrics, std::ios::app) << "{\"round\": 6";  // a line cut short by a kill
  run_all(c, 40, std::nullopt, false);
  std::string line, last;
  std::ifstream in(metrics);
  std::uint64_t previous = 0;
  while (std::getline(in, line)) {
    // Whole lines only, and each round once: the lines past round 40 were dropped on resume.
    const auto round = nlohmann::json::parse(line).at("round").get<std::uint64_t>();
    CHECK(round > previous);
    previous = round;
    last = line;
  }
  const auto end = nlohmann::json::parse(last);
  CHECK(end.at("round").get<std::uint64_t>() == 62);
  // Every byte of rounds 1..62 counted once, as in the uninterrupted run.
  CHECK(end.at("bytes_sent") == straight[62].at("bytes_sent"));
  CHECK(end.at("wall_seconds").get<double>() > wall);  // the clock runs on from the checkpoint
}

TEST_CASE("a checkpoint written behind three newer ones of the same peer is kept") {
  const Scratch scratch("behind");
  auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
  apply_override(c, "run.checkpoint_every=10");  // 62 rounds: 40, 50 and 60 are kept
  run_all(c, std::nullopt, std::nullopt, false);
  for (int r = 0; r < 4; ++r)  // a history that went further: newer names (contents unread)
    std::filesystem::copy_file(PeerTrainer::checkpoint_path(c, r, 60),
                               PeerTrainer::checkpoint_path(c, r, 70));
  run_all(c, 40, 45, true);  // resumed from 40, stopped before 45 with a checkpoint there
  for (int r = 0; r < 4; ++r) {
    CAPTURE(r);
    CHECK(std::filesystem::exists(PeerTrainer::checkpoint_path(c, r, 45)));
    CHECK_FALSE(std::filesystem::exists(PeerTrainer::checkpoint_path(c, r, 40)));  // pruned
  }
}

TEST_CASE("a checkpoint of another format version is refused, naming both") {
  const Scratch scratch("format");
  auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
  run_all(c, std::nullopt, 20, true);
  for (int r = 0; r < 4; ++r) {
    std::fstream f(PeerTrainer::checkpoint_path(c, r, 20),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(6);
    f.write("01", 2);
  }
  CHECK_THROWS_WITH(run_all(c, 20, std::nullopt, false),
                    doctest::Contains("checkpoint format 01 (this build reads 04)"));
}

TEST_CASE(
    "checkpoints: --resume takes the newest round every peer has intact; damage is refused by "
    "name") {
  const Scratch scratch("intact");
  auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
  apply_override(c, "run.checkpoint_every=10");  // 62 rounds: 40, 50 and 60 are kept
  run_all(c, std::nullopt, std::nullopt, false);
  const auto path = [&](int rank, std::uint64_t round) {
    return PeerTrainer::checkpoint_path(c, rank, round);
  };
  const auto latest = [&] { return PeerTrainer::latest_common_checkpoint(c, 4); };
  for (int r = 0; r < 4; ++r)
    for (std::uint64_t round : {40, 50, 60})
      CHECK_FALSE(PeerTrainer::checkpoint_problem(path(r, round)));
  CHECK(latest() == 60u);
  // Peers whose newest rounds differ: the largest round all of them have, not the newest any has.
  std::filesystem::remove(path(3, 60));
  CHECK(latest() == 50u);
  // An empty checkpoint (a power loss before its bytes reached the disk) gives way to an older
  // round, and so does one cut short.
  std::filesystem::resize_file(path(1, 50), 0);
  CHECK(PeerTrainer::checkpoint_problem(path(1, 50)).value_or("").find("empty") !=
        std::string::npos);
  CHECK(latest() == 40u);
  std::filesystem::resize_file(path(0, 60), std::filesystem::file_size(path(0, 60)) / 2);
  CHECK(PeerTrainer::checkpoint_problem(path(0, 60)).value_or("").find("checksum mismatch") !=
        std::string::npos);

  // One trainer, to resume rank 0 or 2 alone (the others never start: no time-out to wait for).
  const auto topo = topology::make_topology(topology::parse_spec(c.topology));
  const auto data = load_data(c);
  const auto shards = partition_all(data.train, parse_partition(c.partition), 4, c.seed);
  const auto resume_alone = [&](int rank, std::uint64_t round) {
    auto hub = std::make_shared<net::InprocHub>(topo);
    net::InprocTransport t(hub, rank);
    PeerTrainer trainer(c, topo, rank, t, data, shards);
    trainer.resume(round);
  };
  // Bytes appended: refused, naming the file; without them the same file loads.
  const auto appended = path(0, 40);
  const auto size = std::filesystem::file_size(appended);
  std::ofstream(appended, std::ios::binary | std::ios::app) << "x";
  CHECK_THROWS_WITH(resume_alone(0, 40),
                    doctest::Contains((appended + ": checksum mismatch").c_str()));
  CHECK(latest() == std::nullopt);
  std::filesystem::resize_file(appended, size);
  CHECK_NOTHROW(resume_alone(0, 40));
  CHECK(latest() == 40u);
  // One flipped byte in the middle of the saved state: refused, naming the file.
  const auto flipped = path(2, 40);
  {
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(size / 2));
    char b = 0;
    f.read(&b, 1);
    f.seekp(static_cast<std::streamoff>(size / 2));
    b = static_cast<char>(b ^ 0x10);
    f.write(&b, 1);
  }
  CHECK_THROWS_WITH(resume_alone(2, 40),
                    doctest::Contains((flipped + ": checksum mismatch").c_str()));
  CHECK(latest() == std::nullopt);
}

TEST_CASE("a checkpoint of a different run is refused with a message") {
  const Scratch scratch("refuse");
  auto c = small_config(scratch.dir().string(), "deepsqueeze", "qsgd:s=3,scaled=true");
  run_all(c, std::nullopt, 20, true);
  auto other = c;
  apply_override(other, "algorithm.lr=0.2");
  CHECK_THROWS_WITH(run_all(other, 20, std::nullopt, false),
                    doctest::Contains("written by a run with other settings"));
  // The run folder's config.toml names what changed.
  CHECK_THROWS_WITH(run_all(other, 20, std::nullopt, false),
                    doctest::Contains("changed: algorithm.lr = 0.2 (there: 0.1)"));
  CHECK_THROWS_WITH(run_all(c, 30, std::nullopt, false),
                    doctest::Contains("no checkpoint of rank"));
  for (int r = 0; r < 4; ++r)
    std::filesystem::create_directories(PeerTrainer::checkpoint_path(c, r, 30));
  CHECK_THROWS_WITH(run_all(c, 30, std::nullopt, false), doctest::Contains(": is a directory"));
  // More epochs, other logging: the checkpoint still belongs to this run, which goes on longer.
  auto longer = c;
  apply_override(longer, "run.epochs=3");
  apply_override(longer, "run.log_every=5");
  const auto params = run_all(longer, 20, std::nullopt, false);
  CHECK(params[0].size() > 0);
  std::ifstream in(std::filesystem::path(c.output_dir()) / "metrics-0.jsonl");
  std::string line, last;
  while (std::getline(in, line)) last = line;
  CHECK(nlohmann::json::parse(last).at("round").get<std::uint64_t>() == 3 * 31);
}

TEST_CASE("the end of a run is agreed: a divergence in the last rounds reaches every peer") {
  const Scratch scratch("verdict");
  auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
  apply_override(c, "run.epochs=1");  // 31 rounds; the stop margin of ring:4 is 6
  // Rank 3 in the last round, rank 1 a round before it: too late for their stop requests.
  const std::map<int, std::uint64_t> nan_at = {{1, 29}, {3, 30}};
  std::vector<PeerSummary> summaries(4);
  const auto errors = run_peers(c, [&](int r, net::InprocTransport&, PeerTrainer& trainer) {
    TrainHooks hooks;
    if (nan_at.contains(r)) hooks.nan_loss_round = nan_at.at(r);
    summaries[static_cast<std::size_t>(r)] = trainer.run(hooks);
  });
  for (int r = 0; r < 4; ++r) {
    CAPTURE(r);
    const auto& s = summaries[static_cast<std::size_t>(r)];
    CHECK(errors[static_cast<std::size_t>(r)].empty());
    CHECK(s.rounds == 31);  // nobody stopped early: the requests came too late
    REQUIRE(s.divergence.has_value());
    CHECK(s.divergence->rank == 1);  // the earliest of the two
    CHECK(s.divergence->round == 29);
    CHECK(s.diverged_at == (nan_at.contains(r) ? std::optional(nan_at.at(r)) : std::nullopt));
  }
}

TEST_CASE("allreduce_mean gives every peer the same mean") {
  const auto topo = topology::make_topology(topology::parse_spec("ring:5"));
  auto hub = std::make_shared<net::InprocHub>(topo);
  std::vector<std::vector<float>> v(5);
  std::vector<std::thread> threads;
  for (int r = 0; r < 5; ++r)
    threads.emplace_back([&, r] {
      net::InprocTransport t(hub, r);
      v[static_cast<std::size_t>(r)] = std::vector<float>(13);
      for (std::size_t k = 0; k < 13; ++k)
        v[static_cast<std::size_t>(r)][k] = static_cast<float>(r * 100 + k);
      algorithms::allreduce_mean(t, 1, v[static_cast<std::size_t>(r)]);
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 5; ++r)
    for (std::size_t k = 0; k < 13; ++k)
      CHECK(v[static_cast<std::size_t>(r)][k] == doctest::Approx(200.0 + k));
}

TEST_CASE(
    "bytes sent per peer per round are the codec's wire size plus the frame header, exactly") {
  int run = 0;
  for (const char* codec :
       {"identity", "qsgd:s=3,scaled=true,bucket=64", "topk:ratio=0.05", "sign"}) {
    CAPTURE(std::string(codec));
    const Scratch scratch("bytes_" + std::to_string(run++));
    auto c = small_config(scratch.dir().string(), "choco-sgd", codec);
    apply_override(c, "compression.granularity=layer");
    apply_override(c, "topology.file=\"torus:2x3\"");  // degree 3 everywhere
    const auto topo = topology::make_topology(topology::parse_spec(c.topology));
    const auto data = load_data(c);
    const auto shards =
        partition_all(data.train, parse_partition(c.partition), topo.size(), c.seed);
    auto hub = std::make_shared<net::InprocHub>(topo);
    std::vector<PeerSummary> out(static_cast<std::size_t>(topo.size()));
    std::vector<std::thread> threads;
    for (int r = 0; r < topo.size(); ++r)
      threads.emplace_back([&, r] {
        net::InprocTransport t(hub, r);
        PeerTrainer trainer(c, topo, r, t, data, shards);
        out[static_cast<std::size_t>(r)] = trainer.run({});
      });
    for (auto& t : threads) t.join();
    const auto model = model_layout(c, data.train);
    const auto wire = kernels::make_codec(codec, model.tensor_sizes())->wire_size(model.size());
    for (const auto& s : out) {
      CHECK(s.rounds > 0);
      CHECK(s.totals.bytes_sent == s.rounds * 3 * (wire + net::kFrameHeaderSize));
    }
  }
}

TEST_CASE("evaluation points log each peer's distance to the average and the averaged model") {
  // C-PSGD shares the evaluation's round with its own ring all-reduce: both must run.
  for (const char* algorithm : {"dpsgd", "allreduce"}) {
    const std::string name = algorithm;
    CAPTURE(name);
    const Scratch scratch("evalavg_" + name);
    auto c = small_config(scratch.dir().string(), algorithm, "identity");
    apply_override(c, "run.eval_every=1");
    const auto params = run_all(c, std::nullopt, std::nullopt, false);
    const std::size_t d = params[0].size();
    std::vector<double> mean(d, 0.0);
    for (const auto& p : params)
      for (std::size_t k = 0; k < d; ++k) mean[k] += p[k] / static_cast<double>(params.size());
    double norm = 0.0;
    for (double v : mean) norm += v * v;
    norm = std::sqrt(norm);
    for (std::size_t r = 0; r < params.size(); ++r) {
      CAPTURE(r);
      std::ifstream in(std::filesystem::path(c.output_dir()) /
                       ("metrics-" + std::to_string(r) + ".jsonl"));
      std::string line, last;
      int evals = 0;
      while (std::getline(in, line))
        if (line.find("\"test_accuracy\"") != std::string::npos) {
          ++evals;
          last = line;
        }
      CHECK(evals == 2);  // eval_every = 1, two epochs
      const auto j = nlohmann::json::parse(last);
      double dist = 0.0;
      for (std::size_t k = 0; k < d; ++k) {
        const double diff = params[r][k] - mean[k];
        dist += diff * diff;
      }
      dist = std::sqrt(dist);
      CHECK(j.at("average_norm").get<double>() == doctest::Approx(norm).epsilon(1e-5));
      CHECK(j.at("distance_to_average").get<double>() ==
            doctest::Approx(dist).epsilon(1e-3).scale(1e-5 * norm));
      if (name == "allreduce") CHECK(dist < 1e-5 * norm);  // one model: no disagreement
      if (name == "dpsgd") CHECK(dist > 1e-4 * norm);      // a ring of 4 still disagrees
      CHECK(j.contains("test_accuracy_avg_model") == (r == 0));
      if (r == 0) CHECK(j.at("test_accuracy_avg_model").get<double>() > 0.5);
    }
  }
}

TEST_CASE("a diverging run stops every peer within a few rounds and says so") {
  const Scratch scratch("diverge");
  auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
  apply_override(c, "algorithm.lr=1e30");  // the first step overflows
  const auto topo = topology::make_topology(topology::parse_spec(c.topology));
  const auto data = load_data(c);
  const auto shards = partition_all(data.train, parse_partition(c.partition), topo.size(), c.seed);
  auto hub = std::make_shared<net::InprocHub>(topo);
  std::vector<PeerSummary> out(static_cast<std::size_t>(topo.size()));
  std::uint64_t total = 0;
  std::vector<std::thread> threads;
  for (int r = 0; r < topo.size(); ++r)
    threads.emplace_back([&, r] {
      net::InprocTransport t(hub, r);
      PeerTrainer trainer(c, topo, r, t, data, shards);
      if (r == 0) total = trainer.total_rounds();
      out[static_cast<std::size_t>(r)] = trainer.run({});
    });
  for (auto& t : threads) t.join();
  const std::uint64_t stop = out[0].rounds;
  for (const auto& s : out) {
    CHECK(s.stopped_early);
    CHECK(s.diverged_at.has_value());
    CHECK(s.rounds == stop);  // every peer stops before the same round
  }
  CHECK(stop < 10);
  CHECK(stop < total);
}

// Every peer of `c` as a thread over one in-process hub, the training loss of rank `rank` made
// NaN in round `round` (TrainHooks::nan_loss_round): each peer's summary and error text (""
// when none), and the rounds the run was to take.
struct DivergedRun {
  std::vector<PeerSummary> summaries;
  std::vector<std::string> errors;
  std::uint64_t total_rounds = 0;
};
DivergedRun run_diverging(const RunConfig& c, int rank, std::uint64_t round) {
  DivergedRun out;
  out.summaries.resize(peer_count(c));
  out.errors = run_peers(c, [&](int r, net::InprocTransport&, PeerTrainer& trainer) {
    if (r == 0) out.total_rounds = trainer.total_rounds();
    TrainHooks hooks;
    if (r == rank) hooks.nan_loss_round = round;
    out.summaries[static_cast<std::size_t>(r)] = trainer.run(hooks);
  });
  return out;
}

// Every peer of `run` stopped without an error before round `stop`, blaming `rank`'s divergence.
void check_stopped_together(const DivergedRun& run, std::uint64_t stop, int rank) {
  for (std::size_t r = 0; r < run.summaries.size(); ++r) {
    CAPTURE(r);
    const auto& s = run.summaries[r];
    CHECK(run.errors[r].empty());
    CHECK(s.stopped_early);
    CHECK(s.rounds == stop);
    REQUIRE(s.divergence.has_value());
    CHECK(s.divergence->rank == rank);
  }
}

TEST_CASE("local steps: a stop asked for in a local round reaches every peer through exchanges") {
  // H = 4: only rounds 3, 7, 11, ... exchange, so the stop request of rank 2's divergence in
  // round 5 leaves with round 7's frames; the margin is H times that of ring:4 (6), 24 rounds.
  for (const char* algorithm : {"dpsgd", "allreduce"}) {
    CAPTURE(algorithm);
    const Scratch scratch("local-steps-stop");
    auto c = small_config(scratch.dir().string(), algorithm, "identity");
    apply_override(c, "algorithm.local_steps=4");
    const auto run = run_diverging(c, 2, 5);
    check_stopped_together(run, 5 + 1 + 24, 2);  // every peer before the same round
    for (const auto& s : run.summaries) {
      CHECK(s.divergence->round == 5);
      CHECK(s.totals.rounds == 30);
    }
  }
}

TEST_CASE("overlapped D-PSGD: resume is bit-identical and a stop reaches every peer in time") {
  {
    const Scratch scratch("stale-resume");
    auto c = small_config(scratch.dir().string(), "dpsgd", "fp16");
    apply_override(c, "algorithm.staleness=2");
    const auto straight = run_all(c, std::nullopt, std::nullopt, false);
    run_all(c, std::nullopt, 40, true);  // stops before round 40 and checkpoints there
    CHECK(PeerTrainer::latest_common_checkpoint(c, 4) == 40u);
    const auto resumed = run_all(c, 40, std::nullopt, false);
    for (std::size_t r = 0; r < 4; ++r) CHECK(resumed[r] == straight[r]);
  }
  // Rank 2 diverges in round 5; a neighbour can be 1 + τ exchanges ahead when the request
  // reaches it, so the margin on ring:4 (eccentricity 2) is (2 + τ)·2 + 2 = 10 with τ = 2.
  const Scratch scratch("stale-stop");
  auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
  apply_override(c, "algorithm.staleness=2");
  check_stopped_together(run_diverging(c, 2, 5), 5 + 1 + 10, 2);  // all before the same round
}

namespace {

std::vector<nlohmann::json> metrics_of(const RunConfig& c, int rank) {
  std::ifstream in(std::filesystem::path(c.output_dir()) /
                   ("metrics-" + std::to_string(rank) + ".jsonl"));
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// Nanoseconds a frame of `payload` bytes (plus the 64-byte header) takes at `mbit` Mbit/s, as
// the model rounds it (up to a whole nanosecond).
std::uint64_t wire_ns(std::size_t payload, double mbit) {
  return static_cast<std::uint64_t>(
      std::ceil(static_cast<double>(payload + net::kFrameHeaderSize) / (mbit * 1e6 / 8.0) * 1e9));
}

// Half an epoch on `ring` in virtual time with a fixed compute time of 7.5 ms a round, 20 ms
// latency and a 5 Mbit/s uplink, evaluated every 5 rounds: the clocks follow a closed form.
RunConfig virtual_config(const Scratch& scratch, const std::string& algorithm,
                         const std::string& ring) {
  auto c = small_config(scratch.dir().string(), algorithm, "identity");
  apply_override(c, "topology.file=\"" + ring + "\"");
  apply_override(c, "run.epochs=0.5");
  apply_override(c, "run.eval_every_rounds=5");
  apply_override(c, "transport.clock=virtual");
  apply_override(c, "transport.compute_ms_per_round=7.5");
  apply_override(c, "transport.latency_ms=20");
  apply_override(c, "transport.uplink_mbit=5");
  return c;
}

// Every metrics line of every peer of `c` says clock "virtual" and a wall time of exactly
// `expected(round)` nanoseconds.
void check_virtual_clocks(const RunConfig& c, std::size_t peers,
                          const std::function<std::uint64_t(std::uint64_t)>& expected) {
  for (std::size_t r = 0; r < peers; ++r) {
    CAPTURE(r);
    const auto lines = metrics_of(c, static_cast<int>(r));
    REQUIRE(!lines.empty());
    for (const auto& j : lines) {
      const auto round = j.at("round").get<std::uint64_t>();
      CAPTURE(round);
      CHECK(j.at("clock") == "virtual");
      CHECK(std::llround(j.at("wall_seconds").get<double>() * 1e9) ==
            static_cast<long long>(expected(round)));
    }
  }
}

}  // namespace

TEST_CASE("virtual time equals the model's sum for a fixed compute time and known message sizes") {
  // Every peer's clock: per round the fixed compute time, then the round's messages. D-PSGD on
  // ring:2 sends one model per round (through the uplink, then the latency); the all-reduce on
  // ring:3 takes 2(n-1) = 4 ring steps of d/3 floats each. The peers are symmetric, so each waits
  // exactly that long. Evaluations (every 5 rounds) do not count.
  struct Case {
    const char* algorithm;
    const char* ring;
    const char* model;
  };
  for (const Case& k : {Case{"dpsgd", "ring:2", "mlp"}, Case{"allreduce", "ring:3", "softmax"}}) {
    const std::string algorithm = k.algorithm;
    CAPTURE(algorithm);
    const Scratch scratch("virtual_sum_" + algorithm);
    auto c = virtual_config(scratch, algorithm, k.ring);
    apply_override(c, std::string("model.kind=") + k.model);
    const auto params = run_all(c, std::nullopt, std::nullopt, false);
    const std::size_t d = params[0].size();
    const std::uint64_t compute = 7'500'000, latency = 20'000'000;
    std::uint64_t per_round = 0;
    if (algorithm == "dpsgd") {
      per_round = compute + wire_ns(kernels::make_codec("identity")->wire_size(d), 5) + latency;
    } else {
      REQUIRE(d % 3 == 0);  // equal chunks: every step costs the same
      per_round = compute + 4 * (wire_ns(d / 3 * 4, 5) + latency);
    }
    check_virtual_clocks(c, params.size(), [&](std::uint64_t round) { return round * per_round; });
  }
}

TEST_CASE("virtual time with staleness: a message has tau rounds of compute to arrive") {
  // D-PSGD on ring:2 with a fixed compute time c, latency L and a 5 Mbit/s uplink (a frame takes
  // w). Round k computes until T_k = E_{k-1} + c and sends through the uplink (busy until the
  // last send is through: u_k = max(T_k, u_{k-1}) + w); with staleness tau it then waits for the
  // neighbour's message of round k - tau, ready at u_{k-tau} + L, so its clock ends at
  // E_k = max(T_k, u_{k-tau} + L) (T_k for k < tau, which receive nothing). Both peers are alike,
  // so this recurrence is every peer's clock, to the nanosecond. tau = 0 is the synchronous row of
  // the case above; tau = 1 and 3 hide the latency behind one and three rounds of compute.
  for (const int tau : {0, 1, 3}) {
    CAPTURE(tau);
    const Scratch scratch("virtual_stale_" + std::to_string(tau));
    auto c = virtual_config(scratch, "dpsgd", "ring:2");
    apply_override(c, "algorithm.staleness=" + std::to_string(tau));
    const auto params = run_all(c, std::nullopt, std::nullopt, false);
    const std::uint64_t compute = 7'500'000, latency = 20'000'000;
    const std::uint64_t w =
        wire_ns(kernels::make_codec("identity")->wire_size(params[0].size()), 5);
    std::vector<std::uint64_t> end{0}, sent;  // end[k + 1] = E_k; sent[k] = u_k
    for (std::size_t k = 0; k < 64; ++k) {
      const std::uint64_t t = end.back() + compute;
      sent.push_back(std::max(t, sent.empty() ? 0 : sent.back()) + w);
      end.push_back(k < static_cast<std::size_t>(tau)
                        ? t
                        : std::max(t, sent[k - static_cast<std::size_t>(tau)] + latency));
    }
    // The latency is hidden once tau rounds of compute cover it: later rounds cost less.
    if (tau == 3) CHECK(end[40] - end[20] < 20 * (compute + w + latency));
    check_virtual_clocks(c, 2, [&](std::uint64_t round) {
      REQUIRE(round < end.size());
      return end[round];
    });
  }
}

TEST_CASE("a run in virtual time has the metrics of the same run in real time but the times") {
  // D-PSGD on ring:4 over an emulated 2 ms, 20 Mbit/s NIC network: real time sleeps through it,
  // virtual time models it. The runs are deterministic, so losses, accuracies and bytes agree
  // to the bit; only the times differ (and the clock says which). Evaluations every 10 rounds.
  std::map<std::string, std::vector<std::vector<nlohmann::json>>> runs;
  for (const std::string clock : {"real", "virtual"}) {
    const Scratch scratch("virtual_vs_real_" + clock);
    auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
    apply_override(c, "run.epochs=1");
    apply_override(c, "run.eval_every_rounds=10");
    apply_override(c, "transport.latency_ms=2");
    apply_override(c, "transport.uplink_mbit=20");
    apply_override(c, "transport.downlink_mbit=20");
    apply_override(c, "transport.clock=" + clock);
    run_all(c, std::nullopt, std::nullopt, false);
    for (int r = 0; r < 4; ++r) runs[clock].push_back(metrics_of(c, r));
  }
  for (int r = 0; r < 4; ++r) {
    CAPTURE(r);
    const auto& real = runs["real"][static_cast<std::size_t>(r)];
    const auto& virt = runs["virtual"][static_cast<std::size_t>(r)];
    REQUIRE(real.size() == virt.size());
    int evals = 0;
    for (std::size_t k = 0; k < real.size(); ++k) {
      CAPTURE(k);
      CHECK(real[k].at("clock") == "real");
      CHECK(virt[k].at("clock") == "virtual");
      CHECK(virt[k].at("wall_seconds").get<double>() > 0);
      auto a = real[k], b = virt[k];
      for (auto* j : {&a, &b})
        for (const char* key : {"clock", "wall_seconds", "compute_seconds", "encode_seconds",
                                "wait_seconds", "decode_seconds", "update_seconds"})
          j->erase(key);
      CHECK(a.dump() == b.dump());
      if (a.contains("test_accuracy")) {
        ++evals;
        CHECK(a.at("round").get<std::uint64_t>() % 10 == 0);
        CHECK(a.contains("test_accuracy_avg_model") == (r == 0));
      }
    }
    CHECK(evals == 3);  // 31 rounds: after rounds 10, 20 and 30
  }
}

TEST_CASE("dga: a stop reaches every peer through its direct messages, whatever the delay") {
  // complete:8 has eccentricity 1 (a margin of 4 rounds for the exchange algorithms); DGA with
  // D = 14 collects a round's chunks 7 rounds later, and its margin is n + D + 1 = 23. Rank 2
  // diverges in round 5 and asks for round 29: every peer stops there.
  const Scratch scratch("dga-stop");
  auto c = small_config(scratch.dir().string(), "dga", "identity");
  apply_override(c, "topology.file=\"complete:8\"");
  apply_override(c, "algorithm.delay=14");
  apply_override(c, "run.epochs=4");
  const auto run = run_diverging(c, 2, 5);
  REQUIRE(run.total_rounds > 29);
  check_stopped_together(run, 5 + 1 + 23, 2);
}

TEST_CASE(
    "a peer that leaves mid-run: the others finish and average the models of the peers left") {
  // ring:4 without one peer is a path of 3 (diameter 2): r* = the round of the loss + 4.
  for (const int lost : {2, 0}) {
    CAPTURE(lost);
    const Scratch scratch("leave_" + std::to_string(lost));
    auto c = small_config(scratch.dir().string(), "dpsgd", "identity");
    apply_override(c, "transport.on_peer_loss=\"continue\"");
    apply_override(c, "run.eval_every=0.5");  // rounds 16, 31, 47, 62 (31 rounds an epoch)
    const std::uint64_t leave_after = 29;     // r* = 33: the evaluation of round 31 has no average
    CHECK(transport_options(c, 0, true).all_links);  // the ring of the peers left: two apart
    std::vector<PeerSummary> summaries(4);
    std::vector<std::vector<float>> params(4);
    const auto errors = run_peers(
        c,
        [&](int r, net::InprocTransport&, PeerTrainer& trainer) {
          TrainHooks hooks;
          if (r == lost) hooks.leave_after_round = leave_after;
          summaries[static_cast<std::size_t>(r)] = trainer.run(hooks);
          params[static_cast<std::size_t>(r)].assign(trainer.params().begin(),
                                                     trainer.params().end());
        },
        std::chrono::milliseconds(4000));  // a loaded machine loses no live peer
    const int reporter = lost == 0 ? 1 : 0;
    std::vector<double> mean(params[static_cast<std::size_t>(reporter)].size(), 0.0);
    for (int r = 0; r < 4; ++r)
      if (r != lost)
        for (std::size_t k = 0; k < mean.size(); ++k)
          mean[k] += params[static_cast<std::size_t>(r)][k] / 3.0;
    double norm = 0.0;
    for (double v : mean) norm += v * v;
    norm = std::sqrt(norm);
    for (int r = 0; r < 4; ++r) {
      CAPTURE(r);
      const auto& s = summaries[static_cast<std::size_t>(r)];
      CHECK(errors[static_cast<std::size_t>(r)].empty());
      if (r == lost) {
        CHECK(s.left);
        CHECK(s.rounds == leave_after);
        continue;
      }
      CHECK_FALSE(s.left);
      CHECK(s.rounds == 62);
      CHECK_FALSE(s.divergence.has_value());
      REQUIRE(s.departures.size() == 1);
      CHECK(s.departures[0].rank == lost);
      CHECK(s.departures[0].round == leave_after + 4);
      // Evaluations: none of the average while the loss is agreed on (round 31), then the
      // average of the three peers left; the lowest of them evaluates the averaged model.
      std::ifstream in(std::filesystem::path(c.output_dir()) /
                       ("metrics-" + std::to_string(r) + ".jsonl"));
      std::map<std::uint64_t, nlohmann::json> evals;
      for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        if (j.contains("test_accuracy")) evals[j.at("round").get<std::uint64_t>()] = j;
      }
      REQUIRE(evals.size() == 4);
      CHECK(evals.at(16).contains("distance_to_average"));
      CHECK_FALSE(evals.at(31).contains("distance_to_average"));
      CHECK_FALSE(evals.at(31).contains("test_accuracy_avg_model"));
      const auto& last = evals.at(62);
      REQUIRE(last.contains("average_norm"));
      CHECK(last.at("average_norm").get<double>() == doctest::Approx(norm).epsilon(1e-5));
      CHECK(last.contains("test_accuracy_avg_model") == (r == reporter));
      if (r == reporter) CHECK(last.at("test_accuracy_avg_model").get<double>() > 0.5);
    }
  }
}

TEST_CASE("allreduce_mean after a loss: cut while the loss is learned, then over the peers left") {
  const auto topo = topology::make_topology(topology::parse_spec("ring:4"));
  auto hub = std::make_shared<net::InprocHub>(topo);
  net::TransportOptions o;
  o.on_peer_loss = net::PeerLoss::continue_run;
  o.all_links = true;
  o.timeout = std::chrono::milliseconds(1500);
  o.connect_timeout = std::chrono::seconds(20);
  const int lost = 2;
  std::vector<std::vector<float>> v(4);
  std::vector<int> first(4, -1), second(4, -1);
  std::vector<std::vector<net::Departure>> gone(4);
  std::vector<std::string> errors(4);
  std::vector<std::thread> threads;
  for (int r = 0; r < 4; ++r)
    threads.emplace_back([&, r] {
      try {
        net::InprocTransport t(hub, r, o);
        t.handshake();
        if (r == lost) return;  // gone after the handshake, silent
        auto& x = v[static_cast<std::size_t>(r)];
        x.assign(13, 0.0f);
        for (std::size_t k = 0; k < 13; ++k) x[k] = static_cast<float>(r * 100 + k);
        // The ring still counts on peer 2: nobody completes it, each learns of the loss.
        first[static_cast<std::size_t>(r)] = algorithms::allreduce_mean(t, 1, x) ? 1 : 0;
        const auto d = t.departures();
        gone[static_cast<std::size_t>(r)].assign(d.begin(), d.end());
        for (std::size_t k = 0; k < 13; ++k) x[k] = static_cast<float>(r * 100 + k);
        // At r* = 5 (look-ahead: at most 6 rounds past the last ring): the ring of 0, 1 and 3.
        second[static_cast<std::size_t>(r)] = algorithms::allreduce_mean(t, 5, x) ? 1 : 0;
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r : {0, 1, 3}) {
    CAPTURE(r);
    CHECK(errors[static_cast<std::size_t>(r)].empty());
    CHECK(first[static_cast<std::size_t>(r)] == 0);
    REQUIRE(gone[static_cast<std::size_t>(r)].size() == 1);
    CHECK(gone[static_cast<std::size_t>(r)][0].rank == lost);
    CHECK(gone[static_cast<std::size_t>(r)][0].round == 5);  // 1 + (diameter 2 + 2)
    CHECK(second[static_cast<std::size_t>(r)] == 1);
    for (std::size_t k = 0; k < 13; ++k)
      CHECK(v[static_cast<std::size_t>(r)][k] == doctest::Approx((0 + 100 + 300) / 3.0 + k));
  }
}
