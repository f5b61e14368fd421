// Peers that leave (transport.on_peer_loss = continue, docs/transport.md "Peers that leave"): a
// peer stops after a fixed round and its transport goes away (the test hook: its thread simply
// ends), the others find it silent, agree on the round r* from which it is gone and mix with
// Metropolis-Hastings weights on the graph left.

#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "algorithm_harness.hpp"
#include "gossip/algorithms/registry.hpp"
#include "gossip/curve_keys.hpp"
#include "gossip/frame.hpp"
#include "gossip/zmq_transport.hpp"
#include "topology/weights.hpp"

namespace ga = gossip::algorithms;
namespace gt = gossip::algorithms::testing;
namespace gn = gossip::net;
namespace gtop = gossip::topology;

namespace {

gn::TransportOptions loss_options(gn::PeerLoss mode = gn::PeerLoss::continue_run) {
  gn::TransportOptions o;
  o.on_peer_loss = mode;
  // Short enough for a test, long enough that a busy machine does not lose a live peer: a
  // waiting peer says it is alive every quarter timeout.
  o.timeout = std::chrono::milliseconds(1500);
  o.connect_timeout = std::chrono::milliseconds(20000);
  o.linger = std::chrono::milliseconds(100);  // a message queued for the lost peer
  return o;
}

using MakeTransport = std::function<std::unique_ptr<gn::Transport>(int rank)>;
// Called after each step of a peer: (rank, rounds done, algorithm).
using Observe = std::function<void(int, std::uint64_t, ga::Algorithm&)>;

struct LossRun {
  std::vector<std::vector<float>> models;  // final, per rank; the lost peer's when it left
  std::vector<std::string> errors;         // per rank: what its last step threw, "" if none
  std::vector<gn::Departure> departures;   // as rank 0 (or 1 when 0 is lost) knew them
  std::uint64_t rejoined_at = 0;           // with a rejoin: the round the lost peer came back
};

// A rejoin of the lost peer: how its new transport is made (TransportOptions::rejoin), and what
// it does to its algorithm once it took its donor's state (before its first step).
struct Rejoin {
  MakeTransport make;
  std::function<void(int, ga::Algorithm&)> adopted;
};

// The state a peer sends as donor, as the runtime does (PeerTrainer::run): at the start of the
// round, before its step.
void send_states(gn::Transport& transport, const ga::Algorithm& algo, std::uint64_t round) {
  for (int k : transport.state_wanted(round)) {
    std::ostringstream state;
    algo.save_for_peer(state);
    const std::string bytes = std::move(state).str();
    transport.send_state(k, round, std::as_bytes(std::span(bytes.data(), bytes.size())));
  }
}

// A further peer that leaves for good after `after` rounds.
struct Leave {
  int rank;
  std::uint64_t after;
};

// Every peer of `topo` starts from init(rank) (zero gradient unless `grad`), runs `rounds`
// rounds; peer `lost` only `leave_after`, and then, with `rejoin`, restarts (a new transport and
// algorithm), takes a neighbour's state and runs from there to `rounds`; the peers of `also`
// leave after their rounds and do not come back.
LossRun run_with_loss(const ga::AlgorithmConfig& cfg, const gtop::Topology& topo,
                      const MakeTransport& make, int lost, std::uint64_t leave_after,
                      std::uint64_t rounds, const std::function<std::vector<float>(int)>& init,
                      const gt::PeerGradient& grad = {}, const Observe& observe = {},
                      const Rejoin& rejoin = {}, const std::vector<Leave>& also = {}) {
  const int n = topo.size();
  LossRun out;
  out.models.resize(static_cast<std::size_t>(n));
  out.errors.resize(static_cast<std::size_t>(n));
  const auto leaves_after = [&](int r) {
    if (r == lost) return leave_after;
    for (const Leave& l : also)
      if (l.rank == r) return l.after;
    return rounds;
  };
  int witness = 0;
  while (witness == lost || leaves_after(witness) < rounds) ++witness;
  const std::vector<float> x0 = init(0);
  gt::run_peers(n, [&](int r) {
    auto transport = make(r);
    auto algo = ga::make_algorithm(cfg, *transport, topo, x0);
    const auto mine = init(r);
    std::copy(mine.begin(), mine.end(), algo->mutable_params().begin());
    std::uint64_t t = 0;
    std::uint64_t until = leaves_after(r);
    try {
      for (;; ++t) {
        if (t == until && r == lost && rejoin.make && until == leave_after) {
          // The restarted process: nothing of the old one survives.
          algo.reset();
          transport.reset();
          transport = rejoin.make(r);
          algo = ga::make_algorithm(cfg, *transport, topo, x0);
          const gn::JoinState st = transport->receive_state();
          std::istringstream in(
              std::string(reinterpret_cast<const char*>(st.bytes.data()), st.bytes.size()));
          algo->adopt(in);
          REQUIRE(algo->round() == st.round);
          out.rejoined_at = t = st.round;
          if (rejoin.adopted) rejoin.adopted(r, *algo);
          until = rounds;
        }
        if (t >= until) break;
        send_states(*transport, *algo, t);
        if (grad) {
          algo->step([&](std::span<const float> x, std::span<float> g) { grad(r, x, g); });
        } else {
          algo->step([](std::span<const float>, std::span<float> g) {
            std::fill(g.begin(), g.end(), 0.0f);
          });
        }
        if (observe) observe(r, t + 1, *algo);
      }
    } catch (const std::exception& e) {
      out.errors[static_cast<std::size_t>(r)] = e.what();
    }
    const auto p = algo->params();
    out.models[static_cast<std::size_t>(r)].assign(p.begin(), p.end());
    if (r == witness) {
      const auto d = transport->departures();
      out.departures.assign(d.begin(), d.end());
    }
  });
  return out;
}

MakeTransport inproc_on(std::shared_ptr<gn::InprocHub> hub, gn::TransportOptions options) {
  return [hub, options](int r) { return std::make_unique<gn::InprocTransport>(hub, r, options); };
}

MakeTransport inproc(const gtop::Topology& topo, gn::TransportOptions options) {
  return inproc_on(std::make_shared<gn::InprocHub>(topo), options);
}

// On one hub: the peers' transports, and the restarted peer's (TransportOptions::rejoin).
std::pair<MakeTransport, MakeTransport> inproc_with_rejoin(const gtop::Topology& topo) {
  auto hub = std::make_shared<gn::InprocHub>(topo);
  const auto options = loss_options();
  auto rejoining = options;
  rejoining.rejoin = true;
  return {inproc_on(hub, options), inproc_on(hub, rejoining)};
}

std::vector<float> random_model(int rank, std::size_t d) {
  std::mt19937 rng(static_cast<unsigned>(1000 + rank));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(d);
  for (float& v : x) v = u(rng) + static_cast<float>(rank);  // means far apart: a visible shift
  return x;
}

ga::AlgorithmConfig dpsgd() {
  ga::AlgorithmConfig c;
  c.name = "dpsgd";
  c.lr = 0.1f;
  return c;
}

// D-PSGD with the gradient on a worker thread: takes exchange()'s views (a lost neighbour's empty).
ga::AlgorithmConfig dpsgd_overlapped() {
  ga::AlgorithmConfig c = dpsgd();
  c.overlap_gradient = true;
  return c;
}

ga::AlgorithmConfig deepsqueeze() {
  ga::AlgorithmConfig c;
  c.name = "deepsqueeze";
  c.lr = 0.05f;
  c.consensus_step = 0.3f;
  c.codec = "qsgd:s=3,scaled=true";  // 2 bits a coordinate
  c.seed = 11;
  return c;
}

// The diameter of the graph without peer `lost`.
int diameter_without(const gtop::Topology& topo, int lost) {
  const auto left = topo.graph.without(std::vector<int>{lost});
  int diameter = 0;
  for (int r = 0; r < topo.size(); ++r)
    if (r != lost)
      for (int dist : left.distances_from(r)) diameter = std::max(diameter, dist);
  return diameter;
}

// The rows of W as the peers apply them: each peer starts from its unit vector e_i and resets
// its model to it after every round, so after a round of lossless D-PSGD without gradient x_i is
// row i of that round's W.
struct UnitRows {
  std::size_t n;
  std::vector<std::vector<std::vector<float>>> w;  // w[t][i][j]: W_ij of round t, as peer i did
  std::vector<std::vector<char>> stepped;          // stepped[t][i]: peer i did round t
  UnitRows(int peers, std::uint64_t rounds)
      : n(static_cast<std::size_t>(peers)),
        w(rounds, std::vector<std::vector<float>>(n, std::vector<float>(n, 0.0f))),
        stepped(rounds, std::vector<char>(n, 0)) {}
  std::vector<float> unit(int r) const {
    std::vector<float> e(n, 0.0f);
    e[static_cast<std::size_t>(r)] = 1.0f;
    return e;
  }
  void reset(int r, ga::Algorithm& algo) const {
    const auto e = unit(r);
    std::copy(e.begin(), e.end(), algo.mutable_params().begin());
  }
  Observe observe() {
    return [this](int r, std::uint64_t t, ga::Algorithm& algo) {
      algo.copy_params(w[t - 1][static_cast<std::size_t>(r)]);
      stepped[t - 1][static_cast<std::size_t>(r)] = 1;
      reset(r, algo);
    };
  }
};

// One departure, of `lost`, which rejoined at the agreed r_j; from there every peer mixes with
// the topology's W bit for bit (the float of W_ij, self weight included).
void check_one_rejoin(const LossRun& run, const UnitRows& rows, const gtop::Topology& topo,
                      int lost) {
  for (const auto& e : run.errors) CHECK(e == "");
  REQUIRE(run.departures.size() == 1);
  CHECK(run.departures[0].rank == lost);
  REQUIRE(run.departures[0].back.has_value());
  const std::uint64_t r_j = *run.departures[0].back;
  CHECK(run.rejoined_at == r_j);
  REQUIRE(r_j + 3 < rows.w.size());
  for (std::uint64_t t = r_j; t < rows.w.size(); ++t) {
    CAPTURE(t);
    for (int i = 0; i < topo.size(); ++i)
      for (int j = 0; j < topo.size(); ++j)
        CHECK(rows.w[t][static_cast<std::size_t>(i)][static_cast<std::size_t>(j)] ==
              static_cast<float>(topo.weight(i, j)));
  }
}

}  // namespace

