#include "gossip/inproc_transport.hpp"

#include <utility>

#include <fmt/core.h>

namespace gossip::net {

InprocHub::InprocHub(topology::Topology topo) : topo_(std::move(topo)) {
  boxes_.reserve(static_cast<std::size_t>(topo_.size()));
  for (int r = 0; r < topo_.size(); ++r) boxes_.push_back(std::make_unique<Mailbox>());
}

void InprocHub::deliver(int to, Delivery d) {
  Mailbox& box = *boxes_.at(static_cast<std::size_t>(to));
  {
    std::lock_guard lock(box.mutex);
    box.queue.push_back(std::move(d));
  }
  box.cv.notify_one();
}

void InprocHub::post(int to, int from, std::span<const std::byte> header,
                     std::shared_ptr<const std::vector<std::byte>> payload) {
  if (watcher_) watcher_(to, from, header);
  Delivery d{from, {header.begin(), header.end()}, std::move(payload)};
  if (holding_.load()) {
    // Under the lock, so that a frame sent while release() runs cannot overtake the held ones.
    std::lock_guard lock(hold_mutex_);
    if (auto it = held_.find({from, to}); it != held_.end()) {
      it->second.push_back(std::move(d));
      return;
    }
    return deliver(to, std::move(d));
  }
  deliver(to, std::move(d));
}

void InprocHub::hold(int from, int to) {
  std::lock_guard lock(hold_mutex_);
  held_.try_emplace({from, to});
  holding_.store(true);
}

void InprocHub::release(int from, int to) {
  std::lock_guard lock(hold_mutex_);
  auto it = held_.find({from, to});
  if (it == held_.end()) return;
  for (Delivery& d : it->second) deliver(to, std::move(d));
  held_.erase(it);
  holding_.store(!held_.empty());
}

void InprocHub::post_raw(int to, int from, std::vector<std::byte> header,
                         std::vector<std::byte> payload) {
  post(to, from, header, std::make_shared<const std::vector<std::byte>>(std::move(payload)));
}

std::optional<InprocHub::Delivery> InprocHub::take(int rank, Clock::time_point deadline) {
  Mailbox& box = *boxes_.at(static_cast<std::size_t>(rank));
  std::unique_lock lock(box.mutex);
  if (!box.cv.wait_until(lock, deadline, [&] { return !box.queue.empty(); })) return std::nullopt;
  Delivery d = std::move(box.queue.front());
  box.queue.pop_front();
  return d;
}

InprocTransport::InprocTransport(std::shared_ptr<InprocHub> hub, int rank, TransportOptions options)
    : FramedTransport(hub->topology(), rank, std::move(options), "in-process"),
      hub_(std::move(hub)) {
  start();
}

InprocTransport::~InprocTransport() = default;

bool InprocTransport::try_send(int to, const HeaderBytes& header,
                               std::span<const std::byte> payload) {
  // exchange() sends the same buffer to every neighbour in a row: copy it once.
  if (!last_copy_ || copy_batch_ != send_batch() || copy_of_ != payload.data() ||
      last_copy_->size() != payload.size()) {
    last_copy_ = std::make_shared<const std::vector<std::byte>>(payload.begin(), payload.end());
    copy_batch_ = send_batch();
    copy_of_ = payload.data();
  }
  hub_->post(to, rank(), header, last_copy_);
  return true;
}

std::optional<Inbound> InprocTransport::wait_inbound(Clock::time_point deadline,
                                                     std::span<const int>) {
  auto d = hub_->take(rank(), deadline);
  if (!d) return std::nullopt;
  Inbound in;
  in.link = d->from;
  if (in.link < 0 || in.link >= size()) {
    in.link_label = fmt::format("in-process sender {}", in.link);
    in.link = -1;
  }
  auto owner = std::make_shared<InprocHub::Delivery>(std::move(*d));
  in.header = owner->header;
  if (owner->payload) in.payload = *owner->payload;
  in.owner = owner;
  return in;
}

}  // namespace gossip::net
