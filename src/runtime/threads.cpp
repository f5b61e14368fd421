#include "src/runtime/threads.hpp"

#include <cblas.h>
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

namespace gossip::runtime {

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, omp_get_num_procs());
}

int online_cores() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

std::optional<int> threads_per_peer(int peers) {
  if (std::getenv("OMP_NUM_THREADS") != nullptr || std::getenv("OPENBLAS_NUM_THREADS") != nullptr)
    return std::nullopt;
  return std::max(1, usable_cores() / std::max(1, peers));
}

void use_threads(int threads) {
  openblas_set_num_threads(threads);
  use_openmp_threads(threads);
}

void use_openmp_threads(int threads) {
  omp_set_num_threads(threads);
}

int blas_slots() {
  static const int slots = [] {
    const std::string_view config = openblas_get_config();
    constexpr std::string_view key = "MAX_THREADS=";
    const auto at = config.find(key);
    int max_threads = 0;
    if (at != std::string_view::npos) {
      const char* first = config.data() + at + key.size();
      std::from_chars(first, config.data() + config.size(), max_threads);
    }
    return max_threads > 1 ? max_threads / 2 : 32;
  }();
  return slots;
}

namespace {
std::counting_semaphore<>& blas_semaphore() {
  static std::counting_semaphore<> semaphore(blas_slots());
  return semaphore;
}
}  // namespace

BlasSlot::BlasSlot() {
  blas_semaphore().acquire();
}
BlasSlot::~BlasSlot() {
  blas_semaphore().release();
}

std::string describe_threads(int peers, std::optional<int> threads) {
  if (!threads)
    return fmt::format("{} peer{} on {} cores: threads as OMP_NUM_THREADS/OPENBLAS_NUM_THREADS say",
                       peers, peers == 1 ? "" : "s", usable_cores());
  return fmt::format(
      "{} peer{} on {} cores: {} thread{} each for BLAS and codec loops (set OMP_NUM_THREADS to "
      "choose)",
      peers, peers == 1 ? "" : "s", usable_cores(), *threads, *threads == 1 ? "" : "s");
}

}  // namespace gossip::runtime
