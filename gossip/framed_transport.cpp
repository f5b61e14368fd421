#include "gossip/framed_transport.hpp"

#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>
#include <utility>

#include <fmt/core.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "kernels/le_bytes.hpp"

namespace gossip::net {

using kernels::load_le;
using kernels::store_le;

std::vector<int> absent_at(std::span<const Departure> departures, std::uint64_t round) {
  std::vector<int> out;
  for (const Departure& d : departures)
    if (d.round <= round && !(d.back && *d.back <= round)) out.push_back(d.rank);
  std::sort(out.begin(), out.end());
  return out;
}

bool departures_settled(std::span<const Departure> departures, std::uint64_t round) {
  for (const Departure& d : departures)
    if (d.round > round || (d.back && *d.back > round)) return false;
  return true;
}

std::vector<int> gone_for_good(std::span<const Departure> departures) {
  std::vector<int> out;
  for (const Departure& d : departures)
    if (!d.back) out.push_back(d.rank);
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

std::shared_ptr<spdlog::logger> make_logger(int rank) {
  // One sink for every peer of the process; loggers are not registered, so hundreds of in-process
  // peers cannot collide on names.
  static auto sink = [] {
    auto s = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    s->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
    return s;
  }();
  auto log = std::make_shared<spdlog::logger>(fmt::format("net rank {}", rank), sink);
  log->set_level(spdlog::get_level());
  return log;
}

Clock::time_point from_ns(std::uint64_t ns) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

}  // namespace

FramedTransport::FramedTransport(const topology::Topology& topo, int rank, TransportOptions options,
                                 std::string_view backend)
    : rank_(rank),
      size_(topo.size()),
      topology_hash_(topo.hash()),
      session_(session_hash(topo.hash(), options.run_hash, options.run_nonce)),
      options_(std::move(options)),
      backend_(backend),
      log_(make_logger(rank)),
      emulator_(options_.link, topo.size()) {
  if (options_.virtual_time) clock_.emplace(options_.virtual_cpu);
  if (options_.exchange_interval == 0)
    throw std::invalid_argument("transport: exchange_interval must be at least 1 round");
  exchange_interval_ = options_.exchange_interval;
  if (size_ <= 0) throw std::invalid_argument("transport: empty topology");
  if (rank < 0 || rank >= size_) {
    throw std::invalid_argument(fmt::format("transport: rank {} outside 0..{}", rank, size_ - 1));
  }
  if (static_cast<int>(topo.peers.size()) != size_) {
    throw std::invalid_argument(
        fmt::format("transport: topology has {} peers for {} ranks", topo.peers.size(), size_));
  }
  endpoints_.reserve(topo.peers.size());
  for (const auto& p : topo.peers) endpoints_.push_back(p.endpoint);
  neighbors_ = topo.graph.neighbors(rank);
  for (std::size_t r = 0; r < topo.period(); ++r) {
    send_to_.push_back(topo.send_to(rank, r));
    receive_from_.push_back(topo.receive_from(rank, r));
  }
  links_ = neighbors_;
  if (options_.all_links) {
    for (int r = 0; r < size_; ++r)
      if (r != rank) links_.push_back(r);
  }
  if (options_.ring_links && size_ > 1) {
    links_.push_back((rank + 1) % size_);
    links_.push_back((rank + size_ - 1) % size_);
  }
  std::sort(links_.begin(), links_.end());
  links_.erase(std::unique(links_.begin(), links_.end()), links_.end());
  const auto n = static_cast<std::size_t>(size_);
  kept_exchange_.assign(n, 0);
  kept_ring_.assign(n, 0);
  kept_credit_.assign(n, 0);
  kept_direct_.assign(n, 0);
  delivered_.assign(n, std::nullopt);
  drops_.by_peer.assign(n, {});
  first_drop_.assign(n, {});
  last_drop_summary_ = Clock::now();
  hellos_missing_ = static_cast<int>(links_.size());
  if (options_.receive_window < 0) {
    throw std::invalid_argument("transport: receive_window must be >= 0");
  }
  if (options_.exchange_lag > 0 && options_.receive_window > 0) {
    // A credit asks for the message of the round being received, sent exchange_lag exchanges
    // before: credits cannot pace overlapped exchanges.
    throw std::invalid_argument(fmt::format(
        "transport: overlapped exchanges (exchange lag {}) cannot be paced by a receive window "
        "({}): set the receive window to 0",
        options_.exchange_lag, options_.receive_window));
  }
  graph_ = topo.graph;
  gone_.assign(n, 0);
  last_heard_.assign(n, Clock::now());
  if (continues_after_peer_loss()) {
    // The Metropolis-Hastings rows after a loss are derived for one fixed graph, and a credit or
    // an overlapped exchange would keep waiting for the message of a peer that is gone.
    const char* why = send_to_.size() > 1           ? "a time-varying topology"
                      : options_.receive_window > 0 ? "a receive window"
                      : options_.exchange_lag > 0   ? "overlapped exchanges (exchange lag)"
                                                    : nullptr;
    if (why) {
      throw std::invalid_argument(fmt::format(
          "transport: on_peer_loss = continue is not supported with {} (topology {}); use stop",
          why, topo.description));
    }
  }
  if (options_.rejoin && !continues_after_peer_loss()) {
    throw std::invalid_argument(
        "transport: rejoin needs on_peer_loss = continue (the others must have gone on without "
        "this peer)");
  }
  hello_from_.assign(n, 0);
  greeted_.assign(n, 0);
  {
    std::random_device rd;
    do {
      instance_ = (std::uint64_t{rd()} << 32) ^ rd() ^ monotonic_ns();
    } while (instance_ == 0);
  }
  hello_payload_ = encode_hello(
      {topology_hash_, options_.run_hash, static_cast<std::uint32_t>(size_),
       static_cast<std::uint32_t>(rank_), static_cast<std::uint32_t>(options_.receive_window),
       endpoints_[static_cast<std::size_t>(rank_)], options_.run_nonce, instance_});
}

FramedTransport::~FramedTransport() {
  try {
    log_drop_summary(true);
  } catch (...) {
    // Logging the last drop counts is not worth a throwing destructor.
  }
}

const std::string& FramedTransport::endpoint_of(int rank) const {
  return endpoints_.at(static_cast<std::size_t>(rank));
}

std::string FramedTransport::peer_name(int rank) const {
  if (rank < 0 || rank >= size_) return fmt::format("unknown peer {}", rank);
  return fmt::format("peer {} ({})", rank, endpoint_of(rank));
}

bool FramedTransport::is_link(int r) const {
  return std::binary_search(links_.begin(), links_.end(), r);
}
bool FramedTransport::sends_to_us(int r, std::uint64_t round) const {
  if (joins_pending_) return present_at(r, round);
  const auto from = stored(receive_from_, round);
  return std::binary_search(from.begin(), from.end(), r);
}
bool FramedTransport::takes_from_us(int r, std::uint64_t round) const {
  if (joins_pending_) return present_at(r, round);
  const auto to = stored(send_to_, round);
  return std::binary_search(to.begin(), to.end(), r);
}
std::vector<Departure>::iterator FramedTransport::departure_of(int rank) {
  return std::find_if(departures_.begin(), departures_.end(),
                      [&](const Departure& d) { return d.rank == rank; });
}
std::vector<Departure>::const_iterator FramedTransport::departure_of(int rank) const {
  return const_cast<FramedTransport*>(this)->departure_of(rank);
}
std::optional<std::uint64_t> FramedTransport::gone_neighbor_back(int r) const {
  if (!std::binary_search(neighbors_.begin(), neighbors_.end(), r)) return std::nullopt;
  const auto d = departure_of(r);
  return d != departures_.end() ? d->back : std::nullopt;
}
bool FramedTransport::rejoining(int r) const {
  return gone_[static_cast<std::size_t>(r)] && gone_neighbor_back(r).has_value();
}
bool FramedTransport::present_at(int r, std::uint64_t round) const {
  if (!std::binary_search(neighbors_.begin(), neighbors_.end(), r)) return false;
  if (!gone_[static_cast<std::size_t>(r)]) return true;
  const auto back = gone_neighbor_back(r);
  return back && *back <= round;
}

std::string FramedTransport::where(FrameKind kind, std::uint64_t round, std::uint32_t step) const {
  if (kind == FrameKind::ring) return fmt::format("round {} ring step {}", round, step);
  if (kind == FrameKind::hello) return "handshake";
  if (kind == FrameKind::direct) return fmt::format("round {} direct lane {}", round, step);
  return fmt::format("round {}", round);
}

std::uint64_t FramedTransport::rounds_ahead(FrameKind kind) const {
  // Static topology: a neighbour finishes round t only with our round-t message, which we send
  // in our call of round t: its exchange frames and credits are at most one round past ours.
  // One-peer exponential schedule (period p = ceil(log2 n)): a peer finishing round t needs its
  // round-t sender to have finished round t - 1, so it needs every peer j - (sum of a subset of
  // the hops 2^k of rounds t - p + 1 .. t) to have finished round t - p; those sums cover every
  // offset 0 .. 2^p - 1 >= n - 1, so no peer is more than p rounds past ours.
  // A ring frame of rank-1 may come from a peer whose exchanges ran up to its graph distance to
  // us (< n) ahead, plus the round numbers the runtime skips around its all-reduces. With local
  // steps every exchange is exchange_interval_ round numbers past the last one. With a lag τ
  // a neighbour finishes exchange e with our message of e − τ: its exchange frames are up to
  // 1 + τ exchanges past ours (on the schedule, each of the p hops of the argument above stretched
  // by the same factor), and every hop of the graph distance in a ring frame's bound too.
  // A direct frame of round r is collected at most direct_lag rounds after it was posted, and a
  // peer collects round r only after every peer posted it: a sender is at most 1 + direct_lag
  // rounds past our latest call, times 2 for the round numbers around the runtime's all-reduces.
  const std::uint64_t reach = 1 + exchange_lag();
  switch (kind) {
    case FrameKind::direct:
      return 2 * (2 + static_cast<std::uint64_t>(options_.direct_lag)) * exchange_interval_;
    case FrameKind::ring:
      return (static_cast<std::uint64_t>(size_) + 2) * reach * exchange_interval_;
    case FrameKind::exchange:
      return send_to_.size() * reach * exchange_interval_;
    default:
      return send_to_.size() * exchange_interval_;
  }
}

bool FramedTransport::too_far_ahead(FrameKind kind, std::uint64_t round) const {
  return latest_round_ && round > *latest_round_ && round - *latest_round_ > rounds_ahead(kind);
}

std::string FramedTransport::ahead_detail(FrameKind kind, std::uint64_t round, std::uint32_t step,
                                          int from) const {
  return fmt::format(
      "{} frame from {} is {} rounds ahead of our round {} (at most {} for {} frames)",
      where(kind, round, step), peer_name(from), round - *latest_round_, *latest_round_,
      rounds_ahead(kind), kind_name(kind));
}

FramedTransport::Stored FramedTransport::take_pending(std::map<Key, Stored>::iterator it) {
  const auto& [kind, round, step, from] = it->first;
  auto& kept = kind == FrameKind::ring     ? kept_ring_
               : kind == FrameKind::direct ? kept_direct_
                                           : kept_exchange_;
  --kept[static_cast<std::size_t>(from)];
  count_received(kFrameHeaderSize + it->second.payload.size());
  return std::move(pending_.extract(it).mapped());
}

void FramedTransport::enter_round(std::uint64_t round) {
  const bool first = !latest_round_;
  if (!first && round <= *latest_round_) return;
  latest_round_ = round;
  // Later frames are checked as they arrive (accept), and latest_round_ only grows, so what
  // passed then still passes: only the frames kept before the first call need a look.
  if (!first) return;
  for (auto it = pending_.begin(); it != pending_.end();) {
    const auto [kind, r, step, from] = it->first;
    if (!too_far_ahead(kind, r)) {
      ++it;
      continue;
    }
    take_pending(it++);
    note_drop(from, {}, DropReason::too_far_ahead,
              [&, kind = kind, r = r, step = step, from = from] {
                return ahead_detail(kind, r, step, from);
              });
  }
  for (auto it = credits_.begin(); it != credits_.end();) {
    const auto [r, from] = *it;
    if (!too_far_ahead(FrameKind::credit, r)) {
      ++it;
      continue;
    }
    it = credits_.erase(it);
    --kept_credit_[static_cast<std::size_t>(from)];
    note_drop(from, {}, DropReason::too_far_ahead,
              [&, r = r, from = from] { return ahead_detail(FrameKind::credit, r, 0, from); });
  }
}

void FramedTransport::start() {
  ++send_batch_;
  for (int to : links_) {
    // A fresh link has room for one small frame; a full one here means the peer is broken.
    const std::uint64_t now = monotonic_ns();
    if (!send_frame(FrameKind::hello, to, 0, options_.rejoin ? kRejoin : 0, hello_payload_,
                    {now, now})) {
      fail(fmt::format("{} transport, rank {}: cannot queue the hello to {}", backend_, rank_,
                       peer_name(to)));
    }
  }
  log().debug("{} transport up: {} neighbours, {} links, schedule period {}, session {:016x}",
              backend_, neighbors_.size(), links_.size(), send_to_.size(), session_);
}

[[noreturn]] void FramedTransport::fail(const std::string& message) {
  if (!failed_) {
    failed_ = true;
    first_error_ = message;
    log_drop_summary(true);
    log().error("{}", message);
    abort();
  }
  throw TransportError(message);
}

FramedTransport::CallGuard::~CallGuard() {
  if (std::uncaught_exceptions() <= exceptions_ || t_.failed_) return;
  // fail() has aborted already when the exception is its own; anything else gets here.
  t_.failed_ = true;
  t_.first_error_ = fmt::format("rank {}: {}: the call was abandoned by an exception", t_.rank_,
                                t_.where(kind_, round_, step_));
  t_.abort();
}

Clock::time_point FramedTransport::polled(Clock::time_point until) const {
  return options_.poll ? std::min(until, Clock::now() + options_.poll_interval) : until;
}

void FramedTransport::poll() {
  // What it throws abandons the call; the call's CallGuard tears the backend down.
  if (options_.poll) options_.poll();
}

void FramedTransport::throw_if_failed() const {
  if (failed_) {
    throw TransportError(
        fmt::format("rank {}: transport unusable after an earlier error: {}", rank_, first_error_));
  }
}

namespace {

// How long repeated drops stay quiet in the log: one summary line at most this often.
constexpr auto kDropSummaryEvery = std::chrono::seconds(10);

DropReason reason_of(HeaderFault f) {
  switch (f) {
    case HeaderFault::size:
      return DropReason::header_size;
    case HeaderFault::magic:
      return DropReason::bad_magic;
    case HeaderFault::version:
      return DropReason::bad_version;
    case HeaderFault::checksum:
      return DropReason::bad_checksum;
    case HeaderFault::kind:
    case HeaderFault::none:
      break;
  }
  return DropReason::bad_kind;
}

}  // namespace

void FramedTransport::note_drop(int link, std::string_view label, DropReason why,
                                FunctionRef<std::string()> detail) {
  drops_.all.add(why);
  DropTally* tally = nullptr;
  if (link >= 0) {
    tally = &drops_.by_peer[static_cast<std::size_t>(link)];
  } else {
    auto it = drops_.by_stranger.find(label);
    if (it == drops_.by_stranger.end()) {
      // Named entries stop at kMaxStrangers; the overflow entry does not count towards them.
      const bool room =
          drops_.by_stranger.size() - drops_.by_stranger.count(DropCounters::kOtherStrangers) <
          DropCounters::kMaxStrangers;
      it = drops_.by_stranger.try_emplace(std::string(room ? label : DropCounters::kOtherStrangers))
               .first;
    }
    tally = &it->second;
  }
  tally->add(why);
  if ((*tally)[why] != 1) {
    // Only the first drop of each reason from each connection gets a line of its own: a flood
    // must not turn into a flood of log lines.
    ++drops_unlogged_;
    log_drop_summary(false);
    return;
  }
  std::string text = detail();
  if (link >= 0 && first_drop_[static_cast<std::size_t>(link)].empty()) {
    first_drop_[static_cast<std::size_t>(link)] = text;
  }
  log().warn("dropped: {} ({}; more of this kind from this connection are counted, not logged)",
             text, drop_reason_name(why));
}

void FramedTransport::drop(const Inbound& in, DropReason why, FunctionRef<std::string()> detail) {
  count_received(in.header.size() + in.payload.size());
  note_drop(in.link, in.link_label, why, detail);
}

void FramedTransport::log_drop_summary(bool force) {
  if (drops_unlogged_ == 0) return;
  const auto now = Clock::now();
  if (!force && now - last_drop_summary_ < kDropSummaryEvery) return;
  std::string sources;
  for (int r = 0; r < size_; ++r) {
    const auto& t = drops_.by_peer[static_cast<std::size_t>(r)];
    if (t.total > 0)
      sources += fmt::format("{}peer {}: {}", sources.empty() ? "" : ", ", r, t.total);
  }
  std::uint64_t strangers = 0;
  for (const auto& [label, t] : drops_.by_stranger) strangers += t.total;
  if (strangers > 0) {
    sources += fmt::format("{}{} connections that are not peers: {}", sources.empty() ? "" : ", ",
                           drops_.by_stranger.size(), strangers);
  }
  log().warn("{} more frames dropped in the last {:.1f} s; {} in all: {}; by connection: {}",
             drops_unlogged_, std::chrono::duration<double>(now - last_drop_summary_).count(),
             drops_.all.total, drops_.all.summary(), sources);
  drops_unlogged_ = 0;
  last_drop_summary_ = now;
}

std::string FramedTransport::dropped_note(int rank) const {
  const auto& t = drops_.by_peer.at(static_cast<std::size_t>(rank));
  if (t.total == 0) return {};
  return fmt::format("; {} of its frames were dropped: {} (the first: {})", t.total, t.summary(),
                     first_drop_[static_cast<std::size_t>(rank)]);
}

std::optional<Hello> FramedTransport::check_hello(const Inbound& in, int from) {
  Hello h;
  try {
    h = decode_hello(in.payload);
  } catch (const std::invalid_argument& e) {
    drop(in, DropReason::bad_hello,
         [&] { return fmt::format("malformed hello from {}: {}", peer_name(from), e.what()); });
    return std::nullopt;
  }
  const std::string who = peer_name(from);
  if (h.rank != static_cast<std::uint32_t>(from) || h.instance == 0) {
    // The peer's own transport always sends its own rank and a process instance: this one is not
    // from that peer.
    drop(in, DropReason::bad_hello, [&] {
      return h.instance == 0
                 ? fmt::format("hello on the link of {} without a process instance", who)
                 : fmt::format("hello on the link of {} says it is rank {}", who, h.rank);
    });
    return std::nullopt;
  }
  // The rest is a real peer configured differently: that ends the run, on both sides.
  if (h.size != static_cast<std::uint32_t>(size_)) {
    fail(fmt::format("rank {}: {} runs {} peers, ours is {}", rank_, who, h.size, size_));
  }
  if (h.topology_hash != topology_hash_) {
    fail(fmt::format("rank {}: {} has topology hash {:016x}, ours is {:016x}", rank_, who,
                     h.topology_hash, topology_hash_));
  }
  if (h.window != static_cast<std::uint32_t>(options_.receive_window)) {
    fail(fmt::format("rank {}: {} paces exchanges with receive window {}, ours is {}", rank_, who,
                     h.window, options_.receive_window));
  }
  if (h.run_hash != options_.run_hash) {
    fail(fmt::format("rank {}: {} has run-settings hash {:016x}, ours is {:016x}", rank_, who,
                     h.run_hash, options_.run_hash));
  }
  // The same run and settings, but not the same start: a process left over from an earlier
  // launch (or one started by hand beside a launch) would mix two runs' rounds.
  if (h.nonce != options_.run_nonce) {
    fail(fmt::format(
        "rank {}: {} belongs to another launch of this run (a leftover process?): launch nonce "
        "{:016x}, ours is {:016x}{}",
        rank_, who, h.nonce, options_.run_nonce,
        h.nonce == 0 || options_.run_nonce == 0
            ? " (0: started without `gossip launch`; GOSSIP_RUN_NONCE gives one by hand)"
            : ""));
  }
  return h;
}

void FramedTransport::accept(Inbound&& in) {
  // Counted as it leaves accept(): dropped (drop()), a hello or a credit (below), or a data frame
  // when a call takes it (take_pending).
  // Every check below drops the frame and counts it instead of ending the run: a stranger that
  // reaches our port must not be able to stop us. Names for the log are built only for the first
  // drop of a kind from a connection (drop()): this runs for every frame.
  const auto conn = [&] {
    return in.link >= 0 ? peer_name(in.link)
                        : fmt::format("a connection that is not a peer ({})", in.link_label);
  };
  if (!in.malformed.empty()) {
    return drop(in, in.refused,
                [&] { return fmt::format("bad frame from {}: {}", conn(), in.malformed); });
  }
  const HeaderParse parsed = decode_header(in.header);
  if (!parsed.header) {
    return drop(in, reason_of(parsed.fault),
                [&] { return fmt::format("bad frame from {}: {}", conn(), parsed.error); });
  }
  const FrameHeader& h = *parsed.header;
  const auto at = [&] { return where(h.kind, h.round, h.step); };
  // The checks that need nothing but the frame come first: is it a frame of this run at all.
  if (h.payload_length != in.payload.size()) {
    return drop(in, DropReason::bad_length, [&] {
      return fmt::format("{} frame from {}: header says {} payload bytes, {} arrived", at(), conn(),
                         h.payload_length, in.payload.size());
    });
  }
  if (options_.max_payload_bytes > 0 && h.payload_length > options_.max_payload_bytes) {
    return drop(in, DropReason::too_long, [&] {
      return fmt::format("{} frame from {} carries {} bytes, the limit is {}", at(), conn(),
                         h.payload_length, options_.max_payload_bytes);
    });
  }
  // Hello frames are not checked here: a peer of another run must get to its hello check, which
  // names the difference.
  if (h.kind != FrameKind::hello && h.session != session_) {
    return drop(in, DropReason::wrong_session, [&] {
      return fmt::format("{} frame from {} belongs to session {:016x}, ours is {:016x}", at(),
                         conn(), h.session, session_);
    });
  }
  // Then who sent it.
  if (in.link < 0) {
    return drop(in, DropReason::not_a_peer, [&] {
      return fmt::format("{} frame from {}, claims rank {}", at(), conn(), h.sender);
    });
  }
  const int from = in.link;
  if (h.sender != static_cast<std::uint32_t>(from)) {
    return drop(in, DropReason::wrong_sender, [&] {
      return fmt::format("{} frame on the link of {} claims sender {}", at(), conn(), h.sender);
    });
  }
  if (!is_link(from)) {
    return drop(in, DropReason::not_linked, [&] {
      return fmt::format("{} frame from {}, which is not linked to us", at(), conn());
    });
  }
  if (h.receiver != static_cast<std::uint32_t>(rank_)) {
    return drop(in, DropReason::wrong_receiver, [&] {
      return fmt::format("{} frame from {} is addressed to rank {}", at(), conn(), h.receiver);
    });
  }
  const auto f = static_cast<std::size_t>(from);
  last_heard_[f] = Clock::now();
  if (h.kind == FrameKind::hello) {
    // A restarted peer's hello asks to rejoin (once per process).
    const bool rejoin = h.step == kRejoin && continues_after_peer_loss();
    const auto duplicate = [&] {
      drop(in, DropReason::duplicate,
           [&] { return fmt::format("duplicate hello from {}", conn()); });
    };
    if (!rejoin && hello_from_[f] != 0) return duplicate();
    const auto hello = check_hello(in, from);
    if (!hello) return;
    if (hello_from_[f] == hello->instance) return duplicate();
    if (hello_from_[f] == 0) --hellos_missing_;
    hello_from_[f] = hello->instance;
    count_received(in.header.size() + in.payload.size());
    if (rejoin) return take_back(from, hello->instance);
    log().debug("hello from {} checked", conn());
    return;
  }
  if (hello_from_[f] == 0) {
    return drop(in, DropReason::before_hello,
                [&] { return fmt::format("{} frame from {} before its hello", at(), conn()); });
  }
  const auto stale = [&](const std::string& done) {
    drop(in, DropReason::stale, [&] {
      return fmt::format("stale {} frame ({}) from {}: we are at {}", kind_name(h.kind), at(),
                         conn(), done);
    });
  };
  const auto ahead = [&] {
    drop(in, DropReason::too_far_ahead,
         [&] { return ahead_detail(h.kind, h.round, h.step, from); });
  };
  // More early frames than a peer can send (the window of transport.md, "Rounds"): the bound on
  // what we keep before the first call names a round, when too_far_ahead cannot tell yet.
  const auto too_many = [&](std::uint32_t kept, std::uint32_t most) {
    if (kept < most) return false;
    drop(in, DropReason::too_far_ahead, [&] {
      return fmt::format(
          "{} frame from {}: already {} {} frames kept for later, the most it can "
          "send ahead",
          at(), conn(), kept, kind_name(h.kind));
    });
    return true;
  };
  if (h.kind == FrameKind::control) {
    const auto c = decode_control(in.payload);
    if (!continues_after_peer_loss() || !c || c->rank >= static_cast<std::uint32_t>(size_)) {
      return drop(in, DropReason::bad_control, [&] {
        return fmt::format(
            "control frame from {}: {}", conn(),
            !continues_after_peer_loss() ? "this peer stops on a peer loss" : "bad record");
      });
    }
    const int k = static_cast<int>(c->rank);
    const bool taken =
        c->type == ControlType::leave  ? learn_departure(k, c->round, from, c->episode)
        : c->type == ControlType::join ? learn_join(k, c->round, from, c->episode, c->instance)
                                       : true;
    if (!taken) {
      return drop(in, DropReason::stale, [&] {
        return fmt::format(
            "stale control frame from {}: {} of {} in its departure {}, an earlier one than this "
            "peer knows",
            conn(), c->type == ControlType::leave ? "leave" : "join", peer_name(k), c->episode);
      });
    }
    count_received(in.header.size() + in.payload.size());
    return;
  }
  if (h.kind == FrameKind::state) return take_state_chunk(in, h);
  if (h.kind == FrameKind::credit) {
    if (!takes_from_us(from, h.round)) {
      return drop(in, DropReason::not_neighbor, [&] {
        return fmt::format("credit frame ({}) from {}, which we do not send to in that round", at(),
                           conn());
      });
    }
    if (options_.receive_window == 0 || h.payload_length != 0) {
      return drop(in, DropReason::bad_credit, [&] {
        return fmt::format("unexpected credit frame ({}, {} payload bytes) from {}", at(),
                           h.payload_length, conn());
      });
    }
    if ((last_exchange_ && h.round <= *last_exchange_) ||
        (exchange_at_ && h.round < *exchange_at_)) {
      return stale(fmt::format("round {}", *exchange_at_));
    }
    if (too_far_ahead(h.kind, h.round)) return ahead();
    if (credits_.contains({h.round, from})) {
      return drop(in, DropReason::duplicate,
                  [&] { return fmt::format("duplicate credit ({}) from {}", at(), conn()); });
    }
    if (too_many(kept_credit_[f], 2)) return;
    credits_.emplace(h.round, from);
    ++kept_credit_[f];
    count_received(in.header.size() + in.payload.size());
    return;
  }
  // A neighbour that rejoins starts at its donor's round r_j: that may be more rounds past ours
  // than a neighbour can otherwise be (as far as the donor is from us), and a smaller r_j than
  // the one we know may be on its way to us. Its first frames are kept (at most two, below).
  const bool joining = h.kind == FrameKind::exchange && rejoining(from);
  if (h.kind == FrameKind::exchange) {
    if (!joining && !sends_to_us(from, h.round)) {
      // On a time-varying topology a schedule peer's frame of another round is fine (kept or
      // stale below): only one for a round in which it does not send to us is dropped here.
      return drop(in, DropReason::not_neighbor, [&] {
        return fmt::format("{} exchange frame from {}, which does not send to us in that round",
                           at(), conn());
      });
    }
    if (delivered_[f] && h.round == *delivered_[f]) {
      // Its first frame of this round was handed to the caller already: without this check the
      // copy would wait in pending_ for a call that never comes.
      return drop(in, DropReason::duplicate, [&] {
        return fmt::format("duplicate {} frame from {}: that round's frame was delivered", at(),
                           conn());
      });
    }
    if ((received_ && h.round <= *received_) || (receive_at_ && h.round < *receive_at_)) {
      return stale(fmt::format("round {}", *receive_at_));
    }
  } else if (h.kind == FrameKind::direct) {
    // Any linked peer may send one (all_links links every pair); only its round can be stale.
    if (auto it = collected_.find(h.step); it != collected_.end() && h.round <= it->second) {
      return stale(fmt::format("round {} in direct lane {}", it->second, h.step));
    }
  } else {
    // After a loss the ring skips the peers gone, and a neighbour may know of a departure a
    // little before we do: with continue_run any linked peer may send ring steps (ring_step
    // waits for the one it needs; the others' frames go with their step).
    const int prev = (rank_ + size_ - 1) % size_;
    if (from != prev && !continues_after_peer_loss()) {
      return drop(in, DropReason::wrong_ring_sender, [&] {
        return fmt::format("{} frame from {}, but only rank {} sends ring steps to us", at(),
                           conn(), prev);
      });
    }
    if (last_ring_ && std::pair(h.round, h.step) == *last_ring_) {
      return drop(in, DropReason::duplicate, [&] {
        return fmt::format("duplicate {} frame from {}: that step's frame was delivered", at(),
                           conn());
      });
    }
    if (ring_at_ && std::pair(h.round, h.step) < *ring_at_) {
      return stale(fmt::format("round {} step {}", ring_at_->first, ring_at_->second));
    }
  }
  if (h.stop_in > UINT64_MAX - h.round) {
    return drop(in, DropReason::bad_stop, [&] {
      return fmt::format("{} frame from {}: stop_in {} overflows the round", at(), conn(),
                         h.stop_in);
    });
  }
  if (!joining && too_far_ahead(h.kind, h.round)) return ahead();
  const Key key{h.kind, h.round, h.step, from};
  if (pending_.contains(key)) {
    return drop(in, DropReason::duplicate,
                [&] { return fmt::format("duplicate {} frame from {}", at(), conn()); });
  }
  // A neighbour's exchange frames: at most this round's and the next (on a time-varying topology
  // a sender sends to us once a period and is at most a period ahead: again two; with a lag τ:
  // the τ in flight towards this one, this one and 1 + τ ahead); ring frames: rank-1 can be up to
  // n - 1 steps into an all-reduce ahead of us, over at most a few round numbers.
  // Direct frames: two lanes (reduce-scatter, all-gather) for each of the 2 + direct_lag rounds
  // a sender can have in flight towards us, twice over.
  auto& kept = h.kind == FrameKind::ring     ? kept_ring_[f]
               : h.kind == FrameKind::direct ? kept_direct_[f]
                                             : kept_exchange_[f];
  const auto reach = static_cast<std::uint32_t>(1 + exchange_lag());
  const std::uint32_t most = h.kind == FrameKind::ring
                                 ? (2 * static_cast<std::uint32_t>(size_) + 2) * reach
                             : h.kind == FrameKind::direct ? 4 * (2 + options_.direct_lag)
                                                           : 2 * reach;
  if (too_many(kept, most)) return;
  if (h.stop_in > 0) request_stop(h.round + h.stop_in);
  Stored stored;
  stored.payload = in.payload;
  stored.owner = std::move(in.owner);
  std::uint64_t last = h.sent_at_ns;
  if (!clock_ && emulator_.active()) {
    // A send time of zero, or further in the future than any uplink queue of ours could put it,
    // comes from another host (or a liar): our own clock then, which can only make the emulated
    // network slower, never faster.
    const std::uint64_t now = monotonic_ns();
    const auto ahead = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(options_.timeout).count());
    if (last == 0 || last > now + ahead) last = now;
  }
  if ((clock_ && last != VirtualClock::kUntimed) || (!clock_ && emulator_.active())) {
    const std::uint64_t uplink_ns = std::min<std::uint64_t>(last, h.uplink_us * 1000ull);
    stored.at_nic =
        emulator_.arrive(from, kFrameHeaderSize + h.payload_length, {last - uplink_ns, last});
  } else {
    stored.scheduled = true;  // no model (or untimed: sent during a paused evaluation)
  }
  pending_.emplace(key, std::move(stored));
  ++kept;
}

