// Error paths of the training commands, as a user meets them: each exits non-zero with a message
// that names what is wrong.

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "src/model.hpp"
#include "tests/common/run_cli.hpp"

using gossip::testing::run_cli;

namespace {
std::string write_config(const std::string& name, const std::string& text) {
  const auto path =
      std::filesystem::temp_directory_path() / (name + std::to_string(::getpid()) + ".toml");
  std::ofstream(path) << text;
  return path.string();
}
}  // namespace

TEST_CASE("missing data package") {
  const auto cfg =
      write_config("nodata", "[topology]\nfile = \"ring:2\"\n[data]\npath = \"/nonexistent/fm\"\n");
  const auto r = run_cli("simulate --config " + cfg);
  CHECK(r.code != 0);
  CHECK(r.err.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  std::filesystem::remove(cfg);
}

TEST_CASE("bad config key, in the file and on the command line") {
  const auto cfg =
      write_config("badkey", "[topology]\nfile = \"ring:2\"\n[algorithm]\nlearning_rate = 0.1\n");
  auto r = run_cli("simulate --config " + cfg);
  CHECK(r.code != 0);
  CHECK(r.err.find(cfg + ":4: unknown key 'learning_rate' in [algorithm]") != std::string::npos);
  std::filesystem::remove(cfg);
  const auto good = write_config("goodkey", "[topology]\nfile = \"ring:2\"\n");
  r = run_cli("simulate --config " + good + " --set algorithm.learning_rate=0.1");
  CHECK(r.code != 0);
  CHECK(r.err.find("unknown key 'algorithm.learning_rate'") != std::string::npos);
  std::filesystem::remove(good);
}

TEST_CASE("rank out of range") {
  const auto cfg =
      write_config("rank", "[topology]\nfile = \"ring:3\"\n[data]\ndataset = \"blobs\"\n");
  const auto r = run_cli("peer --config " + cfg + " --rank 7");
  CHECK(r.code != 0);
  CHECK(r.err.find("rank 7 is out of range") != std::string::npos);
  std::filesystem::remove(cfg);
}

TEST_CASE("unreachable neighbour: the peer gives up within the connect timeout, naming it") {
  // Rank 0 of a ring of 3 on ipc endpoints nobody serves.
  const auto dir =
      std::filesystem::temp_directory_path() / ("gossip_unreach_" + std::to_string(::getpid()));
  const auto cfg = write_config(
      "unreach", "[topology]\nfile = \"ring:3,endpoint=ipc://" + dir.string() +
                     "-{rank}\"\n[data]\ndataset = \"blobs\"\n"
                     "[transport]\nconnect_timeout_s = 1\ntimeout_s = 1\n[run]\noutput = \"" +
                     dir.string() + "\"\n");
  const auto r = run_cli("peer --config " + cfg + " --rank 0");
  CHECK(r.code != 0);
  CHECK_MESSAGE(r.err.find("peer 1") != std::string::npos, r.err);
  std::filesystem::remove(cfg);
  std::filesystem::remove_all(dir);
  std::filesystem::remove(dir.string() + "-0");  // rank 0's ipc socket file
}

TEST_CASE("a diverging run: exit status 3, the peer and round named, no summary") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("gossip_diverge_cli_" + std::to_string(::getpid()));
  const auto cfg = write_config("diverge",
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
  std::filesystem::remove(cfg);
  std::filesystem::remove_all(dir);
}

TEST_CASE("run.device = cuda: trains on a GPU when one is visible, else a clear error") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("gossip_cudacli_" + std::to_string(::getpid()));
  const auto cfg = write_config("cudacli",
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
  std::filesystem::remove(cfg);
  std::filesystem::remove_all(dir);
}
