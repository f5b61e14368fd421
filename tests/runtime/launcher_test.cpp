// The launcher (src/runtime/launcher.hpp): its exit-code policy, the processes it builds for
// `gossip launch`, and supervise() running small shell commands; then `gossip launch` itself, as
// a terminal would drive it. Every process here ends by itself within 30 s, whatever happens.

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/runtime/config.hpp"
#include "src/runtime/launcher.hpp"
#include "tests/common/run_cli.hpp"
#include "tests/common/scratch.hpp"

namespace fs = std::filesystem;
using namespace gossip::runtime;
using gossip::testing::run_cli;
using gossip::testing::Scratch;

// Every allocation through operator new in a process forked from this one (between fork and
// exec: after exec the program is another) writes a byte to this pipe, which a test reads.
namespace {
const pid_t g_test_pid = ::getpid();
int g_child_allocations_fd = -1;
}  // namespace

void* operator new(std::size_t n) {
  if (g_child_allocations_fd >= 0 && ::getpid() != g_test_pid) {
    [[maybe_unused]] const auto w = ::write(g_child_allocations_fd, "n", 1);
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// Not inlined: GCC would see free() of what operator new returned (-Wmismatched-new-delete).
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

int exited(int code) {
  return code << 8;
}
int killed(int sig) {
  return sig;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), {}};
}

// supervise()'s messages, through a temporary file.
struct Messages {
  std::FILE* f = std::tmpfile();
  ~Messages() { std::fclose(f); }
  std::string text() const {
    std::fflush(f);
    std::rewind(f);
    std::string s;
    for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
    return s;
  }
};

// A spec of shell commands, one per process, logs in `dir`.
LaunchSpec shell_spec(const fs::path& dir, const std::vector<std::string>& scripts,
                      LaunchMode mode = LaunchMode::command) {
  fs::create_directories(dir);
  LaunchSpec spec;
  spec.mode = mode;
  for (std::size_t k = 0; k < scripts.size(); ++k)
    spec.processes.push_back({"proc " + std::to_string(k),
                              {"/bin/sh", "-c", scripts[k]},
                              {"PROC=" + std::to_string(k)},
                              (dir / ("proc-" + std::to_string(k) + ".log")).string()});
  return spec;
}

// Waits until every file exists (the processes are ready), at most 20 s.
bool wait_for_files(const std::vector<fs::path>& files) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < until) {
    if (std::all_of(files.begin(), files.end(), [](const auto& f) { return fs::exists(f); }))
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// A shell loop that waits for SIGINT (exit 130) after writing `ready`; it gives up after 30 s
// (exit 5) and dies of any other signal by default. A foreground `sleep` would hold the trap back
// until it ends, hence the short ones.
std::string wait_for_sigint(const std::string& ready) {
  return "trap 'exit 130' INT; : > " + ready + "; i=0; while [ $i -lt 300 ]; do sleep 0.1; " +
         "i=$((i+1)); done; exit 5";
}

}  // namespace

TEST_CASE("classify: the exit-code policy of gossip peers and of a user's command") {
  for (auto mode : {LaunchMode::peers, LaunchMode::command}) {
    CAPTURE(static_cast<int>(mode));
    CHECK(classify(exited(0), mode) == ExitKind::orderly);
    CHECK(classify(exited(130), mode) == ExitKind::stopped);
    CHECK(classify(killed(SIGINT), mode) == ExitKind::stopped);  // Python's KeyboardInterrupt
    for (int code : {1, 2, 127, 129, 143, 255})
      CHECK(classify(exited(code), mode) == ExitKind::failed);
    for (int sig : {SIGHUP, SIGTERM, SIGKILL, SIGSEGV, SIGABRT})
      CHECK(classify(killed(sig), mode) == ExitKind::failed);
  }
  // 3 is a peer's divergence (every peer stops by itself); a command's 3 is an error like any.
  CHECK(classify(exited(3), LaunchMode::peers) == ExitKind::diverged);
  CHECK(classify(exited(3), LaunchMode::command) == ExitKind::failed);

  CHECK(exit_code(exited(7)) == 7);
  CHECK(exit_code(killed(SIGKILL)) == 137);
  CHECK(describe_end(exited(7)) == "exited with code 7");
  CHECK(describe_end(killed(SIGKILL)).starts_with("was killed by signal 9 ("));
}

