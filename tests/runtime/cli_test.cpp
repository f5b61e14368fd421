// Error paths of the training commands, as a user meets them: each exits non-zero with a message
// that names what is wrong.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "src/runtime/model.hpp"
#include "tests/common/run_cli.hpp"
#include "tests/common/scratch.hpp"

using gossip::testing::run_cli;
using gossip::testing::Scratch;

TEST_CASE("missing data package") {
  Scratch s("nodata");
  const auto cfg = s.config("[topology]\nfile = \"ring:2\"\n[data]\npath = \"/nonexistent/fm\"\n");
  const auto r = run_cli("simulate --config " + cfg);
  CHECK(r.code != 0);
  CHECK(r.err.find("apt-get install dataset-fashion-mnist") != std::string::npos);
}

TEST_CASE("bad config key, in the file and on the command line") {
  Scratch s("badkey");
  const auto cfg = s.config("[topology]\nfile = \"ring:2\"\n[algorithm]\nlearning_rate = 0.1\n");
  auto r = run_cli("simulate --config " + cfg);
  CHECK(r.code != 0);
  CHECK(r.err.find(cfg + ":4: unknown key 'learning_rate' in [algorithm]") != std::string::npos);
  const auto good = s.config("[topology]\nfile = \"ring:2\"\n");
  r = run_cli("simulate --config " + good + " --set algorithm.learning_rate=0.1");
  CHECK(r.code != 0);
  CHECK(r.err.find("unknown key 'algorithm.learning_rate'") != std::string::npos);
}

TEST_CASE("the virtual clock: simulate reports its time, peer and launch refuse it") {
  Scratch s("virtualclock");
  const auto cfg = s.config("[topology]\nfile = \"ring:2\"\n[data]\ndataset = \"blobs\"\n");
  const std::string sets = " --set transport.clock=virtual --set transport.latency_ms=1000";
  for (const char* command : {"peer --rank 0", "launch"}) {
    CAPTURE(command);
    const auto r = run_cli(std::string(command) + " --config " + cfg + sets);
    CHECK(r.code != 0);
    CHECK(r.err.find(cfg + ": transport.clock = \"virtual\" works only under `gossip simulate`") !=
          std::string::npos);
  }
  // 3 rounds of a second's latency each, on the virtual clock: nobody sleeps through them.
  const auto r = run_cli("simulate --config " + cfg + sets +
                         " --set run.epochs=0.01 --set run.output=" + s.dir().string());
  REQUIRE(r.code == 0);
  std::ifstream in(s.dir() / "summary.json");
  const auto j = nlohmann::json::parse(in);
  CHECK(j.at("clock") == "virtual");
  CHECK(j.at("rounds").get<int>() >= 3);
  CHECK(j.at("wall_seconds").get<double>() >= j.at("rounds").get<double>());
}

TEST_CASE("rank out of range") {
  Scratch s("rank");
  const auto cfg = s.config("[topology]\nfile = \"ring:3\"\n[data]\ndataset = \"blobs\"\n");
  const auto r = run_cli("peer --config " + cfg + " --rank 7");
  CHECK(r.code != 0);
  CHECK(r.err.find("rank 7 is out of range") != std::string::npos);
}

TEST_CASE("bench exchange: sizes and timeouts out of range are refused before anything runs") {
  const std::string base = "bench exchange --topology ring:2 --codec identity --rounds 1 ";
  for (const auto& [arg, message] :
       {std::pair{"--size 0", "--size: Value 0 not in range 1 to"},
        std::pair{"--size -1", "--size: Value -1 not in range 1 to"},
        std::pair{"--timeout nan", "--timeout: Value nan not in range 0.001 to 1e6 seconds"},
        std::pair{"--timeout 1e300", "--timeout: Value 1e300 not in range"},
        std::pair{"--timeout 0", "--timeout: Value 0 not in range"}}) {
    const std::string shown = arg;  // CAPTURE's lambda: clang 14 captures no structured binding
    CAPTURE(shown);
    const auto r = run_cli(base + arg);
    CHECK(r.code != 0);
    CHECK_MESSAGE(r.err.find(message) != std::string::npos, r.err);
  }
}

