#include "gossip/zmq_transport.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <utility>

#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include "gossip/curve_keys.hpp"

namespace gossip::net {
namespace {

// ZeroMQ's high-water marks count messages, not bytes. Keep roughly this many bytes queued per
// link when the payload size is known, so large models cannot pile up unbounded.
constexpr std::uint64_t kQueueBytesPerLink = 512ull << 20;
constexpr int kDefaultHwm = 1000;

int derive_hwm(const TransportOptions& o) {
  if (o.hwm_messages > 0) return o.hwm_messages;
  if (o.max_payload_bytes == 0) return kDefaultHwm;
  const std::uint64_t n = kQueueBytesPerLink / (o.max_payload_bytes + kFrameHeaderSize);
  return static_cast<int>(std::clamp<std::uint64_t>(n, 4, kDefaultHwm));
}

int ms(std::chrono::milliseconds d) {
  return static_cast<int>(std::clamp<std::int64_t>(d.count(), 0, INT_MAX));
}

void common_options(zmq::socket_t& s, const TransportOptions& o, int hwm) {
  s.set(zmq::sockopt::linger, ms(o.linger));
  s.set(zmq::sockopt::sndhwm, hwm);
  s.set(zmq::sockopt::rcvhwm, hwm);
  // IPv6 endpoints (tcp://[::1]:PORT, tcp://[2001:db8::7]:PORT) as well as IPv4 ones: a dual-stack
  // socket, which binds and connects IPv4 addresses as before.
  s.set(zmq::sockopt::ipv6, true);
  if (o.heartbeat.count() > 0) {
    // ZMTP pings drop a connection whose far end vanished without a FIN (cable, kill -9 on
    // another host). A ping queues behind the frame being written, and the timer only resets
    // when a whole frame arrives, so the timeout must outlast the largest transfer: a shorter
    // one would cut a connection in the middle of a large payload and lose it. Our round
    // timeout bounds that transfer anyway.
    const auto wait = std::max(o.heartbeat * 3, o.timeout);
    s.set(zmq::sockopt::heartbeat_ivl, ms(o.heartbeat));
    s.set(zmq::sockopt::heartbeat_timeout, ms(wait));
    s.set(zmq::sockopt::heartbeat_ttl, std::min(ms(wait), 6553500));  // ZMTP caps TTL here
  }
}

// "tcp://host:port" whose bind failed only because the host is not an address of this machine
// binds all interfaces on that port instead: a host name (libzmq binds interface names and
// addresses, not names it would have to resolve: ENODEV), or an address that is not local
// (EADDRNOTAVAIL: another machine's, or a public address behind NAT). Any other failure, and any
// failure on an address literal of this machine (port in use, no permission), is an error: a silent
// bind elsewhere would leave the peers unable to reach us.
std::optional<std::string> wildcard_of(const std::string& endpoint, int error) {
  if (!endpoint.starts_with("tcp://")) return std::nullopt;
  const auto colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon < 6) return std::nullopt;
  const std::string host = endpoint.substr(6, colon - 6);
  const bool literal =
      host.starts_with('[') || host.find_first_not_of("0123456789.") == std::string::npos;
  if (host.empty() || host == "*") return std::nullopt;
  if (error == EADDRNOTAVAIL || (error == ENODEV && !literal))
    return "tcp://*" + endpoint.substr(colon);
  return std::nullopt;
}

// ZMQ_ZAP_ENFORCE_DOMAIN: without it a CURVE server whose ZAP handler is missing admits every
// client that knows its public key (libzmq's fallback, issue #2594). It is a DRAFT option, hidden
// in Debian's zmq.h (built without the draft API), but libzmq 4.3.4 handles it outside its draft
// block, so setting it works there; a library that refused it would make the constructor throw.
constexpr int kZapEnforceDomain = 93;
constexpr std::string_view kZapDomain = "gossip";
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
// A CURVE MESSAGE command wraps a part as "\x07MESSAGE", an 8-byte nonce and a box of a flags
// byte, the part and a 16-byte MAC (RFC 26): 33 bytes more on the wire; rounded up.
constexpr std::uint64_t kCurveMessageOverhead = 64;
constexpr const char* kMonitorEndpoint = "inproc://gossip.router-monitor";
constexpr int kHandshakeFailures = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;

std::string_view text_of(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

// A rank written in decimal, -1 unless it is all digits and in [0, n).
int rank_in(std::string_view text, int n) {
  int r = -1;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), r);
  if (ec != std::errc{} || p != text.data() + text.size() || r < 0 || r >= n) return -1;
  return r;
}

}  // namespace

