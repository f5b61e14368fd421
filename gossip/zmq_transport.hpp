#pragma once
// The Transport between processes, over ZeroMQ (libzmq 4.3, cppzmq 4.9).
//
// Socket layout: each peer binds one ROUTER socket on its topology endpoint and connects one
// DEALER per linked peer (neighbours, plus rank±1 for ring steps), with routing id "r<rank>" so
// the ROUTER knows which link a frame came on and can reject a frame whose header names another
// sender. A frame is a two-part message: the 64-byte header (frame.hpp) and the payload. Large
// payloads are sent zero-copy from the caller's buffer; exchange() and ring_step() return only
// after libzmq has let go of it, so the caller may reuse the buffer at once.
//
// The constructor binds, connects and runs the handshake (unless told not to), so a peer with
// another topology or settings is refused before any training starts.
//
// CURVE (a topology with public keys, TransportOptions::curve_secret_key set): the ROUTER is a
// CURVE server and every DEALER a CURVE client of its peer's public key. A ZAP handler (a thread
// with a REP socket on inproc://zeromq.zap.01, bound before the ROUTER) admits only the
// topology's keys and names the connection by the key's rank (its User-Id); DEALERs then set no
// routing id (the ROUTER's own ids cannot be squatted). Handshakes the ROUTER refuses are
// counted as drops (handshake_failed) from a socket monitor. docs/transport.md, "CURVE".

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "gossip/framed_transport.hpp"
#include "topology/topology.hpp"

namespace gossip::net {

class ZmqTransport final : public FramedTransport {
 public:
  ZmqTransport(const topology::Topology& topo, int rank, TransportOptions options = {},
               bool handshake_now = true);
  ~ZmqTransport() override;

  ZmqTransport(const ZmqTransport&) = delete;
  ZmqTransport& operator=(const ZmqTransport&) = delete;

  // The endpoint actually bound (differs from the topology's when it had to bind tcp://*:port).
  const std::string& bound_endpoint() const { return bound_; }
  // Routing id a DEALER of `rank` presents: "r<rank>".
  static std::string routing_id(int rank);

 protected:
  bool try_send(int to, const HeaderBytes& header, std::span<const std::byte> payload) override;
  std::optional<Inbound> wait_inbound(Clock::time_point deadline,
                                      std::span<const int> blocked) override;
  std::vector<int> wait_released(Clock::time_point deadline) override;
  void abort() noexcept override;
  void drop_queued() noexcept override;

 private:
  // Counts zero-copy messages libzmq still holds, per destination. Its free callback runs on a
  // libzmq I/O thread, hence the mutex. Declared first: it must outlive the context, whose
  // termination is what runs the last callbacks.
  struct Releases {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<int> outstanding;
  };
  struct Slot {
    Releases* releases = nullptr;
    int rank = 0;
  };
  // The constructor's work; on a throw the constructor stops what it started.
  void set_up(const topology::Topology& topo, bool handshake_now);
  static void on_release(void* data, void* hint) noexcept;
  Inbound read_message();
  // CURVE: the ZAP handler's loop (its own thread) and the socket monitor's events.
  void serve_zap(zmq::socket_t rep) const;
  // Counts the refused handshakes a monitor reports: the ROUTER's (`rank` -1: strangers), or the
  // DEALER's to peer `rank` (counted against that peer, so a timeout naming it says why).
  void read_monitor_events(zmq::socket_t& monitor, int rank);
  // Stops the ZAP thread and terminates the context (sockets must be closed first).
  void close_context() noexcept;

  Releases releases_;
  std::vector<Slot> slots_;
  zmq::context_t ctx_;
  zmq::socket_t router_;
  std::vector<std::optional<zmq::socket_t>> dealers_;  // indexed by rank; set for links only
  std::string bound_;
  bool curve_ = false;
  std::map<topology::PublicKey, int> key_rank_;  // CURVE: the admitted keys; read-only once set
  std::optional<zmq::socket_t> monitor_;         // CURVE: the ROUTER's refused handshakes
  // CURVE: per DEALER (its peer's rank), the monitor of its refused handshakes.
  std::vector<std::pair<int, zmq::socket_t>> dealer_monitors_;
  std::thread zap_thread_;  // CURVE: serve_zap
};

}  // namespace gossip::net
