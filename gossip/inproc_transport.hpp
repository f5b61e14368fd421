#pragma once
// The Transport between threads of one process: a hub holds one mailbox per rank; each thread
// owns one InprocTransport. Same framing, handshake, round rules, timeouts, link emulation and
// counters as the ZeroMQ transport (both derive from FramedTransport), so the algorithms tests
// and `gossip simulate` exercise the code that runs between processes.
//
//   auto hub = std::make_shared<InprocHub>(topo);
//   // in thread r:
//   InprocTransport t(hub, r, options);
//   auto& got = t.exchange(round, bytes);
//
// Construction does not block (the handshake runs on first use), so all peers can also be
// constructed from one thread before their threads start.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "gossip/framed_transport.hpp"
#include "topology/topology.hpp"

namespace gossip::net {

class InprocHub {
 public:
  explicit InprocHub(topology::Topology topo);

  const topology::Topology& topology() const { return topo_; }
  int size() const { return topo_.size(); }

  // Delivers one frame to `to`'s mailbox as if it came over the link of `from` (-1: a stranger).
  // Public so tests can inject corrupted or forged frames.
  void post(int to, int from, std::span<const std::byte> header,
            std::shared_ptr<const std::vector<std::byte>> payload);
  void post_raw(int to, int from, std::vector<std::byte> header, std::vector<std::byte> payload);

  // Test seams. The watcher sees every frame a transport sends, in the sender's thread, before it
  // is queued (set it before the peers start; it may call release()). hold(from, to) keeps the
  // frames of that link in the hub, as a connection slow to come up would, until release(from,
  // to) delivers them in order.
  using Watcher = std::function<void(int to, int from, std::span<const std::byte> header)>;
  void watch(Watcher watcher) { watcher_ = std::move(watcher); }
  void hold(int from, int to);
  void release(int from, int to);

 private:
  friend class InprocTransport;
  struct Delivery {
    int from = -1;
    std::vector<std::byte> header;
    std::shared_ptr<const std::vector<std::byte>> payload;  // shared by all receivers of a send
  };
  struct Mailbox {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<Delivery> queue;
  };
  std::optional<Delivery> take(int rank, Clock::time_point deadline);
  void deliver(int to, Delivery d);

  topology::Topology topo_;
  std::vector<std::unique_ptr<Mailbox>> boxes_;
  Watcher watcher_;
  std::mutex hold_mutex_;
  std::atomic<bool> holding_{false};  // any link held: only then do sends take hold_mutex_
  std::map<std::pair<int, int>, std::vector<Delivery>> held_;  // (from, to): frames kept back
};

class InprocTransport final : public FramedTransport {
 public:
  InprocTransport(std::shared_ptr<InprocHub> hub, int rank, TransportOptions options = {});
  ~InprocTransport() override;

 protected:
  bool try_send(int to, const HeaderBytes& header, std::span<const std::byte> payload) override;
  std::optional<Inbound> wait_inbound(Clock::time_point deadline,
                                      std::span<const int> blocked) override;
  // Sends are copies, released at once; only drop our reference to the last copy.
  std::vector<int> wait_released(Clock::time_point) override {
    last_copy_.reset();
    return {};
  }
  void abort() noexcept override {}

 private:
  std::shared_ptr<InprocHub> hub_;
  // One copy per send, shared by every receiver: the copy is what frees the caller's buffer.
  std::uint64_t copy_batch_ = 0;
  const std::byte* copy_of_ = nullptr;
  std::shared_ptr<const std::vector<std::byte>> last_copy_;
};

}  // namespace gossip::net