TEST_CASE("after a loss W is symmetric, doubly stochastic, and Metropolis-Hastings from r* on") {
  for (const char* spec : {"ring:8", "torus:3x3", "erdos-renyi:8,p=0.5,seed=3"}) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const int n = topo.size(), lost = 2;
    const std::uint64_t leave_after = 3, rounds = 16;
    UnitRows rows(n, rounds);
    const auto& w = rows.w;
    const auto run = run_with_loss(
        dpsgd(), topo, inproc(topo, loss_options()), lost, leave_after, rounds,
        [&](int r) { return rows.unit(r); }, {}, rows.observe());
    for (const auto& e : run.errors) CHECK(e == "");
    REQUIRE(run.departures.size() == 1);
    CHECK(run.departures[0].rank == lost);
    // Found gone in round 3, the first it did not send; r* two exchanges past the diameter later.
    const auto left_graph = topo.graph.without(std::vector<int>{lost});
    const int diameter = diameter_without(topo, lost);
    const std::uint64_t r_star = leave_after + static_cast<std::uint64_t>(diameter) + 2;
    CHECK(run.departures[0].round == r_star);
    REQUIRE(r_star < rounds);
    const auto mh = gtop::mixing_weights(left_graph, gtop::Scheme::metropolis);
    for (std::uint64_t t = leave_after; t < rounds; ++t) {
      CAPTURE(t);
      for (int i = 0; i < n; ++i) {
        if (i == lost) continue;
        double row = 0.0, column = 0.0;
        for (int j = 0; j < n; ++j) {
          if (j == lost) continue;
          const auto I = static_cast<std::size_t>(i), J = static_cast<std::size_t>(j);
          row += w[t][I][J];
          column += w[t][J][I];
          CHECK(w[t][I][J] == w[t][J][I]);  // bit for bit: both ends compute the same weight
          CHECK(w[t][I][J] >= 0.0f);
          if (t >= r_star)
            CHECK(w[t][I][J] == doctest::Approx(gtop::row_weight(mh, i, j)).epsilon(1e-6));
          else
            CHECK(w[t][I][J] ==
                  doctest::Approx(topo.weight(i, j) + (i == j ? topo.weight(i, lost) : 0.0))
                      .epsilon(1e-6));
        }
        CHECK(row == doctest::Approx(1.0).epsilon(1e-6));
        CHECK(column == doctest::Approx(1.0).epsilon(1e-6));
        CHECK(w[t][static_cast<std::size_t>(i)][static_cast<std::size_t>(lost)] == 0.0f);
      }
    }
  }
}

