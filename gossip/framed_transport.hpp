#pragma once
// The part of a Transport that does not depend on how bytes move: framing, the start-up
// handshake, round bookkeeping (early messages kept; duplicates, stale rounds and every other
// frame that fails a check dropped and counted), deadlines, link emulation and counters. Backends
// (ZeroMQ, in-process) supply four primitives: try_send, wait_inbound, wait_released and abort.

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "gossip/frame.hpp"
#include "gossip/link_emulation.hpp"
#include "gossip/transport.hpp"
#include "gossip/transport_options.hpp"
#include "gossip/virtual_clock.hpp"
#include "topology/topology.hpp"

namespace spdlog {
class logger;
}

namespace gossip::net {

using Clock = std::chrono::steady_clock;

// One frame as a backend read it. `owner` keeps the bytes alive (a zmq message, a shared buffer).
struct Inbound {
  int link = -1;  // rank of the connection it arrived on; -1: not a known peer
  // When link == -1: names that connection ("routing id 0x…"), in logs and as the key of its
  // drop counters (DropCounters::by_stranger).
  std::string link_label;
  std::string malformed;  // non-empty: the backend refuses the frame (why), under `refused`
  DropReason refused = DropReason::bad_parts;
  std::span<const std::byte> header;
  std::span<const std::byte> payload;
  std::shared_ptr<const void> owner;
};

class FramedTransport : public Transport {
 public:
  ~FramedTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::span<const int> neighbors() const override { return neighbors_; }
  // With local steps the schedule advances one phase per exchange, every exchange_interval_
  // rounds (round / interval counts the exchanges before this one).
  // A peer that rejoins is in the lists from its round r_j on (members_at), before the exchange
  // of that round takes it back (take_back_joined): the algorithm weighs by them first.
  std::span<const int> send_to(std::uint64_t round) const override {
    return joins_pending_ ? members_at(round, joined_send_) : stored(send_to_, round);
  }
  std::span<const int> receive_from(std::uint64_t round) const override {
    return joins_pending_ ? members_at(round, joined_receive_) : stored(receive_from_, round);
  }
  const TrafficCounters& counters() const override { return counters_; }
  const DropCounters& drops() const override { return drops_; }
  void request_stop(std::uint64_t before_round) override;
  std::optional<std::uint64_t> stop_round() const override { return stop_round_; }
  std::uint64_t exchange_interval() const override { return exchange_interval_; }
  std::uint64_t exchange_lag() const override { return options_.exchange_lag; }
  VirtualClock* virtual_clock() const override { return clock_ ? &*clock_ : nullptr; }
  bool continues_after_peer_loss() const override {
    return options_.on_peer_loss == PeerLoss::continue_run;
  }
  std::span<const Departure> departures() const override { return departures_; }
  bool ring_cut() const override { return ring_cut_; }
  std::vector<int> state_wanted(std::uint64_t round) const override;
  void send_state(int to, std::uint64_t round, std::span<const std::byte> state) override;
  JoinState receive_state() override;

  const std::vector<std::span<const std::byte>>& exchange(
      std::uint64_t round, std::span<const std::byte> payload) override;
  void ring_step(std::uint64_t round, std::uint32_t step, std::span<const std::byte> send,
                 std::span<std::byte> recv) override;
  void exchange_each(std::uint64_t round, std::span<const std::byte> payload,
                     const MessageFn& on_message) override;
  void exchange_lagged(std::uint64_t round, std::span<const std::byte> payload,
                       std::optional<std::uint64_t> receive_round,
                       const MessageFn& on_message) override;
  void resend(std::uint64_t round, std::span<const std::byte> payload) override;
  void post(std::uint64_t round, std::uint32_t lane, const PayloadFor& payload_for) override;
  void collect(std::uint64_t round, std::uint32_t lane, const MessageFn& on_message) override;

  // Waits (up to connect_timeout) until every linked peer has proved it runs the same topology
  // and settings. exchange() and ring_step() call it on first use; call it early to fail early.
  void handshake();
  bool handshake_done() const { return hellos_missing_ == 0; }
  // This process of our rank (Hello::instance): random, non-zero, new for every transport.
  std::uint64_t instance() const { return instance_; }
  // Reads and checks what arrives within `wait`, outside any call: frames of later rounds are
  // kept for their call, bad ones dropped and counted. For a caller that idles between calls (and
  // tests that wait for a stranger's frames to be counted).
  void poll_for(std::chrono::milliseconds wait);

