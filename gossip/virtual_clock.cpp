#include "gossip/virtual_clock.hpp"

#include <time.h>

#include <algorithm>

namespace gossip::net {

VirtualClock::VirtualClock(bool count_cpu) : count_cpu_(count_cpu) {
  reset();
}

std::uint64_t VirtualClock::thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

void VirtualClock::reset() {
  now_ = 0;
  paused_ = false;
  if (count_cpu_) cpu_mark_ = thread_cpu_ns();
}

void VirtualClock::count() {
  if (!count_cpu_ || paused_) return;
  const std::uint64_t cpu = thread_cpu_ns();
  now_ += cpu - std::min(cpu, cpu_mark_);
  cpu_mark_ = cpu;
}

std::uint64_t VirtualClock::now_ns() {
  count();
  return now_;
}

void VirtualClock::advance(std::uint64_t ns) {
  if (!paused_) now_ += ns;
}

void VirtualClock::reach(std::uint64_t ns) {
  count();
  if (!paused_ && ns != kUntimed) now_ = std::max(now_, ns);
}

void VirtualClock::pause() {
  count();
  paused_ = true;
}

void VirtualClock::resume() {
  if (!paused_) return;
  paused_ = false;
  if (count_cpu_) cpu_mark_ = thread_cpu_ns();  // the paused work does not count
}

}  // namespace gossip::net