std::string ZmqTransport::routing_id(int rank) {
  return fmt::format("r{}", rank);
}

void ZmqTransport::on_release(void*, void* hint) noexcept {
  auto* slot = static_cast<Slot*>(hint);
  {
    std::lock_guard lock(slot->releases->mutex);
    --slot->releases->outstanding[static_cast<std::size_t>(slot->rank)];
  }
  slot->releases->cv.notify_all();
}

ZmqTransport::ZmqTransport(const topology::Topology& topo, int rank, TransportOptions options,
                           bool handshake_now)
    : FramedTransport(topo, rank, std::move(options), "zeromq"),
      ctx_(std::max(1, this->options().io_threads)),
      router_(ctx_, zmq::socket_type::router) {
  try {
    set_up(topo, handshake_now);
  } catch (...) {
    // The ZAP thread holds a socket of ctx_: without this the context could never terminate.
    abort();
    throw;
  }
}

void ZmqTransport::set_up(const topology::Topology& topo, bool handshake_now) {
  const TransportOptions& o = this->options();
  const int rank = this->rank();
  const int hwm = derive_hwm(o);
  releases_.outstanding.assign(static_cast<std::size_t>(size()), 0);
  slots_.resize(static_cast<std::size_t>(size()));
  for (int r = 0; r < size(); ++r) slots_[static_cast<std::size_t>(r)] = {&releases_, r};

  if (const auto why =
          secret_key_problem(topo, rank, o.curve_secret_key ? &*o.curve_secret_key : nullptr);
      !why.empty()) {
    throw TransportError(fmt::format("rank {}: {}", rank, why));
  }
  curve_ = o.curve_secret_key.has_value();
  std::string my_public, my_secret;
  if (curve_) {
    for (int r = 0; r < size(); ++r) key_rank_[topo.public_keys[static_cast<std::size_t>(r)]] = r;
    my_public = z85(topo.public_keys[static_cast<std::size_t>(rank)]);
    my_secret = z85(*o.curve_secret_key);
    // The handler must be bound before the ROUTER (RFC 27): a CURVE handshake that finds none
    // fails (kZapEnforceDomain) rather than admitting anyone.
    zmq::socket_t rep(ctx_, zmq::socket_type::rep);
    rep.set(zmq::sockopt::linger, 0);
    rep.bind(kZapEndpoint);
    zap_thread_ = std::thread([this, s = std::move(rep)]() mutable { serve_zap(std::move(s)); });
    router_.set(zmq::sockopt::curve_server, true);
    router_.set(zmq::sockopt::curve_secretkey, my_secret);
    router_.set(zmq::sockopt::zap_domain, std::string(kZapDomain));
    const int one = 1;
    if (zmq_setsockopt(router_.handle(), kZapEnforceDomain, &one, sizeof one) != 0) {
      throw TransportError(
          fmt::format("rank {}: this libzmq refuses ZMQ_ZAP_ENFORCE_DOMAIN ({}), "
                      "without which a missing ZAP handler would admit any key",
                      rank, zmq_strerror(zmq_errno())));
    }
    if (zmq_socket_monitor(router_.handle(), kMonitorEndpoint, kHandshakeFailures) != 0) {
      throw TransportError(
          fmt::format("rank {}: cannot monitor the ROUTER: {}", rank, zmq_strerror(zmq_errno())));
    }
    monitor_.emplace(ctx_, zmq::socket_type::pair);
    monitor_->set(zmq::sockopt::linger, 0);
    monitor_->connect(kMonitorEndpoint);
  }

  common_options(router_, o, hwm);
  if (o.max_payload_bytes > 0) {
    // libzmq drops a connection that sends a larger part, before buffering it.
    // With CURVE the limit applies to the encrypted ZMTP frame, which is larger than the part it
    // carries: a payload of exactly max_payload_bytes would cost the connection.
    const auto limit = std::max<std::uint64_t>(o.max_payload_bytes, 64 * 1024) +
                       (curve_ ? kCurveMessageOverhead : 0);
    router_.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(limit));
  }
  const std::string& mine = endpoint_of(rank);
  try {
    router_.bind(mine);
    bound_ = mine;
  } catch (const zmq::error_t& e) {
    const auto any = wildcard_of(mine, e.num());
    if (!any) {
      throw TransportError(
          fmt::format("rank {}: cannot bind {}: {} (errno {})", rank, mine, e.what(), e.num()));
    }
    try {
      router_.bind(*any);
      bound_ = *any;
      // Loud: the port is now open on every interface of this machine.
      log().warn("bound {} (every interface) because {} is not an address of this host ({})", *any,
                 mine, e.what());
    } catch (const zmq::error_t& e2) {
      throw TransportError(fmt::format("rank {}: cannot bind {} ({}) nor {} ({})", rank, mine,
                                       e.what(), *any, e2.what()));
    }
  }

  dealers_.resize(static_cast<std::size_t>(size()));
  const std::string id = routing_id(rank);
  for (int to : links()) {
    auto& d = dealers_[static_cast<std::size_t>(to)].emplace(ctx_, zmq::socket_type::dealer);
    common_options(d, o, hwm);
    // With CURVE the key names the sender, and no routing id is set: the ROUTER gives each
    // connection its own, so no client (a stolen key included) can take another rank's and keep
    // that rank's connection out (ZeroMQ refuses a second connection under a routing id in use).
    if (!curve_) d.set(zmq::sockopt::routing_id, zmq::buffer(id));
    if (curve_) {
      d.set(zmq::sockopt::curve_serverkey, z85(topo.public_keys[static_cast<std::size_t>(to)]));
      d.set(zmq::sockopt::curve_publickey, my_public);
      d.set(zmq::sockopt::curve_secretkey, my_secret);
      // Our side of a refused handshake (the peer's ZAP handler refused our key, or its key is
      // not the one we expect): counted against that peer, so a timeout naming it says why.
      const std::string at = fmt::format("inproc://gossip.dealer-monitor-{}", to);
      if (zmq_socket_monitor(d.handle(), at.c_str(), kHandshakeFailures) != 0) {
        throw TransportError(fmt::format("rank {}: cannot monitor the link to {}: {}", rank, to,
                                         zmq_strerror(zmq_errno())));
      }
      auto& m = dealer_monitors_.emplace_back(to, zmq::socket_t(ctx_, zmq::socket_type::pair));
      m.second.set(zmq::sockopt::linger, 0);
      m.second.connect(at);
    }
    try {
      d.connect(endpoint_of(to));
    } catch (const zmq::error_t& e) {
      throw TransportError(
          fmt::format("rank {}: cannot connect to {}: {}", rank, peer_name(to), e.what()));
    }
  }
  std::fill(my_secret.begin(), my_secret.end(), '\0');
  start();
  if (handshake_now) handshake();
}