  // Every peer this one has a link with: neighbours, plus rank±1 with ring_links (every other
  // rank with all_links). Ascending.
  std::span<const int> links() const { return links_; }
  const std::string& endpoint_of(int rank) const;
  // "peer 3 (tcp://127.0.0.1:29503)"
  std::string peer_name(int rank) const override;
  const TransportOptions& options() const { return options_; }
  bool failed() const { return failed_; }

 protected:
  FramedTransport(const topology::Topology& topo, int rank, TransportOptions options,
                  std::string_view backend);

  // Sends the hello frame to every link. The derived constructor calls it once its links exist.
  void start();

  // --- backend primitives ---
  // Queues header + payload for `to` without blocking. Returns false when the link is full (the
  // frame was not queued; try again after wait_inbound reports it writable). The payload must
  // stay untouched until wait_released() says the backend let go of it.
  virtual bool try_send(int to, const HeaderBytes& header, std::span<const std::byte> payload) = 0;
  // Blocks until a frame arrives (returned), one of `blocked` becomes writable or `deadline`
  // passes (both: nullopt).
  virtual std::optional<Inbound> wait_inbound(Clock::time_point deadline,
                                              std::span<const int> blocked) = 0;
  // Waits until the backend no longer reads any payload passed to try_send. Returns the ranks
  // whose message is still held when the deadline passes (empty: all released).
  virtual std::vector<int> wait_released(Clock::time_point deadline) = 0;
  // After an error: stops all I/O that could still read caller memory. Must not throw.
  virtual void abort() noexcept = 0;
  // A cancelled handshake: what is still queued may be thrown away when the backend closes, so
  // that closing does not wait out its linger for peers that never came. Must not throw.
  virtual void drop_queued() noexcept {}

  // Checks one frame a backend read: kept for its call, a hello taken, or dropped and counted.
  // Protected for the fuzz target (tests/fuzz/frame.cpp), which feeds frames without a backend.
  void accept(Inbound&& in);
  // Frames kept for a later call: counted as received only when a call takes or drops them.
  std::size_t frames_held() const { return pending_.size(); }

  spdlog::logger& log() const { return *log_; }
  // Counts what the backend refused below the level of frames (a connection that failed the CURVE
  // handshake), under the stranger connection `label`; logged as drop() logs.
  void count_refused(std::string_view label, DropReason why, FunctionRef<std::string()> detail) {
    note_drop(-1, label, why, detail);
  }
  // The same for our own connection to peer `rank` (its server refused us): counted against it.
  void count_refused_by(int rank, DropReason why, FunctionRef<std::string()> detail) {
    note_drop(rank, {}, why, detail);
  }
  // Grows by one per batch of sends of one payload (hello, an exchange, a ring step): a backend
  // may share one copy of the payload between the frames of a batch.
  std::uint64_t send_batch() const { return send_batch_; }

 private:
  using Key = std::tuple<FrameKind, std::uint64_t, std::uint32_t, int>;  // kind, round, step, from
  struct Stored {
    std::span<const std::byte> payload;
    std::shared_ptr<const void> owner;
    Passage at_nic;              // the network model: when it reached our NIC (accept)
    bool scheduled = false;      // ready_ns is known: it passed our downlink (schedule)
    std::uint64_t ready_ns = 0;  // when the caller may have it (0: at once)
  };
  using PendingIt = std::map<Key, Stored>::iterator;