void FramedTransport::schedule(std::vector<PendingIt>& its) {
  std::sort(its.begin(), its.end(), [](const PendingIt& a, const PendingIt& b) {
    return std::pair(a->second.at_nic.first, std::get<3>(a->first)) <
           std::pair(b->second.at_nic.first, std::get<3>(b->first));
  });
  for (const PendingIt& it : its) {
    Stored& s = it->second;
    if (s.scheduled) continue;
    s.ready_ns = emulator_.receive(kFrameHeaderSize + s.payload.size(), s.at_nic);
    s.scheduled = true;
  }
}

bool FramedTransport::due(const Stored& s) const {
  return s.scheduled && (clock_ || monotonic_ns() >= s.ready_ns);
}

std::uint64_t FramedTransport::send_time() {
  if (!clock_) return monotonic_ns();
  return clock_->paused() ? VirtualClock::kUntimed : clock_->now_ns();
}

void FramedTransport::poll_for(std::chrono::milliseconds wait) {
  throw_if_failed();
  const auto deadline = Clock::now() + wait;
  while (Clock::now() < deadline) {
    if (auto in = wait_inbound(deadline, {})) accept(std::move(*in));
  }
}

void FramedTransport::handshake() {
  throw_if_failed();
  if (handshake_done()) return;
  {
    const auto deadline = Clock::now() + options_.connect_timeout;
    while (!handshake_done()) {
      // Short waits, so that a cancellation (Ctrl-C) is seen within a fraction of a second.
      auto in = wait_inbound(std::min(deadline, Clock::now() + std::chrono::milliseconds(200)), {});
      if (in) {
        accept(std::move(*in));
        continue;
      }
      if (options_.cancelled && options_.cancelled()) {
        drop_queued();  // the user wants out: hellos to peers not yet there need not wait
        throw TransportCancelled(
            fmt::format("rank {}: stopped during the start-up handshake", rank_));
      }
      if (Clock::now() < deadline) continue;
      std::string missing;
      for (int r : links_) {
        if (hello_from_[static_cast<std::size_t>(r)] == 0) {
          missing += (missing.empty() ? "" : ", ") + peer_name(r) + dropped_note(r);
        }
      }
      fail(fmt::format("rank {}: handshake: no hello within {} ms from {}", rank_,
                       options_.connect_timeout.count(), missing));
    }
    // Our hellos are released once delivered; without this a failed peer could see nothing.
    if (auto held = wait_released(deadline); !held.empty()) {
      fail(fmt::format("rank {}: handshake: hello to {} not delivered within {} ms", rank_,
                       peer_name(held.front()), options_.connect_timeout.count()));
    }
  }
  log().debug("handshake done with {} links", links_.size());
}

