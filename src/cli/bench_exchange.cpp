// `gossip bench exchange`: one gossip round between peers in separate processes on loopback,
// beside raw ZeroMQ PUSH/PULL moving the same bytes between the same processes in the same run.
// The parent starts one child per peer (this binary, hidden subcommand `bench exchange-peer`);
// each child reports JSON lines; the parent prints the table (or --json rows).

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <omp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "gossip/curve_keys.hpp"
#include "gossip/zmq_transport.hpp"
#include "kernels/codec.hpp"
#include "src/cli/cli.hpp"
#include "topology/generators.hpp"

extern char** environ;

namespace gossip::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS").
std::uint64_t proc_status_bytes(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream in(line.substr(key.size() + 1));
      std::uint64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so each phase's peak is its own.
void reset_peak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

// Bytes of `key` (VmHWM, VmRSS) above `base`, 0 when below it (the process may have shrunk
// since `base` was read: an unsigned difference would wrap to 2^64).
double growth_over(const std::string& key, std::uint64_t base) {
  const std::uint64_t now = proc_status_bytes(key);
  return now > base ? static_cast<double>(now - base) : 0.0;
}

// Gives freed model buffers back to the kernel so the next baseline RSS is honest.
std::uint64_t settled_rss() {
  malloc_trim(0);
  return proc_status_bytes("VmRSS");
}

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free loopback port");
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

void fill(std::vector<float>& x, int rank) {
  std::uint64_t z = 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(rank + 1);
  for (auto& v : x) {
    z ^= z << 13;
    z ^= z >> 7;
    z ^= z << 17;
    v = static_cast<float>(static_cast<std::int64_t>(z >> 40) - (1 << 23)) * (1.0f / (1 << 23));
  }
}

// ---------------------------------------------------------------- child: one peer

struct PeerArgs {
  int rank = 0;
  std::string spec;
  std::vector<std::string> eager_eps, paced_eps, raw_eps;
  std::vector<std::string> curve_eps;  // --curve: exchange() once more over CURVE links
  std::vector<std::string> codecs;
  std::vector<std::size_t> sizes;
  int rounds = 5;
  int gossip_rounds = 2;
  double timeout_s = 300;
};

// Zero-copy sends of the raw baseline: the buffer must outlive libzmq's use, as in the transport.
struct RawReleases {
  std::mutex m;
  std::condition_variable cv;
  int outstanding = 0;
  static void release(void*, void* hint) {
    auto* self = static_cast<RawReleases*>(hint);
    {
      std::lock_guard lock(self->m);
      --self->outstanding;
    }
    self->cv.notify_all();
  }
  void wait() {
    std::unique_lock lock(m);
    if (!cv.wait_for(lock, std::chrono::seconds(300), [&] { return outstanding == 0; })) {
      throw std::runtime_error("raw zmq: a send was not released within 300 s");
    }
  }
};

int run_peer(const PeerArgs& a) {
  // Large buffers from mmap, returned to the kernel on free: per-phase peaks stay comparable.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  omp_set_num_threads(1);  // n peers share the machine's cores
  auto topo = topology::make_topology(topology::parse_spec(a.spec));
  const int n = topo.size();
  if (static_cast<int>(a.eager_eps.size()) != n || static_cast<int>(a.paced_eps.size()) != n ||
      static_cast<int>(a.raw_eps.size()) != n) {
    throw std::invalid_argument("exchange-peer: one endpoint per peer expected");
  }
  std::vector<std::unique_ptr<kernels::Codec>> codecs;
  std::size_t max_wire = 0;
  for (const auto& c : a.codecs) {
    codecs.push_back(kernels::make_codec(c));
    for (std::size_t d : a.sizes) max_wire = std::max(max_wire, codecs.back()->wire_size(d));
  }
  net::TransportOptions o;
  o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(a.timeout_s * 1000));
  o.connect_timeout = std::chrono::seconds(60);
  o.max_payload_bytes = max_wire;
  o.run_hash = std::hash<std::string>{}(
      fmt::format("{}|{}|{}", a.spec, fmt::join(a.codecs, ";"), fmt::join(a.sizes, ",")));
  auto eager_topo = topo;
  auto paced_topo = topo;
  for (int r = 0; r < n; ++r) {
    eager_topo.peers[static_cast<std::size_t>(r)].endpoint =
        a.eager_eps[static_cast<std::size_t>(r)];
    paced_topo.peers[static_cast<std::size_t>(r)].endpoint =
        a.paced_eps[static_cast<std::size_t>(r)];
  }
  net::ZmqTransport eager(eager_topo, a.rank, o);
  auto po = o;
  po.receive_window = 1;
  net::ZmqTransport paced(paced_topo, a.rank, po);
  // --curve: the same exchange() over CURVE, with the throwaway key pairs the parent made (their
  // secrets in GOSSIP_BENCH_CURVE_SECRETS, not on the command line that ps shows).
  std::optional<net::ZmqTransport> curve;
  if (!a.curve_eps.empty()) {
    auto curve_topo = topo;
    const char* env = std::getenv("GOSSIP_BENCH_CURVE_SECRETS");
    if (!env || static_cast<int>(a.curve_eps.size()) != n)
      throw std::invalid_argument("exchange-peer: --curve needs its endpoints and key pairs");
    std::vector<net::SecretKey> secrets;
    std::istringstream in(env);
    for (std::string hex; std::getline(in, hex, ',');) {
      const auto key = topology::parse_key_hex(hex);
      if (!key) throw std::invalid_argument("exchange-peer: bad GOSSIP_BENCH_CURVE_SECRETS");
      secrets.push_back(*key);
      curve_topo.public_keys.push_back(net::public_key_of(*key));
    }
    if (static_cast<int>(secrets.size()) != n)
      throw std::invalid_argument("exchange-peer: one CURVE key pair per peer expected");
    for (int r = 0; r < n; ++r)
      curve_topo.peers[static_cast<std::size_t>(r)].endpoint =
          a.curve_eps[static_cast<std::size_t>(r)];
    auto co = o;
    co.curve_secret_key = secrets[static_cast<std::size_t>(a.rank)];
    curve.emplace(curve_topo, a.rank, co);
  }
  const auto nb = eager.neighbors();
  const std::size_t deg = nb.size();

  // Raw baseline: one PULL bound per peer, one PUSH per neighbour.
  zmq::context_t ctx(1);
  zmq::socket_t pull(ctx, zmq::socket_type::pull);
  pull.set(zmq::sockopt::linger, 1000);
  pull.bind(a.raw_eps[static_cast<std::size_t>(a.rank)]);
  std::vector<zmq::socket_t> push;
  for (int j : nb) {
    push.emplace_back(ctx, zmq::socket_type::push);
    push.back().set(zmq::sockopt::linger, 1000);
    push.back().set(zmq::sockopt::sndhwm, 4);
    push.back().connect(a.raw_eps[static_cast<std::size_t>(j)]);
  }
  RawReleases raw_rel;

  const bool chatty = a.rank == 0;
  std::uint64_t round = 0;
  // Phases must not overlap: a neighbour that starts the next phase early would send into our
  // memory and bandwidth while we still measure this one. An empty exchange with every neighbour
  // is enough: a peer sends in a phase only to neighbours that have left the previous one.
  auto barrier = [&] { paced.exchange_each(round++, {}, [](std::size_t, auto) {}); };
  const float w = 1.0f / static_cast<float>(deg + 1);
  for (std::size_t ci = 0; ci < codecs.size(); ++ci) {
    const auto& codec = *codecs[ci];
    for (std::size_t d : a.sizes) {
      const std::size_t wire_size = codec.wire_size(d);
      const double model_bytes = 4.0 * static_cast<double>(d);
      const std::uint64_t base = settled_rss();
      reset_peak();
      std::vector<float> x(d), y(d, 0.0f);
      std::vector<std::byte> wire(wire_size);
      fill(x, a.rank);
      if (std::getenv("GOSSIP_BENCH_DEBUG")) {
        fmt::print(stderr, "rank {} allocated: rss {:.2f} hwm {:.2f} model sizes\n", a.rank,
                   growth_over("VmRSS", base) / model_bytes,
                   growth_over("VmHWM", base) / model_bytes);
      }

      // 1. Full gossip rounds, memory-lean path: encode, exchange_each paced one message at a
      //    time, decode_accumulate each message as it arrives.
      if (chatty) {
        fmt::print(stderr,
                   "bench exchange: {} {} d={}: gossip rounds (encode, exchange_each, "
                   "decode)\n",
                   a.spec, codec.spec(), d);
      }
      std::vector<double> gossip_t, codec_t;
      for (int i = 0; i < a.gossip_rounds + 1; ++i) {
        const auto t0 = Clock::now();
        const std::size_t len =
            codec.encode(x, {7, static_cast<std::uint32_t>(a.rank), round}, wire);
        double decode_s = 0;
        paced.exchange_each(round++, std::span(wire).first(len),
                            [&](std::size_t, std::span<const std::byte> msg) {
                              const auto d0 = Clock::now();
                              codec.decode_accumulate(msg, w, y);
                              decode_s += seconds(d0, Clock::now());
                            });
        const auto t1 = Clock::now();
        if (std::getenv("GOSSIP_BENCH_DEBUG")) {
          fmt::print(stderr, "rank {} round {}: rss {:.2f} hwm {:.2f} model sizes\n", a.rank, i,
                     growth_over("VmRSS", base) / model_bytes,
                     growth_over("VmHWM", base) / model_bytes);
        }
        if (i == 0) continue;  // warm-up: connections, page faults
        gossip_t.push_back(seconds(t0, t1));
        codec_t.push_back(decode_s);
      }
      const double peak_gossip = growth_over("VmHWM", base);
      barrier();

      // 2. The transport alone, exchange() of the encoded message (eager, every view at once),
      //    against 3. raw ZeroMQ moving the same bytes: zero-copy PUSH to each neighbour, PULL
      //    one message from each, wait until libzmq released our buffer (the guarantee
      //    exchange() gives). Rounds alternate, each pair behind a barrier, so both see the same
      //    machine load; the first pair is a warm-up and measures exchange()'s memory peak.
      if (chatty) {
        fmt::print(stderr, "bench exchange: {} {} d={}: exchange() and raw zmq, {} rounds\n",
                   a.spec, codec.spec(), d, a.rounds);
      }
      const std::size_t len = codec.encode(x, {7, static_cast<std::uint32_t>(a.rank), 0}, wire);
      const auto msg = std::span(wire).first(len);
      auto exchange_round = [&](net::ZmqTransport& t) {
        const auto t0 = Clock::now();
        const auto& got = t.exchange(round++, msg);
        const auto t1 = Clock::now();
        if (got.size() != deg || (deg > 0 && got[0].size() != len)) {
          throw std::runtime_error("exchange returned the wrong messages");
        }
        return seconds(t0, t1);
      };
      auto raw_round = [&] {
        const auto t0 = Clock::now();
        for (auto& s : push) {
          {
            std::lock_guard lock(raw_rel.m);
            ++raw_rel.outstanding;
          }
          zmq::message_t m(msg.data(), msg.size(), &RawReleases::release, &raw_rel);
          s.send(m, zmq::send_flags::none);
        }
        for (std::size_t k = 0; k < deg; ++k) {
          zmq::pollitem_t item{pull.handle(), 0, ZMQ_POLLIN, 0};
          if (zmq::poll(&item, 1, std::chrono::milliseconds(300000)) == 0) {
            throw std::runtime_error("raw zmq: no message within 300 s");
          }
          zmq::message_t m;
          if (!pull.recv(m) || m.size() != len) throw std::runtime_error("raw zmq: bad message");
        }
        raw_rel.wait();
        return seconds(t0, Clock::now());
      };
      reset_peak();
      exchange_round(eager);
      exchange_round(eager);  // the second warm-up round sees neighbours already one round ahead
      const double peak_all = growth_over("VmHWM", base);
      barrier();
      raw_round();
      if (curve) {
        barrier();
        exchange_round(*curve);
        exchange_round(*curve);
      }
      std::vector<double> ex_t, raw_t, curve_t;
      for (int i = 0; i < a.rounds; ++i) {
        barrier();
        ex_t.push_back(exchange_round(eager));
        barrier();
        raw_t.push_back(raw_round());
        if (curve) {
          barrier();
          curve_t.push_back(exchange_round(*curve));
        }
      }
      barrier();

      nlohmann::json j{{"rank", a.rank},
                       {"codec", codec.spec()},
                       {"elements", d},
                       {"wire_bytes", len},
                       {"degree", deg},
                       {"round_seconds", median(ex_t)},
                       {"raw_zmq_seconds", median(raw_t)},
                       {"gossip_round_seconds", median(gossip_t)},
                       {"decode_seconds", median(codec_t)},
                       {"peak_model_sizes", peak_gossip / model_bytes},
                       {"peak_model_sizes_all_views", peak_all / model_bytes}};
      if (curve) j["curve_round_seconds"] = median(curve_t);
      fmt::print("{}\n", j.dump());
      std::fflush(stdout);
    }
  }
  return 0;
}

