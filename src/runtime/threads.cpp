#include "src/runtime/threads.hpp"

#include <cblas.h>
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

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