TEST_CASE("launch_exit_code: the first failure's code, else divergence, else a stop, else 0") {
  const auto peers = LaunchMode::peers, command = LaunchMode::command;
  CHECK(launch_exit_code({exited(0), exited(0)}, std::nullopt, peers) == 0);
  CHECK(launch_exit_code({}, std::nullopt, peers) == 0);
  CHECK(launch_exit_code({exited(130), killed(SIGINT)}, std::nullopt, command) == 130);
  CHECK(launch_exit_code({exited(0), exited(130)}, std::nullopt, peers) == 130);
  CHECK(launch_exit_code({exited(130), exited(3)}, std::nullopt, peers) == 3);
  // The one that failed on its own, not the ones killed after it.
  CHECK(launch_exit_code({killed(SIGTERM), exited(2), killed(SIGKILL)}, 1, command) == 2);
  CHECK(launch_exit_code({exited(3), exited(0)}, std::nullopt, command) == 3);
  CHECK(launch_exit_code({exited(130), killed(SIGHUP)}, std::nullopt, peers) == 129);
  // Lost processes (on_peer_loss = continue) do not count, unless all were lost.
  CHECK(launch_exit_code({exited(0), killed(SIGKILL), exited(0)}, std::nullopt, peers, {1}) == 0);
  CHECK(launch_exit_code({exited(3), killed(SIGKILL)}, std::nullopt, peers, {1}) == 3);
  CHECK(launch_exit_code({killed(SIGSEGV), killed(SIGKILL)}, std::nullopt, peers, {1, 0}) == 137);
}

TEST_CASE(
    "launch_spec: gossip peers get their rank, the overrides and --resume; everyone the "
    "environment of its rank") {
  LaunchRequest q;
  q.ranks = {2, 5};
  q.world_size = 8;
  q.logs = "/runs/x/logs";
  q.threads = 3;
  q.thread_share = 3;
  q.gossip = "/opt/gossip";
  q.config = "run.toml";
  q.sets = {"algorithm.lr=0.05", "run.epochs=2"};
  const auto has = [](const std::vector<std::string>& v, const std::vector<std::string>& seq) {
    return std::search(v.begin(), v.end(), seq.begin(), seq.end()) != v.end();
  };

  auto spec = launch_spec(q);
  CHECK(spec.mode == LaunchMode::peers);
  CHECK(spec.terminal == 0);
  REQUIRE(spec.processes.size() == 2);
  const auto& p = spec.processes[1];
  CHECK(p.name == "peer 5");
  CHECK(p.log == "/runs/x/logs/peer-5.log");
  CHECK(p.argv == std::vector<std::string>{"/opt/gossip", "peer", "--config", "run.toml", "--rank",
                                           "5", "--set", "algorithm.lr=0.05", "--set",
                                           "run.epochs=2"});
  for (const char* var : {"GOSSIP_RANK=5", "GOSSIP_WORLD_SIZE=8", "GOSSIP_LOCAL_RANK=1", "RANK=5",
                          "WORLD_SIZE=8", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=2", "GOSSIP_THREADS=3",
                          "OMP_NUM_THREADS=3", "OPENBLAS_NUM_THREADS=3"}) {
    CAPTURE(var);
    CHECK(std::count(p.env.begin(), p.env.end(), var) == 1);
  }
  CHECK(std::none_of(p.env.begin(), p.env.end(),
                     [](const std::string& e) { return e.starts_with("GOSSIP_CONFIG="); }));

  q.resume = true;
  spec = launch_spec(q);
  for (const auto& proc : spec.processes) CHECK(has(proc.argv, {"--resume"}));
  q.resume = false;
  q.resume_round = 40;
  spec = launch_spec(q);
  for (const auto& proc : spec.processes) {
    CHECK(has(proc.argv, {"--resume-round", "40"}));
    CHECK_FALSE(has(proc.argv, {"--resume"}));
    CHECK_FALSE(has(proc.argv, {"--progress"}));  // the first peer prints them on the terminal
  }
  // With on_peer_loss = continue every peer logs progress: the run outlives the first.
  q.progress_everywhere = true;
  spec = launch_spec(q);
  for (const auto& proc : spec.processes) CHECK(has(proc.argv, {"--progress"}));
  q.progress_everywhere = false;

  // A user's command: as given, with GOSSIP_CONFIG; no thread counts the user chose.
  q.command = {"python3", "train.py", "--lr", "1"};
  q.config_copy = "/runs/x/launch-config.toml";
  q.threads.reset();
  spec = launch_spec(q);
  CHECK(spec.mode == LaunchMode::command);
  CHECK(spec.processes[0].name == "rank 2");
  CHECK(spec.processes[0].argv == q.command);
  const auto& env = spec.processes[0].env;
  CHECK(std::count(env.begin(), env.end(), "GOSSIP_CONFIG=/runs/x/launch-config.toml") == 1);
  CHECK(std::count(env.begin(), env.end(), "LOCAL_RANK=0") == 1);
  CHECK(std::none_of(env.begin(), env.end(),
                     [](const std::string& e) { return e.starts_with("OMP_NUM_THREADS="); }));
  // No nonce: none exported (peers started alike by hand still meet them).
  CHECK(std::none_of(env.begin(), env.end(),
                     [](const std::string& e) { return e.starts_with("GOSSIP_RUN_NONCE="); }));
  // The launch's nonce goes to every process, peers and commands alike, in 16 hex digits.
  q.nonce = 0xabc;
  for (const auto& proc : launch_spec(q).processes)
    CHECK(std::count(proc.env.begin(), proc.env.end(), "GOSSIP_RUN_NONCE=0000000000000abc") == 1);
  q.command.clear();
  for (const auto& proc : launch_spec(q).processes)
    CHECK(std::count(proc.env.begin(), proc.env.end(), "GOSSIP_RUN_NONCE=0000000000000abc") == 1);
}

