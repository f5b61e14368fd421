#pragma once
// CPU threads per peer. Each peer's BLAS calls (OpenBLAS) and codec loops (OpenMP) start as many
// threads as the machine has cores; with several peers on one machine (launch, simulate, srun
// with several tasks per node) those pools oversubscribe the cores and their spinning threads
// starve each other: 8 peers on 2 cores ran 6.0 rounds/s instead of 97.8 (docs/BENCHMARKS.md).

#include <optional>
#include <semaphore>
#include <string>

namespace gossip::runtime {

// The cores this process may run on (its CPU affinity mask), at least 1.
int usable_cores();
// The cores of the machine that are online, at least 1.
int online_cores();

// Threads for each of `peers` peers sharing this machine's cores: cores / peers, at least 1;
// nullopt when the user chose (OMP_NUM_THREADS or OPENBLAS_NUM_THREADS is set), so that nothing
// is changed.
std::optional<int> threads_per_peer(int peers);

// Sets OpenBLAS's thread count (process-wide) and OpenMP's for the calling thread (a peer
// thread of simulate calls it for itself).
void use_threads(int threads);
// OpenMP's thread count for the calling thread only.
void use_openmp_threads(int threads);

// OpenBLAS keeps buffers for each thread that calls it in a table sized by its compile-time
// MAX_THREADS (64 in Debian's 0.3.21 pthreads build); more threads inside it at once overflow
// the table ("OpenBLAS warning: precompiled NUM_THREADS exceeded") and corrupt memory: 256 MLP
// peers under `gossip simulate` crashed about every other run. Every BLAS call of the models
// holds a BlasSlot, so at most blas_slots() threads are inside OpenBLAS at once: half its
// MAX_THREADS (read from openblas_get_config()), 32 when the string does not say. The calls
// only wait for each other, so results are unchanged.
int blas_slots();
class BlasSlot {
 public:
  BlasSlot();
  ~BlasSlot();
  BlasSlot(const BlasSlot&) = delete;
  BlasSlot& operator=(const BlasSlot&) = delete;
};

// One line for the log: "8 peers on 2 cores: 1 thread each for BLAS and codec loops (...)".
std::string describe_threads(int peers, std::optional<int> threads);

}  // namespace gossip::runtime