ZmqTransport::~ZmqTransport() {
  // Sockets close with their bounded LINGER, then the context waits for libzmq to release every
  // zero-copy message (the callbacks touch releases_, which is destroyed last).
  for (auto& d : dealers_) {
    if (d) d->close();
  }
  if (monitor_) monitor_->close();
  for (auto& [rank, m] : dealer_monitors_) m.close();
  router_.close();
  close_context();
}

void ZmqTransport::close_context() noexcept {
  // The ZAP thread blocks in recv on its own socket, which it alone may close: shutting the
  // context down wakes it with ETERM, it closes the socket and returns, and only then can the
  // context terminate. Lingering messages are kept as zmq_ctx_term alone keeps them.
  ctx_.shutdown();
  if (zap_thread_.joinable()) zap_thread_.join();
  ctx_.close();
}

void ZmqTransport::serve_zap(zmq::socket_t rep) const {
  // RFC 27: request = version, request id, domain, address, identity, mechanism, credentials...;
  // reply = version, request id, status code, status text, user id, metadata. An in-memory
  // lookup: a slow answer would hold up the handshake (ZMQ_HANDSHAKE_IVL).
  for (;;) {
    std::vector<zmq::message_t> req;
    try {
      if (!zmq::recv_multipart(rep, std::back_inserter(req))) continue;
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      break;  // ETERM: the transport is closing
    }
    std::string status = "400", text = "key not in the topology", user;
    if (req.size() < 6 || text_of(req[0]) != "1.0") {
      status = "500";
      text = "bad ZAP request";
    } else if (text_of(req[5]) != "CURVE" || req.size() != 7) {
      text = "CURVE required";
    } else if (req[6].size() == topology::PublicKey{}.size()) {
      topology::PublicKey key{};
      std::memcpy(key.data(), req[6].data(), key.size());
      if (const auto it = key_rank_.find(key); it != key_rank_.end()) {
        status = "200";
        text = "OK";
        user = std::to_string(it->second);
      }
    }
    try {
      std::array<zmq::const_buffer, 6> reply = {
          zmq::str_buffer("1.0"),
          zmq::buffer(req.size() > 1 ? req[1].data() : nullptr, req.size() > 1 ? req[1].size() : 0),
          zmq::buffer(status),
          zmq::buffer(text),
          zmq::buffer(user),
          zmq::const_buffer(nullptr, 0)};
      zmq::send_multipart(rep, reply);
    } catch (const zmq::error_t&) {
      break;
    }
  }
  rep.close();
}

