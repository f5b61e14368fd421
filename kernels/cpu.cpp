#include "kernels/cpu.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace gossip::kernels {
namespace {

#if defined(__x86_64__)
// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

HostIsa detected() {
  static const HostIsa isa = [] {
#if defined(__x86_64__)
    const char* cap = std::getenv("GOSSIP_KERNELS_ISA");
    const std::string c = cap ? cap : "";
    if (c == "scalar") return HostIsa::kScalar;
    if (c != "avx2" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("bmi2") && has_f16c())
      return HostIsa::kAvx512;
    if (__builtin_cpu_supports("avx2")) return HostIsa::kAvx2;
#endif
    return HostIsa::kScalar;
  }();
  return isa;
}

std::atomic<int> g_cap{static_cast<int>(HostIsa::kAvx512)};

}  // namespace

HostIsa host_isa() {
  const int cap = g_cap.load(std::memory_order_relaxed);
  const auto d = static_cast<int>(detected());
  return static_cast<HostIsa>(cap < d ? cap : d);
}

void set_host_isa_cap(HostIsa cap) {
  g_cap.store(static_cast<int>(cap), std::memory_order_relaxed);
}

bool host_has_vpclmul() {
#if defined(__x86_64__)
  static const bool cpu = __builtin_cpu_supports("vpclmulqdq") != 0;
  return cpu && host_isa() == HostIsa::kAvx512;
#else
  return false;
#endif
}

}  // namespace gossip::kernels
