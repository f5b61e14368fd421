// The CUDA model's entry points in a build without CUDA (-Dcuda=disabled or no nvcc): no device is
// visible and making a CUDA model is an error that says how to get one.

#include <stdexcept>

#include "src/runtime/model.hpp"

namespace gossip::runtime {

bool cuda_model_built() {
  return false;
}

int cuda_device_count(std::string* why) {
  if (why != nullptr) *why = "this gossip was built without the CUDA backend";
  return 0;
}

std::unique_ptr<Model> make_cuda_mlp(std::size_t, std::vector<std::size_t>, std::size_t,
                                     std::size_t, int) {
  throw std::runtime_error(
      "this gossip was built without the CUDA backend: rebuild with nvcc on PATH "
      "(meson setup -Dcuda=enabled) to train on a GPU");
}

}  // namespace gossip::runtime