TEST_CASE("a peer that restarts and rejoins: from r_j on every peer mixes with the original W") {
  // The unit-vector rows of the test above, with the lost peer restarted at once: its hello
  // reaches its neighbours around the round it left, so they take it for gone there (r* as
  // above) and agree to take it back about an exchange after r*. Its donor (the lowest
  // neighbour present) sends it the state of r_j; it then resets its model to its unit vector as
  // the others do every round.
  for (const char* spec : {"ring:8", "torus:3x3"}) {
    CAPTURE(spec);
    const auto topo = gt::make_topo(spec);
    const int n = topo.size(), lost = 2;
    const std::uint64_t leave_after = 3, rounds = 20;
    UnitRows rows(n, rounds);
    const auto& w = rows.w;
    const auto [peers, restarted] = inproc_with_rejoin(topo);
    std::vector<float> adopted;
    const auto run = run_with_loss(dpsgd(), topo, peers, lost, leave_after, rounds,
                                   [&](int r) { return rows.unit(r); }, {}, rows.observe(),
                                   {restarted, [&](int r, ga::Algorithm& algo) {
                                      adopted.resize(rows.n);
                                      algo.copy_params(adopted);
                                      rows.reset(r, algo);
                                    }});
    for (const auto& e : run.errors) CHECK(e == "");
    REQUIRE(run.departures.size() == 1);
    const auto left_graph = topo.graph.without(std::vector<int>{lost});
    const int diameter = diameter_without(topo, lost);
    // A neighbour still finishing the round before (its other neighbours' messages) takes the
    // rejoin hello there: r* may come one round sooner than by a timeout.
    const std::uint64_t r_star = run.departures[0].round;
    CHECK(run.departures[0].rank == lost);
    CHECK(r_star <= leave_after + static_cast<std::uint64_t>(diameter) + 2);
    CHECK(r_star + 1 >= leave_after + static_cast<std::uint64_t>(diameter) + 2);
    REQUIRE(run.departures[0].back.has_value());
    const std::uint64_t r_j = *run.departures[0].back;
    // Proposed (D + 2) exchanges after the round the rejoin hello came in (and after r*): the
    // smallest proposal.
    CHECK(r_j > r_star);
    CHECK(r_j <= leave_after + static_cast<std::uint64_t>(diameter) + 2 + 1);
    CHECK(run.rejoined_at == r_j);
    REQUIRE(r_j + 3 < rounds);
    // The donor's model of the start of r_j: its own unit vector.
    int donor = n;
    for (int j : topo.graph.neighbors(lost)) donor = std::min(donor, j);
    CHECK(adopted == rows.unit(donor));
    const auto mh = gtop::mixing_weights(left_graph, gtop::Scheme::metropolis);
    for (std::uint64_t t = leave_after; t < rounds; ++t) {
      CAPTURE(t);
      for (int i = 0; i < n; ++i) {
        if (i == lost && t < r_j) continue;
        for (int j = 0; j < n; ++j) {
          const auto I = static_cast<std::size_t>(i), J = static_cast<std::size_t>(j);
          if (t >= r_j) {
            // Bit for bit the topology's W: the float of W_ij, self weight W_ii included.
            CAPTURE(i);
            CAPTURE(j);
            CHECK(w[t][I][J] == static_cast<float>(topo.weight(i, j)));
          } else if (t >= r_star && j != lost) {
            CHECK(w[t][I][J] == doctest::Approx(gtop::row_weight(mh, i, j)).epsilon(1e-6));
          } else if (j == lost) {
            CHECK(w[t][I][J] == 0.0f);
          }
        }
      }
    }
  }
}

