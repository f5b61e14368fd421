// Kernels of the CUDA model: bias + ReLU, softmax cross-entropy and its gradient, the bias
// gradient, the ReLU mask and a fixed-order sum of per-row losses. Built with -fmad=false so each
// float operation rounds as the CPU model's does; the softmax works in double as the CPU's does.

#include "src/runtime/model_cuda_kernels.hpp"

#include <cmath>

namespace gossip::runtime::cuda_model {

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kMaxBlocks = 4096;

unsigned blocks_for(std::size_t work) {
  const std::size_t b = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b == 0 ? 1 : (b < kMaxBlocks ? b : kMaxBlocks));
}

__global__ void bias_act_kernel(float* out, const float* b, std::size_t rows, std::size_t n,
                                bool relu) {
  const std::size_t total = rows * n;
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < total;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const float v = out[i] + b[i % n];
    out[i] = (relu && v < 0.0f) ? 0.0f : v;  // std::max(v, 0.0f), NaN and -0 included
  }
}

__global__ void softmax_xent_kernel(float* logits, const std::int32_t* labels, std::size_t rows,
                                    std::size_t classes, float* delta, float inv_rows,
                                    double* row_loss, std::int32_t* row_correct) {
  for (std::size_t r = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; r < rows;
       r += std::size_t{gridDim.x} * blockDim.x) {
    float* row = logits + r * classes;
    std::size_t top = 0;
    for (std::size_t k = 1; k < classes; ++k)
      if (row[top] < row[k]) top = k;  // the first largest, as std::max_element
    const std::int32_t label = labels[r];
    row_correct[r] = static_cast<std::int32_t>(top) == label ? 1 : 0;
    const float m = row[top];
    const bool valid = label >= 0 && static_cast<std::size_t>(label) < classes;
    const double label_logit = valid ? static_cast<double>(row[label]) - m : 0.0;
    double z = 0.0;
    for (std::size_t k = 0; k < classes; ++k) {
      const double e = exp(static_cast<double>(row[k]) - m);
      row[k] = static_cast<float>(e);
      z += e;
    }
    row_loss[r] = valid ? log(z) - label_logit : nan("");
    const double inv_z = 1.0 / z;
    for (std::size_t k = 0; k < classes; ++k) {
      row[k] = static_cast<float>(row[k] * inv_z);
      if (delta != nullptr)
        delta[r * classes + k] =
            (row[k] - (static_cast<std::int32_t>(k) == label ? 1.0f : 0.0f)) * inv_rows;
    }
  }
}

__global__ void sum_rows_kernel(const double* row_loss, const std::int32_t* row_correct,
                                std::size_t rows, double* acc) {
  __shared__ double loss[kThreads];
  __shared__ double correct[kThreads];
  double l = 0.0, c = 0.0;
  for (std::size_t r = threadIdx.x; r < rows; r += kThreads) {
    l += row_loss[r];
    c += row_correct[r];
  }
  loss[threadIdx.x] = l;
  correct[threadIdx.x] = c;
  __syncthreads();
  for (unsigned half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      loss[threadIdx.x] += loss[threadIdx.x + half];
      correct[threadIdx.x] += correct[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    acc[0] += loss[0];
    acc[1] += correct[0];
  }
}

__global__ void bias_grad_kernel(const float* delta, std::size_t rows, std::size_t n, float* gb) {
  for (std::size_t k = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; k < n;
       k += std::size_t{gridDim.x} * blockDim.x) {
    float s = 0.0f;
    for (std::size_t r = 0; r < rows; ++r) s += delta[r * n + k];
    gb[k] = s;
  }
}

__global__ void relu_mask_kernel(const float* act, float* delta, std::size_t count) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < count;
       i += std::size_t{gridDim.x} * blockDim.x)
    if (act[i] <= 0.0f) delta[i] = 0.0f;
}

}  // namespace

cudaError_t bias_act(float* out, const float* b, std::size_t rows, std::size_t n, bool relu,
                     cudaStream_t stream) {
  if (rows * n == 0) return cudaSuccess;
  bias_act_kernel<<<blocks_for(rows * n), kThreads, 0, stream>>>(out, b, rows, n, relu);
  return cudaGetLastError();
}

cudaError_t softmax_xent(float* logits, const std::int32_t* labels, std::size_t rows,
                         std::size_t classes, float* delta, float inv_rows, double* row_loss,
                         std::int32_t* row_correct, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  softmax_xent_kernel<<<blocks_for(rows), kThreads, 0, stream>>>(
      logits, labels, rows, classes, delta, inv_rows, row_loss, row_correct);
  return cudaGetLastError();
}

cudaError_t sum_rows(const double* row_loss, const std::int32_t* row_correct, std::size_t rows,
                     double* acc, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  sum_rows_kernel<<<1, kThreads, 0, stream>>>(row_loss, row_correct, rows, acc);
  return cudaGetLastError();
}

cudaError_t bias_grad(const float* delta, std::size_t rows, std::size_t n, float* gb,
                      cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  bias_grad_kernel<<<blocks_for(n), kThreads, 0, stream>>>(delta, rows, n, gb);
  return cudaGetLastError();
}

cudaError_t relu_mask(const float* act, float* delta, std::size_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  relu_mask_kernel<<<blocks_for(count), kThreads, 0, stream>>>(act, delta, count);
  return cudaGetLastError();
}

}  // namespace gossip::runtime::cuda_model