// ---------------------------------------------------------------- parent

struct Row {
  std::string topology, codec;
  std::size_t elements = 0, wire_bytes = 0, degree = 0;
  double round_s = 0, raw_s = 0, gossip_s = 0, decode_s = 0, peak = 0, peak_all = 0;
  std::optional<double> curve_s;  // --curve
};

std::vector<Row> run_topology(const std::string& spec, const std::vector<std::string>& codecs,
                              const std::vector<std::size_t>& sizes, int rounds, double timeout_s,
                              bool with_curve) {
  const int n = topology::parse_spec(spec).peers();
  std::vector<std::string> eager, paced, raw, curve;
  for (int r = 0; r < n; ++r) {
    eager.push_back(fmt::format("tcp://127.0.0.1:{}", free_tcp_port()));
    paced.push_back(fmt::format("tcp://127.0.0.1:{}", free_tcp_port()));
    raw.push_back(fmt::format("tcp://127.0.0.1:{}", free_tcp_port()));
    if (with_curve) curve.push_back(fmt::format("tcp://127.0.0.1:{}", free_tcp_port()));
  }
  // Throwaway key pairs, one per peer, handed to the children in their environment.
  std::vector<std::string> secrets;
  for (int r = 0; with_curve && r < n; ++r)
    secrets.push_back(topology::key_hex(net::generate_key_pair().secret_key));
  if (with_curve)
    ::setenv("GOSSIP_BENCH_CURVE_SECRETS", fmt::format("{}", fmt::join(secrets, ",")).c_str(), 1);
  std::string dir_t = (fs::temp_directory_path() / "gossip-bench-XXXXXX").string();
  if (!mkdtemp(dir_t.data())) throw std::runtime_error("mkdtemp failed");
  const fs::path dir = dir_t;
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::vector<pid_t> pids;
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> args{self,
                                  "bench",
                                  "exchange-peer",
                                  "--rank",
                                  std::to_string(r),
                                  "--topology",
                                  spec,
                                  "--eager",
                                  fmt::format("{}", fmt::join(eager, " ")),
                                  "--paced",
                                  fmt::format("{}", fmt::join(paced, " ")),
                                  "--raw",
                                  fmt::format("{}", fmt::join(raw, " ")),
                                  "--rounds",
                                  std::to_string(rounds),
                                  "--timeout",
                                  std::to_string(timeout_s)};
    if (with_curve)
      args.insert(args.end(), {"--curve-endpoints", fmt::format("{}", fmt::join(curve, " "))});
    for (const auto& c : codecs) args.insert(args.end(), {"--codec", c});
    for (auto d : sizes) args.insert(args.end(), {"--size", std::to_string(d)});
    std::vector<char*> cargs;
    for (auto& s : args) cargs.push_back(s.data());
    cargs.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const auto out = (dir / fmt::format("rank{}.jsonl", r)).string();
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, self.c_str(), &fa, nullptr, cargs.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error(fmt::format("cannot start peer {}: error {}", r, rc));
    pids.push_back(pid);
  }
  // Wait for all; the first failure stops the rest (they would only time out).
  std::string failure;
  std::size_t left = pids.size();
  const auto t0 = Clock::now();
  const double limit = timeout_s * 4 + 600;
  while (left > 0) {
    for (int r = 0; r < n; ++r) {
      pid_t& p = pids[static_cast<std::size_t>(r)];
      if (p <= 0) continue;
      int st = 0;
      if (waitpid(p, &st, WNOHANG) == p) {
        p = -1;
        --left;
        const bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (!ok && failure.empty()) {
          failure = fmt::format("peer {} of {} exited with {}", r, spec,
                                WIFEXITED(st) ? fmt::format("status {}", WEXITSTATUS(st))
                                              : fmt::format("signal {}", WTERMSIG(st)));
          for (pid_t q : pids) {
            if (q > 0) kill(q, SIGTERM);
          }
        }
      }
    }
    if (left > 0 && seconds(t0, Clock::now()) > limit && failure.empty()) {
      failure = fmt::format("{} did not finish within {} s", spec, limit);
      for (pid_t q : pids) {
        if (q > 0) kill(q, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::unsetenv("GOSSIP_BENCH_CURVE_SECRETS");
  std::map<std::pair<std::string, std::size_t>, Row> rows;
  std::vector<std::pair<std::string, std::size_t>> order;
  for (int r = 0; r < n && failure.empty(); ++r) {
    std::ifstream f(dir / fmt::format("rank{}.jsonl", r));
    std::string line;
    while (std::getline(f, line)) {
      const auto j = nlohmann::json::parse(line);
      const std::pair<std::string, std::size_t> key{j.at("codec").get<std::string>(),
                                                    j.at("elements").get<std::size_t>()};
      auto [it, fresh] = rows.try_emplace(key);
      Row& row = it->second;
      if (fresh) order.push_back(key);
      row.topology = spec;
      row.codec = key.first;
      row.elements = key.second;
      row.wire_bytes = j.at("wire_bytes");
      row.degree = std::max<std::size_t>(row.degree, j.at("degree").get<std::size_t>());
      // Rounds are bulk-synchronous: the slowest peer's median is the round time.
      row.round_s = std::max(row.round_s, j.at("round_seconds").get<double>());
      row.raw_s = std::max(row.raw_s, j.at("raw_zmq_seconds").get<double>());
      row.gossip_s = std::max(row.gossip_s, j.at("gossip_round_seconds").get<double>());
      row.decode_s = std::max(row.decode_s, j.at("decode_seconds").get<double>());
      row.peak = std::max(row.peak, j.at("peak_model_sizes").get<double>());
      row.peak_all = std::max(row.peak_all, j.at("peak_model_sizes_all_views").get<double>());
      if (j.contains("curve_round_seconds"))
        row.curve_s =
            std::max(row.curve_s.value_or(0.0), j.at("curve_round_seconds").get<double>());
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!failure.empty()) throw std::runtime_error("bench exchange: " + failure);
  std::vector<Row> out;
  for (const auto& k : order) out.push_back(rows.at(k));
  return out;
}

}  // namespace

void add_bench_exchange(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "exchange",
      "One gossip round between peers in separate processes on loopback, beside raw ZeroMQ");
  struct Opts {
    std::vector<std::string> topologies;
    std::vector<std::string> codecs;
    std::vector<std::size_t> sizes;
    int rounds = 5;
    double timeout = 300;
    bool json = false;
    bool curve = false;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("--topology", opts->topologies, "Topologies to run (default: ring:4 complete:4)");
  cmd->add_option("--codec", opts->codecs,
                  "Codec specs (default: identity qsgd:s=3,bucket=512 topk:ratio=0.01)");
  // At least one float (an empty message has no rate); at most 2^30 (4 GiB per message).
  cmd->add_option("--size", opts->sizes, "Model sizes in floats (default: 1M 16M 64M)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  cmd->add_option("--rounds", opts->rounds, "Timed rounds per row (median; plus one warm-up)")
      ->check(CLI::Range(1, 1000));
  // The run config's range for transport.timeout_s: whole milliseconds that fit the transport.
  cmd->add_option("--timeout", opts->timeout, "Transport timeout in seconds")
      ->check(CLI::Validator(
          [](std::string& v) {
            const double t = std::strtod(v.c_str(), nullptr);
            return t >= 0.001 && t <= 1e6 ? std::string()
                                          : "Value " + v + " not in range 0.001 to 1e6 seconds";
          },
          "SECONDS in [0.001, 1e6]"));
  cmd->add_flag("--json", opts->json, "One JSON object per row on stdout");
  cmd->add_flag("--curve", opts->curve,
                "Also time exchange() over CURVE links (throwaway keys made in memory): columns "
                "'curve s' and 'curve/plain'");
  cmd->callback([opts] {
    auto topologies = opts->topologies;
    if (topologies.empty()) topologies = {"ring:4", "complete:4"};
    auto codecs = opts->codecs;
    if (codecs.empty()) codecs = {"identity", "qsgd:s=3,bucket=512", "topk:ratio=0.01"};
    auto sizes = opts->sizes;
    if (sizes.empty()) sizes = {1u << 20, 1u << 24, 1u << 26};
    for (const auto& c : codecs) (void)kernels::make_codec(c);  // bad specs fail before forking
    // The raw-socket baseline pushes to every neighbour every round: a static graph's exchange.
    for (const auto& t : topologies)
      if (topology::time_varying_kind(topology::parse_spec(t).kind))
        throw std::invalid_argument(fmt::format(
            "bench exchange: {} is time-varying (one peer per round); the benchmark compares a "
            "static graph's exchange with raw sockets",
            t));
    std::vector<Row> rows;
    for (const auto& t : topologies) {
      fmt::print(stderr, "bench exchange: {} ({} codecs x {} sizes, {} rounds each)\n", t,
                 codecs.size(), sizes.size(), opts->rounds);
      auto part = run_topology(t, codecs, sizes, opts->rounds, opts->timeout, opts->curve);
      rows.insert(rows.end(), part.begin(), part.end());
    }
    if (opts->json) {
      for (const Row& r : rows) {
        nlohmann::json j{{"topology", r.topology},
                         {"degree", r.degree},
                         {"codec", r.codec},
                         {"elements", r.elements},
                         {"wire_bytes", r.wire_bytes},
                         {"bytes_on_wire", r.degree * (r.wire_bytes + net::kFrameHeaderSize)},
                         {"round_seconds", r.round_s},
                         {"raw_zmq_seconds", r.raw_s},
                         {"ratio", r.raw_s > 0 ? r.round_s / r.raw_s : 0.0},
                         {"gossip_round_seconds", r.gossip_s},
                         {"decode_seconds", r.decode_s},
                         {"peak_model_sizes", r.peak},
                         {"peak_model_sizes_all_views", r.peak_all}};
        if (r.curve_s) {
          j["curve_round_seconds"] = *r.curve_s;
          j["curve_ratio"] = r.round_s > 0 ? *r.curve_s / r.round_s : 0.0;
        }
        fmt::print("{}\n", j.dump());
      }
      return;
    }
    fmt::print("{:<11} {:<28} {:>9} {:>12} {:>10} {:>10} {:>6} {:>10} {:>7} {:>7}", "topology",
               "codec", "elements", "wire bytes", "round s", "raw zmq s", "ratio", "gossip s",
               "peak", "peak*");
    fmt::print("{}\n", opts->curve ? fmt::format(" {:>10} {:>11}", "curve s", "curve/plain") : "");
    for (const Row& r : rows) {
      fmt::print(
          "{:<11} {:<28} {:>9} {:>12} {:>10.4f} {:>10.4f} {:>6.2f} {:>10.4f} {:>7.2f} {:>7.2f}",
          r.topology, r.codec, r.elements, r.wire_bytes, r.round_s, r.raw_s,
          r.raw_s > 0 ? r.round_s / r.raw_s : 0.0, r.gossip_s, r.peak, r.peak_all);
      fmt::print("{}\n", r.curve_s ? fmt::format(" {:>10.4f} {:>11.2f}", *r.curve_s,
                                                 r.round_s > 0 ? *r.curve_s / r.round_s : 0.0)
                                   : "");
    }
    fmt::print(
        "peak: VmHWM growth in model sizes (4 x elements bytes) during full gossip rounds "
        "(exchange_each, receive window 1);\npeak*: the same for exchange() returning "
        "every neighbour's message at once.\n");
    if (opts->curve)
      fmt::print(
          "curve s: exchange() over CURVE links (encrypted, keys checked), timed in turn with "
          "round s;\ncurve/plain: curve s / round s.\n");
  });

  auto* peer = bench.add_subcommand("exchange-peer", "internal: one peer of bench exchange");
  peer->group("");  // hidden
  auto a = std::make_shared<PeerArgs>();
  peer->add_option("--rank", a->rank)->required();
  peer->add_option("--topology", a->spec)->required();
  peer->add_option("--eager", a->eager_eps)->required()->delimiter(' ');
  peer->add_option("--paced", a->paced_eps)->required()->delimiter(' ');
  peer->add_option("--raw", a->raw_eps)->required()->delimiter(' ');
  peer->add_option("--curve-endpoints", a->curve_eps)->delimiter(' ');
  peer->add_option("--codec", a->codecs)->required();
  peer->add_option("--size", a->sizes)->required();
  peer->add_option("--rounds", a->rounds);
  peer->add_option("--timeout", a->timeout_s);
  peer->callback([a] {
    const int rc = run_peer(*a);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace gossip::cli
