#include "src/runtime/launcher.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

#include <fmt/format.h>

extern char** environ;

namespace gossip::runtime {

ExitKind classify(int wait_status, LaunchMode mode) {
  if (WIFEXITED(wait_status)) {
    const int code = WEXITSTATUS(wait_status);
    if (code == 0) return ExitKind::orderly;
    if (code == 130) return ExitKind::stopped;
    if (code == 3 && mode == LaunchMode::peers) return ExitKind::diverged;
    return ExitKind::failed;
  }
  // Python re-raises an unhandled KeyboardInterrupt as death by SIGINT; a process that had not
  // yet installed its handler (a peer loading its data) dies the same way.
  if (WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGINT) return ExitKind::stopped;
  return ExitKind::failed;
}

int exit_code(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 255;
}

std::string describe_end(int wait_status) {
  if (WIFSIGNALED(wait_status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(wait_status),
                       ::strsignal(WTERMSIG(wait_status)));
  return fmt::format("exited with code {}", exit_code(wait_status));
}

int launch_exit_code(const std::vector<int>& wait_statuses, std::optional<std::size_t> failed,
                     LaunchMode mode, const std::vector<std::size_t>& lost) {
  if (failed && *failed < wait_statuses.size()) return exit_code(wait_statuses[*failed]);
  if (!lost.empty() && lost.size() >= wait_statuses.size() && lost.front() < wait_statuses.size())
    return exit_code(wait_statuses[lost.front()]);
  bool diverged = false, stopped = false;
  for (std::size_t k = 0; k < wait_statuses.size(); ++k) {
    if (std::find(lost.begin(), lost.end(), k) != lost.end()) continue;
    const int s = wait_statuses[k];
    switch (classify(s, mode)) {
      case ExitKind::failed:
        return exit_code(s);
      case ExitKind::diverged:
        diverged = true;
        break;
      case ExitKind::stopped:
        stopped = true;
        break;
      case ExitKind::orderly:
        break;
    }
  }
  return diverged ? 3 : stopped ? 130 : 0;
}

namespace {

constexpr std::array<int, 3> kStopSignals{SIGINT, SIGTERM, SIGHUP};

std::atomic<int> g_stop_signals{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");
extern "C" void on_stop_signal(int) {
  g_stop_signals.fetch_add(1);
}

// The launcher's handlers for the stop signals while it supervises; the previous ones after.
class StopHandlers {
 public:
  StopHandlers() {
    g_stop_signals.store(0);
    struct sigaction handler {};
    handler.sa_handler = on_stop_signal;
    sigemptyset(&handler.sa_mask);
    for (std::size_t k = 0; k < kStopSignals.size(); ++k) {
      ::sigaction(kStopSignals[k], nullptr, &previous_[k]);
      // Ignored (nohup, a background job of a script): the user wants it ignored.
      if (previous_[k].sa_handler != SIG_IGN) ::sigaction(kStopSignals[k], &handler, nullptr);
    }
  }
  ~StopHandlers() {
    for (std::size_t k = 0; k < kStopSignals.size(); ++k)
      ::sigaction(kStopSignals[k], &previous_[k], nullptr);
  }
  StopHandlers(const StopHandlers&) = delete;
  StopHandlers& operator=(const StopHandlers&) = delete;

 private:
  std::array<struct sigaction, kStopSignals.size()> previous_{};
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string_view env_name(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

// argv[0] as execve needs it: a name without a slash is looked up in PATH (the child's, where the
// spec sets one), as a shell would.
std::string resolve_command(const std::string& name, const std::vector<std::string>& env) {
  const auto executable = [](const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
  };
  if (name.empty()) throw std::runtime_error("launch: an empty command");
  if (name.find('/') != std::string::npos) {
    if (!executable(name))
      throw std::runtime_error(fmt::format(
          "launch: {}: {}", name,
          ::access(name.c_str(), F_OK) == 0 ? "not an executable file" : "no such file"));
    return name;
  }
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  if (const char* p = std::getenv("PATH")) path = p;
  for (const auto& e : env)
    if (env_name(e) == "PATH") path = e.substr(5);
  for (std::size_t begin = 0; begin <= path.size();) {
    const auto end = std::min(path.find(':', begin), path.size());
    const std::string dir = end > begin ? path.substr(begin, end - begin) : ".";
    const std::string candidate = dir + "/" + name;
    if (executable(candidate)) return candidate;
    begin = end + 1;
  }
  throw std::runtime_error(fmt::format("launch: {}: command not found in PATH", name));
}

// One process, ready to start: everything the child needs exists before the fork, so that the
// child itself makes only async-signal-safe calls (no allocation, no stdio).
struct Prepared {
  std::string path;
  std::vector<std::string> args, env;
  std::vector<char*> argv, envp;
  Fd log;
  std::string exec_failed;  // what the child writes if execve returns
  bool keeps_stderr = false;
};

// `extra` goes after the process's arguments, and `append` keeps what its log holds (a restart).
Prepared prepare(const LaunchProcess& p, std::string path, bool keeps_stderr,
                 const std::vector<std::string>& extra = {}, bool append = false) {
  Prepared r;
  r.path = std::move(path);
  r.args = p.argv;
  r.args.insert(r.args.end(), extra.begin(), extra.end());
  std::set<std::string_view> replaced;
  for (const auto& e : p.env) replaced.insert(env_name(e));
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    if (!replaced.contains(env_name(*e))) r.env.emplace_back(*e);
  r.env.insert(r.env.end(), p.env.begin(), p.env.end());
  r.log = Fd(
      ::open(p.log.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0644));
  if (r.log.get() < 0)
    throw std::runtime_error(
        fmt::format("launch: cannot open {}'s log {}: {}", p.name, p.log, std::strerror(errno)));
  r.exec_failed = fmt::format("launch: cannot execute {}\n", r.path);
  r.keeps_stderr = keeps_stderr;
  return r;
}

// The pointer arrays, once the strings have their final place.
void point(Prepared& r) {
  for (auto& s : r.args) r.argv.push_back(s.data());
  r.argv.push_back(nullptr);
  for (auto& s : r.env) r.envp.push_back(s.data());
  r.envp.push_back(nullptr);
}

// The child, from fork to exec: async-signal-safe calls only.
[[noreturn]] void become(const Prepared& r, pid_t parent, int null_fd,
                         const struct sigaction& default_action, const sigset_t& mask) {
  // A process does not outlive its launcher (kill -9): it gets SIGTERM, as if the user had
  // stopped the run. The check covers a launcher gone before prctl.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::_exit(130);
  // Its own process group: the terminal's SIGINT and SIGHUP reach the launcher alone, which
  // forwards one SIGINT to the group (the command's children included).
  ::setpgid(0, 0);
  // Several processes cannot share the terminal's input; one in a background group that read it
  // would be stopped (SIGTTIN).
  ::dup2(null_fd, STDIN_FILENO);
  ::dup2(r.log.get(), STDOUT_FILENO);
  if (!r.keeps_stderr) ::dup2(r.log.get(), STDERR_FILENO);
  for (int sig : kStopSignals) ::sigaction(sig, &default_action, nullptr);
  ::sigprocmask(SIG_SETMASK, &mask, nullptr);
  ::execve(r.path.c_str(), r.argv.data(), r.envp.data());
  [[maybe_unused]] const auto n =
      ::write(STDERR_FILENO, r.exec_failed.data(), r.exec_failed.size());
  ::_exit(127);
}

// The last lines of a log, for the message of a failure.
std::vector<std::string> log_tail(const std::string& path, std::size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(std::move(line));
    if (tail.size() > lines) tail.erase(tail.begin());
  }
  return tail;
}

}  // namespace

LaunchOutcome supervise(const LaunchSpec& spec, std::FILE* messages) {
  const std::size_t n = spec.processes.size();
  LaunchOutcome out;
  out.wait_statuses.assign(n, 0);
  if (n == 0) return out;

  // Every command is found before any log is opened or any process started.
  std::vector<std::string> paths;
  for (const auto& p : spec.processes) {
    if (p.argv.empty()) throw std::runtime_error(fmt::format("launch: {}: no command", p.name));
    paths.push_back(resolve_command(p.argv.front(), p.env));
  }
  std::vector<Prepared> ready;
  ready.reserve(n);
  for (std::size_t k = 0; k < n; ++k)
    ready.push_back(prepare(spec.processes[k], std::move(paths[k]), k == spec.terminal));
  for (auto& r : ready) point(r);
  const Fd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_fd.get() < 0) throw std::runtime_error("launch: cannot open /dev/null");
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  sigset_t stop_set;
  sigemptyset(&stop_set);
  for (int sig : kStopSignals) sigaddset(&stop_set, sig);

  // Handlers first: a Ctrl-C while the processes start is forwarded to all of them.
  const StopHandlers handlers;
  const pid_t self = ::getpid();
  std::vector<pid_t> pids(n, 0);
  // Starts process k as `r`; -1 and errno when the fork fails.
  const auto start = [&](std::size_t k, Prepared& r) {
    // Blocked across the fork: the child resets the handlers to the default before a stop signal
    // sent to it can be delivered.
    sigset_t mask;
    ::pthread_sigmask(SIG_BLOCK, &stop_set, &mask);
    const pid_t pid = ::fork();
    if (pid == 0) become(r, self, null_fd.get(), default_action, mask);
    const int fork_error = errno;
    if (pid > 0) ::setpgid(pid, pid);  // also here: the group exists before we signal it
    ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
    r.log = Fd();  // the child has it
    if (pid > 0) pids[k] = pid;
    errno = fork_error;
    return pid;
  };
  for (std::size_t k = 0; k < n; ++k) {
    if (start(k, ready[k]) < 0) {
      const int fork_error = errno;
      for (std::size_t j = 0; j < k; ++j) ::kill(-pids[j], SIGKILL);
      for (std::size_t j = 0; j < k; ++j) ::waitpid(pids[j], nullptr, 0);
      throw std::runtime_error(fmt::format("launch: cannot start {}: fork: {}",
                                           spec.processes[k].name, std::strerror(fork_error)));
    }
  }

  std::vector<bool> done(n, false), stopped_by_launch(n, false);
  // LaunchSpec::restarts: per process, the restarts left and when the next one is due.
  std::vector<int> restarts_left(n, spec.restarts);
  using TimePoint = std::chrono::steady_clock::time_point;
  std::vector<std::optional<TimePoint>> restart_at(n);
  std::size_t running = n;
  bool forwarded = false;
  auto kill_at = std::chrono::steady_clock::time_point::max();  // none due
  const auto signal_running = [&](int sig) {
    for (std::size_t j = 0; j < n; ++j)
      if (!done[j]) ::kill(-pids[j], sig);
  };
  for (;;) {
    bool reaped = false;
    for (std::size_t k = 0; k < n; ++k) {
      if (done[k]) continue;
      int status = 0;
      const pid_t r = ::waitpid(pids[k], &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      // r < 0 otherwise: someone else reaped it (SIGCHLD ignored); nothing says how it ended.
      out.wait_statuses[k] = r > 0 ? status : (255 << 8);
      done[k] = true;
      --running;
      reaped = true;
      if (classify(out.wait_statuses[k], spec.mode) != ExitKind::failed || out.failed) continue;
      if (spec.survive_loss && WIFSIGNALED(out.wait_statuses[k]) && !stopped_by_launch[k]) {
        // transport.on_peer_loss = "continue": the others mix it out and go on.
        out.lost.push_back(k);
        const auto& p = spec.processes[k];
        fmt::print(messages,
                   "launch: {} {}; on_peer_loss = continue: the others go on without it (log "
                   "{})\n",
                   p.name, describe_end(out.wait_statuses[k]), p.log);
        if (k == spec.terminal && spec.mode == LaunchMode::peers) {
          // Its stderr was the terminal's: the progress lines go on in a live peer's log.
          for (std::size_t j = 0; j < n; ++j)
            if (!done[j]) {
              fmt::print(messages, "launch: progress lines go on in {}\n", spec.processes[j].log);
              break;
            }
        }
        if (restarts_left[k] > 0 && !forwarded) {
          restart_at[k] = std::chrono::steady_clock::now() + spec.restart_delay;
          fmt::print(messages, "launch: restarting {} in {} ms to rejoin ({} restart{} left)\n",
                     p.name, spec.restart_delay.count(), restarts_left[k],
                     restarts_left[k] == 1 ? "" : "s");
        }
        std::fflush(messages);
        continue;
      }
      out.failed = k;
      const auto& p = spec.processes[k];
      fmt::print(messages, "launch: {} {}{}. Its log ({}) ends:\n", p.name,
                 describe_end(out.wait_statuses[k]), running > 0 ? "; stopping the others" : "",
                 p.log);
      for (const auto& line : log_tail(p.log, 8)) fmt::print(messages, "  | {}\n", line);
      std::fflush(messages);
      // Its neighbours would wait for it until their timeout: stop them now. Peers cannot agree
      // on a stop round without it: what has not stopped within the grace period is killed
      // (their periodic checkpoints stay for --resume).
      for (std::size_t j = 0; j < n; ++j) stopped_by_launch[j] = !done[j];
      for (auto& at : restart_at) at.reset();
      signal_running(SIGTERM);
      if (running > 0) kill_at = std::chrono::steady_clock::now() + spec.grace;
    }
    if (g_stop_signals.load() > 0 && !forwarded) {
      out.stop_requested = true;
      signal_running(SIGINT);
      forwarded = true;
      for (auto& at : restart_at) at.reset();
    }
    // A lost process restarts (LaunchSpec::restarts): the same command with rejoin_args, its log
    // appended to; it is no longer counted as lost.
    for (std::size_t k = 0; k < n; ++k) {
      if (!restart_at[k] || std::chrono::steady_clock::now() < *restart_at[k]) continue;
      restart_at[k].reset();
      --restarts_left[k];
      const auto& p = spec.processes[k];
      Prepared again = prepare(p, ready[k].path, k == spec.terminal, spec.rejoin_args, true);
      point(again);
      if (start(k, again) < 0) {
        fmt::print(messages, "launch: cannot restart {}: fork: {}\n", p.name, std::strerror(errno));
        continue;
      }
      done[k] = false;
      ++running;
      std::erase(out.lost, k);
      ++out.restarts;
      fmt::print(messages, "launch: {} restarted (pid {}): {}\n", p.name, pids[k],
                 fmt::join(again.args, " "));
      std::fflush(messages);
    }
    const bool waiting_restart = std::any_of(restart_at.begin(), restart_at.end(),
                                             [](const auto& at) { return at.has_value(); });
    if (running == 0 && !waiting_restart) break;
    if (std::chrono::steady_clock::now() >= kill_at) {
      signal_running(SIGKILL);
      kill_at = std::chrono::steady_clock::time_point::max();
    }
    if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (g_stop_signals.load() > 0) out.stop_requested = true;

  out.exit_code = launch_exit_code(out.wait_statuses, out.failed, spec.mode, out.lost);
  if (out.exit_code != 0 && out.exit_code != 130) {
    for (std::size_t k = 0; k < n; ++k) {
      if (out.wait_statuses[k] == 0) continue;
      const auto& p = spec.processes[k];
      fmt::print(messages, "launch: {} {}{} (log {})\n", p.name, describe_end(out.wait_statuses[k]),
                 stopped_by_launch[k] ? " after launch stopped it" : "", p.log);
    }
  }
  std::fflush(messages);
  return out;
}

LaunchSpec launch_spec(const LaunchRequest& q) {
  LaunchSpec spec;
  spec.mode = q.command.empty() ? LaunchMode::peers : LaunchMode::command;
  const auto local = q.ranks.size();
  for (std::size_t i = 0; i < local; ++i) {
    const int r = q.ranks[i];
    LaunchProcess p;
    p.log = (std::filesystem::path(q.logs) / fmt::format("peer-{}.log", r)).string();
    p.env = {fmt::format("GOSSIP_RANK={}", r),
             fmt::format("GOSSIP_WORLD_SIZE={}", q.world_size),
             fmt::format("GOSSIP_LOCAL_RANK={}", i),
             fmt::format("RANK={}", r),
             fmt::format("WORLD_SIZE={}", q.world_size),
             fmt::format("LOCAL_RANK={}", i),
             fmt::format("LOCAL_WORLD_SIZE={}", local),
             fmt::format("GOSSIP_THREADS={}", q.thread_share)};
    if (q.threads)
      for (const char* var : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"})
        p.env.push_back(fmt::format("{}={}", var, *q.threads));
    if (q.nonce != 0) p.env.push_back(fmt::format("GOSSIP_RUN_NONCE={:016x}", q.nonce));
    if (spec.mode == LaunchMode::command) {
      p.name = fmt::format("rank {}", r);
      p.argv = q.command;
      p.env.push_back("GOSSIP_CONFIG=" + q.config_copy);
    } else {
      p.name = fmt::format("peer {}", r);
      p.argv = {q.gossip, "peer", "--config", q.config, "--rank", std::to_string(r)};
      for (const auto& s : q.sets) p.argv.insert(p.argv.end(), {"--set", s});
      if (q.resume) p.argv.push_back("--resume");
      if (q.resume_round >= 0)
        p.argv.insert(p.argv.end(), {"--resume-round", std::to_string(q.resume_round)});
      if (q.progress_everywhere) p.argv.push_back("--progress");
    }
    spec.processes.push_back(std::move(p));
  }
  spec.terminal = 0;
  return spec;
}

}  // namespace gossip::runtime
