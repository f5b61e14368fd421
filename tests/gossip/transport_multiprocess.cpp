// Peers as separate processes (tests/gossip/transport_peer.cpp), over ipc:// in a temp dir.

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

extern char** environ;

namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "gossip-mp-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct Outcome {
  int status = -1;     // exit code; 128+signal when killed
  double seconds = 0;  // from start to exit
  std::string err;
};

// Starts one process per argument list, waits for all with a hard deadline (stragglers are
// killed and reported as a failure), returns exit codes and stderr.
std::vector<Outcome> run_all(const std::vector<std::vector<std::string>>& argvs,
                             const fs::path& dir, double deadline_s) {
  const char* exe = std::getenv("GOSSIP_TRANSPORT_PEER");
  REQUIRE_MESSAGE(exe != nullptr, "GOSSIP_TRANSPORT_PEER is not set (run through meson test)");
  std::vector<pid_t> pids;
  std::vector<Outcome> out(argvs.size());
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < argvs.size(); ++i) {
    const auto err = (dir / fmt::format("stderr{}", i)).string();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    std::vector<std::string> args{exe};
    args.insert(args.end(), argvs[i].begin(), argvs[i].end());
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, exe, &fa, nullptr, cargs.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
    pids.push_back(pid);
  }
  std::size_t left = pids.size();
  while (left > 0) {
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (std::size_t i = 0; i < pids.size(); ++i) {
      if (pids[i] <= 0) continue;
      int st = 0;
      const pid_t w = waitpid(pids[i], &st, WNOHANG);
      if (w == pids[i]) {
        out[i].status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        out[i].seconds = now;
        pids[i] = -1;
        --left;
      } else if (now > deadline_s) {
        kill(pids[i], SIGKILL);
        waitpid(pids[i], &st, 0);
        out[i].status = -1;  // hung: the test fails on it
        out[i].seconds = now;
        pids[i] = -1;
        --left;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (std::size_t i = 0; i < argvs.size(); ++i) {
    std::ifstream f(dir / fmt::format("stderr{}", i));
    std::stringstream ss;
    ss << f.rdbuf();
    out[i].err = ss.str();
  }
  return out;
}

std::vector<std::string> peer_args(const TempDir& dir, int rank, int rounds, int die_after,
                                   const std::string& on_loss = "stop") {
  return {"--on-peer-loss", on_loss,
          "--spec",         "ring:4",
          "--endpoint",     "ipc://" + (dir.path / "p{rank}").string(),
          "--rank",         std::to_string(rank),
          "--rounds",       std::to_string(rounds),
          "--timeout-ms",   "1000",
          "--bytes",        "200000",
          "--die-after",    std::to_string(die_after)};
}

}  // namespace

TEST_CASE("multi-process: four peers on a ring finish every round with the right bytes") {
  TempDir dir;
  std::vector<std::vector<std::string>> argvs;
  for (int r = 0; r < 4; ++r) argvs.push_back(peer_args(dir, r, 20, -1));
  const auto out = run_all(argvs, dir.path, 30);
  for (std::size_t r = 0; r < out.size(); ++r) {
    CAPTURE(r);
    CAPTURE(out[r].err);
    CHECK(out[r].status == 0);
  }
}

TEST_CASE("multi-process: a peer killed mid-run makes its neighbours fail naming it") {
  TempDir dir;
  std::vector<std::vector<std::string>> argvs;
  for (int r = 0; r < 4; ++r) argvs.push_back(peer_args(dir, r, 1000, r == 2 ? 3 : -1));
  const auto out = run_all(argvs, dir.path, 30);
  CHECK(out[2].status == 128 + SIGKILL);
  const std::string victim = "peer 2 (ipc://" + (dir.path / "p2").string() + ")";
  for (int r : {1, 3}) {
    CAPTURE(r);
    CAPTURE(out[static_cast<std::size_t>(r)].err);
    CHECK(out[static_cast<std::size_t>(r)].status == 3);
    CHECK(out[static_cast<std::size_t>(r)].err.find(victim) != std::string::npos);
    // The victim died after round 3; its neighbours got round 4 at the latest from others.
    const auto& e = out[static_cast<std::size_t>(r)].err;
    CHECK((e.find("round 4:") != std::string::npos || e.find("round 5:") != std::string::npos));
  }
  // Rank 0 is not next to rank 2: it fails too (its neighbours stop), non-zero, not hung.
  CAPTURE(out[0].err);
  CHECK(out[0].status == 3);
}

TEST_CASE("multi-process: with on_peer_loss = continue the others finish without a killed peer") {
  TempDir dir;
  std::vector<std::vector<std::string>> argvs;
  for (int r = 0; r < 4; ++r) argvs.push_back(peer_args(dir, r, 30, r == 2 ? 3 : -1, "continue"));
  const auto out = run_all(argvs, dir.path, 40);
  CHECK(out[2].status == 128 + SIGKILL);
  std::set<std::string> agreed;
  for (int r : {0, 1, 3}) {
    CAPTURE(r);
    const auto& e = out[static_cast<std::size_t>(r)].err;
    CAPTURE(e);
    CHECK(out[static_cast<std::size_t>(r)].status == 0);
    const auto at = e.find("departed 2 from round ");
    REQUIRE(at != std::string::npos);
    agreed.insert(e.substr(at, e.find('\n', at) - at));
  }
  // One r* for all: found gone in round 4 (it died after round 3; 3 if its last frames were lost),
  // plus the diameter 2 of the path 1-0-3, plus 2.
  CHECK(agreed.size() == 1);
  const std::string line = *agreed.begin();
  CHECK((line.ends_with("round 8") || line.ends_with("round 7")));
}