TEST_CASE(
    "supervise: each process gets its environment, its log, its own process group and "
    "no terminal input") {
  Scratch s("launcher_env");
  const auto dir = s.dir();
  std::vector<std::string> scripts;
  for (int k = 0; k < 3; ++k)
    scripts.push_back("echo $PROC $GOSSIP_TEST_KEPT $$ $(cut -d' ' -f5 /proc/$$/stat) > " +
                      (dir / ("env-" + std::to_string(k))).string() +
                      "; echo to-stdout; echo to-stderr >&2; cat; echo stdin-done");
  auto spec = shell_spec(dir, scripts);
  spec.terminal = 1;
  ::setenv("GOSSIP_TEST_KEPT", "inherited", 1);
  Messages m;
  const auto out = supervise(spec, m.f);
  ::unsetenv("GOSSIP_TEST_KEPT");
  CHECK(out.exit_code == 0);
  CHECK_FALSE(out.failed);
  CHECK(m.text().empty());
  for (int k = 0; k < 3; ++k) {
    CAPTURE(k);
    std::istringstream line(slurp(dir / ("env-" + std::to_string(k))));
    int proc = -1;
    std::string kept;
    long pid = 0, pgid = -1;
    line >> proc >> kept >> pid >> pgid;
    CHECK(proc == k);
    CHECK(kept == "inherited");
    CHECK(pgid == pid);  // the leader of its own group
    CHECK(pgid != ::getpgrp());
    // stdout in the log, and stderr too except for the process that keeps the terminal's;
    // `cat` read /dev/null, not the test's input.
    const auto log = slurp(spec.processes[static_cast<std::size_t>(k)].log);
    CHECK(log == (k == 1 ? "to-stdout\nstdin-done\n" : "to-stdout\nto-stderr\nstdin-done\n"));
  }
}

TEST_CASE("supervise: between fork and exec a child allocates nothing") {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  Scratch s("launcher_alloc");
  g_child_allocations_fd = fds[1];
  const auto out = supervise(shell_spec(s.dir(), {"exit 0", "exit 0", "exit 0"}));
  g_child_allocations_fd = -1;
  ::close(fds[1]);
  char buf[64];
  const auto n = ::read(fds[0], buf, sizeof buf);
  ::close(fds[0]);
  CHECK(out.exit_code == 0);
  CHECK_MESSAGE(n == 0, "operator new called in a child before exec");
}