TEST_CASE(
    "a restarted peer whose hello reaches one neighbour only after that neighbour took it "
    "back: one rejoin, W back bit for bit") {
  // The restarted process's connection to neighbour 3 is slow to come up (its frames on that
  // link wait in the hub): 3 learns of the join from 1's notices and takes 2 back at r_j before
  // 2's rejoin hello reaches it. That late hello is the process already taken back, not a new
  // restart; and the frames 3 sends to the new process before it has the hello are not lost
  // (3 greets the new process as soon as it learns of the join). Two rounds later peer 0 gets a
  // late leave notice of that departure (as from a neighbour that proposed a later r*): a second
  // notice of a departure that is over, not a new loss; so does the new process, for which it is
  // the departure of its predecessor (stale), not its own.
  const auto topo = gt::make_topo("ring:6");
  const int n = topo.size(), lost = 2, slow = 3;
  const std::uint64_t leave_after = 3, rounds = 24;
  UnitRows rows(n, rounds);
  auto hub = std::make_shared<gn::InprocHub>(topo);
  std::atomic<bool> armed{false}, released{false}, late_notice{false};
  std::uint64_t taken_back_at = 0;
  hub->watch([&](int to, int from, std::span<const std::byte> header) {
    // The first exchange or credit of 3 to 2 after 2's last round: 3 took 2 back.
    if (!armed || late_notice || to != lost || from != slow) return;
    const auto h = gn::decode_header(header).header;
    if (!h || h->round <= leave_after ||
        (h->kind != gn::FrameKind::exchange && h->kind != gn::FrameKind::credit))
      return;
    if (!released) {
      released = true;
      taken_back_at = h->round;
      hub->release(lost, slow);
    } else if (h->round == taken_back_at + 2) {
      late_notice = true;
      const auto c = gn::encode_control({gn::ControlType::leave, lost, h->round + 5, 0});
      gn::FrameHeader f;
      f.kind = gn::FrameKind::control;
      f.sender = 1;
      f.receiver = 0;
      f.payload_length = c.size();
      f.session = gn::session_hash(topo.hash(), 0);
      const auto fb = gn::encode_header(f);
      hub->post_raw(0, 1, {fb.begin(), fb.end()}, {c.begin(), c.end()});
      f.receiver = lost;  // and to the new process: a notice of its predecessor's departure
      const auto fb2 = gn::encode_header(f);
      hub->post_raw(lost, 1, {fb2.begin(), fb2.end()}, {c.begin(), c.end()});
    }
  });
  auto rejoining = loss_options();
  rejoining.rejoin = true;
  const MakeTransport restarted = [&](int r) {
    hub->hold(r, slow);
    armed = true;
    return std::make_unique<gn::InprocTransport>(hub, r, rejoining);
  };
  const auto run =
      run_with_loss(dpsgd(), topo, inproc_on(hub, loss_options()), lost, leave_after, rounds,
                    [&](int r) { return rows.unit(r); }, {}, rows.observe(),
                    {restarted, [&](int r, ga::Algorithm& algo) { rows.reset(r, algo); }});
  CHECK(released);  // else the case did not happen
  CHECK(late_notice);
  check_one_rejoin(run, rows, topo, lost);
}