  // `until`, or sooner when TransportOptions::poll is set (its interval from now).
  Clock::time_point polled(Clock::time_point until) const;
  // Calls TransportOptions::poll, if set; what it throws fails the transport and propagates.
  void poll();
  // Sends one frame to each of `to` and waits for the frames named by `want`, every one of them
  // (kind, round, step, from) held in pending_ on return. `what` names the call in errors.
  void transfer(FrameKind kind, std::uint64_t round, std::uint32_t step,
                std::span<const std::byte> payload, std::span<const int> to,
                std::span<const Key> want);
  // Every exchange form: sends the message of `round`, delivers the neighbours' messages of
  // `receive` (none when empty); on_message null keeps every message for the views of exchange().
  // A resend (`replay`) neither enters its round nor counts as the last exchange.
  void exchange_impl(std::uint64_t round, std::span<const std::byte> payload,
                     std::optional<std::uint64_t> receive, const MessageFn* on_message,
                     bool replay = false);
  // Sends one frame; its header carries `stamp`, when it passed this peer's uplink
  // (through_uplink; control frames: {now, now}).
  bool send_frame(FrameKind kind, int to, std::uint64_t round, std::uint32_t step,
                  std::span<const std::byte> payload, Passage stamp);
  // One send of `frames` frames of `payload_bytes` each (an exchange to every neighbour, a ring
  // step) handed over at `sent_at` (send_time()), through this peer's uplink.
  Passage through_uplink(std::uint64_t sent_at, std::size_t frames, std::size_t payload_bytes);
  // Now on the clock the network model runs on: CLOCK_MONOTONIC, or the virtual clock
  // (VirtualClock::kUntimed while it is paused).
  std::uint64_t send_time();
  // Passes the frames `its` (pending; those not yet scheduled) through our downlink, in the order
  // their first byte reached our NIC (then by sender; `its` is sorted so): a call schedules the
  // frames it waits for once all of them are here, so the order does not depend on which thread
  // ran first.
  void schedule(std::vector<PendingIt>& its);
  // Whether a scheduled frame may go to the caller now: in virtual time at once (the clock moves
  // to its ready time instead), in real time once CLOCK_MONOTONIC has reached it.
  bool due(const Stored& s) const;
  // The hello's record; nullopt when it was dropped (garbage); fails on a configuration mismatch.
  std::optional<Hello> check_hello(const Inbound& in, int from);
  // Counts a frame that failed a check under `why` and the connection it came on, and logs it
  // when it is the first of its reason from that connection (a summary at most every 10 s
  // otherwise). `detail` builds the log line and is called only when one is written.
  void drop(const Inbound& in, DropReason why, FunctionRef<std::string()> detail);
  // The same for a frame that was kept for later and turns out unusable (enter_round and the
  // start of a call), from the connection of peer `link`, or `label` when link is -1.
  void note_drop(int link, std::string_view label, DropReason why,
                 FunctionRef<std::string()> detail);
  void log_drop_summary(bool force);
  // "; 35 of its frames were dropped: 35 bad checksum (first: …)" for a peer named in a timeout
  // error, "" when none were.
  std::string dropped_note(int rank) const;
  [[noreturn]] void fail(const std::string& message);
  // Guards a call that hands caller memory to the backend (try_send): when an exception leaves the
  // call, whatever threw (the backend, a poll hook, the message callback, a check), the transport
  // is marked failed and abort()ed before the exception goes on, so no backend reads a caller's
  // buffer after the call, and nothing outside a call holds one. One guard per call, not a catch
  // at every place that can throw.
  class CallGuard {
   public:
    CallGuard(FramedTransport& t, FrameKind kind, std::uint64_t round, std::uint32_t step)
        : t_(t), kind_(kind), round_(round), step_(step) {}
    ~CallGuard();
    CallGuard(const CallGuard&) = delete;
    CallGuard& operator=(const CallGuard&) = delete;