void FramedTransport::detect_loss(int rank, std::uint64_t round) {
  std::vector<int> gone;
  for (int r = 0; r < size_; ++r)
    if (gone_[static_cast<std::size_t>(r)]) gone.push_back(r);
  gone.push_back(rank);
  const int diameter = diameter_without(gone);
  log().warn("round {}: nothing from {} for {} ms: it is gone", round, peer_name(rank),
             options_.timeout.count());
  // Its first departure, or the next one after it came back.
  const auto known = departure_of(rank);
  learn_departure(rank, round + (static_cast<std::uint64_t>(diameter) + 2) * exchange_interval_,
                  rank_, known != departures_.end() ? known->episode + 1 : 0);
  // Callers wait for the peers not gone: one still listed would be found silent again at once.
  if (!gone_[static_cast<std::size_t>(rank)]) {
    fail(
        fmt::format("rank {}: round {}: {} is silent and its departure is known, but it is not "
                    "taken for gone (a bug: please report it with this log)",
                    rank_, round, peer_name(rank)));
  }
}

bool FramedTransport::learn_departure(int rank, std::uint64_t at_round, int told_by,
                                      std::uint64_t episode) {
  const auto who = [&] { return told_by == rank_ ? std::string("this peer") : peer_name(told_by); };
  auto known = departure_of(rank);
  // Departures of one rank come one after the other: the one known (a second notice of it), or
  // the next once it came back. Anything older is stale (a late notice, our own earlier process's
  // included); anything newer cannot be, since a join reaches every peer before its round.
  if (rank == rank_) {
    if (known != departures_.end() && episode <= known->episode) return false;
    fail(fmt::format(
        "rank {}: {} took this peer for gone from round {} (nothing came from it for the "
        "timeout); the run goes on without it",
        rank_, who(), at_round));
  }
  const bool same = known != departures_.end() && episode == known->episode;
  const bool next =
      known == departures_.end() ? episode == 0 : known->back && episode == known->episode + 1;
  if (!same && !next) return false;
  if (same && known->round <= at_round) return true;
  // The weights of the round in progress, or between calls of the next exchange round too, may
  // be in use already.
  const std::uint64_t now = latest_round_.value_or(0);
  const std::uint64_t mixed = latest_round_ ? now + (exchanging_ ? 0 : exchange_interval_) : 0;
  if (at_round <= mixed) {
    fail(fmt::format(
        "rank {}: {} says {} is gone from round {}, but this peer is at round {} already: the "
        "remaining peers would mix with different weights",
        rank_, who(), peer_name(rank), at_round, now));
  }
  if (same) {
    known->round = at_round;
  } else {
    // A peer that rejoined and is lost again: the new departure in place of the old one.
    if (known != departures_.end()) departures_.erase(known);
    departures_.push_back({rank, at_round, std::nullopt, episode, 0});
    gone_[static_cast<std::size_t>(rank)] = 1;
  }
  log().warn("{} is gone from the run from round {} on (heard from {})", peer_name(rank), at_round,
             who());
  for (int j : neighbors_) {
    if (!gone_[static_cast<std::size_t>(j)] && j != told_by)
      queue_control(j, {ControlType::leave, static_cast<std::uint32_t>(rank), at_round, episode});
  }
  std::vector<int> gone;
  for (int r = 0; r < size_; ++r)
    if (gone_[static_cast<std::size_t>(r)]) gone.push_back(r);
  std::vector<std::string> parts;
  for (const auto& c : graph_.without(gone).components()) {
    if (c.size() == 1 && gone_[static_cast<std::size_t>(c.front())]) continue;
    parts.push_back(fmt::format("{{{}}}", fmt::join(c, ", ")));
  }
  if (parts.size() > 1) {
    // Tell the others first: each of them fails with this message instead of timing out on us.
    try {
      flush_control();
    } catch (const TransportError&) {
      // Best effort: the message below is what matters.
    }
    fail(fmt::format(
        "rank {}: without peer{} {} the graph falls apart into {} components: {}; stopping", rank_,
        gone.size() > 1 ? "s" : "", fmt::join(gone, ", "), parts.size(), fmt::join(parts, " ")));
  }
  if (!exchanging_) drop_departed_from_lists();
  return true;
}