TEST_CASE("a rank or resume round below zero, or a rank variable that is not all digits") {
  Scratch s("rankvar");
  const auto cfg = s.config("[topology]\nfile = \"ring:3\"\n[data]\ndataset = \"blobs\"\n");
  auto r = run_cli("peer --config " + cfg + " --rank -5");
  CHECK(r.code != 0);
  CHECK(r.err.find("--rank: Value -5 not in range 0 to") != std::string::npos);
  r = run_cli("simulate --config " + cfg + " --resume-round -5");
  CHECK(r.code != 0);
  CHECK(r.err.find("--resume-round: Value -5 not in range 0 to") != std::string::npos);
  for (const char* bad : {"3abc", "1e3", "-1", ""}) {
    CAPTURE(bad);
    REQUIRE(::setenv("SLURM_PROCID", bad, 1) == 0);
    r = run_cli("peer --config " + cfg);
    ::unsetenv("SLURM_PROCID");
    CHECK(r.code != 0);
    CHECK(r.err.find(std::string("SLURM_PROCID='") + bad + "' is not a rank") != std::string::npos);
  }
}

TEST_CASE("--set mends a bad value of the config file; a directory is not a config") {
  Scratch s("mend");
  const auto cfg = s.config("[topology]\nfile = \"ring:2\"\n[algorithm]\nlr = 0.0\n");
  auto r = run_cli("simulate --config " + cfg + " --set data.dataset=blobs --set run.epochs=0.05");
  CHECK(r.code != 0);
  CHECK(r.err.find(cfg + ":4: algorithm.lr must be a positive") != std::string::npos);
  r = run_cli("simulate --config " + cfg + " --set algorithm.lr=0.1 --set data.dataset=blobs " +
              "--set run.epochs=0.05 --set run.output=" + s.dir().string());
  CHECK(r.code == 0);
  r = run_cli("simulate --config " + s.dir().parent_path().string());
  CHECK(r.code != 0);
  CHECK(r.err.find("is a directory, not a run config") != std::string::npos);
}

TEST_CASE(
    "simulate: a damaged checkpoint of one peer is the error reported, --resume takes an older "
    "round, stray files ignored") {
  Scratch s("damaged");
  const auto cfg = s.config(
      "[topology]\nfile = \"ring:4\"\n[data]\ndataset = \"blobs\"\n"
      "[run]\nepochs = 0.1\ncheckpoint_every = 4\noutput = \"" +
      s.dir().string() + "\"\n[transport]\ntimeout_s = 5\n");
  REQUIRE(run_cli("simulate --config " + cfg).code == 0);
  const auto ckpts = s.dir() / "checkpoints";
  // Names that look like checkpoints but whose numbers do not fit 64 bits (or name no peer of
  // this run): skipped, not an exception.
  std::ofstream(ckpts / "peer-18446744073709551616-round-8.ckpt") << "x";  // 2^64
  std::ofstream(ckpts / "peer-0-round-99999999999999999999999.ckpt") << "x";
  const auto victim = ckpts / "peer-2-round-16.ckpt";
  REQUIRE(std::filesystem::exists(victim));
  std::filesystem::resize_file(victim, 100);
  // Asked for by round: the damaged file itself is the error, not a neighbour's time-out
  // waiting for peer 2.
  auto r = run_cli("simulate --config " + cfg + " --resume-round 16");
  CHECK(r.code != 0);
  CHECK_MESSAGE(
      r.err.find("peer 2: " + victim.string() + ": checksum mismatch") != std::string::npos, r.err);
  // --resume: the newest round every peer has intact (12), saying why 16 was skipped.
  r = run_cli("simulate --config " + cfg + " --resume");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK_MESSAGE(r.err.find("checkpoints of round 16 skipped: " + victim.string() +
                           ": checksum mismatch") != std::string::npos,
                r.err);
}