   private:
    FramedTransport& t_;
    FrameKind kind_;
    std::uint64_t round_;
    std::uint32_t step_;
    int exceptions_ = std::uncaught_exceptions();
  };
  void throw_if_failed() const;
  bool is_link(int r) const;
  // Whether rank r sends its exchange frame of `round` to us / takes ours (asks with a credit).
  bool sends_to_us(int r, std::uint64_t round) const;
  bool takes_from_us(int r, std::uint64_t round) const;
  // A neighbour gone whose rejoin round is known (it may send before we reach that round).
  bool rejoining(int r) const;
  // The departure of `rank` known here (at most one per rank: its latest), or end().
  std::vector<Departure>::iterator departure_of(int rank);
  std::vector<Departure>::const_iterator departure_of(int rank) const;
  // The round from which neighbour r is back, when it is a neighbour with a departure that has one.
  std::optional<std::uint64_t> gone_neighbor_back(int r) const;
  std::string where(FrameKind kind, std::uint64_t round, std::uint32_t step) const;
  // How many rounds past our latest call a frame of this kind may be (transport.md, "Rounds"):
  // for exchange and credit frames the schedule's period (1 on a static topology), n + 2 for
  // ring frames; times the exchange interval.
  std::uint64_t rounds_ahead(FrameKind kind) const;
  // Whether `round` is too far past latest_round_ (rounds_ahead; never before a round is known).
  bool too_far_ahead(FrameKind kind, std::uint64_t round) const;
  std::string ahead_detail(FrameKind kind, std::uint64_t round, std::uint32_t step, int from) const;
  // Removes one entry of pending_ (to hand to the caller or to drop), keeping the per-sender count
  // of kept frames, and counts it as received.
  Stored take_pending(std::map<Key, Stored>::iterator it);
  // A received frame of `bytes`, counted once it is used or dropped: a data frame kept for a later
  // call counts in that call, so the counters at the end of a round do not depend on how far
  // ahead the neighbours ran (the metrics of a run are reproducible).
  void count_received(std::uint64_t bytes) {
    counters_.bytes_received += bytes;
    counters_.messages_received += 1;
  }
  // post() and collect(): throws unless every other rank is linked and `round` is past the
  // last one of `lane` in `last` (posted_ or collected_).
  void check_direct(const char* call, std::uint64_t round, std::uint32_t lane,
                    const std::map<std::uint32_t, std::uint64_t>& last) const;
  // Peer loss (on_peer_loss = continue_run; docs/transport.md "Peers that leave").
  // A neighbour silent past the timeout in the exchange of `round`: gone from r* = round + (D + 2)
  // exchanges, D the diameter of the graph left.
  void detect_loss(int rank, std::uint64_t round);
  // Takes departure `episode` of `rank` (detected here or announced by a neighbour): forwards it
  // to the remaining neighbours, adopts the smaller r* of two announcements, and fails when it
  // comes too late to be agreed, names this peer, or leaves the graph disconnected (naming the
  // components). Returns false for a stale notice, which the caller drops: of an earlier
  // departure of a peer that came back since (this peer's own included).
  bool learn_departure(int rank, std::uint64_t at_round, int told_by, std::uint64_t episode);
  // The largest distance between two peers not in `absent` on the graph without them.
  int diameter_without(std::span<const int> absent) const;
  // A restarted peer's hello (TransportOptions::rejoin) from process `instance` on the link of
  // `rank`: our hello back to it; a neighbour of it also takes it for gone (if it did not yet) and
  // proposes the round r_j from which it mixes again (learn_join). Nothing more when that process
  // is already taken back or agreed on (its hello came late, after the notices).
  void take_back(int rank, std::uint64_t instance);
  // Takes a join notice (proposed here or by a neighbour): `rank`, gone in departure `episode`,
  // is back as process `instance` from `at_round`. Adopts the smaller r_j of two, greets the new
  // process, forwards the notice to the remaining neighbours, and fails when it comes too late
  // to be agreed. Returns false for a stale notice (of an earlier departure), which is dropped.
  bool learn_join(int rank, std::uint64_t at_round, int told_by, std::uint64_t episode,
                  std::uint64_t instance);
  // Our hello to process `instance` of linked rank `rank`, once: before any other frame of ours
  // reaches it, whichever of its hello and the join notices comes first.
  void greet(int rank, std::uint64_t instance);
  // Round `round`'s entry of a per-phase list (send_to_, receive_from_).
  std::span<const int> stored(const std::vector<std::vector<int>>& lists,
                              std::uint64_t round) const {
    return lists[(round / exchange_interval_) % lists.size()];
  }
  // Whether neighbour r mixes in `round` (static topologies: continue runs): not gone, or back by
  // then.
  bool present_at(int r, std::uint64_t round) const;
  // The neighbours present in `round`, into `out`.
  std::span<const int> members_at(std::uint64_t round, std::vector<int>& out) const;
  // Start of an exchange of `round`: the peers back from this round on are linked again.
  void take_back_joined(std::uint64_t round);
  // The payload of one state frame at most: max_payload_bytes, or 1 MiB without a limit.
  std::uint64_t state_frame_room() const {
    return options_.max_payload_bytes > 0 ? options_.max_payload_bytes : std::uint64_t{1} << 20;
  }
  // A state frame (a chunk of a donor's state) while this peer rejoins; dropped otherwise.
  void take_state_chunk(const Inbound& in, const FrameHeader& h);
  // Queues one control frame for `to`; sent by flush_control(), in order, before any later frame
  // of ours to it.
  void queue_control(int to, const Control& c);
  void flush_control();
  // Sends `alive` to the remaining neighbours while a call has been waiting a quarter timeout.
  void send_alive(std::uint64_t round);
  // Removes departed ranks from send_to_/receive_from_ (not while an exchange holds them).
  void drop_departed_from_lists();

  // Start of an exchange or ring call of `round`: raises latest_round_; the first call checks
  // the frames and credits kept during the handshake, before any round was known.
  void enter_round(std::uint64_t round);

  int rank_;
  int size_;
  std::vector<int> neighbors_;  // the union over the schedule's rounds
  // Per round of the schedule's period (one on a static topology: the neighbours).
  std::vector<std::vector<int>> send_to_, receive_from_;
  std::vector<int> links_;
  std::vector<std::string> endpoints_;
  std::uint64_t topology_hash_;
  std::uint64_t session_;
  TransportOptions options_;
  std::string backend_;
  std::shared_ptr<spdlog::logger> log_;
  LinkEmulator emulator_;
  // TransportOptions::virtual_time. Mutable: reading the time counts the thread's CPU time.
  mutable std::optional<VirtualClock> clock_;
  std::vector<PendingIt> to_schedule_;  // reused by the calls

