// The CUDA space's entry points in a build without CUDA (-Dcuda=disabled or no nvcc).

#include <stdexcept>

#include "gossip/algorithms/space.hpp"

namespace gossip::algorithms {

bool cuda_space_built() {
  return false;
}

int cuda_space_devices() {
  return 0;
}

std::unique_ptr<VectorSpace> make_cuda_space(int) {
  throw std::runtime_error(
      "this gossip was built without the CUDA backend: rebuild with nvcc on PATH "
      "(meson setup -Dcuda=enabled) to keep the algorithm's state on a GPU");
}

}  // namespace gossip::algorithms