TEST_CASE("unreachable neighbour: the peer gives up within the connect timeout, naming it") {
  // Rank 0 of a ring of 3 on ipc endpoints nobody serves.
  Scratch s("unreach");
  const auto& dir = s.dir();
  s.also_remove(dir.string() + "-0");  // rank 0's ipc socket file
  const auto cfg =
      s.config("[topology]\nfile = \"ring:3,endpoint=ipc://" + dir.string() +
               "-{rank}\"\n[data]\ndataset = \"blobs\"\n"
               "[transport]\nconnect_timeout_s = 1\ntimeout_s = 1\n[run]\noutput = \"" +
               dir.string() + "\"\n");
  const auto r = run_cli("peer --config " + cfg + " --rank 0");
  CHECK(r.code != 0);
  CHECK_MESSAGE(r.err.find("peer 1") != std::string::npos, r.err);
}

TEST_CASE("launch: a peer that fails stops the others at once, and its log is shown") {
  // Peer 1 cannot bind its ipc endpoint (no such folder); the others would wait for it until
  // their 100 s connect timeout, past this test's time limit, if launch did not stop them.
  Scratch s("launch_fail");
  std::string topo = "name = \"ring of 3, one endpoint unusable\"\n";
  for (int r = 0; r < 3; ++r) {
    const std::string ep = r == 1 ? "ipc:///nonexistent-gossip-folder/p1"
                                  : "ipc://" + s.dir().string() + "-p" + std::to_string(r);
    topo += "[[peer]]\nrank = " + std::to_string(r) + "\nendpoint = \"" + ep + "\"\n";
    if (r != 1) s.also_remove(s.dir().string() + "-p" + std::to_string(r));
  }
  for (int r = 0; r < 3; ++r)
    topo += "[[edge]]\npeers = [" + std::to_string(r) + ", " + std::to_string((r + 1) % 3) + "]\n";
  const auto topo_file = s.config(topo);
  const auto cfg = s.config("[topology]\nfile = \"" + topo_file +
                            "\"\n[data]\ndataset = \"blobs\"\n[transport]\nconnect_timeout_s = "
                            "100\ntimeout_s = 100\n[run]\noutput = \"" +
                            s.dir().string() + "\"\n");
  const auto r = run_cli("launch --config " + cfg);
  CHECK(r.code == 1);  // the failed peer's status
  CHECK_MESSAGE(
      r.err.find("launch: peer 1 exited with code 1; stopping the others") != std::string::npos,
      r.err);
  CHECK_MESSAGE(r.err.find("nonexistent-gossip-folder") != std::string::npos, r.err);  // its log
  CHECK_MESSAGE(r.err.find("after launch stopped it") != std::string::npos, r.err);
}

TEST_CASE("every example config in configs/ trains an epoch (on synthetic data)") {
  // Their topology paths are relative to the repository root, where users run them.
  const char* root = std::getenv("GOSSIP_SOURCE_ROOT");
  REQUIRE(root != nullptr);
  Scratch s("example_configs");
  struct Cwd {  // back to the test's folder however the test ends
    std::filesystem::path before = std::filesystem::current_path();
    ~Cwd() { std::filesystem::current_path(before); }
  } cwd;
  std::filesystem::current_path(root);
  int seen = 0;
  for (const auto& e : std::filesystem::directory_iterator("configs")) {
    if (e.path().extension() != ".toml") continue;
    ++seen;
    const std::string out = (s.dir() / e.path().stem()).string();
    const auto r = run_cli("simulate --config " + e.path().string() +
                           " --set data.dataset=blobs --set data.train_limit=2000"
                           " --set data.test_limit=400 --set run.epochs=1 --set 'run.output=\"" +
                           out + "\"'");
    CHECK_MESSAGE(r.code == 0, e.path().string() << ": " << r.err);
    CHECK_MESSAGE(std::filesystem::exists(std::filesystem::path(out) / "summary.json"),
                  e.path().string());
  }
  CHECK(seen >= 2);
}

