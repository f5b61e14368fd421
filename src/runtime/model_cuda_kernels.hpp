#pragma once
// The small CUDA kernels of the CUDA model (src/model_cuda_kernels.cu, built by nvcc with
// -fmad=false); the dense products are cuBLAS calls in src/model_cuda.cpp. Matrices are
// row-major, as in the CPU model. Each launcher enqueues on `stream` and returns
// cudaGetLastError() of its launch.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace gossip::runtime::cuda_model {

// out[r, k] = out[r, k] + b[k], then max(., 0) when `relu`: rows x n.
cudaError_t bias_act(float* out, const float* b, std::size_t rows, std::size_t n, bool relu,
                     cudaStream_t stream);

// Softmax cross-entropy per row of `logits` (rows x classes), in place: the row becomes the
// softmax probabilities; row_loss[r] = log Σ exp(z − max) − (z_label − max) in double;
// row_correct[r] = 1 when the first largest logit is the label. When `delta` is not null it also
// writes dL/dlogits = (p − onehot) · inv_rows. A label outside 0..classes−1 gives a NaN loss.
cudaError_t softmax_xent(float* logits, const std::int32_t* labels, std::size_t rows,
                         std::size_t classes, float* delta, float inv_rows, double* row_loss,
                         std::int32_t* row_correct, cudaStream_t stream);

// acc[0] += Σ row_loss, acc[1] += Σ row_correct, summed in a fixed order (one block), so the
// result is the same on every run.
cudaError_t sum_rows(const double* row_loss, const std::int32_t* row_correct, std::size_t rows,
                     double* acc, cudaStream_t stream);

// gb[k] = Σ_r delta[r, k] (rows x n), rows in ascending order as on the CPU.
cudaError_t bias_grad(const float* delta, std::size_t rows, std::size_t n, float* gb,
                      cudaStream_t stream);

// delta[i] = 0 where act[i] <= 0 (the ReLU's derivative), for i < count.
cudaError_t relu_mask(const float* act, float* delta, std::size_t count, cudaStream_t stream);

}  // namespace gossip::runtime::cuda_model
