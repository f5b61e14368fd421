#pragma once
// The transport interface the algorithms are written against, once. Implementations: ZeroMQ
// between processes (zmq_transport.hpp) and in-process between threads (inproc_transport.hpp).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "gossip/drops.hpp"
#include "gossip/function_ref.hpp"

namespace gossip::net {

// A neighbour misbehaved or went silent. what() names the peer, its endpoint and the round.
class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The start-up handshake was cancelled (TransportOptions::cancelled): nothing was trained.
class TransportCancelled : public TransportError {
 public:
  using TransportError::TransportError;
};

struct TrafficCounters {
  std::uint64_t bytes_sent = 0;  // everything put on the wire, framing headers included
  std::uint64_t bytes_received = 0;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
};

class VirtualClock;

// A peer gone from the run (TransportOptions::on_peer_loss = continue_run): from round `round`
// (r*) on, every remaining peer mixes with Metropolis-Hastings weights on the graph without it.
// A peer that restarted and rejoined is back from round `back` on (the join round r_j), as
// process `returned` (Hello::instance). `episode` counts the departures of that rank before this
// one (a peer that rejoined and left again: 1), so a late notice of an earlier one is told apart.
struct Departure {
  int rank = -1;
  std::uint64_t round = 0;
  std::optional<std::uint64_t> back;
  std::uint64_t episode = 0;
  std::uint64_t returned = 0;
};
// The ranks absent from the mixing of `round`: gone from their r* on, until the round they are
// back (if any). Ascending.
std::vector<int> absent_at(std::span<const Departure> departures, std::uint64_t round);
// The ranks gone for good as far as these departures say (no join known), ascending.
std::vector<int> gone_for_good(std::span<const Departure> departures);
// True when every departure took effect by `round` (r* <= round), and every rejoin too (r_j <=
// round): then every remaining peer knows the same departures (a notice reaches every peer before
// its r*), and a ring over the peers present lines up. False while a loss or a rejoin is still
// being agreed on: a collective then would mix peers that count different members.
bool departures_settled(std::span<const Departure> departures, std::uint64_t round);

// A rejoining peer's start (Transport::receive_state): the round it begins with and the state its
// donor sent (the bytes the donor's caller passed to send_state).
struct JoinState {
  std::uint64_t round = 0;
  int donor = -1;
  std::vector<std::byte> bytes;
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The ranks this peer exchanges with (topology neighbours, self excluded), ascending: on a
  // static topology every round, on a time-varying one in some round of its schedule (the union
  // graph; send_to and receive_from say which round).
  virtual std::span<const int> neighbors() const = 0;
  // Whom exchange(round) sends to, and whose messages it returns (in this order), ascending. Both
  // are neighbors() on a static topology; on a time-varying one, round t's column and row of
  // W^(t) without this peer (one-peer exponential: one rank each).
  virtual std::span<const int> send_to(std::uint64_t round) const {
    static_cast<void>(round);
    return neighbors();
  }
  virtual std::span<const int> receive_from(std::uint64_t round) const {
    static_cast<void>(round);
    return neighbors();
  }
  // How errors name a peer: "peer 3", or with its endpoint where the transport knows it
  // ("peer 3 (tcp://127.0.0.1:29503)").
  virtual std::string peer_name(int rank) const { return "peer " + std::to_string(rank); }

  // Bulk-synchronous neighbour exchange of round `round`: sends `payload` to every rank of
  // send_to(round) and returns the payload of the same round of every rank of
  // receive_from(round), in that order (on a static topology: every neighbour, both ways). The
  // returned views stay valid until the next call to exchange() or ring_step(). A message of a
  // later round that arrives early is kept for that round; a duplicate, a stale round, a round
  // further ahead than its sender can be (transport.md) or a frame from a rank that does not
  // send to us in its round is dropped and counted (drops()); a neighbour whose message does not
  // come within the timeout is a TransportError naming it. Rounds of successive calls must be
  // consecutive (t, then t + 1): a neighbour may be one call ahead (on a time-varying topology,
  // up to a period).
  virtual const std::vector<std::span<const std::byte>>& exchange(
      std::uint64_t round, std::span<const std::byte> payload) = 0;