TEST_CASE("launch on a path: the summary's per-peer figures and bytes are simulate's") {
  // Peers of a path have unequal degrees, so rank 0's own bytes are not the mean.
  Scratch s("launch_path");
  const std::string ipc = "ipc://" + s.dir().string() + "-{rank}.sock";
  for (int r = 0; r < 3; ++r) s.also_remove(s.dir().string() + "-" + std::to_string(r) + ".sock");
  const auto cfg =
      s.config("[topology]\nfile = \"grid:3,endpoint=" + ipc +
               "\"\n[data]\ndataset = \"blobs\"\ntrain_limit = 1500\ntest_limit = 300\n"
               "[algorithm]\nname = \"relaysum\"\nlr = 0.05\n[compression]\ncodec = "
               "\"qsgd:s=15,scaled=true\"\n[run]\nepochs = 1\n");
  const auto summary = [](const std::filesystem::path& dir) {
    return nlohmann::json::parse(std::ifstream(dir / "summary.json"));
  };
  const auto sim = run_cli("simulate --config " + cfg + " --set 'run.output=\"" +
                           (s.dir() / "sim").string() + "\"'");
  REQUIRE_MESSAGE(sim.code == 0, sim.err);
  const auto launched = run_cli("launch --config " + cfg + " --set 'run.output=\"" +
                                (s.dir() / "zmq").string() + "\"'");
  REQUIRE_MESSAGE(launched.code == 0, launched.err);
  const auto a = summary(s.dir() / "sim"), b = summary(s.dir() / "zmq");
  const double bytes = a["bytes_sent_per_peer"];
  const double ratio = b["compression_ratio_vs_fp32_dpsgd"];
  CHECK(b["bytes_sent_per_peer"].get<double>() == bytes);  // gathered exactly
  // Every peer's accuracy travels to rank 0 (the models are bit-identical to simulate's).
  REQUIRE(a["test_accuracy_per_peer"].size() == 3);
  REQUIRE(b["test_accuracy_per_peer"].size() == 3);
  for (std::size_t r = 0; r < 3; ++r)
    CHECK(b["test_accuracy_per_peer"][r].get<double>() ==
          doctest::Approx(a["test_accuracy_per_peer"][r].get<double>()).epsilon(1e-6));
  for (const char* key : {"test_accuracy_min", "test_accuracy_max", "test_accuracy_avg_model"})
    CHECK(b[key].get<double>() == doctest::Approx(a[key].get<double>()).epsilon(1e-6));
  CHECK(ratio == doctest::Approx(a["compression_ratio_vs_fp32_dpsgd"].get<double>()).epsilon(1e-6));
  CHECK(ratio ==
        doctest::Approx(b["fp32_dpsgd_bytes_per_peer"].get<double>() / bytes).epsilon(1e-6));
}