TEST_CASE("supervise: a process that fails stops the others at once, and its log's end is shown") {
  Scratch s("launcher_fail");
  const auto t0 = std::chrono::steady_clock::now();
  Messages m;
  const auto out = supervise(shell_spec(s.dir(), {"sleep 30",
                                                  "sleep 0.3; echo first words; "
                                                  "echo last words; exit 3",
                                                  "sleep 30"}),
                             m.f);
  CHECK(seconds_since(t0) < 6.0);
  CHECK(out.exit_code == 3);
  REQUIRE(out.failed);
  CHECK(*out.failed == 1);
  const auto text = m.text();
  CHECK_MESSAGE(
      text.find("launch: proc 1 exited with code 3; stopping the others") != std::string::npos,
      text);
  CHECK_MESSAGE(text.find("  | first words\n  | last words\n") != std::string::npos, text);
  CHECK_MESSAGE(text.find("launch: proc 0 was killed by signal 15") != std::string::npos, text);
  CHECK_MESSAGE(text.find("after launch stopped it") != std::string::npos, text);
  CHECK(out.wait_statuses[0] == killed(SIGTERM));
  CHECK(out.wait_statuses[2] == killed(SIGTERM));

  // Exit 3 is a failure for a command, a divergence for gossip peers (they stop by themselves).
  const auto diverged =
      supervise(shell_spec(s.dir(), {"exit 3", "sleep 0.5; exit 130"}, LaunchMode::peers), m.f);
  CHECK(diverged.exit_code == 3);
  CHECK_FALSE(diverged.failed);
  CHECK(diverged.wait_statuses[1] == exited(130));  // not stopped by launch
}

TEST_CASE("supervise: with survive_loss a process killed by a signal is lost, the others go on") {
  Scratch s("launcher_lost");
  Messages m;
  auto spec =
      shell_spec(s.dir(), {"sleep 1; exit 0", "kill -9 $$", "sleep 1; exit 0"}, LaunchMode::peers);
  spec.survive_loss = true;
  const auto out = supervise(spec, m.f);
  CHECK(out.exit_code == 0);
  CHECK_FALSE(out.failed);
  REQUIRE(out.lost.size() == 1);
  CHECK(out.lost[0] == 1);
  CHECK(out.wait_statuses[0] == exited(0));  // not stopped by launch
  CHECK(out.wait_statuses[2] == exited(0));
  const auto text = m.text();
  CHECK_MESSAGE(text.find("launch: proc 1 was killed by signal 9") != std::string::npos, text);
  CHECK_MESSAGE(text.find("the others go on without it") != std::string::npos, text);
  // An exit code is still a failure that stops the others; without survive_loss so is a signal.
  auto failing = shell_spec(s.dir(), {"sleep 30", "exit 1"}, LaunchMode::peers);
  failing.survive_loss = true;
  const auto failed = supervise(failing, m.f);
  CHECK(failed.exit_code == 1);
  CHECK(failed.wait_statuses[0] == killed(SIGTERM));
  spec.survive_loss = false;
  const auto stopped = supervise(spec, m.f);
  CHECK(stopped.exit_code == 137);
  CHECK(stopped.lost.empty());
}

TEST_CASE("supervise: a process that ignores SIGTERM after a failure is killed after the grace") {
  Scratch s("launcher_grace");
  auto spec = shell_spec(s.dir(), {"trap '' TERM; sleep 30", "sleep 0.2; exit 1"});
  spec.grace = std::chrono::milliseconds(1000);
  const auto t0 = std::chrono::steady_clock::now();
  Messages m;
  const auto out = supervise(spec, m.f);
  const double took = seconds_since(t0);
  CHECK(took >= 1.0);
  CHECK(took < 5.0);
  CHECK(out.exit_code == 1);
  CHECK(out.wait_statuses[0] == killed(SIGKILL));
}