  // One step of a ring collective over all ranks in rank order: sends `send` to rank+1 (mod n)
  // and receives the message of rank-1 (mod n) for the same (round, step) into `recv`, whose
  // size must match the sender's. Used by the all-reduce baseline. Ranks in departures() are
  // left out of the ring (the next and previous remaining ranks instead; the caller makes sure
  // every member knows the same departures, docs/transport.md "Peers that leave").
  virtual void ring_step(std::uint64_t round, std::uint32_t step, std::span<const std::byte> send,
                         std::span<std::byte> recv) = 0;
  // With on_peer_loss = continue_run: true when the last ring_step returned without its message
  // because this peer learned of a departure while it waited (`recv` is left as it was). The ring
  // collective is then void here: a member it counted on is gone, and the others' rings stall on
  // the missing step until they hear of the departure too.
  virtual bool ring_cut() const { return false; }

  // Streaming form of exchange() (added by the transport; exchange() is unchanged): calls
  // on_message(k, bytes) once for each rank receive_from(round)[k], in that order (messages
  // that arrive early wait, so float sums in the callback are reproducible), and lets go of
  // that message when the call returns. A caller that decodes inside the callback holds one
  // received message at a time instead of one per neighbour; with
  // TransportOptions::receive_window the senders are also paced, so peak memory does not grow
  // with the degree. Same round rules and errors as exchange(). The default forwards to it.
  using MessageFn = FunctionRef<void(std::size_t, std::span<const std::byte>)>;
  virtual void exchange_each(std::uint64_t round, std::span<const std::byte> payload,
                             const MessageFn& on_message) {
    const auto& got = exchange(round, payload);
    for (std::size_t k = 0; k < got.size(); ++k) on_message(k, got[k]);
  }

  // Direct messages between every pair of peers, each peer its own payload (centralized
  // algorithms: a reduce-scatter and an all-gather in one hop each instead of n − 1 ring steps;
  // docs/transport.md "Direct messages"). Needs TransportOptions::all_links. Messages are named
  // by (round, lane); in each lane the rounds of posts grow, and so do the rounds of collects.
  //
  // post(): sends payload_for(j) to every rank j ≠ rank() as its message of (round, lane) and
  // returns once the backend has let go of the payloads, without waiting for any message.
  using PayloadFor = FunctionRef<std::span<const std::byte>(int)>;
  virtual void post(std::uint64_t round, std::uint32_t lane, const PayloadFor& payload_for) {
    (void)round;
    (void)lane;
    (void)payload_for;
    throw std::invalid_argument("this transport has no direct messages (post)");
  }
  // collect(): waits for the message of (round, lane) of every rank j ≠ rank() and calls
  // on_message(j, bytes) for each, in the order rank() + 1, rank() + 2, … (mod n), whatever order
  // they arrived in (a sum in the callback folds in ring order, reproducibly). A message posted
  // rounds earlier has travelled meanwhile: the call waits only for what has not arrived. A
  // collect may come up to TransportOptions::direct_lag rounds after the post of its round.
  virtual void collect(std::uint64_t round, std::uint32_t lane, const MessageFn& on_message) {
    (void)round;
    (void)lane;
    (void)on_message;
    throw std::invalid_argument("this transport has no direct messages (collect)");
  }

  virtual const TrafficCounters& counters() const = 0;
  // Received frames that failed a check and were thrown away instead of ending the run, by
  // reason and by connection (drops.hpp). The default, for transports that never drop: none.
  virtual const DropCounters& drops() const {
    static const DropCounters none;
    return none;
  }

  // The peer's virtual clock when the transport runs in virtual time
  // (TransportOptions::virtual_time), else null: the runtime reads the time of the run from it,
  // adds a fixed compute time per round, and pauses it around evaluations.
  virtual VirtualClock* virtual_clock() const { return nullptr; }

  // Stop agreement, so that every peer of a run stops before the same round (a clean Ctrl-C).
  // request_stop(r): this peer will stop before round r; the value rides on every later exchange
  // and ring frame, and a peer adopts the smallest value it hears. A request made in round t with
  // r >= t + diameter + 2 reaches every peer before any of them passes r.
  virtual void request_stop(std::uint64_t before_round) = 0;
  // The smallest stop round requested here or heard from a neighbour, if any.
  virtual std::optional<std::uint64_t> stop_round() const = 0;

