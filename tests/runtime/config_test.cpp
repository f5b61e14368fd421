// Run configs: every key parses, overrides apply, and mistakes are errors naming file and line.

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "src/runtime/config.hpp"
#include "src/runtime/session.hpp"
#include "tests/common/scratch.hpp"

using namespace gossip::runtime;
using gossip::testing::Scratch;

namespace {
const std::string kBase = "[topology]\nfile = \"ring:4\"\n";  // lines 1-2

void expect_error(const std::string& text, const std::string& part) {
  CAPTURE(text);
  CHECK_THROWS_WITH_AS(parse_run_config(text, "run.toml"), doctest::Contains(part.c_str()),
                       ConfigError);
}
}  // namespace

TEST_CASE("every key parses and the canonical text round-trips") {
  const auto c =
      parse_run_config(kBase +
                           "[run]\nname = \"x\"\nseed = 7\nepochs = 2.5\nbatch_size = 16\n"
                           "[algorithm]\nname = \"choco-sgd\"\nlr = 0.05\nconsensus_step = 0.2\n"
                           "lr_decay_epochs = [1, 2]\n[compression]\ncodec = \"topk:ratio=0.01\"\n"
                           "granularity = \"layer\"\n[model]\nhidden = [64, 32]\n"
                           "[transport]\nlatency_ms = 5\nio_threads = 3\n",
                       "run.toml");
  CHECK(c.name == "x");
  CHECK(c.seed == 7);
  CHECK(c.epochs == 2.5);
  CHECK(c.batch_size == 16);
  CHECK(c.consensus_step == doctest::Approx(0.2));
  CHECK(c.lr_decay_epochs == std::vector<double>{1, 2});
  CHECK(c.hidden == std::vector<int>{64, 32});
  CHECK(c.latency_ms == 5.0);
  CHECK(c.io_threads == 3);
  CHECK(transport_options(c, 0).io_threads == 3);  // what the ZeroMQ transport is given
  const auto again = parse_run_config(c.to_toml(), "canonical.toml");
  CHECK(again.to_toml() == c.to_toml());
  CHECK(again.hash(RunConfig::Scope::peers) == c.hash(RunConfig::Scope::peers));
}

TEST_CASE("a negative zero is zero: the same text and hashes as 0 (found by fuzz_config)") {
  // to_toml wrote -0.0 as "-0", which reads back as the integer 0: the text and the hashes of a
  // config changed on a round trip.
  for (const std::string value : {"-0.0", "-0", "-0e5", "0.0"}) {
    CAPTURE(value);
    const auto c = parse_run_config(
        kBase + "[algorithm]\nweight_decay = " + value + "\nlr_decay_epochs = [" + value + "]\n",
        "run.toml");
    const auto zero = parse_run_config(
        kBase + "[algorithm]\nweight_decay = 0\nlr_decay_epochs = [0]\n", "z.toml");
    CHECK_FALSE(std::signbit(c.weight_decay));
    CHECK_FALSE(std::signbit(c.lr_decay_epochs.at(0)));
    CHECK(c.to_toml() == zero.to_toml());
    CHECK(c.hash(RunConfig::Scope::peers) == zero.hash(RunConfig::Scope::peers));
    CHECK(c.hash(RunConfig::Scope::resume) == zero.hash(RunConfig::Scope::resume));
    const auto again = parse_run_config(c.to_toml(), "canonical.toml");
    CHECK(again.to_toml() == c.to_toml());
  }
}

TEST_CASE(
    "a bare word that is not UTF-8 is refused (found by fuzz_config); one that is reads back") {
  // TOML text is UTF-8: a byte 0xFF was written as U+00FF and read back as two other bytes.
  CHECK_THROWS_WITH_AS(parse_run_config(kBase, "run.toml", {"run.name=a\xff\xfe b"}),
                       "--set run.name=a\xff\xfe b: run.name: the value is not valid UTF-8 text",
                       ConfigError);
  CHECK_THROWS_AS(parse_run_config(kBase, "run.toml", {"run.name=\xed\xa0\x80"}), ConfigError);
  const auto c = parse_run_config(kBase, "run.toml", {"run.name=caf\xc3\xa9 \\ \"x\" #1"});
  CHECK(c.name == "caf\xc3\xa9 \\ \"x\" #1");
  const auto again = parse_run_config(c.to_toml(), "canonical.toml");
  CHECK(again.name == c.name);
  CHECK(again.to_toml() == c.to_toml());
}