TEST_CASE(
    "supervise: SIGHUP or SIGTERM to the launcher is one SIGINT to every process: a stop, "
    "exit 130") {
  for (int sig : {SIGHUP, SIGTERM}) {
    CAPTURE(sig);
    Scratch s("launcher_hup");
    const auto dir = s.dir();
    const auto ready = [&](int k) { return dir / ("ready-" + std::to_string(k)); };
    // A process without a handler for SIGINT dies of it: a stop too.
    auto spec =
        shell_spec(dir, {wait_for_sigint(ready(0).string()), wait_for_sigint(ready(1).string()),
                         ": > " + ready(2).string() + "; exec sleep 30"});
    // Caught while supervise runs (it leaves a signal ignored by the user ignored).
    struct sigaction dfl {
    }, before{};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(sig, &dfl, &before);
    std::atomic<bool> sent{false};
    std::thread sender([&] {
      if (wait_for_files({ready(0), ready(1), ready(2)})) {
        ::kill(::getpid(), sig);
        sent = true;
      }
    });
    Messages m;
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = supervise(spec, m.f);
    sender.join();
    ::sigaction(sig, &before, nullptr);
    REQUIRE(sent);
    CHECK(seconds_since(t0) < 20.0);
    CHECK(out.stop_requested);
    CHECK(out.exit_code == 130);
    CHECK_FALSE(out.failed);
    CHECK(out.wait_statuses[0] == exited(130));
    CHECK(out.wait_statuses[1] == exited(130));
    CHECK(out.wait_statuses[2] == killed(SIGINT));
    CHECK(m.text().empty());
  }
}

TEST_CASE("supervise: a command not found stops everything before anything starts") {
  Scratch s("launcher_nocmd");
  fs::create_directories(s.dir());
  auto spec = shell_spec(s.dir(), {"exit 0"});
  spec.processes.push_back(
      {"proc 1", {"no-such-command-gossip"}, {}, (s.dir() / "x.log").string()});
  CHECK_THROWS_WITH(supervise(spec), "launch: no-such-command-gossip: command not found in PATH");
  CHECK_FALSE(fs::exists(s.dir() / "proc-0.log"));
}