  std::vector<std::byte> hello_payload_;  // kept alive: sent zero-copy by some backends
  int hellos_missing_ = 0;
  std::uint64_t instance_ = 0;  // Hello::instance of this process
  // Per rank: the process whose hello we took last (0: no hello yet), and the restarted one our
  // hello went to.
  std::vector<std::uint64_t> hello_from_, greeted_;

  std::optional<std::uint64_t> last_exchange_;
  std::optional<std::pair<std::uint64_t, std::uint32_t>> last_ring_;
  // The exchange round and ring (round, step) of the call in progress, or of the last one: a
  // frame for an earlier one is stale even during the first call, before last_* are set.
  std::optional<std::uint64_t> exchange_at_;
  // The same for the neighbours' messages received: the round delivered by the last call that
  // received, and the one being received (or the last). Equal to the two above without a lag.
  std::optional<std::uint64_t> received_, receive_at_;
  std::optional<std::uint64_t> last_resend_;  // round of the last resend()
  std::optional<std::pair<std::uint64_t, std::uint32_t>> ring_at_;
  std::optional<std::uint64_t> latest_round_;  // largest round of any call so far
  std::map<Key, Stored> pending_;  // arrived, not yet consumed by a call (early or current)
  // (round, neighbour) asking for our payload; kept until the round ends, so that a repeated
  // credit is seen as a duplicate.
  std::set<std::pair<std::uint64_t, int>> credits_;
  // Per sender rank: frames of each kind held in pending_ / credits_. A peer can only be so far
  // ahead (transport.md, "Rounds"), so more than a few are dropped as too far ahead: this bounds
  // what a flood can make us keep, also before the first call names a round.
  std::vector<std::uint32_t> kept_exchange_, kept_ring_, kept_credit_, kept_direct_;
  // Direct messages, per lane: the round of the last post and of the last collect. A direct frame
  // of a round at or before the last collect of its lane is stale.
  std::map<std::uint32_t, std::uint64_t> posted_, collected_;
  // Per sender rank: the round of its exchange frame last handed to the caller. A second frame
  // of that round is a duplicate, even after the first one left pending_.
  std::vector<std::optional<std::uint64_t>> delivered_;

  std::vector<std::shared_ptr<const void>> held_;  // owners of the views returned last call
  std::vector<char> round_sent_, round_asked_, round_got_;  // exchange bookkeeping, reused
  std::vector<int> round_blocked_;
  std::vector<std::span<const std::byte>> views_;

  TrafficCounters counters_;
  DropCounters drops_;
  std::vector<std::string> first_drop_;  // per rank: why its connection's first drop happened
  std::uint64_t drops_unlogged_ = 0;     // drops not logged on their own line since the summary
  Clock::time_point last_drop_summary_;
  std::optional<std::uint64_t> stop_round_;  // smallest stop round requested or heard
  std::uint64_t exchange_interval_ = 1;      // TransportOptions::exchange_interval
  std::uint64_t send_batch_ = 0;
  // Peer loss: the graph (to recompute the remaining one), the departures known, per rank whether
  // it is gone and when its last frame came, control frames not yet queued, the last alive sent.
  topology::Graph graph_;
  std::vector<Departure> departures_;
  std::vector<char> gone_;
  std::vector<Clock::time_point> last_heard_;
  struct QueuedControl {
    int to;
    std::array<std::byte, kControlSize> bytes;
  };
  std::vector<QueuedControl> control_out_;
  Clock::time_point last_alive_{};
  // Rejoin: on a rejoining peer, the donor's state as it arrives.
  int state_from_ = -1;
  std::uint64_t state_round_ = 0;
  std::uint32_t state_chunks_ = 0;
  std::uint64_t state_total_ = 0;
  std::map<std::uint32_t, std::vector<std::byte>> state_parts_;
  bool state_done_ = false;
  bool joins_pending_ = false;  // a join is agreed whose peer is not back in the lists yet
  mutable std::vector<int> joined_send_, joined_receive_;
  bool exchanging_ = false;  // inside exchange_impl: send_to_/receive_from_ are in use
  bool ring_cut_ = false;    // the last ring_step learned of a departure instead of its message
  bool failed_ = false;
  std::string first_error_;
};

}  // namespace gossip::net