TEST_CASE("over ZeroMQ with CURVE a restarted peer rejoins with its key; W back bit for bit") {
  // Every link encrypted and authenticated (docs/transport.md, "CURVE"): the restarted process
  // has the same key pair, its new connections pass the ZAP handler under its own key (not the
  // dead process's connections), and it mixes back in as in process.
  const auto topo = [] {
    auto s = gtop::parse_spec("ring:6");
    static int case_id = 0;
    s.endpoint = fmt::format("ipc:///tmp/gossip-loss-curve-{}-{}-{{rank}}", ::getpid(), case_id++);
    return gtop::make_topology(s);
  }();
  auto keyed = topo;
  std::vector<gn::SecretKey> secrets;
  for (int r = 0; r < keyed.size(); ++r) {
    const auto pair = gn::generate_key_pair();
    keyed.public_keys.push_back(pair.public_key);
    secrets.push_back(pair.secret_key);
  }
  const int n = keyed.size(), lost = 2;
  // The others go on once they find the peer silent; a new process with CURVE may take longer
  // than 1.5 s to connect on a loaded machine, so 5 s: its hello comes first (it restarted).
  const std::uint64_t leave_after = 3, rounds = 30;
  UnitRows rows(n, rounds);
  const auto make = [&](bool rejoin) {
    return [&, rejoin](int r) {
      auto o = loss_options();
      o.timeout = std::chrono::milliseconds(5000);
      o.rejoin = rejoin;
      o.curve_secret_key = secrets[static_cast<std::size_t>(r)];
      return std::make_unique<gn::ZmqTransport>(keyed, r, o);
    };
  };
  const auto run = run_with_loss(
      dpsgd(), keyed, make(false), lost, leave_after, rounds, [&](int r) { return rows.unit(r); },
      {}, rows.observe(), {make(true), [&](int r, ga::Algorithm& algo) { rows.reset(r, algo); }});
  for (const auto& p : keyed.peers) {
    std::error_code ignored;
    std::filesystem::remove(p.endpoint.substr(6), ignored);
  }
  check_one_rejoin(run, rows, keyed, lost);
}