  // Exchanges come every exchange_interval() round numbers (TransportOptions::exchange_interval:
  // an algorithm with local steps H exchanges in rounds H − 1, 2H − 1, ...); 1 for transports
  // that do not know. Algorithm checks it equals its local steps.
  virtual std::uint64_t exchange_interval() const { return 1; }

  // Peer loss (TransportOptions::on_peer_loss, docs/transport.md "Peers that leave").
  // Whether a lost neighbour is mixed out instead of ending the run.
  virtual bool continues_after_peer_loss() const { return false; }
  // The departures this peer knows of, in the order it learned them; rounds are the agreed r*,
  // at least two exchanges after the round in which the peer learned of it. From the call in which
  // a peer learns of a departure, send_to and receive_from leave the rank out (the rounds before
  // r* mix with the old weights, the lost neighbour's weight added to the peer's own); an exchange
  // call that is waiting when it learns that a neighbour is gone skips that neighbour's message:
  // exchange_each does not call on_message for it, exchange() returns an empty view for it.
  // A loss that leaves the remaining graph disconnected is a TransportError naming the components.
  virtual std::span<const Departure> departures() const { return {}; }

  // Rejoin (docs/transport.md "Peers that come back"). A peer that restarted (made with
  // TransportOptions::rejoin) asks its neighbours to take it back; they agree on a round r_j from
  // which it mixes again, and one of them (its donor: the lowest-ranked neighbour present) sends
  // it the state of that round. The donor side: the ranks whose state this peer must send at the
  // start of `round` (before its own step of that round), ascending.
  virtual std::vector<int> state_wanted(std::uint64_t round) const {
    (void)round;
    return {};
  }
  // Sends `state` (any size: it goes in chunks) to the rejoining peer `to` as the state of
  // `round`; returns once the backend has let go of it.
  virtual void send_state(int to, std::uint64_t round, std::span<const std::byte> state) {
    (void)to;
    (void)round;
    (void)state;
    throw std::invalid_argument("this transport has no rejoin (send_state)");
  }
  // The rejoining side: waits (up to the connect timeout, and 4 timeouts after the join is
  // agreed) until a donor's state has arrived whole; the peer then runs from JoinState::round
  // on. The departures the donor knew come with it (departures()).
  virtual JoinState receive_state() {
    throw std::invalid_argument("this transport has no rejoin (receive_state)");
  }

  // Overlapped exchanges (an algorithm with staleness τ, docs/transport.md "Overlapped
  // exchanges"): the message a peer sends in exchange e is consumed by its neighbours in exchange
  // e + τ, so the frames of up to τ exchanges are in flight while the peers compute, and the
  // look-ahead of exchange frames is 1 + τ exchanges. Fixed at construction
  // (TransportOptions::exchange_lag); 0, the bulk-synchronous exchange, for transports that
  // cannot overlap.
  virtual std::uint64_t exchange_lag() const { return 0; }

  // The overlapped form of exchange_each: sends `payload` as this peer's message of round `round`
  // and calls on_message(k, bytes) for each neighbour's message of round `receive_round`, in
  // neighbors() order, as exchange_each does; with no receive_round it only sends (the first τ
  // exchanges, whose stale values every peer knows, and a resumed peer re-sending its messages
  // still in flight). Send rounds grow as in exchange(); receive rounds grow too, are at most
  // `round` and at most τ exchanges (exchange_lag()) behind it. With receive_round == round it
  // is exchange_each (the default, which refuses anything else).
  // exchange_lag() bounds how far back receive_round may be.
  virtual void exchange_lagged(std::uint64_t round, std::span<const std::byte> payload,
                               std::optional<std::uint64_t> receive_round,
                               const MessageFn& on_message) {
    if (receive_round != round)
      throw std::invalid_argument("this transport does not overlap exchanges (staleness > 0)");
    exchange_each(round, payload, on_message);
  }

  // After a resume from a checkpoint of an overlapped run: sends this peer's message of an
  // earlier round again to every neighbour, because it was in flight when the checkpoint was taken
  // and the neighbours' fresh transports never got it. Only before the first exchange, rounds
  // growing; it does not count as an exchange for the look-ahead (the peer is at the round after
  // the checkpoint, not at the one re-sent).
  virtual void resend(std::uint64_t round, std::span<const std::byte> payload) {
    (void)round;
    (void)payload;
    throw std::invalid_argument("this transport does not overlap exchanges (staleness > 0)");
  }
};

}  // namespace gossip::net