int FramedTransport::diameter_without(std::span<const int> absent) const {
  const topology::Graph left = graph_.without(std::vector<int>(absent.begin(), absent.end()));
  int diameter = 0;
  for (int r = 0; r < size_; ++r) {
    if (std::find(absent.begin(), absent.end(), r) != absent.end()) continue;
    for (int dist : left.distances_from(r)) diameter = std::max(diameter, dist);
  }
  return diameter;
}

void FramedTransport::greet(int rank, std::uint64_t instance) {
  const auto k = static_cast<std::size_t>(rank);
  if (!is_link(rank) || greeted_[k] == instance) return;
  greeted_[k] = instance;
  // The restarted process knows none of us yet: our hello first, on a link it reads in order.
  ++send_batch_;
  const std::uint64_t now = send_time();
  if (!send_frame(FrameKind::hello, rank, 0, 0, hello_payload_, {now, now}))
    log().warn("cannot queue a hello to {}, which rejoins: its link is full", peer_name(rank));
}

void FramedTransport::take_back(int rank, std::uint64_t instance) {
  const auto k = static_cast<std::size_t>(rank);
  greet(rank, instance);
  if (!std::binary_search(neighbors_.begin(), neighbors_.end(), rank)) return;
  auto known = departure_of(rank);
  // This process's join is agreed (the notices came before its hello) or done already.
  if (known != departures_.end() && known->returned == instance) return;
  const std::uint64_t t = latest_round_.value_or(0);
  // Back before we took it for lost (it restarted within the timeout): it is gone from now on
  // first, as if found silent.
  if (!gone_[k]) {
    log().warn("round {}: {} restarted: it is gone until it rejoins", t, peer_name(rank));
    detect_loss(rank, t);
    known = departure_of(rank);
  }
  // The others learn of the join as of a loss: (D + 2) exchanges ahead, D the diameter of the
  // graph the notice travels (without the peers gone, this one too), and after its r*.
  std::vector<int> absent;
  for (int r = 0; r < size_; ++r)
    if (gone_[static_cast<std::size_t>(r)]) absent.push_back(r);
  const std::uint64_t at =
      std::max(t + (static_cast<std::uint64_t>(diameter_without(absent)) + 2) * exchange_interval_,
               known->round + exchange_interval_);
  log().warn("{} asks to rejoin; proposing round {}", peer_name(rank), at);
  learn_join(rank, at, rank_, known->episode, instance);
}

