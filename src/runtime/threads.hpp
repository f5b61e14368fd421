#pragma once
// CPU threads per peer. Each peer's BLAS calls (OpenBLAS) and codec loops (OpenMP) start as many
// threads as the machine has cores; with several peers on one machine (launch, simulate, srun
// with several tasks per node) those pools oversubscribe the cores and their spinning threads
// starve each other: 8 peers on 2 cores ran 6.0 rounds/s instead of 97.8 (docs/BENCHMARKS.md).

#include <optional>
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

// One line for the log: "8 peers on 2 cores: 1 thread each for BLAS and codec loops (...)".
std::string describe_threads(int peers, std::optional<int> threads);

}  // namespace gossip::runtime