TEST_CASE(
    "one-peer exponential: launch equals simulate, a resume mid-period the straight run, "
    "and one message per round") {
  Scratch s("launch_onepeer");
  const std::string ipc = "ipc://" + s.dir().string() + "-{rank}.sock";
  for (int r = 0; r < 4; ++r) s.also_remove(s.dir().string() + "-" + std::to_string(r) + ".sock");
  const auto cfg =
      s.config("[topology]\nfile = \"one-peer-exponential:4,endpoint=" + ipc +
               "\"\n[data]\ndataset = \"blobs\"\ntrain_limit = 1600\ntest_limit = 300\n"
               "[algorithm]\nname = \"dpsgd\"\nlr = 0.05\nmomentum = 0.9\n"
               "[compression]\ncodec = \"fp16\"\n"
               "[run]\nepochs = 1\nbatch_size = 20\ncheckpoint_every = 5\n");
  const auto summary = [](const std::filesystem::path& dir) {
    return nlohmann::json::parse(std::ifstream(dir / "summary.json"));
  };
  const auto out = [&](const char* name) {
    return " --set 'run.output=\"" + (s.dir() / name).string() + "\"'";
  };
  const auto sim = run_cli("simulate --config " + cfg + out("sim"));
  REQUIRE_MESSAGE(sim.code == 0, sim.err);
  const auto launched = run_cli("launch --config " + cfg + out("zmq"));
  REQUIRE_MESSAGE(launched.code == 0, launched.err);
  const auto a = summary(s.dir() / "sim"), b = summary(s.dir() / "zmq");
  // 20 rounds, each one frame of (fp16 wire + 64 bytes) per peer.
  CHECK(a["rounds"] == 20);
  CHECK(a["bytes_sent_per_peer"].get<double>() ==
        20.0 * (a["message_wire_bytes"].get<double>() + 64));
  CHECK(b["bytes_sent_per_peer"].get<double>() == a["bytes_sent_per_peer"].get<double>());
  // The fp32 D-PSGD baseline on this topology sends one message per round too.
  CHECK(a["compression_ratio_vs_fp32_dpsgd"].get<double>() ==
        doctest::Approx(a["fp32_dpsgd_bytes_per_peer"].get<double>() /
                        a["bytes_sent_per_peer"].get<double>()));
  CHECK(a["fp32_dpsgd_bytes_per_peer"].get<double>() <
        2.1 * a["bytes_sent_per_peer"].get<double>());
  // Bit-identical models give the same accuracies; the distance to the average is summed in
  // another order over ZeroMQ (an all-reduce), so equal to rounding.
  CHECK(a["test_accuracy_per_peer"] == b["test_accuracy_per_peer"]);
  CHECK(a["test_accuracy_avg_model"] == b["test_accuracy_avg_model"]);
  CHECK(b["distance_to_average_relative_mean"].get<double>() ==
        doctest::Approx(a["distance_to_average_relative_mean"].get<double>()).epsilon(1e-6));
  // Resume from round 15 (period 2: in the middle of a period) in the
  // simulated run's folder: the same figures as the straight run.
  const auto resumed = run_cli("simulate --config " + cfg + out("sim") + " --resume-round 15");
  REQUIRE_MESSAGE(resumed.code == 0, resumed.err);
  const auto c = summary(s.dir() / "sim");
  for (const char* key : {"test_accuracy_per_peer", "test_accuracy_avg_model",
                          "distance_to_average_relative_mean", "bytes_sent_per_peer"})
    CHECK_MESSAGE(c[key] == a[key], key);
  // Algorithms that need one fixed W refuse it before training.
  const auto refused = run_cli("simulate --config " + cfg + out("d2") + " --set algorithm.name=d2");
  CHECK(refused.code != 0);
  CHECK_MESSAGE(refused.err.find("d2 cannot run on the time-varying topology") != std::string::npos,
                refused.err);
}

TEST_CASE("a diverging run: exit status 3, the peer and round named, no summary") {
  Scratch s("diverge_cli");
  const auto& dir = s.dir();
  const auto cfg = s.config(
      "[topology]\nfile = \"ring:3\"\n[data]\ndataset = \"blobs\"\n"
      "train_limit = 2000\ntest_limit = 500\n[algorithm]\nlr = 1e30\n"
      "[run]\ncheckpoint_every = 1\noutput = \"" +
      dir.string() + "\"\n");
  const auto r = run_cli("simulate --config " + cfg);
  CHECK_MESSAGE(r.code == 3, r.err);
  CHECK_MESSAGE(r.err.find("training loss stopped being finite in round") != std::string::npos,
                r.err);
  CHECK_MESSAGE(r.err.find("Try a smaller algorithm.lr") != std::string::npos, r.err);
  CHECK_FALSE(std::filesystem::exists(dir / "summary.json"));
  // checkpoint_every = 1, yet no peer checkpoints a round after the one in which it diverged
  // (each says which; the latest bounds them all).
  std::uint64_t diverged = 0;
  bool named = false;
  for (auto at = r.err.find("in round "); at != std::string::npos;
       at = r.err.find("in round ", at + 1)) {
    diverged = std::max<std::uint64_t>(diverged, std::stoull(r.err.substr(at + 9)));
    named = true;
  }
  REQUIRE(named);
  if (std::filesystem::exists(dir / "checkpoints"))
    for (const auto& e : std::filesystem::directory_iterator(dir / "checkpoints")) {
      const std::string f = e.path().filename().string();  // peer-R-round-N.ckpt
      CAPTURE(f);
      CHECK(std::stoull(f.substr(f.rfind('-') + 1)) <= diverged);
    }
}