bool FramedTransport::learn_join(int rank, std::uint64_t at_round, int told_by,
                                 std::uint64_t episode, std::uint64_t instance) {
  const auto who = [&] { return told_by == rank_ ? std::string("this peer") : peer_name(told_by); };
  auto known = departure_of(rank);
  if (rank == rank_ || known == departures_.end()) {
    // We never took it for gone: its notices to us and ours to it crossed, or a peer is confused.
    log().warn("{} says {} rejoins from round {}, but it is not gone here; ignored", who(),
               peer_name(rank), at_round);
    return true;
  }
  if (episode != known->episode) return false;
  // Two processes of one rank asking (a restart that failed and was restarted): the smaller
  // round wins, then the smaller instance, the same everywhere.
  if (known->back && std::pair(*known->back, known->returned) <= std::pair(at_round, instance))
    return true;
  const std::uint64_t now = latest_round_.value_or(0);
  const std::uint64_t mixed = latest_round_ ? now + (exchanging_ ? 0 : exchange_interval_) : 0;
  if (at_round <= mixed || at_round <= known->round) {
    fail(fmt::format(
        "rank {}: {} says {} rejoins from round {}, but this peer is at round {} already (gone "
        "from round {}): the peers would mix with different weights",
        rank_, who(), peer_name(rank), at_round, now, known->round));
  }
  known->back = at_round;
  known->returned = instance;
  joins_pending_ = true;
  greet(rank, instance);
  log().warn("{} rejoins the run from round {} (heard from {})", peer_name(rank), at_round, who());
  for (int j : neighbors_) {
    if (!gone_[static_cast<std::size_t>(j)] && j != told_by)
      queue_control(
          j, {ControlType::join, static_cast<std::uint32_t>(rank), at_round, episode, instance});
  }
  return true;
}