TEST_CASE("overrides: typed values, bare strings, and errors naming the argument") {
  auto c = parse_run_config(kBase, "run.toml");
  const auto h = c.hash(RunConfig::Scope::peers);
  apply_override(c, "algorithm.lr=0.01");
  CHECK(c.lr == doctest::Approx(0.01));
  apply_override(c, "algorithm.name=deepsqueeze");
  CHECK(c.algorithm == "deepsqueeze");
  apply_override(c, "model.hidden=[10]");
  CHECK(c.hidden == std::vector<int>{10});
  CHECK(c.hash(RunConfig::Scope::peers) != h);
  apply_override(c, "run.output=/tmp/elsewhere");
  CHECK(c.output_dir() == "/tmp/elsewhere");
  CHECK_THROWS_WITH_AS(apply_override(c, "algorithm.lrr=1"),
                       doctest::Contains("--set algorithm.lrr=1: unknown key 'algorithm.lrr'"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(apply_override(c, "run.batch_size=big"),
                       doctest::Contains("must be an integer"), ConfigError);
  CHECK_THROWS_WITH_AS(apply_override(c, "algorithm.lr"), doctest::Contains("section.key=value"),
                       ConfigError);
  const double step = c.consensus_step;
  CHECK_THROWS_WITH_AS(apply_override(c, "algorithm.consensus_step=1.5"),
                       doctest::Contains("(0, 1]"), ConfigError);
  CHECK(c.consensus_step == step);  // a refused override changes nothing
  CHECK_THROWS_WITH_AS(
      apply_override(c, "algorithm.lr_warmup_epochs=-1"),
      doctest::Contains("algorithm.lr_warmup_epochs must be a non-negative, finite number"),
      ConfigError);
  CHECK_THROWS_WITH_AS(apply_override(c, "algorithm.consensus_decay_factor=0"),
                       doctest::Contains("algorithm.consensus_decay_factor must lie in (0, 1]"),
                       ConfigError);
}

TEST_CASE("numbers must be finite and in range; the message names the --set or the line") {
  auto c = parse_run_config(kBase, "run.toml");
  const std::pair<const char*, const char*> refused[] = {
      {"run.epochs=inf", "run.epochs must be a positive, finite number"},
      {"algorithm.lr=inf", "algorithm.lr must be a positive, finite number"},
      {"algorithm.lr=nan", "algorithm.lr must be a positive, finite number"},
      {"algorithm.momentum=0.99999999999", "algorithm.momentum must lie in [0, 1) (as a float)"},
      {"algorithm.weight_decay=inf", "algorithm.weight_decay must be a non-negative, finite"},
      {"algorithm.lr_decay_factor=-5", "algorithm.lr_decay_factor must be a positive, finite"},
      {"algorithm.lr_decay_epochs=[1, nan]", "algorithm.lr_decay_epochs holds nan"},
      {"algorithm.lr_decay_epochs=[-1]", "algorithm.lr_decay_epochs holds -1"},
      {"algorithm.lr_warmup_epochs=inf", "algorithm.lr_warmup_epochs must be a non-negative"},
      {"transport.timeout_s=inf", "transport.timeout_s must lie in (0, 1e+06] seconds"},
      {"transport.connect_timeout_s=-1", "transport.connect_timeout_s must lie in (0, 1e+06]"},
      {"transport.connect_timeout_s=nan", "transport.connect_timeout_s must lie in (0, 1e+06]"},
      {"transport.latency_ms=1e13", "transport.latency_ms must lie in [0, 1e+06] milliseconds"},
      {"transport.bandwidth_mbit=1e-300", "transport.bandwidth_mbit must be 0 (unlimited) or"},
      {"transport.uplink_mbit=-5", "transport.uplink_mbit must be 0 (unlimited) or"},
      {"transport.downlink_mbit=inf", "transport.downlink_mbit must be 0 (unlimited) or"},
      {"transport.clock=simulated", "transport.clock is 'simulated'; allowed: real, virtual"},
      {"transport.compute_ms_per_round=-1",
       "transport.compute_ms_per_round must lie in [0, 1e+06]"},
      {"transport.compute_ms_per_round=5",
       "transport.compute_ms_per_round applies to the virtual clock only"},
      {"run.eval_every_rounds=-3", "run.eval_every_rounds must lie in 0..1e9"},
      {"transport.io_threads=0", "transport.io_threads must lie in [1, 64]"},
      {"transport.io_threads=65", "transport.io_threads must lie in [1, 64]"},
      {"data.alpha=inf", "data.alpha must be a positive, finite number"},
  };
  for (const auto& [set, why] : refused) {
    const std::string shown = set;  // CAPTURE's lambda: clang 14 captures no structured binding
    CAPTURE(shown);
    CHECK_THROWS_WITH_AS(apply_override(c, set),
                         doctest::Contains(fmt::format("--set {}: {}", set, why).c_str()),
                         ConfigError);
  }
  expect_error(kBase + "[run]\nepochs = inf\n", "run.toml:4: run.epochs must be a positive");
}

TEST_CASE("overrides are applied before the checks: --set mends a bad value of the file") {
  const std::string bad = kBase + "[algorithm]\nlr = 0.0\n";
  expect_error(bad, "run.toml:4: algorithm.lr must be a positive");
  const auto c = parse_run_config(bad, "run.toml", {"algorithm.lr=0.1"});
  CHECK(c.lr == doctest::Approx(0.1));
  // A file without a topology, given one by --set.
  CHECK(parse_run_config("", "empty.toml", {"topology.file=ring:4"}).topology == "ring:4");
  // A value an override makes bad is blamed on the override.
  CHECK_THROWS_WITH_AS(parse_run_config(kBase, "run.toml", {"algorithm.momentum=2"}),
                       doctest::Contains("--set algorithm.momentum=2: algorithm.momentum must"),
                       ConfigError);
}

TEST_CASE("a directory, a device file or a huge file is not read as a run config") {
  CHECK_THROWS_WITH_AS(load_run_config("/tmp"), doctest::Contains("/tmp: is a directory"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(load_run_config("/dev/zero"),
                       doctest::Contains("/dev/zero: more than 1048576 bytes"), ConfigError);
  Scratch scratch("bigconfig");
  const auto big = scratch.config(std::string((1 << 20) + 1, '#'));
  CHECK_THROWS_WITH_AS(load_run_config(big),
                       doctest::Contains("a run config may have at most 1048576"), ConfigError);
  // A pipe (--config <(...)) is read like a file.
  const auto fifo = scratch.dir().string() + ".fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  scratch.also_remove(fifo);
  std::thread writer([&] { std::ofstream(fifo) << kBase; });
  const auto piped = load_run_config(fifo);
  writer.join();
  CHECK(piped.topology == "ring:4");
}

TEST_CASE("the hashes: what peers share, what a checkpoint depends on, what neither covers") {
  using Scope = RunConfig::Scope;
  const auto a = parse_run_config(kBase, "a.toml");
  const auto changed = [&](const std::string& set) {
    auto b = a;
    apply_override(b, set);
    return std::pair{b.hash(Scope::peers) != a.hash(Scope::peers),
                     b.hash(Scope::resume) != a.hash(Scope::resume)};
  };
  // One process's own settings: neither.
  for (const char* set :
       {"run.output=/tmp/other", "run.name=x", "run.log_every=7", "run.checkpoint_every=9",
        "data.path=/elsewhere", "data.test_limit=5", "transport.timeout_s=5",
        "transport.latency_ms=3", "transport.uplink_mbit=5", "transport.downlink_mbit=5",
        "transport.clock=virtual", "transport.io_threads=4", "topology.file=\"other.toml\"",
        "run.device=cuda"}) {
    CAPTURE(set);
    CHECK(changed(set) == std::pair{false, false});
  }
  // What the peers do together, not the state: peers only (a run may be extended).
  for (const char* set : {"run.epochs=9", "run.eval_every=2", "run.eval_every_rounds=10"}) {
    CAPTURE(set);
    CHECK(changed(set) == std::pair{true, false});
  }
  // The trajectory: both.
  for (const char* set : {"algorithm.lr=0.3", "run.seed=5", "data.partition=label",
                          "run.batch_size=8", "compression.codec=\"fp16\""}) {
    CAPTURE(set);
    CHECK(changed(set) == std::pair{true, true});
  }
  auto b = a;
  apply_override(b, "algorithm.lr=0.3");
  apply_override(b, "run.epochs=9");
  const auto diff = b.differences(a, Scope::resume);
  REQUIRE(diff.size() == 1);
  CAPTURE(diff[0]);
  CHECK(diff[0].starts_with("algorithm.lr = 0.3"));
  CHECK(diff[0].find(" (there: ") != std::string::npos);
  CHECK(b.differences(a, Scope::peers).size() == 2);
}

TEST_CASE("mistakes in the file name the file and the line") {
  expect_error(kBase + "[algorithm]\nlr = 0.1\nmomentun = 0.9\n",
               "run.toml:5: unknown key 'momentun' in [algorithm]");
  expect_error(kBase + "[optimizer]\nlr = 0.1\n", "run.toml:3: unknown section [optimizer]");
  expect_error(kBase + "[run]\nepochs = \"three\"\n", "run.toml:4: run.epochs must be a number");
  expect_error(kBase + "[run]\nbatch_size = 0\n", "run.toml:4: run.batch_size must be at least 1");
  // Names the library checks are checked when the config is read, naming file, line and key.
  expect_error(kBase + "[algorithm]\nname = \"sgd\"\n",
               "run.toml:4: algorithm.name is invalid: unknown algorithm 'sgd'");
  expect_error(kBase + "[compression]\ncodec = \"qsgd:s=0\"\n",
               "run.toml:4: compression.codec is invalid: codec 'qsgd': parameter 's'");
  expect_error(kBase + "[compression]\ncodec = \"zip\"\n",
               "run.toml:4: compression.codec is invalid: unknown codec 'zip'");
  expect_error(kBase + "[algorithm]\nmomentum = 0.0\nquasi_global = true\n",
               "algorithm.quasi_global needs algorithm.momentum > 0");
  expect_error(kBase + "[data]\npartition = \"random\"\n",
               "run.toml:4: data.partition is 'random'");
  expect_error(kBase + "[model]\nhidden = [64, -1]\n",
               "run.toml:4: model.hidden must be an array of positive");
  expect_error("[run]\nname = \"x\"\n", "topology.file is missing");
  expect_error(kBase + "[run\n", "run.toml:3:");
  expect_error("lr = 0.1\n", "run.toml:1: 'lr' must be a section");
  CHECK_THROWS_WITH_AS(load_run_config("/nonexistent/run.toml"), doctest::Contains("cannot open"),
                       ConfigError);
}

TEST_CASE("run.device: cpu and cuda parse, anything else is an error naming the key") {
  CHECK(parse_run_config(kBase, "run.toml").device == "cpu");
  const auto c = parse_run_config(kBase + "[run]\ndevice = \"cuda\"\n", "run.toml");
  CHECK(c.device == "cuda");
  expect_error(kBase + "[run]\ndevice = \"tpu\"\n",
               "run.toml:4: run.device is 'tpu'; allowed: cpu, cuda");
  auto d = parse_run_config(kBase, "run.toml");
  CHECK_THROWS_WITH_AS(apply_override(d, "run.device=gpu"),
                       doctest::Contains("--set run.device=gpu: run.device is 'gpu'"), ConfigError);
}

TEST_CASE("algorithms that send models or sum gradients refuse lossy codecs, naming the key") {
  expect_error(kBase + "[algorithm]\nname = \"dpsgd\"\n[compression]\ncodec = \"qsgd:s=3\"\n",
               "compression.codec is \"qsgd:s=3\", but dpsgd sends its models themselves");
  expect_error(kBase + "[algorithm]\nname = \"d2\"\n[compression]\ncodec = \"sign\"\n",
               "but d2 sends its models themselves");
  expect_error(kBase + "[algorithm]\nname = \"c-psgd\"\n[compression]\ncodec = \"fp16\"\n",
               "but allreduce sums fp32 gradients");
  for (const char* codec : {"identity", "fp16", "bf16"})
    CHECK_NOTHROW(parse_run_config(
        kBase + "[algorithm]\nname = \"dpsgd\"\n[compression]\ncodec = \"" + codec + "\"\n",
        "run.toml"));
  CHECK_NOTHROW(parse_run_config(
      kBase + "[algorithm]\nname = \"choco-sgd\"\n[compression]\ncodec = \"topk:ratio=0.01\"\n",
      "run.toml"));
}

TEST_CASE("the convex synthetic problems: no hidden layers, and logistic needs weight decay") {
  expect_error(kBase + "[data]\ndataset = \"least-squares\"\n",
               "model.kind is \"mlp\" with hidden layers, but data.dataset = \"least-squares\"");
  expect_error(kBase +
                   "[model]\nkind = \"softmax\"\n[data]\ndataset = \"logistic\"\n"
                   "[algorithm]\nweight_decay = 0\n",
               "algorithm.weight_decay must be > 0 with data.dataset = \"logistic\"");
  expect_error(kBase +
                   "[model]\nkind = \"softmax\"\n[data]\ndataset = \"least-squares\"\n"
                   "[run]\ndevice = \"cuda\"\n",
               "least squares runs on the CPU only");
  const auto c = parse_run_config(
      kBase + "[model]\nhidden = []\n[data]\ndataset = \"least-squares\"\n", "run.toml");
  CHECK(c.dataset == "least-squares");
}

TEST_CASE("algorithm.local_steps: default 1 leaves the hashes as they were; others change them") {
  // Hashes of this config by the build before local steps existed (main at 85ab6d3; the peers'
  // hash as it is since the network model's keys, transport.uplink_mbit and the rest, joined it):
  // configs and checkpoints without the key keep their hashes.
  const std::string text =
      "[topology]\nfile = \"ring:4\"\n[algorithm]\nname = \"choco-sgd\"\nlr = 0.05\n"
      "consensus_step = 0.2\n[compression]\ncodec = \"qsgd:s=3\"\n[data]\ndataset = \"blobs\"\n";
  const auto c = parse_run_config(text, "golden.toml");
  CHECK(c.local_steps == 1);
  CHECK(c.hash(RunConfig::Scope::peers) == 0x44b0269f6f628166ULL);
  CHECK(c.hash(RunConfig::Scope::resume) == 0xf140b447ddfbaaafULL);
  const auto one = parse_run_config(text, "golden.toml", {"algorithm.local_steps=1"});
  CHECK(one.hash(RunConfig::Scope::peers) == c.hash(RunConfig::Scope::peers));
  const auto four = parse_run_config(text, "golden.toml", {"algorithm.local_steps=4"});
  CHECK(four.local_steps == 4);
  CHECK(four.hash(RunConfig::Scope::peers) != c.hash(RunConfig::Scope::peers));
  CHECK(four.hash(RunConfig::Scope::resume) != c.hash(RunConfig::Scope::resume));
  CHECK(four.differences(c, RunConfig::Scope::peers) ==
        std::vector<std::string>{"algorithm.local_steps = 4 (there: 1)"});
  expect_error(kBase + "[algorithm]\nlocal_steps = 0\n",
               "run.toml:4: algorithm.local_steps must be at least 1");
  expect_error(kBase + "[algorithm]\nlocal_steps = 1.5\n",
               "run.toml:4: algorithm.local_steps must be an integer");
}

TEST_CASE("algorithm.staleness: default 0 leaves the hashes as they were; errors name why") {
  // The golden hashes of the local-steps case (the build before either key existed).
  const std::string text =
      "[topology]\nfile = \"ring:4\"\n[algorithm]\nname = \"choco-sgd\"\nlr = 0.05\n"
      "consensus_step = 0.2\n[compression]\ncodec = \"qsgd:s=3\"\n[data]\ndataset = \"blobs\"\n";
  const auto c = parse_run_config(text, "golden.toml", {"algorithm.staleness=0"});
  CHECK(c.staleness == 0);
  CHECK(c.hash(RunConfig::Scope::peers) == 0x44b0269f6f628166ULL);
  CHECK(c.hash(RunConfig::Scope::resume) == 0xf140b447ddfbaaafULL);
  const std::string dpsgd = kBase + "[algorithm]\nname = \"dpsgd\"\nstaleness = 2\n";
  const auto two = parse_run_config(dpsgd, "run.toml");
  CHECK(two.staleness == 2);
  const auto zero = parse_run_config(dpsgd, "run.toml", {"algorithm.staleness=0"});
  CHECK(two.hash(RunConfig::Scope::peers) != zero.hash(RunConfig::Scope::peers));
  CHECK(two.hash(RunConfig::Scope::resume) != zero.hash(RunConfig::Scope::resume));
  CHECK(two.differences(zero, RunConfig::Scope::peers) ==
        std::vector<std::string>{"algorithm.staleness = 2 (there: 0)"});
  expect_error(kBase + "[algorithm]\nstaleness = -1\n",
               "run.toml:4: algorithm.staleness must lie in 0..");
  expect_error(kBase + "[algorithm]\nstaleness = 101\n",
               "run.toml:4: algorithm.staleness must be at most 100");
  // The algorithm's registry row: CHOCO-SGD has no stale rule; the message says why and who has.
  expect_error(kBase + "[algorithm]\nname = \"choco-sgd\"\nstaleness = 1\n",
               "algorithm.staleness = 1 (overlapped gossip) needs a rule");
  expect_error(kBase + "[algorithm]\nname = \"allreduce\"\nstaleness = 1\n",
               "allreduce has none derived and tested here (every model must stay identical");
  expect_error(dpsgd + "[transport]\nreceive_window = 1\n",
               "algorithm.staleness = 2 cannot be paced by transport.receive_window = 1");
}

TEST_CASE("transport.on_peer_loss: stop or continue, continue only where the state follows W") {
  CHECK(parse_run_config(kBase, "run.toml").on_peer_loss == "stop");
  const std::string deep = kBase + "[algorithm]\nname = \"deepsqueeze\"\n";
  const auto c = parse_run_config(deep + "[transport]\non_peer_loss = \"continue\"\n", "run.toml");
  CHECK(transport_options(c, 0).on_peer_loss == gossip::net::PeerLoss::continue_run);
  CHECK(transport_options(parse_run_config(deep, "run.toml"), 0).on_peer_loss ==
        gossip::net::PeerLoss::stop);
  // A local key, as the other transport keys: the hashes do not see it.
  CHECK(c.hash(RunConfig::Scope::peers) ==
        parse_run_config(deep, "run.toml").hash(RunConfig::Scope::peers));
  expect_error(kBase + "[transport]\non_peer_loss = \"retry\"\n",
               "run.toml:4: transport.on_peer_loss is 'retry'; allowed: stop, continue");
  // The registry row says why (CHOCO-SGD keeps a running sum over W) and who can.
  expect_error(
      kBase + "[algorithm]\nname = \"choco-sgd\"\n[transport]\non_peer_loss = \"continue\"\n",
      "transport.on_peer_loss = \"continue\" needs an algorithm that follows the weights "
      "changing when a peer is lost; choco-sgd cannot: it keeps s_i");
  expect_error(
      kBase + "[algorithm]\nname = \"allreduce\"\n[transport]\non_peer_loss = \"continue\"\n",
      "Use \"stop\", or dpsgd, deepsqueeze");
  expect_error(kBase +
                   "[algorithm]\nname = \"dpsgd\"\nstaleness = 1\n[transport]\n"
                   "on_peer_loss = \"continue\"\n",
               "cannot run with algorithm.staleness = 1");
  expect_error(deep + "[transport]\non_peer_loss = \"continue\"\nreceive_window = 1\n",
               "cannot run with transport.receive_window = 1");
}

TEST_CASE("algorithm.delay: default 0 leaves the hashes as they were; dga only; no local steps") {
  // The golden hashes of the local_steps case above: configs without the key keep them.
  const std::string text =
      "[topology]\nfile = \"ring:4\"\n[algorithm]\nname = \"choco-sgd\"\nlr = 0.05\n"
      "consensus_step = 0.2\n[compression]\ncodec = \"qsgd:s=3\"\n[data]\ndataset = \"blobs\"\n";
  const auto c = parse_run_config(text, "golden.toml", {"algorithm.delay=0"});
  CHECK(c.delay == 0);
  CHECK(c.hash(RunConfig::Scope::peers) == 0x44b0269f6f628166ULL);
  CHECK(c.hash(RunConfig::Scope::resume) == 0xf140b447ddfbaaafULL);
  const auto d0 =
      parse_run_config(text, "golden.toml", {"algorithm.name=dga", "compression.codec=identity"});
  const auto d3 =
      parse_run_config(text, "golden.toml",
                       {"algorithm.name=dga", "compression.codec=identity", "algorithm.delay=3"});
  CHECK(d3.delay == 3);
  CHECK(d3.hash(RunConfig::Scope::peers) != d0.hash(RunConfig::Scope::peers));
  CHECK(d3.hash(RunConfig::Scope::resume) != d0.hash(RunConfig::Scope::resume));
  CHECK(d3.differences(d0, RunConfig::Scope::peers) ==
        std::vector<std::string>{"algorithm.delay = 3 (there: 0)"});
  expect_error(kBase + "[algorithm]\ndelay = 2\n",
               "algorithm.delay is a setting of dga (delayed gradient averaging), not of");
  expect_error(kBase + "[algorithm]\nname = \"dga\"\ndelay = 1001\n",
               "run.toml:5: algorithm.delay must lie in [0, 1000]");
  expect_error(kBase + "[algorithm]\nname = \"doublesqueeze\"\nlocal_steps = 2\n",
               "algorithm.local_steps must be 1 with doublesqueeze");
  expect_error(kBase + "[algorithm]\nname = \"dga\"\nlocal_steps = 2\n",
               "algorithm.local_steps must be 1 with dga");
  expect_error(kBase + "[algorithm]\nname = \"dga\"\n[compression]\ncodec = \"sign\"\n",
               "but dga sums fp32 gradients");
}