TEST_CASE(
    "a loss agreed on while a rejoin is: every round's W is symmetric and doubly stochastic") {
  // Peer 2 leaves after round 3 and restarts at once; peer 3, its neighbour (and on the ring the
  // peer through which the notices about 2 would travel), leaves for good a little later, so
  // the join notice for 2 and the leave notice for 3 are forwarded in the same rounds. Whatever
  // order they settle in, the peers that step in a round must mix with a W that is symmetric bit
  // for bit and doubly stochastic on them, and once both are agreed on, with Metropolis-Hastings
  // weights on the graph without 3 (2 back in it).
  for (const std::string spec : {"ring:8", "torus:3x3"}) {
    for (const std::uint64_t third_after : {3, 5, 8}) {
      CAPTURE(spec);
      CAPTURE(third_after);
      const auto topo = gt::make_topo(spec);
      const int n = topo.size(), lost = 2, gone = 3;
      const std::uint64_t leave_after = 3, rounds = 40;
      UnitRows rows(n, rounds);
      const auto& w = rows.w;
      const auto [peers, restarted] = inproc_with_rejoin(topo);
      const auto run = run_with_loss(
          dpsgd(), topo, peers, lost, leave_after, rounds, [&](int r) { return rows.unit(r); }, {},
          rows.observe(), {restarted, [&](int r, ga::Algorithm& algo) { rows.reset(r, algo); }},
          {{gone, third_after}});
      for (int r = 0; r < n; ++r) {
        CAPTURE(r);
        CHECK(run.errors[static_cast<std::size_t>(r)] == "");
      }
      REQUIRE(run.departures.size() == 2);
      std::uint64_t r_j = rounds, r_gone = rounds;
      for (const auto& d : run.departures) {
        if (d.rank == lost) {
          REQUIRE(d.back.has_value());
          r_j = *d.back;
        } else {
          CHECK(d.rank == gone);
          CHECK_FALSE(d.back.has_value());
          r_gone = d.round;
        }
      }
      CHECK(run.rejoined_at == r_j);
      REQUIRE(std::max(r_j, r_gone) + 3 < rounds);
      const auto mh = gtop::mixing_weights(topo.graph.without(std::vector<int>{gone}),
                                           gtop::Scheme::metropolis);
      for (std::uint64_t t = 0; t < rounds; ++t) {
        CAPTURE(t);
        const auto& in = rows.stepped[t];
        // Who stepped: everyone but 2 between its leaving and r_j, and 3 only before it left.
        CHECK(static_cast<bool>(in[lost]) == (t < leave_after || t >= r_j));
        CHECK(static_cast<bool>(in[gone]) == (t < third_after));
        for (int i = 0; i < n; ++i) {
          const auto I = static_cast<std::size_t>(i);
          if (!in[I]) continue;
          CAPTURE(i);
          double row = 0.0, column = 0.0;
          for (int j = 0; j < n; ++j) {
            const auto J = static_cast<std::size_t>(j);
            if (!in[J]) {
              CHECK(w[t][I][J] == 0.0f);
              continue;
            }
            row += w[t][I][J];
            column += w[t][J][I];
            CHECK(w[t][I][J] == w[t][J][I]);
            CHECK(w[t][I][J] >= 0.0f);
            if (t >= std::max(r_j, r_gone))
              CHECK(w[t][I][J] == doctest::Approx(gtop::row_weight(mh, i, j)).epsilon(1e-6));
          }
          CHECK(row == doctest::Approx(1.0).epsilon(1e-6));
          CHECK(column == doctest::Approx(1.0).epsilon(1e-6));
        }
      }
    }
  }
}