// `gossip launch` started as a shell starts a job: in a process group of its own, with the
// terminal's signals at their defaults. `kill(-pid, SIGHUP)` is then what a closed terminal does.
struct Job {
  pid_t pid = -1;
  fs::path err;
  explicit Job(const std::vector<std::string>& args, const fs::path& err_path) : err(err_path) {
    const char* exe = std::getenv("GOSSIP_EXE");
    REQUIRE(exe != nullptr);
    std::vector<std::string> all{exe};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t defaults, none;
    sigemptyset(&defaults);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&defaults, sig);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, STDERR_FILENO, err.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawn(&pid, exe, &files, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&files);
    posix_spawnattr_destroy(&attr);
    REQUIRE(rc == 0);
  }
  // Its wait status; killed (the group) after 40 s.
  int wait() {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(40);
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        FAIL("gossip launch did not end within 40 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid = -1;
    return status;
  }
  ~Job() {
    if (pid > 0) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

TEST_CASE(
    "gossip launch -- COMMAND: one process per peer with its rank variables and the "
    "config, overrides applied") {
  Scratch s("launch_cmd");
  const auto dir = s.dir();
  fs::create_directories(dir);
  // No [model] or [data]: a command needs only the topology (ring:3 on 127.0.0.1: all here).
  const auto cfg = s.config("[topology]\nfile = \"ring:3\"\n[run]\nname = \"cmd\"\noutput = \"" +
                            (dir / "run").string() + "\"\n");
  // Two --set before `--`, and a -c after it that is the shell's, not launch's --config.
  const auto r =
      run_cli("launch --config " + cfg +
              " --set run.seed=77 --set algorithm.lr=0.25 -- /bin/sh -c 'echo $GOSSIP_RANK $RANK "
              "$WORLD_SIZE $GOSSIP_WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $GOSSIP_CONFIG > " +
              dir.string() + "/out-$GOSSIP_RANK'");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK_MESSAGE(r.err.find("logs in " + (dir / "run" / "logs").string()) != std::string::npos,
                r.err);
  std::string config_path;
  for (int k = 0; k < 3; ++k) {
    CAPTURE(k);
    std::istringstream line(slurp(dir / ("out-" + std::to_string(k))));
    int gossip_rank = -1, rank = -1, world = 0, gossip_world = 0, local = -1, local_world = 0;
    line >> gossip_rank >> rank >> world >> gossip_world >> local >> local_world >> config_path;
    CHECK(gossip_rank == k);
    CHECK(rank == k);
    CHECK(world == 3);
    CHECK(gossip_world == 3);
    CHECK(local == k);  // every peer of ring:3 is here, in rank order
    CHECK(local_world == 3);
    CHECK(config_path == (dir / "run" / "launch-config.toml").string());
  }
  const auto c = load_run_config(config_path);
  CHECK(c.seed == 77);
  CHECK(c.lr == 0.25);
  CHECK(c.topology == "ring:3");
  CHECK(c.output == (dir / "run").string());

  // A failing command: its status, its log's end.
  const auto failed = run_cli("launch --config " + cfg +
                              " -- /bin/sh -c 'echo rank $RANK gives up; exit $((RANK + 4))'");
  CHECK(failed.code >= 4);
  CHECK(failed.code <= 6);
  CHECK_MESSAGE(failed.err.find("gives up") != std::string::npos, failed.err);
}

TEST_CASE("gossip launch: what is not a command after -- is refused") {
  Scratch s("launch_args");
  const auto cfg =
      s.config("[topology]\nfile = \"ring:2\"\n[run]\noutput = \"" + s.dir().string() + "\"\n");
  auto r = run_cli("launch --config " + cfg + " --set run.seed=2 /bin/true");
  CHECK(r.code != 0);
  CHECK_MESSAGE(r.err.find("unexpected argument '/bin/true': a command to launch goes after --") !=
                    std::string::npos,
                r.err);
  r = run_cli("launch --config " + cfg + " --");
  CHECK(r.code != 0);
  CHECK_MESSAGE(r.err.find("no command after --") != std::string::npos, r.err);
  r = run_cli("launch --config " + cfg + " --resume -- /bin/true");
  CHECK(r.code != 0);
  CHECK_MESSAGE(
      r.err.find("--resume and --resume-round are for gossip's own peers") != std::string::npos,
      r.err);
  r = run_cli("launch --config " + cfg + " -- /bin/true");
  CHECK_MESSAGE(r.code == 0, r.err);
}

TEST_CASE("gossip launch -- COMMAND: a terminal's hang-up is an orderly stop (130)") {
  Scratch s("launch_hup_cmd");
  const auto dir = s.dir();
  fs::create_directories(dir);
  const auto cfg = s.config("[topology]\nfile = \"ring:3\"\n[run]\noutput = \"" +
                            (dir / "run").string() + "\"\n");
  // The processes have no handler for SIGHUP: had it reached them, they would die of it (129).
  Job job({"launch", "--config", cfg, "--", "/bin/sh", "-c",
           wait_for_sigint(dir.string() + "/ready-$RANK")},
          dir / "err");
  REQUIRE(wait_for_files({dir / "ready-0", dir / "ready-1", dir / "ready-2"}));
  ::kill(-job.pid, SIGHUP);
  const int status = job.wait();
  const auto err = slurp(dir / "err");
  CHECK_MESSAGE(status == exited(130), err);
  CHECK_MESSAGE(err.find("launch: stopped") != std::string::npos, err);
}

TEST_CASE("gossip launch: a terminal's hang-up stops the peers in order, with checkpoints") {
  Scratch s("launch_hup_peers");
  const auto dir = s.dir();
  for (int r = 0; r < 3; ++r) s.also_remove(dir.string() + "-" + std::to_string(r) + ".sock");
  const auto cfg = s.config("[topology]\nfile = \"ring:3,endpoint=ipc://" + dir.string() +
                            "-{rank}.sock\"\n[data]\ndataset = \"blobs\"\n[run]\nepochs = 1000\n"
                            "output = \"" +
                            dir.string() + "\"\n[transport]\ntimeout_s = 10\n");
  fs::create_directories(dir);
  Job job({"launch", "--config", cfg}, dir.string() + "-err");
  s.also_remove(dir.string() + "-err");
  // Training: every peer has written a metrics line.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  const auto training = [&] {
    for (int r = 0; r < 3; ++r) {
      const auto m = dir / ("metrics-" + std::to_string(r) + ".jsonl");
      if (!fs::exists(m) || fs::file_size(m) == 0) return false;
    }
    return true;
  };
  while (!training() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(training());
  ::kill(-job.pid, SIGHUP);
  const int status = job.wait();
  const auto err = slurp(dir.string() + "-err");
  CHECK_MESSAGE(status == exited(130), err);
  CHECK_MESSAGE(err.find("launch: every peer stopped; checkpoints of round") != std::string::npos,
                err);
  int checkpoints = 0;
  if (fs::exists(dir / "checkpoints"))
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir / "checkpoints"))
      ++checkpoints;
  CHECK(checkpoints == 3);
}