// A peer whose loss turns non-finite in the last round: its stop request cannot reach anyone
// before the run ends. Every peer must still take the divergence branch (exit 3, naming peer 1
// and the round), none waiting for it in the end-of-run all-reduce until its timeout.
TEST_CASE("a peer that diverges in the very last round: every peer exits 3 promptly") {
  Scratch s("diverge_late");
  const std::string ipc = "ipc://" + s.dir().string() + "-{rank}.sock";
  for (int r = 0; r < 3; ++r) s.also_remove(s.dir().string() + "-" + std::to_string(r) + ".sock");
  // 2000 rows, 3 peers, batch 32: 20 rounds; the last is round 19.
  const auto cfg =
      s.config("[topology]\nfile = \"ring:3,endpoint=" + ipc +
               "\"\n[data]\ndataset = \"blobs\"\ntrain_limit = 2000\ntest_limit = 300\n"
               "[transport]\ntimeout_s = 20\n[run]\ncheckpoint_every = 5\n");
  const std::string named = "peer 1's training loss stopped being finite in round 19";
  REQUIRE(::setenv("GOSSIP_TEST_DIVERGE", "1:19", 1) == 0);
  for (const std::string command : {"simulate", "launch"}) {
    CAPTURE(command);
    const auto out = s.dir() / command;
    const auto t0 = std::chrono::steady_clock::now();
    const auto r =
        run_cli(command + " --config " + cfg + " --set 'run.output=\"" + out.string() + "\"'");
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK_MESSAGE(r.code == 3, r.err);
    CHECK_MESSAGE(seconds < 15.0, seconds);  // nobody waited out the 20 s timeout
    CHECK_MESSAGE(r.err.find("diverged: " + named) != std::string::npos, r.err);
    CHECK_MESSAGE(r.err.find("no message from") == std::string::npos, r.err);
    CHECK_FALSE(std::filesystem::exists(out / "summary.json"));
    if (command == "launch") {
      // Peers 1 and 2 wrote to their logs (peer 0's stderr was the terminal's): each says the same.
      for (int peer : {1, 2}) {
        std::ifstream log(out / "logs" / ("peer-" + std::to_string(peer) + ".log"));
        const std::string text{std::istreambuf_iterator<char>(log), {}};
        CAPTURE(peer);
        CHECK_MESSAGE(text.find("diverged: " + named) != std::string::npos, text);
      }
    }
  }
  ::unsetenv("GOSSIP_TEST_DIVERGE");
}

TEST_CASE("run.device = cuda: trains on a GPU when one is visible, else a clear error") {
  Scratch s("cudacli");
  const auto& dir = s.dir();
  const auto cfg = s.config(
      "[topology]\nfile = \"ring:2\"\n[data]\ndataset = \"blobs\"\n"
      "train_limit = 2000\ntest_limit = 500\n[model]\nhidden = [16]\n"
      "[run]\nepochs = 0.5\noutput = \"" +
      dir.string() + "\"\n");
  const auto r = run_cli("simulate --config " + cfg + " --set run.device=cuda");
  if (gossip::runtime::cuda_device_count() > 0) {
    CHECK_MESSAGE(r.code == 0, r.err);
    CHECK_MESSAGE(r.err.find("peer 1: model on cuda:") != std::string::npos, r.err);
  } else {
    CHECK(r.code != 0);
    CHECK_MESSAGE(r.err.find("run.device = \"cuda\", but ") != std::string::npos, r.err);
    CHECK_MESSAGE(r.err.find("or set run.device = \"cpu\"") != std::string::npos, r.err);
  }
}

TEST_CASE("simulate: more MLP peers than OpenBLAS has buffers for (its MAX_THREADS, 64)") {
  // 96 peers, each its own thread calling OpenBLAS: without BlasSlot more threads than its
  // MAX_THREADS were inside it at once, and runs of 256 peers crashed about every other time.
  Scratch s("manypeers");
  const auto cfg = s.config(
      "[run]\noutput = \"" + s.dir().string() +
      "\"\nepochs = 2\nbatch_size = 8\nlog_every = 1\n[topology]\nfile = "
      "\"random-regular:96,d=4,seed=1\"\n[model]\nhidden = [32]\n[data]\ntrain_limit = 768\n"
      "test_limit = 200\n[transport]\ntimeout_s = 120\n");
  const auto r = run_cli("simulate --config " + cfg);
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.err.find("NUM_THREADS exceeded") == std::string::npos);
  CHECK(std::filesystem::exists(s.dir() / "metrics-95.jsonl"));
}