TEST_CASE("the mean of the remaining models moves by exactly (mean - x_k) / (n - 1) at the loss") {
  // No gradient: every round keeps the mean of the peers that mix (W doubly stochastic on them),
  // so the only change is the loss itself. Reference in float64 from the models at the loss;
  // tolerance 1e-5 relative to 1 + |mean| (16 rounds of float32 sums of values up to n), far
  // below the shift itself (checked).
  const std::size_t d = 64;
  for (const char* spec : {"ring:8", "torus:3x3"}) {
    for (const auto& cfg : {dpsgd(), dpsgd_overlapped(), deepsqueeze()}) {
      CAPTURE(spec);
      CAPTURE(cfg.name);
      CAPTURE(cfg.overlap_gradient);
      const auto topo = gt::make_topo(spec);
      const int n = topo.size(), lost = n - 1;  // the model furthest from the mean
      const std::uint64_t leave_after = 4, rounds = 20;
      std::vector<std::vector<float>> at_loss(static_cast<std::size_t>(n));
      const auto run = run_with_loss(
          cfg, topo, inproc(topo, loss_options()), lost, leave_after, rounds,
          [&](int r) { return random_model(r, d); }, {},
          [&](int r, std::uint64_t t, ga::Algorithm& algo) {
            if (t != leave_after) return;
            at_loss[static_cast<std::size_t>(r)].resize(d);
            algo.copy_params(at_loss[static_cast<std::size_t>(r)]);
          });
      for (const auto& e : run.errors) CHECK(e == "");
      REQUIRE(run.departures.size() == 1);
      REQUIRE(run.departures[0].round < rounds);
      double worst = 0.0, smallest_shift = 1e300;
      for (std::size_t c = 0; c < d; ++c) {
        double all = 0.0, left = 0.0;
        for (int r = 0; r < n; ++r) all += at_loss[static_cast<std::size_t>(r)][c];
        all /= n;
        for (int r = 0; r < n; ++r)
          if (r != lost) left += run.models[static_cast<std::size_t>(r)][c];
        left /= n - 1;
        const double shift = (all - at_loss[static_cast<std::size_t>(lost)][c]) / (n - 1);
        worst = std::max(worst, std::abs(left - (all + shift)) / (1.0 + std::abs(all)));
        smallest_shift = std::min(smallest_shift, std::abs(shift));
      }
      CHECK(worst < 1e-5);
      CHECK(smallest_shift > 1e-3);
    }
  }
}