std::vector<int> FramedTransport::state_wanted(std::uint64_t round) const {
  std::vector<int> out;
  const std::vector<int> absent = absent_at(departures_, round);
  for (const Departure& d : departures_) {
    if (d.back != round) continue;
    // The donor: the lowest-ranked neighbour of the rejoining peer present in that round.
    for (int j : graph_.neighbors(d.rank)) {
      if (std::binary_search(absent.begin(), absent.end(), j)) continue;
      if (j == rank_) out.push_back(d.rank);
      break;
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
// A state frame's payload: chunk count (u32), total bytes of the state (u64), then its bytes.
constexpr std::size_t kStateChunkHead = 12;
// The state's own head (before the caller's bytes): departures (u32 count, then per departure
// rank u32, r* u64, back u64 with 0 for none, episode u64, returned instance u64).
constexpr std::size_t kStateDeparture = 36;
constexpr std::uint32_t kMaxStateChunks = 1u << 20;
}  // namespace

void FramedTransport::send_state(int to, std::uint64_t round, std::span<const std::byte> state) {
  std::vector<std::byte> whole(4 + departures_.size() * kStateDeparture + state.size());
  std::byte* p = whole.data();
  store_le<std::uint32_t>(p, static_cast<std::uint32_t>(departures_.size()));
  p += 4;
  for (const Departure& d : departures_) {
    store_le<std::uint32_t>(p, static_cast<std::uint32_t>(d.rank));
    store_le<std::uint64_t>(p + 4, d.round);
    store_le<std::uint64_t>(p + 12, d.back.value_or(0));
    store_le<std::uint64_t>(p + 20, d.episode);
    store_le<std::uint64_t>(p + 28, d.returned);
    p += kStateDeparture;
  }
  std::copy(state.begin(), state.end(), p);
  const std::uint64_t room = state_frame_room();
  if (room <= kStateChunkHead)
    throw TransportError(fmt::format("rank {}: max_payload_bytes {} leaves no room for state",
                                     rank_, options_.max_payload_bytes));
  const std::uint64_t per = room - kStateChunkHead;
  const auto chunks = static_cast<std::uint32_t>((whole.size() + per - 1) / per);
  log().info("round {}: sending {} bytes of state to {}, which rejoins ({} frames)", round,
             whole.size(), peer_name(to), chunks);
  std::vector<std::byte> frame;
  for (std::uint32_t c = 0; c < chunks; ++c) {
    const std::uint64_t begin = c * per, end = std::min<std::uint64_t>(whole.size(), begin + per);
    frame.resize(kStateChunkHead + (end - begin));
    store_le<std::uint32_t>(frame.data(), chunks);
    store_le<std::uint64_t>(frame.data() + 4, whole.size());
    std::copy(whole.begin() + static_cast<std::ptrdiff_t>(begin),
              whole.begin() + static_cast<std::ptrdiff_t>(end), frame.begin() + kStateChunkHead);
    const int dest[] = {to};
    transfer(FrameKind::state, round, c, frame, dest, {});
  }
}

void FramedTransport::take_state_chunk(const Inbound& in, const FrameHeader& h) {
  const int from = in.link;
  const auto bad = [&](const std::string& why) {
    drop(in, DropReason::bad_control, [&] {
      return fmt::format("state frame ({}) from {}: {}", h.round, peer_name(from), why);
    });
  };
  if (!options_.rejoin || state_done_) return bad("this peer is not waiting for a state");
  if (in.payload.size() < kStateChunkHead) return bad("shorter than its head");
  const auto chunks = load_le<std::uint32_t>(in.payload.data());
  const auto total = load_le<std::uint64_t>(in.payload.data() + 4);
  if (chunks == 0 || chunks > kMaxStateChunks || h.step >= chunks ||
      total > static_cast<std::uint64_t>(chunks) * state_frame_room())
    return bad(fmt::format("chunk {} of {} for {} bytes", h.step, chunks, total));
  if (state_from_ < 0) {
    state_from_ = from;
    state_round_ = h.round;
    state_chunks_ = chunks;
    state_total_ = total;
  } else if (from != state_from_ || h.round != state_round_ || chunks != state_chunks_ ||
             total != state_total_) {
    return bad(fmt::format("another state than the one of round {} from {} being received",
                           state_round_, peer_name(state_from_)));
  }
  if (state_parts_.contains(h.step)) return bad(fmt::format("chunk {} again", h.step));
  count_received(in.header.size() + in.payload.size());
  state_parts_.emplace(
      h.step, std::vector<std::byte>(in.payload.begin() + kStateChunkHead, in.payload.end()));
  if (state_parts_.size() == state_chunks_) state_done_ = true;
}

JoinState FramedTransport::receive_state() {
  throw_if_failed();
  if (!options_.rejoin) throw std::invalid_argument("receive_state: this peer does not rejoin");
  const auto started = Clock::now();
  // The others first take this peer for lost (a timeout), then agree on a round (D + 2 exchanges).
  const auto deadline = started + options_.connect_timeout + 4 * options_.timeout;
  while (!state_done_) {
    if (options_.cancelled && options_.cancelled()) {
      drop_queued();
      throw TransportCancelled(fmt::format("rank {}: stopped while waiting to rejoin", rank_));
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      fail(fmt::format(
          "rank {}: rejoin: no state from a neighbour within {} ms ({} of {} chunks came); are "
          "the others running, with transport.on_peer_loss = \"continue\"?",
          rank_, std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count(),
          state_parts_.size(), state_chunks_));
    }
    if (auto in = wait_inbound(std::min(deadline, now + std::chrono::milliseconds(200)), {}))
      accept(std::move(*in));
  }
  std::vector<std::byte> whole;
  whole.reserve(state_total_);
  for (const auto& [c, part] : state_parts_) whole.insert(whole.end(), part.begin(), part.end());
  state_parts_.clear();
  const auto refuse = [&](const std::string& why) {
    fail(fmt::format("rank {}: rejoin: the state from {} is damaged: {}", rank_,
                     peer_name(state_from_), why));
  };
  if (whole.size() != state_total_ || whole.size() < 4)
    refuse(fmt::format("{} bytes, {} announced", whole.size(), state_total_));
  const auto count = load_le<std::uint32_t>(whole.data());
  if (count > static_cast<std::uint32_t>(size_) || 4 + count * kStateDeparture > whole.size())
    refuse(fmt::format("{} departures", count));
  departures_.clear();
  const std::byte* p = whole.data() + 4;
  for (std::uint32_t k = 0; k < count; ++k, p += kStateDeparture) {
    Departure d{static_cast<int>(load_le<std::uint32_t>(p)),
                load_le<std::uint64_t>(p + 4),
                {},
                load_le<std::uint64_t>(p + 20),
                load_le<std::uint64_t>(p + 28)};
    if (const auto back = load_le<std::uint64_t>(p + 12); back != 0) d.back = back;
    if (d.rank < 0 || d.rank >= size_) refuse(fmt::format("departure of rank {}", d.rank));
    // Our own is there too, back from state_round_ as this process (the summary lists it as the
    // others do).
    if (d.rank == rank_ && d.back != state_round_)
      refuse(fmt::format("this peer is back from round {}, the state is of round {}",
                         d.back.value_or(0), state_round_));
    if (d.rank == rank_ && d.returned != instance_)
      refuse(fmt::format("it is for process {:016x} of this rank, this is {:016x}", d.returned,
                         instance_));
    departures_.push_back(d);
  }
  // Frames to and from a peer stop when a peer learns of its loss, not at r*: the donor's gone
  // peers are ours, those whose r* is still ahead too (else we would wait for a peer the others
  // no longer hear from, and find it silent with its departure already known).
  for (const Departure& d : departures_)
    if (!(d.back && *d.back <= state_round_)) gone_[static_cast<std::size_t>(d.rank)] = 1;
  drop_departed_from_lists();
  // The links of peers gone never answer our hello; the others did, before their state.
  hellos_missing_ = 0;
  log().info("rejoining at round {} with {} bytes of state from {}", state_round_,
             whole.size() - 4 - count * kStateDeparture, peer_name(state_from_));
  JoinState out;
  out.round = state_round_;
  out.donor = state_from_;
  out.bytes.assign(whole.begin() + 4 + static_cast<std::ptrdiff_t>(count * kStateDeparture),
                   whole.end());
  return out;
}

void FramedTransport::queue_control(int to, const Control& c) {
  control_out_.push_back({to, encode_control(c)});
}

void FramedTransport::flush_control() {
  std::size_t done = 0;
  for (; done < control_out_.size(); ++done) {
    const QueuedControl& q = control_out_[done];
    // A batch of its own: a backend may share one copy of a batch's payload between its frames,
    // and these records differ (and may reuse one address as the queue moves).
    ++send_batch_;
    const std::uint64_t now = send_time();
    if (!send_frame(FrameKind::control, q.to, 0, 0, q.bytes, {now, now})) break;
  }
  control_out_.erase(control_out_.begin(),
                     control_out_.begin() + static_cast<std::ptrdiff_t>(done));
}

void FramedTransport::send_alive(std::uint64_t round) {
  const auto now = Clock::now();
  if (now - last_alive_ < options_.timeout / 4) return;
  last_alive_ = now;
  for (int j : neighbors_) {
    if (!gone_[static_cast<std::size_t>(j)])
      queue_control(j, {ControlType::alive, static_cast<std::uint32_t>(rank_), round});
  }
}

void FramedTransport::drop_departed_from_lists() {
  auto gone = [&](int r) { return gone_[static_cast<std::size_t>(r)] != 0; };
  for (auto& v : send_to_) std::erase_if(v, gone);
  for (auto& v : receive_from_) std::erase_if(v, gone);
}

std::span<const int> FramedTransport::members_at(std::uint64_t round, std::vector<int>& out) const {
  out.clear();
  for (int j : neighbors_)
    if (present_at(j, round)) out.push_back(j);
  return out;
}

void FramedTransport::take_back_joined(std::uint64_t round) {
  joins_pending_ = false;
  for (const Departure& d : departures_)
    if (d.back && *d.back > round && gone_[static_cast<std::size_t>(d.rank)]) joins_pending_ = true;
  bool any = false;
  for (const Departure& d : departures_) {
    const auto k = static_cast<std::size_t>(d.rank);
    if (!d.back || *d.back > round || !gone_[k]) continue;
    gone_[k] = 0;
    last_heard_[k] = Clock::now();
    delivered_[k].reset();
    any = true;
  }
  if (!any) return;
  // Continue runs on static topologies only: one phase, the neighbours.
  for (auto& v : send_to_) v = neighbors_;
  for (auto& v : receive_from_) v = neighbors_;
  drop_departed_from_lists();
}

void FramedTransport::request_stop(std::uint64_t before_round) {
  if (!stop_round_ || before_round < *stop_round_) {
    stop_round_ = before_round;
    log().debug("stop requested before round {}", before_round);
  }
}

bool FramedTransport::send_frame(FrameKind kind, int to, std::uint64_t round, std::uint32_t step,
                                 std::span<const std::byte> payload, Passage stamp) {
  FrameHeader h;
  h.kind = kind;
  h.sender = static_cast<std::uint32_t>(rank_);
  h.receiver = static_cast<std::uint32_t>(to);
  h.round = round;
  h.step = step;
  h.payload_length = payload.size();
  h.session = session_;
  h.sent_at_ns = stamp.last;
  h.uplink_us = static_cast<std::uint32_t>(
      std::min<std::uint64_t>((stamp.last - stamp.first) / 1000, UINT32_MAX));
  if (stop_round_ && *stop_round_ > round && kind != FrameKind::hello)
    h.stop_in =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(*stop_round_ - round, UINT32_MAX));
  if (!try_send(to, encode_header(h), payload)) return false;
  counters_.bytes_sent += kFrameHeaderSize + payload.size();
  counters_.messages_sent += 1;
  return true;
}

Passage FramedTransport::through_uplink(std::uint64_t sent_at, std::size_t frames,
                                        std::size_t payload_bytes) {
  if (sent_at == VirtualClock::kUntimed || !emulator_.uplink().limited()) return {sent_at, sent_at};
  // The frames of one send share the uplink: each gets 1/frames of it, all of them end together
  // (as TCP flows over one NIC would), after the sends before them.
  return emulator_.uplink().pass({sent_at, sent_at}, frames * (kFrameHeaderSize + payload_bytes));
}

void FramedTransport::transfer(FrameKind kind, std::uint64_t round, std::uint32_t step,
                               std::span<const std::byte> payload, std::span<const int> to,
                               std::span<const Key> want) {
  const CallGuard guard(*this, kind, round, step);
  const std::uint64_t sent_at = send_time();
  ++send_batch_;
  std::vector<int> blocked;
  std::uint64_t ready_ns = 0;
  const Passage up = through_uplink(sent_at, to.size(), payload.size());
  auto send_one = [&](int dest) { return send_frame(kind, dest, round, step, payload, up); };
  for (int dest : to) {
    if (!send_one(dest)) blocked.push_back(dest);
  }
  // With continue_run the wait is the exchange's (exchange_impl): a silent neighbour is lost, a
  // waiting peer says it is alive, and a departure learned here ends the wait (ring_step: the
  // ring is cut), so nothing waits for a member that is gone.
  const bool elastic = continues_after_peer_loss();
  const std::size_t known = departures_.size();
  const auto started = Clock::now();
  const auto deadline = started + (elastic ? 4 : 1) * options_.timeout;
  for (;;) {
    if (elastic) {
      flush_control();
      if (departures_.size() != known) break;
    }
    if (!blocked.empty()) {
      std::erase_if(blocked, [&](int dest) { return send_one(dest); });
    }
    bool all_here = true;
    to_schedule_.clear();
    for (const Key& k : want) {
      auto it = pending_.find(k);
      if (it == pending_.end()) {
        all_here = false;
        break;
      }
      to_schedule_.push_back(it);
    }
    ready_ns = 0;
    if (all_here) {
      schedule(to_schedule_);
      for (const PendingIt& it : to_schedule_) ready_ns = std::max(ready_ns, it->second.ready_ns);
    }
    const auto now = Clock::now();
    if (all_here && blocked.empty() && (clock_ || monotonic_ns() >= ready_ns)) break;
    if (elastic && !all_here) {
      bool lost = false;
      for (int j : neighbors_) {
        const auto r = static_cast<std::size_t>(j);
        if (!gone_[r] && now >= std::max(started, last_heard_[r]) + options_.timeout) {
          detect_loss(j, round);
          lost = true;
          break;
        }
      }
      if (lost) continue;
      if (now - started >= options_.timeout / 4) send_alive(round);
    }
    if (now >= deadline) {
      if (!blocked.empty()) {
        fail(fmt::format("rank {}: {}: cannot send to {} within {} ms (link full)", rank_,
                         where(kind, round, step), peer_name(blocked.front()),
                         options_.timeout.count()));
      }
      if (!all_here) {
        std::vector<int> missing;
        for (const Key& k : want) {
          if (!pending_.contains(k)) missing.push_back(std::get<3>(k));
        }
        fail(fmt::format("rank {}: {}: no message from {} within {} ms (missing {} of {}: {}){}",
                         rank_, where(kind, round, step), peer_name(missing.front()),
                         options_.timeout.count(), missing.size(), want.size(),
                         fmt::join(missing, ", "), dropped_note(missing.front())));
      }
    }
    // Link emulation may hold a message that did arrive in time past the deadline; a pending
    // send still waits only until the deadline.
    auto until = deadline;
    if (all_here && !clock_ && monotonic_ns() < ready_ns) {
      until = blocked.empty() ? from_ns(ready_ns) : std::min(deadline, from_ns(ready_ns));
    }
    if (elastic) until = std::min(until, Clock::now() + options_.timeout / 8);
    if (auto in = wait_inbound(polled(until), blocked)) accept(std::move(*in));
    poll();
  }
  if (clock_) clock_->reach(ready_ns);
  // The payload is the caller's memory: it must be free again when we return.
  if (auto held = wait_released(deadline); !held.empty()) {
    fail(fmt::format("rank {}: {}: message to {} not delivered within {} ms", rank_,
                     where(kind, round, step), peer_name(held.front()), options_.timeout.count()));
  }
}

const std::vector<std::span<const std::byte>>& FramedTransport::exchange(
    std::uint64_t round, std::span<const std::byte> payload) {
  exchange_impl(round, payload, round, nullptr);
  return views_;
}

void FramedTransport::exchange_each(std::uint64_t round, std::span<const std::byte> payload,
                                    const MessageFn& on_message) {
  exchange_impl(round, payload, round, &on_message);
}

void FramedTransport::exchange_lagged(std::uint64_t round, std::span<const std::byte> payload,
                                      std::optional<std::uint64_t> receive_round,
                                      const MessageFn& on_message) {
  if (receive_round &&
      (*receive_round > round || round - *receive_round > exchange_lag() * exchange_interval_)) {
    throw std::invalid_argument(fmt::format(
        "rank {}: exchange of round {} receives round {}: at most {} exchanges of {} rounds back "
        "(TransportOptions::exchange_lag)",
        rank_, round, *receive_round, exchange_lag(), exchange_interval_));
  }
  exchange_impl(round, payload, receive_round, &on_message);
}

void FramedTransport::resend(std::uint64_t round, std::span<const std::byte> payload) {
  if (last_exchange_) {
    throw TransportError(fmt::format(
        "rank {}: resend of round {} after the exchange of round {}: only a resumed peer re-sends, "
        "before its first exchange",
        rank_, round, *last_exchange_));
  }
  if (last_resend_ && round <= *last_resend_) {
    throw TransportError(fmt::format("rank {}: resend of round {} after round {}: rounds must grow",
                                     rank_, round, *last_resend_));
  }
  exchange_impl(round, payload, std::nullopt, nullptr, true);
  last_resend_ = round;
}

void FramedTransport::exchange_impl(std::uint64_t round, std::span<const std::byte> payload,
                                    std::optional<std::uint64_t> receive,
                                    const MessageFn* on_message, bool replay) {
  handshake();
  if (last_exchange_ && round <= *last_exchange_) {
    throw TransportError(
        fmt::format("rank {}: exchange of round {} after round {}: rounds must grow", rank_, round,
                    *last_exchange_));
  }
  if (receive && received_ && *receive <= *received_) {
    throw TransportError(
        fmt::format("rank {}: exchange receiving round {} after round {}: rounds must grow", rank_,
                    *receive, *received_));
  }
  const CallGuard guard(*this, FrameKind::exchange, round, 0);
  if (!replay) {
    enter_round(round);
    exchange_at_ = round;
  }
  if (receive) {
    receive_at_ = *receive;
    // Frames kept for rounds before the one received can never be used: rounds of calls only
    // grow (a peer's frame of round 3 kept during the handshake while our first call is round 5).
    for (auto it = pending_.lower_bound(Key{FrameKind::exchange, 0, 0u, 0});
         it != pending_.end() && std::get<0>(it->first) == FrameKind::exchange &&
         std::get<1>(it->first) < *receive;) {
      const auto [kind, r, step, from] = it->first;
      take_pending(it++);
      note_drop(from, {}, DropReason::stale, [&, r = r, from = from] {
        return fmt::format("stale exchange frame of round {} from {}: our round is {}", r,
                           peer_name(from), *receive);
      });
    }
  }
  for (auto it = credits_.begin(); it != credits_.end() && it->first < round;) {
    const auto [r, from] = *it;
    it = credits_.erase(it);
    --kept_credit_[static_cast<std::size_t>(from)];
    note_drop(from, {}, DropReason::stale, [&, r = r, from = from] {
      return fmt::format("stale credit of round {} from {}: our round is {}", r, peer_name(from),
                         round);
    });
  }
  held_.clear();
  const bool elastic = continues_after_peer_loss();
  if (elastic) {
    take_back_joined(round);
    drop_departed_from_lists();
    flush_control();  // leave notices go out before this round's messages
  }
  exchanging_ = true;
  struct Leaving {
    bool& flag;
    ~Leaving() { flag = false; }
  } leaving{exchanging_};
  // On a static topology both are the neighbours; on a time-varying one, we send to this round's
  // receivers and receive from the senders of the round received (an overlapped exchange
  // receives the messages sent exchange_lag exchanges earlier, under that round's schedule).
  // The stored lists, which take_back_joined brought up to this round (the virtual ones compute
  // a list while a join is pending, in a buffer the checks of arriving frames would reuse).
  const std::span<const int> to = stored(send_to_, round),
                             from = stored(receive_from_, receive.value_or(round));
  views_.assign(from.size(), {});
  const std::size_t n_to = to.size(), n_from = from.size();
  const bool paced = options_.receive_window > 0;
  const std::size_t window = paced ? static_cast<std::size_t>(options_.receive_window) : n_from;
  // Per rank to[k]: our payload sent to it. Per rank from[k]: our credit sent to it (eager:
  // implied), its payload delivered to the caller. Members reused every round: no allocation
  // once sized.
  auto& sent = round_sent_;
  auto& asked = round_asked_;
  auto& got = round_got_;
  auto& blocked = round_blocked_;
  // A call that only sends (an overlapped exchange before its first receive) has nothing to get.
  sent.assign(n_to, 0);
  asked.assign(n_from, paced ? 0 : 1);
  got.assign(n_from, receive ? 0 : 1);
  blocked.reserve(n_to + n_from);
  std::size_t n_sent = 0, n_got = receive ? 0 : n_from, next_ask = paced ? 0 : n_from,
              in_flight = paced ? 0 : n_from;
  ++send_batch_;
  const std::uint64_t sent_at = send_time();
  // Paced sends go when their credit comes; the model sends them all now, as eager ones.
  const Passage up = through_uplink(sent_at, n_to, payload.size());
  const auto started = Clock::now();
  // With continue_run a neighbour that is silent for the timeout is lost (below), one that waits
  // says so (send_alive): the call only fails when stuck for much longer.
  const auto deadline = started + (elastic ? 4 : 1) * options_.timeout;
  for (;;) {
    blocked.clear();
    if (elastic) {
      // A neighbour found gone (here, or by a neighbour's notice) is neither sent to nor waited
      // for. Its frame of this round, when already here, is still taken: it sent the round to
      // every neighbour before it went (a restarted peer's hello can arrive behind it), and one
      // that used it and one that did not would leave W unsymmetric for the round.
      for (std::size_t k = 0; k < n_from; ++k) {
        if (!got[k] && gone_[static_cast<std::size_t>(from[k])] &&
            !(receive && pending_.contains(Key{FrameKind::exchange, *receive, 0u, from[k]}))) {
          got[k] = 1;
          ++n_got;
        }
      }
      for (std::size_t k = 0; k < n_to; ++k) {
        if (!sent[k] && gone_[static_cast<std::size_t>(to[k])]) {
          sent[k] = 1;
          ++n_sent;
        }
      }
      flush_control();
    }
    for (std::size_t k = 0; k < n_to; ++k) {
      if (sent[k]) continue;
      const int j = to[k];
      const std::pair<std::uint64_t, int> credit{round, j};
      if (paced && !credits_.contains(credit)) continue;
      if (send_frame(FrameKind::exchange, j, round, 0, payload, up)) {
        sent[k] = 1;
        ++n_sent;  // its credit stays until the round ends: a repeated one is a duplicate
      } else {
        blocked.push_back(j);
      }
    }
    while (in_flight < window && next_ask < n_from) {
      if (!send_frame(FrameKind::credit, from[next_ask], round, 0, {}, {sent_at, sent_at})) {
        blocked.push_back(from[next_ask]);
        break;
      }
      asked[next_ask++] = 1;
      ++in_flight;
    }
    // The messages asked for and not yet delivered pass our downlink once all of them are here.
    to_schedule_.clear();
    bool all_asked_here = true;
    for (std::size_t k = 0; k < n_from && all_asked_here; ++k) {
      if (got[k] || !asked[k]) continue;
      auto it = pending_.find(Key{FrameKind::exchange, *receive, 0u, from[k]});
      if (it == pending_.end())
        all_asked_here = false;
      else
        to_schedule_.push_back(it);
    }
    if (all_asked_here) schedule(to_schedule_);
    std::uint64_t next_ready = UINT64_MAX;
    bool delivered = false;
    // The streaming form hands messages over in receive_from() order, whatever order they arrive
    // in: callers accumulate floats in the callback, and a fixed order keeps results
    // bit-reproducible (between runs, transports and resumed runs).
    for (std::size_t k = 0; k < n_from; ++k) {
      if (got[k]) continue;
      if (!asked[k]) {
        if (on_message) break;
        continue;
      }
      auto it = pending_.find(Key{FrameKind::exchange, *receive, 0u, from[k]});
      if (it == pending_.end()) {
        if (on_message) break;
        continue;
      }
      if (!due(it->second)) {
        if (it->second.scheduled) next_ready = std::min(next_ready, it->second.ready_ns);
        if (on_message) break;
        continue;
      }
      Stored stored = take_pending(it);
      if (clock_) clock_->reach(stored.ready_ns);
      delivered_[static_cast<std::size_t>(from[k])] = *receive;
      got[k] = 1;
      ++n_got;
      --in_flight;
      delivered = true;
      if (on_message) {
        // What it throws leaves the round half done: the CallGuard fails the transport.
        (*on_message)(k, stored.payload);
      } else {
        views_[k] = stored.payload;
        held_.push_back(std::move(stored.owner));
      }
    }
    if (n_got == n_from && n_sent == n_to) break;
    if (delivered) continue;  // room for another credit: ask before waiting
    // A message that arrived but is held back by link emulation is not late.
    auto arrived = [&](std::size_t k) {
      return got[k] ||
             (asked[k] && pending_.contains(Key{FrameKind::exchange, *receive, 0u, from[k]}));
    };
    if (elastic) {
      const auto now = Clock::now();
      const auto silent = [&](int r) {
        return now >=
               std::max(started, last_heard_[static_cast<std::size_t>(r)]) + options_.timeout;
      };
      bool lost = false;
      for (std::size_t k = 0; k < n_from && !lost; ++k) {
        if (!arrived(k) && silent(from[k])) {
          detect_loss(from[k], round);
          lost = true;
        }
      }
      for (std::size_t k = 0; k < n_to && !lost; ++k) {
        if (!sent[k] && silent(to[k])) {
          detect_loss(to[k], round);
          lost = true;
        }
      }
      if (lost) continue;
      if (now - started >= options_.timeout / 4) send_alive(round);
    }
    if (Clock::now() >= deadline) {
      for (std::size_t k = 0; k < n_from; ++k) {
        if (!arrived(k)) {
          std::vector<int> missing;
          for (std::size_t m = 0; m < n_from; ++m) {
            if (!arrived(m)) missing.push_back(from[m]);
          }
          fail(
              fmt::format("rank {}: round {}: no message{} from {} within {} ms (missing {} of {}: "
                          "ranks {}){}",
                          rank_, round,
                          *receive == round ? std::string() : fmt::format(" of round {}", *receive),
                          peer_name(from[k]), options_.timeout.count(), missing.size(), n_from,
                          fmt::join(missing, ", "), dropped_note(from[k])));
        }
      }
      for (std::size_t k = 0; k < n_to; ++k) {
        if (!sent[k]) {
          fail(fmt::format(
              "rank {}: round {}: {} {} within {} ms", rank_, round, peer_name(to[k]),
              paced ? "never asked for our message" : "cannot take our message (link full)",
              options_.timeout.count()));
        }
      }
    }
    auto until = deadline;
    if (next_ready != UINT64_MAX) {
      until = Clock::now() >= deadline ? from_ns(next_ready) : std::min(until, from_ns(next_ready));
    }
    // Wake up to look for silent neighbours and to say that we wait.
    if (elastic) until = std::min(until, Clock::now() + options_.timeout / 8);
    if (auto in = wait_inbound(polled(until), blocked)) accept(std::move(*in));
    poll();
  }
  // The payload is the caller's memory: it must be free again when we return.
  if (auto held = wait_released(deadline); !held.empty()) {
    fail(fmt::format("rank {}: round {}: message to {} not delivered within {} ms", rank_, round,
                     peer_name(held.front()), options_.timeout.count()));
  }
  if (elastic) {
    exchanging_ = false;
    drop_departed_from_lists();
  }
  if (replay) return;
  last_exchange_ = round;
  if (receive) received_ = *receive;
  // Credits of rounds the caller skipped can never be used.
  std::erase_if(credits_, [&](const auto& c) {
    if (c.first > round) return false;
    --kept_credit_[static_cast<std::size_t>(c.second)];
    return true;
  });
}

void FramedTransport::ring_step(std::uint64_t round, std::uint32_t step,
                                std::span<const std::byte> send, std::span<std::byte> recv) {
  handshake();
  const std::pair<std::uint64_t, std::uint32_t> at{round, step};
  if (last_ring_ && at <= *last_ring_) {
    throw TransportError(
        fmt::format("rank {}: ring round {} step {} after round {} step {}: "
                    "(round, step) must grow",
                    rank_, round, step, last_ring_->first, last_ring_->second));
  }
  if (!options_.ring_links && size_ > 1) {
    throw TransportError(
        fmt::format("rank {}: ring_step needs TransportOptions::ring_links", rank_));
  }
  enter_round(round);
  if (continues_after_peer_loss()) take_back_joined(round);
  ring_at_ = at;
  // Ring frames kept for earlier steps can never be used (see exchange_impl).
  for (auto it = pending_.lower_bound(Key{FrameKind::ring, 0, 0u, 0});
       it != pending_.end() && std::get<0>(it->first) == FrameKind::ring &&
       std::pair(std::get<1>(it->first), std::get<2>(it->first)) < at;) {
    const auto [kind, r, s, from] = it->first;
    take_pending(it++);
    note_drop(from, {}, DropReason::stale, [&, r = r, s = s, from = from] {
      return fmt::format(
          "stale ring frame of round {} step {} from {}: our step is round {} step "
          "{}",
          r, s, peer_name(from), round, step);
    });
  }
  held_.clear();
  views_.clear();
  if (size_ == 1) {
    if (send.size() != recv.size()) {
      throw TransportError(fmt::format("rank 0: ring round {} step {}: sends {} bytes into {}",
                                       round, step, send.size(), recv.size()));
    }
    if (!send.empty()) std::memmove(recv.data(), send.data(), send.size());
    last_ring_ = at;
    return;
  }
  // The ring of the ranks not gone: the next and previous of them (linked with all_links).
  auto member = [&](int from, int dir) {
    int r = from;
    do r = (r + dir + size_) % size_;
    while (gone_[static_cast<std::size_t>(r)] && r != rank_);
    return r;
  };
  const int next = member(rank_, 1);
  const int prev = member(rank_, -1);
  ring_cut_ = false;
  if (next == rank_) {
    // Every other peer is gone: a ring of one.
    if (send.size() != recv.size())
      fail(fmt::format("rank {}: ring round {} step {}: sends {} bytes into {}", rank_, round, step,
                       send.size(), recv.size()));
    if (!send.empty()) std::memmove(recv.data(), send.data(), send.size());
    last_ring_ = at;
    return;
  }
  for (int r : {next, prev}) {
    if (!is_link(r))
      fail(
          fmt::format("rank {}: ring round {} step {}: the ring without the peers gone needs a "
                      "link to {} (TransportOptions::all_links)",
                      rank_, round, step, peer_name(r)));
  }
  const Key want{FrameKind::ring, round, step, prev};
  const int to[1] = {next};
  const std::size_t known = departures_.size();
  transfer(FrameKind::ring, round, step, send, to, {&want, 1});
  if (departures_.size() != known) {
    // A departure learned while waiting: the ring this step belongs to is void.
    ring_cut_ = true;
    last_ring_ = at;
    return;
  }
  const Stored stored = take_pending(pending_.find(want));
  const auto got = stored.payload;
  if (got.size() != recv.size()) {
    fail(fmt::format("rank {}: ring round {} step {}: {} sent {} bytes, expected {}", rank_, round,
                     step, peer_name(prev), got.size(), recv.size()));
  }
  if (!got.empty()) std::memcpy(recv.data(), got.data(), got.size());
  last_ring_ = at;
}

}  // namespace gossip::net

