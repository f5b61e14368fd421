#pragma once
// A peer's virtual clock (`gossip simulate` with transport.clock = "virtual", docs/transport.md,
// "Virtual time"): nobody sleeps; the clock advances by the peer's own work and by the modelled
// network. Work is either the CPU time of the peer's thread (CLOCK_THREAD_CPUTIME_ID: threads
// that share the cores do not inflate each other's), or a fixed time per round that the runtime
// adds with advance() (a faster device than this one). Network: a message is stamped with the
// sender's clock, modelled through the NICs and links (link_emulation.hpp), and a receiver's
// clock moves to the time each message it waits for is ready, if that is later.
//
// Not thread safe, and read the CPU time of the thread that calls it: one clock per peer thread,
// used only from that thread.

#include <cstdint>

namespace gossip::net {

class VirtualClock {
 public:
  // count_cpu: the calling thread's CPU time moves the clock; false: only advance() does.
  explicit VirtualClock(bool count_cpu);

  // Back to 0; CPU time counts from here on (the start of training).
  void reset();
  // The clock now, with the thread's CPU time since the last reading added (unless paused).
  std::uint64_t now_ns();
  // Adds a fixed time of work (ignored while paused).
  void advance(std::uint64_t ns);
  // Waiting for something ready at `ns`: the clock moves there if it is behind (not while paused).
  void reach(std::uint64_t ns);
  // While paused (the runtime's evaluations), neither CPU time nor messages move the clock, and
  // messages sent are stamped untimed (kUntimed): what is measured stays out of the time axis.
  void pause();
  void resume();
  bool paused() const { return paused_; }

  // The stamp of a message sent while paused: its receiver's clock ignores it.
  static constexpr std::uint64_t kUntimed = UINT64_MAX;

 private:
  static std::uint64_t thread_cpu_ns();
  void count();

  bool count_cpu_;
  bool paused_ = false;
  std::uint64_t now_ = 0;
  std::uint64_t cpu_mark_ = 0;  // the thread's CPU time already counted
};

}  // namespace gossip::net