TEST_CASE("a scheduled loss gives bit-identical models over ZeroMQ and in-process") {
  const std::size_t d = 333;
  for (const char* spec : {"ring:8", "torus:3x3"}) {
    CAPTURE(spec);
    const auto cfg = deepsqueeze();
    auto parsed = gtop::parse_spec(spec);
    static int case_id = 0;
    const auto dir = std::filesystem::temp_directory_path() /
                     fmt::format("gossip-peer-loss-{}-{}", ::getpid(), case_id++);
    std::filesystem::create_directories(dir);
    parsed.endpoint = fmt::format("ipc://{}/{{rank}}", dir.string());
    const auto topo = gtop::make_topology(parsed);
    const gt::DiagonalQuadratic problem(topo.size(), d, 31, 0.3f);
    const gt::PeerGradient grad = [&](int r, std::span<const float> x, std::span<float> g) {
      problem.gradient(r, x, g);
    };
    const auto init = [&](int r) { return random_model(r, d); };
    const int lost = 3;
    const auto a = run_with_loss(cfg, topo, inproc(topo, loss_options()), lost, 5, 20, init, grad);
    auto options = loss_options();
    // Asks for zero-copy sends of every payload: with continue the transport must copy them all
    // anyway, or a message queued for the lost peer would never be released.
    options.zero_copy_min_bytes = 0;
    const auto b = run_with_loss(
        cfg, topo, [&](int r) { return std::make_unique<gn::ZmqTransport>(topo, r, options); },
        lost, 5, 20, init, grad);
    std::filesystem::remove_all(dir);
    for (const auto& e : a.errors) CHECK(e == "");
    for (const auto& e : b.errors) CHECK(e == "");
    REQUIRE(a.departures.size() == 1);
    REQUIRE(b.departures.size() == 1);
    CHECK(a.departures[0].round == b.departures[0].round);
    for (int r = 0; r < topo.size(); ++r) {
      CAPTURE(r);
      const auto& x = a.models[static_cast<std::size_t>(r)];
      const auto& y = b.models[static_cast<std::size_t>(r)];
      REQUIRE(x.size() == y.size());
      CHECK(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("a loss that disconnects the graph stops every remaining peer, naming the components") {
  const auto topo = gt::make_topo("star:4");  // rank 0 is the hub
  const auto run = run_with_loss(dpsgd(), topo, inproc(topo, loss_options()), 0, 3, 10,
                                 [](int r) { return random_model(r, 8); });
  for (int r = 1; r < 4; ++r) {
    CAPTURE(r);
    CHECK(run.errors[static_cast<std::size_t>(r)].find(
              "without peer 0 the graph falls apart into 3 components: {1} {2} {3}") !=
          std::string::npos);
  }
}

TEST_CASE(
    "on_peer_loss = stop: a lost peer ends the run as before, and without a loss continue "
    "changes no bit") {
  const auto topo = gt::make_topo("ring:6");
  const auto init = [](int r) { return random_model(r, 16); };
  const auto stopped = run_with_loss(
      deepsqueeze(), topo, inproc(topo, loss_options(gn::PeerLoss::stop)), 4, 3, 10, init);
  for (int r : {3, 5})
    CHECK(stopped.errors[static_cast<std::size_t>(r)].find("no message from peer 4") !=
          std::string::npos);
  CHECK(stopped.departures.empty());
  // No loss: the two modes give the same bits (n = size: nobody leaves early).
  const auto a = run_with_loss(deepsqueeze(), topo, inproc(topo, loss_options(gn::PeerLoss::stop)),
                               6, 0, 12, init);
  const auto b = run_with_loss(deepsqueeze(), topo, inproc(topo, loss_options()), 6, 0, 12, init);
  for (int r = 0; r < 6; ++r) {
    CHECK(a.errors[static_cast<std::size_t>(r)] == "");
    CHECK(std::memcmp(a.models[static_cast<std::size_t>(r)].data(),
                      b.models[static_cast<std::size_t>(r)].data(), 16 * sizeof(float)) == 0);
  }
}

TEST_CASE("algorithms whose state cannot follow a changed W refuse on_peer_loss = continue") {
  const auto topo = gt::make_topo("ring:4");
  auto hub = std::make_shared<gn::InprocHub>(topo);
  gn::InprocTransport transport(hub, 0, loss_options());
  const std::vector<float> x0(4, 0.0f);
  for (const ga::AlgorithmInfo& a : ga::algorithm_registry()) {
    CAPTURE(a.name);
    ga::AlgorithmConfig c;
    c.name = std::string(a.name);
    c.codec = a.codecs == ga::CodecRule::any ? "qsgd:s=3" : "identity";
    if (c.name == "dga") c.delay = 1;
    if (a.peer_loss_refusal.empty()) {
      CHECK_NOTHROW(ga::make_algorithm(c, transport, topo, x0));
    } else {
      CHECK_THROWS_WITH_AS(ga::make_algorithm(c, transport, topo, x0),
                           doctest::Contains(std::string(a.peer_loss_refusal).c_str()),
                           std::invalid_argument);
    }
  }
  // The rows that must follow a change: the acceptance run needs DeepSqueeze.
  CHECK(ga::find_algorithm("dpsgd").peer_loss_refusal.empty());
  CHECK(ga::find_algorithm("deepsqueeze").peer_loss_refusal.empty());
  CHECK_FALSE(ga::find_algorithm("choco-sgd").peer_loss_refusal.empty());
}
