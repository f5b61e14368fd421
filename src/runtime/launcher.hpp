#pragma once
// `gossip launch`: one process per peer of the topology on this host, supervised together. The
// processes are `gossip peer` (the launcher's own binary) or a user's command
// (`gossip launch --config run.toml -- python3 train.py`), which learns its rank from the
// environment, as under torchrun.
//
// Supervision: each process is the leader of its own process group, so a terminal's Ctrl-C or
// hang-up reaches the launcher only, which turns it into one SIGINT to every group (the peers'
// orderly stop, Python's KeyboardInterrupt). A process that fails would leave its neighbours
// waiting until their timeout: the launcher prints the end of its log, sends the others SIGTERM
// and, after a grace period, SIGKILL. Between fork and exec a child makes only async-signal-safe
// calls: its argv, environment and log file are made ready before the fork.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace gossip::runtime {

// What the processes are: `gossip peer`, or a user's command.
enum class LaunchMode { peers, command };

// How one process ended, as the launcher judges it.
enum class ExitKind {
  orderly,   // exit 0
  stopped,   // stopped on request: exit 130, or killed by SIGINT (how Python ends on Ctrl-C)
  diverged,  // `gossip peer` only: exit 3, the training loss stopped being finite; all peers stop
  failed,    // anything else: an error, a signal; its neighbours would wait for it
};

// The policy, from a wait status (as waitpid gives it).
ExitKind classify(int wait_status, LaunchMode mode);
// The shell's number for a wait status: the exit code, or 128 + the signal that killed it.
int exit_code(int wait_status);
// A wait status in words: "exited with code 1", "was killed by signal 9 (Killed)".
std::string describe_end(int wait_status);
// The launcher's exit code from every process's wait status and the one that failed first on
// its own (if any): its code; else 3 if a peer diverged; else 130 if any stopped; else 0. The
// `lost` processes (LaunchSpec::survive_loss) do not count, unless every process was lost: then
// the first one's code (128 + its signal).
int launch_exit_code(const std::vector<int>& wait_statuses, std::optional<std::size_t> failed,
                     LaunchMode mode, const std::vector<std::size_t>& lost = {});

struct LaunchProcess {
  std::string name;               // for messages: "peer 3"
  std::vector<std::string> argv;  // argv[0]: a path, or a name looked up in PATH
  std::vector<std::string> env;   // "NAME=value": set on top of the launcher's environment
  std::string log;                // its stdout, and its stderr unless it keeps the terminal's
};

struct LaunchSpec {
  LaunchMode mode = LaunchMode::peers;
  std::vector<LaunchProcess> processes;
  // The process whose stderr stays the launcher's (rank 0's progress, a script's traceback).
  std::size_t terminal = 0;
  // After a failure, how long the others have to stop before they are killed.
  std::chrono::milliseconds grace{5000};
  // transport.on_peer_loss = "continue": a process that dies by a signal other than SIGINT
  // (SIGKILL, a crash) is lost, not failed: the others are left to go on without it (their
  // transports mix it out), the launcher says so, and it does not count in the exit code. A
  // process that exits with an error code still stops the others.
  bool survive_loss = false;
  // With survive_loss: a lost process is started again, up to `restarts` times each, after
  // `restart_delay`, with `rejoin_args` added (`gossip peer --rejoin`: it takes a neighbour's
  // state and mixes again); its log is appended to. Not after a stop or a failure.
  int restarts = 0;
  std::chrono::milliseconds restart_delay{1000};
  std::vector<std::string> rejoin_args;
};

struct LaunchOutcome {
  std::vector<int> wait_statuses;     // per process
  std::optional<std::size_t> failed;  // the first process that failed on its own
  std::vector<std::size_t> lost;      // LaunchSpec::survive_loss: processes lost, in order
                                      // (and not restarted)
  int restarts = 0;                   // LaunchSpec::restarts: processes started again
  bool stop_requested = false;        // the launcher got SIGINT, SIGTERM or SIGHUP
  int exit_code = 0;                  // launch_exit_code
};

// Starts every process and waits for all of them. SIGINT, SIGTERM and SIGHUP to the launcher
// (while it runs; one it found ignored, as under nohup, stays ignored) are forwarded as one
// SIGINT to every process group that still runs. A process that fails stops the others (above);
// its log's last lines, and one line per process that did not end with 0, go to `messages`.
// Throws std::runtime_error, before anything starts, when a command is not found or a log
// cannot be opened.
LaunchOutcome supervise(const LaunchSpec& spec, std::FILE* messages = stderr);

// What `gossip launch` was asked, for launch_spec.
struct LaunchRequest {
  std::vector<int> ranks;      // the topology's peers that live on this host, ascending
  int world_size = 0;          // the topology's peers
  std::string logs;            // folder of the logs: <logs>/peer-R.log
  std::optional<int> threads;  // exported as OMP_NUM_THREADS and OPENBLAS_NUM_THREADS if set
  int thread_share = 1;        // GOSSIP_THREADS: each process's share of the cores
  // A user's command (mode command), with GOSSIP_CONFIG naming the config with the overrides
  // applied; empty: `gossip peer` with the arguments below.
  std::vector<std::string> command;
  std::string config_copy;
  std::string gossip;  // the gossip binary
  std::string config;  // --config
  std::vector<std::string> sets;
  bool resume = false;
  long long resume_round = -1;  // < 0: none
  // Every peer prints progress lines (--progress) into its log, not only the first: with
  // on_peer_loss = continue the run goes on when the peer on the terminal is lost.
  bool progress_everywhere = false;
  // The launch's nonce (TransportOptions::run_nonce), exported as GOSSIP_RUN_NONCE; 0: none.
  std::uint64_t nonce = 0;
};

// The processes of a launch (a pure function). Each gets GOSSIP_RANK, GOSSIP_WORLD_SIZE,
// GOSSIP_LOCAL_RANK (its index among the processes started here, which picks its GPU),
// torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GOSSIP_THREADS, the thread counts,
// GOSSIP_RUN_NONCE (when the request has a nonce) and (command) GOSSIP_CONFIG; a peer gets `peer
// --config C --rank R`, the --set overrides and
// --resume / --resume-round. The first local rank keeps the terminal's stderr.
LaunchSpec launch_spec(const LaunchRequest& request);

}  // namespace gossip::runtime