void ZmqTransport::read_monitor_events(zmq::socket_t& monitor, int rank) {
  for (;;) {
    std::vector<zmq::message_t> event;
    try {
      if (!zmq::recv_multipart(monitor, std::back_inserter(event), zmq::recv_flags::dontwait))
        return;
    } catch (const zmq::error_t&) {
      return;
    }
    if (event.size() != 2 || event[0].size() < 6) continue;
    std::uint16_t id = 0;
    std::uint32_t value = 0;
    std::memcpy(&id, event[0].data(), sizeof id);
    std::memcpy(&value, static_cast<const char*>(event[0].data()) + 2, sizeof value);
    const std::string endpoint(text_of(event[1]));
    if (rank >= 0) {
      const char* what = id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                             ? "it refused our key (is ours in its topology file?)"
                         : id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                             ? "not a valid CURVE handshake (does its key match our topology "
                               "file's?)"
                             : "no detail";
      count_refused_by(rank, DropReason::handshake_failed, [&] {
        return fmt::format("our connection to {} failed the CURVE handshake: {} (code {})",
                           peer_name(rank), what, value);
      });
      continue;
    }
    const char* what = id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? "the ZAP handler refused its key"
                       : id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                           ? "not a valid CURVE handshake "
                             "(no CURVE, or another server key)"
                           : "no ZAP handler answered";
    count_refused("CURVE handshakes refused", DropReason::handshake_failed, [&] {
      return fmt::format("a connection to {} failed the CURVE handshake: {} (code {})", endpoint,
                         what, value);
    });
  }
}

void ZmqTransport::abort() noexcept {
  // Close with the bounded LINGER rather than 0: what is queued (our hello, above all) still gets
  // out, so a peer we refuse learns why instead of timing out. Terminating the context waits at
  // most LINGER and guarantees libzmq reads no caller buffer after we return.
  try {
    for (auto& d : dealers_) {
      if (d) d->close();
    }
    if (monitor_) monitor_->close();
    for (auto& [rank, m] : dealer_monitors_) m.close();
    router_.close();
    close_context();
  } catch (...) {
    // Closing can only fail on a context already gone; nothing else is left to stop.
  }
}

void ZmqTransport::drop_queued() noexcept {
  try {
    for (auto& d : dealers_) {
      if (d) d->set(zmq::sockopt::linger, 0);
    }
  } catch (...) {
    // A socket already closed keeps nothing queued.
  }
}