TEST_CASE(
    "launch with on_peer_loss = continue: a peer SIGKILLed mid-run, the others finish; restarted, "
    "it rejoins") {
  Scratch s("launch_loss");
  const std::string ipc = "ipc://" + s.dir().string() + "-{rank}.sock";
  for (int r = 0; r < 4; ++r) s.also_remove(s.dir().string() + "-" + std::to_string(r) + ".sock");
  const auto cfg =
      s.config("[topology]\nfile = \"ring:4,endpoint=" + ipc +
               "\"\n[data]\ndataset = \"blobs\"\ntrain_limit = 4000\ntest_limit = "
               "500\n[run]\nepochs = 2\neval_every = 0.5\noutput = \"" +
               s.dir().string() + "\"\n[transport]\non_peer_loss = \"continue\"\ntimeout_s = 5\n");
  // Peer 2 kills itself (SIGKILL) after 20 of 62 rounds: found gone in round 20, r* = 24 — or in
  // round 19 (r* = 23) when its last frames die in its ZeroMQ queue with it.
  REQUIRE(::setenv("GOSSIP_TEST_LEAVE", "2:20", 1) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_cli("launch --config " + cfg);
  ::unsetenv("GOSSIP_TEST_LEAVE");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK_MESSAGE(r.err.find("launch: peer 2 was killed by signal 9") != std::string::npos, r.err);
  CHECK_MESSAGE(r.err.find("the other peers finished without it") != std::string::npos, r.err);
  const auto j = nlohmann::json::parse(std::ifstream(s.dir() / "summary.json"));
  CHECK(j.at("rounds").get<int>() == 62);
  CHECK(j.at("peers_finished").get<int>() == 3);
  REQUIRE(j.at("departures").size() == 1);
  CHECK(j.at("departures")[0].at("rank").get<int>() == 2);
  const int r_star = j.at("departures")[0].at("round").get<int>();
  CHECK((r_star == 24 || r_star == 23));
  CHECK_MESSAGE(r.out.find("peer 2 left the run (the others mixed without it from round " +
                           std::to_string(r_star) + ")") != std::string::npos,
                r.out);
  CHECK(j.at("test_accuracy_per_peer").size() == 3);
  CHECK(j.at("test_accuracy_avg_model").get<double>() > 0.5);

  // simulate: the same loss, a thread that stops; the summary is the same peers'.
  REQUIRE(::setenv("GOSSIP_TEST_LEAVE", "2:20", 1) == 0);
  const auto sim = run_cli("simulate --config " + cfg + " --set 'run.output=\"" +
                           (s.dir() / "sim").string() + "\"'");
  ::unsetenv("GOSSIP_TEST_LEAVE");
  REQUIRE_MESSAGE(sim.code == 0, sim.err);
  const auto k = nlohmann::json::parse(std::ifstream(s.dir() / "sim" / "summary.json"));
  REQUIRE(k.at("departures").size() == 1);
  CHECK(k.at("departures")[0].at("rank").get<int>() == 2);
  CHECK(k.at("departures")[0].at("round").get<int>() == 24);  // a thread sends all it queued
  CHECK(k.at("peers_finished").get<int>() == 3);
  CHECK(k.at("test_accuracy_avg_model").get<double>() > 0.5);

  // launch --restart: the lost peer starts again with --rejoin, takes a neighbour's state at the
  // round the others agree on and finishes with them; every peer is in the summary again. Rank 0
  // this time: the peer on the terminal, whose progress lines go on in another's log meanwhile.
  REQUIRE(::setenv("GOSSIP_TEST_LEAVE", "0:20", 1) == 0);
  const auto back = run_cli("launch --config " + cfg + " --restart 1 --restart-delay 0.5 --set " +
                            "'run.output=\"" + (s.dir() / "back").string() + "\"'");
  ::unsetenv("GOSSIP_TEST_LEAVE");
  CHECK_MESSAGE(back.code == 0, back.err);
  CHECK_MESSAGE(back.err.find("launch: peer 0 restarted") != std::string::npos, back.err);
  // What a restart by hand needs: the launch's nonce.
  const std::string needs = "(gossip peer --rejoin) needs GOSSIP_RUN_NONCE=";
  const auto nonce_at = back.err.find(needs);
  REQUIRE_MESSAGE(nonce_at != std::string::npos, back.err);
  const auto nonce = back.err.substr(nonce_at + needs.size(), 17);
  CHECK_MESSAGE((nonce.size() == 17 && nonce.back() == '\n' &&
                 nonce.find_first_not_of("0123456789abcdef") == 16),
                nonce);
  CHECK_MESSAGE(
      back.err.find("launch: progress lines go on in " +
                    (s.dir() / "back" / "logs" / "peer-1.log").string()) != std::string::npos,
      back.err);
  const auto b = nlohmann::json::parse(std::ifstream(s.dir() / "back" / "summary.json"));
  CHECK(b.at("rounds").get<int>() == 62);
  CHECK(b.at("peers_finished").get<int>() == 4);
  REQUIRE(b.at("departures").size() == 1);
  CHECK(b.at("departures")[0].at("rank").get<int>() == 0);
  REQUIRE(b.at("departures")[0].contains("back"));
  const int gone_from = b.at("departures")[0].at("round").get<int>();
  const int back_from = b.at("departures")[0].at("back").get<int>();
  CHECK(back_from > gone_from);
  CHECK(back_from < 62);
  CHECK_MESSAGE(back.out.find(fmt::format("peer 0 left the run and rejoined (the others mixed "
                                          "without it in rounds {} to {})",
                                          gone_from, back_from - 1)) != std::string::npos,
                back.out);
  CHECK(b.at("test_accuracy_per_peer").size() == 4);
  CHECK(b.at("test_accuracy_avg_model").get<double>() > 0.5);
  // Rank 0 keeps the terminal's stderr, the restarted one too.
  CHECK_MESSAGE(
      back.err.find(fmt::format("peer 0: rejoined at round {}", back_from)) != std::string::npos,
      back.err);
  // Every peer logged progress lines (--progress), rank 1 through the loss of rank 0.
  std::ifstream log1(s.dir() / "back" / "logs" / "peer-1.log");
  const std::string log1_text{std::istreambuf_iterator<char>(log1), {}};
  CHECK_MESSAGE(log1_text.find("round     62/62") != std::string::npos, log1_text);
  // --rejoin is for a run that goes on without a lost peer, and takes no checkpoint.
  const auto refused =
      run_cli("peer --rank 2 --rejoin --config " + cfg + " --set transport.on_peer_loss=stop");
  CHECK(refused.code != 0);
  CHECK_MESSAGE(refused.err.find("--rejoin: " + cfg + " has transport.on_peer_loss = \"stop\"") !=
                    std::string::npos,
                refused.err);
  const auto both = run_cli("peer --rank 2 --rejoin --resume-round 3 --config " + cfg);
  CHECK(both.code != 0);
  CHECK_MESSAGE(both.err.find("it cannot go with --resume") != std::string::npos, both.err);

  // Without continue the same loss ends the run with the timeout.
  REQUIRE(::setenv("GOSSIP_TEST_LEAVE", "2:20", 1) == 0);
  const auto stop = run_cli("launch --config " + cfg + " --set transport.on_peer_loss=stop");
  ::unsetenv("GOSSIP_TEST_LEAVE");
  CHECK(stop.code != 0);
  CHECK_MESSAGE(stop.err.find("launch: peer 2 was killed by signal 9") != std::string::npos,
                stop.err);
  CHECK_MESSAGE(stop.err.find("; stopping the others") != std::string::npos, stop.err);
}