namespace gossip::net {

void FramedTransport::check_direct(const char* call, std::uint64_t round, std::uint32_t lane,
                                   const std::map<std::uint32_t, std::uint64_t>& last) const {
  for (int j = 0; j < size_; ++j) {
    if (j != rank_ && !is_link(j)) {
      throw TransportError(fmt::format(
          "rank {}: {} of round {} in direct lane {}: direct messages need a link to every peer "
          "(TransportOptions::all_links), and {} is not linked",
          rank_, call, round, lane, peer_name(j)));
    }
  }
  if (auto it = last.find(lane); it != last.end() && round <= it->second) {
    throw TransportError(
        fmt::format("rank {}: {} of round {} in direct lane {} after round {}: rounds must grow",
                    rank_, call, round, lane, it->second));
  }
}

void FramedTransport::post(std::uint64_t round, std::uint32_t lane, const PayloadFor& payload_for) {
  check_direct("post", round, lane, posted_);
  handshake();
  enter_round(round);
  // One frame per peer, in ring order from rank + 1: each passes our uplink after the one before
  // (the network model), and each call returns once the backend let go of the caller's bytes.
  for (int k = 1; k < size_; ++k) {
    const int to[1] = {(rank_ + k) % size_};
    transfer(FrameKind::direct, round, lane, payload_for(to[0]), to, {});
  }
  posted_[lane] = round;
}

void FramedTransport::collect(std::uint64_t round, std::uint32_t lane,
                              const MessageFn& on_message) {
  check_direct("collect", round, lane, collected_);
  handshake();
  enter_round(round);
  // Frames kept for earlier rounds of this lane can never be collected (rounds of collects grow).
  for (auto it = pending_.lower_bound(Key{FrameKind::direct, 0, 0u, 0});
       it != pending_.end() && std::get<0>(it->first) == FrameKind::direct;) {
    const auto [kind, r, l, from] = it->first;
    if (l != lane || r >= round) {
      ++it;
      continue;
    }
    take_pending(it++);
    note_drop(from, {}, DropReason::stale, [&, r = r, from = from] {
      return fmt::format("stale direct frame of round {} in lane {} from {}: we collect round {}",
                         r, lane, peer_name(from), round);
    });
  }
  std::vector<Key> want;
  want.reserve(static_cast<std::size_t>(size_));
  for (int k = 1; k < size_; ++k)
    want.push_back(Key{FrameKind::direct, round, lane, (rank_ + k) % size_});
  transfer(FrameKind::direct, round, lane, {}, {}, want);
  // What the callback throws leaves the call half done: the guard fails the transport.
  const CallGuard guard(*this, FrameKind::direct, round, lane);
  collected_[lane] = round;
  for (const Key& k : want) {
    const Stored stored = take_pending(pending_.find(k));
    on_message(static_cast<std::size_t>(std::get<3>(k)), stored.payload);
  }
}

}  // namespace gossip::net