bool ZmqTransport::try_send(int to, const HeaderBytes& header, std::span<const std::byte> payload) {
  auto& slot = dealers_.at(static_cast<std::size_t>(to));
  if (!slot) throw TransportError(fmt::format("rank {}: no link to {}", rank(), peer_name(to)));
  zmq::socket_t& d = *slot;
  zmq::message_t head(header.data(), header.size());
  auto sent = d.send(head, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  if (!sent) return false;  // at the high-water mark: nothing was queued
  zmq::message_t body;
  // Zero-copy only while a lost peer ends the run: with on_peer_loss = continue a message queued
  // for a peer that is gone would hold the caller's buffer for as long as its pipe lives.
  if (payload.size() >= options().zero_copy_min_bytes && !continues_after_peer_loss()) {
    // libzmq reads the caller's buffer until on_release runs; transfer() waits for that, and an
    // exception out of the call aborts the transport first (FramedTransport::CallGuard). Counted
    // once the message owns the buffer: a rebuild that throws registered no release.
    body.rebuild(const_cast<std::byte*>(payload.data()), payload.size(), &ZmqTransport::on_release,
                 &slots_[static_cast<std::size_t>(to)]);
    std::lock_guard lock(releases_.mutex);
    ++releases_.outstanding[static_cast<std::size_t>(to)];
  } else if (!payload.empty()) {  // an empty span's data() may be null: body stays empty
    body.rebuild(payload.data(), payload.size());
  }
  // The remaining parts of a message whose first part was accepted are never refused.
  if (!d.send(body, zmq::send_flags::dontwait)) {
    throw TransportError(
        fmt::format("rank {}: libzmq refused the payload part to {}", rank(), peer_name(to)));
  }
  return true;
}

Inbound ZmqTransport::read_message() {
  auto parts = std::make_shared<std::vector<zmq::message_t>>();
  constexpr std::size_t kMaxParts = 8;  // ours have 3; more is garbage, drained but not kept
  std::size_t count = 0;
  for (;;) {
    zmq::message_t m;
    // The first part is ready (poll said so) and the rest of a message arrives with it.
    if (!router_.recv(m, zmq::recv_flags::dontwait)) break;
    const bool more = m.more();
    ++count;
    if (parts->size() < kMaxParts) parts->push_back(std::move(m));
    if (!more) break;
  }
  Inbound in;
  if (parts->empty()) {
    in.malformed = "empty message";
    return in;
  }
  const auto& idm = (*parts)[0];
  const std::string_view id(static_cast<const char*>(idm.data()), idm.size());
  int r = -1;
  if (curve_) {
    // Who sent it is the key that passed the handshake (the ZAP handler's User-Id: its rank);
    // the routing id is the ROUTER's own for the connection.
    const char* user = parts->size() >= 2 ? zmq_msg_gets((*parts)[1].handle(), "User-Id") : nullptr;
    r = user ? rank_in(user, size()) : -1;
  } else if (id.size() > 1 && id[0] == 'r') {
    auto [p, ec] = std::from_chars(id.data() + 1, id.data() + id.size(), r);
    if (ec != std::errc{} || p != id.data() + id.size() || r < 0 || r >= size()) r = -1;
  }
  in.link = r;
  if (r < 0) {
    std::string hex;
    for (std::size_t i = 0; i < std::min<std::size_t>(id.size(), 16); ++i) {
      hex += fmt::format("{:02x}", static_cast<unsigned char>(id[i]));
    }
    in.link_label = fmt::format("routing id 0x{}", hex);
  }
  if (!in.malformed.empty()) {
    // Refused above; the parts are not looked at.
  } else if (count != 3) {
    in.malformed = fmt::format("{} message parts, expected 2 (header, payload)", count - 1);
  } else {
    in.header = {static_cast<const std::byte*>((*parts)[1].data()), (*parts)[1].size()};
    in.payload = {static_cast<const std::byte*>((*parts)[2].data()), (*parts)[2].size()};
  }
  in.owner = std::move(parts);
  return in;
}

std::optional<Inbound> ZmqTransport::wait_inbound(Clock::time_point deadline,
                                                  std::span<const int> blocked) {
  std::vector<zmq::pollitem_t> items;
  const std::size_t first_blocked = 2 + dealer_monitors_.size();
  items.reserve(first_blocked + blocked.size());
  items.push_back({router_.handle(), 0, ZMQ_POLLIN, 0});
  // Always at index 1 (a null socket and fd -1 never report), then the DEALERs' monitors, so
  // that blocked links start at first_blocked.
  items.push_back({monitor_ ? monitor_->handle() : nullptr, -1, ZMQ_POLLIN, 0});
  for (auto& [rank, m] : dealer_monitors_) items.push_back({m.handle(), 0, ZMQ_POLLIN, 0});
  for (int b : blocked) {
    items.push_back({dealers_.at(static_cast<std::size_t>(b))->handle(), 0, ZMQ_POLLOUT, 0});
  }
  for (;;) {
    const auto left = deadline - Clock::now();
    // Round up: a wait that ends a little before the deadline would spin.
    const auto wait =
        std::max<std::int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(left).count());
    int ready = 0;
    try {
      ready = zmq::poll(items.data(), items.size(),
                        std::chrono::milliseconds(std::min<std::int64_t>(wait, INT_MAX)));
    } catch (const zmq::error_t& e) {
      // A signal (Ctrl-C asks the runtime for a clean stop) interrupts the wait; wait on.
      if (e.num() != EINTR) throw;
      continue;
    }
    if (items[0].revents & ZMQ_POLLIN) return read_message();
    if (items[1].revents & ZMQ_POLLIN) {
      read_monitor_events(*monitor_, -1);
      --ready;
    }
    for (std::size_t k = 0; k < dealer_monitors_.size(); ++k) {
      if (!(items[2 + k].revents & ZMQ_POLLIN)) continue;
      read_monitor_events(dealer_monitors_[k].second, dealer_monitors_[k].first);
      --ready;
    }
    if (ready > 0) return std::nullopt;  // a blocked link has room again
    if (Clock::now() >= deadline) return std::nullopt;
  }
}

std::vector<int> ZmqTransport::wait_released(Clock::time_point deadline) {
  std::unique_lock lock(releases_.mutex);
  auto all_free = [&] {
    return std::all_of(releases_.outstanding.begin(), releases_.outstanding.end(),
                       [](int c) { return c == 0; });
  };
  releases_.cv.wait_until(lock, deadline, all_free);
  std::vector<int> held;
  for (int r = 0; r < size(); ++r) {
    if (releases_.outstanding[static_cast<std::size_t>(r)] > 0) held.push_back(r);
  }
  return held;
}

}  // namespace gossip::net
