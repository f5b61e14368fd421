// The CUDA model: the MLP of src/model.hpp on one GPU. Dense products are cuBLAS sgemm calls
// (fp32, no TF32), the rest the kernels of src/model_cuda_kernels.cu. Parameters and gradients
// are host or device spans. Spans in this GPU's memory (the trainer's with run.device = cuda) are
// read and written in place; others are copied through the model's own buffers (cudaMemcpyDefault:
// with unified addressing the driver tells host and device apart). Per loss_grad call the batch
// (gathered on the host into pinned memory) goes in and the loss comes out. A device gradient is
// complete when loss_grad returns (the stream is synchronised). Device buffers are allocated once,
// in the constructor.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "kernels/cuda/runtime.hpp"
#include "src/runtime/model.hpp"
#include "src/runtime/model_cuda_kernels.hpp"

namespace gossip::runtime {

namespace {

#define GOSSIP_CUDA(call) GOSSIP_CUDA_CALL("CUDA model", call)

#define GOSSIP_CUBLAS(call)                                                                    \
  do {                                                                                         \
    const cublasStatus_t gossip_st_ = (call);                                                  \
    if (gossip_st_ != CUBLAS_STATUS_SUCCESS)                                                   \
      throw std::runtime_error(                                                                \
          fmt::format("CUDA model: {} failed: {}", #call, cublasGetStatusString(gossip_st_))); \
  } while (0)

using kernels::cuda::DeviceBuffer;
using kernels::cuda::PinnedBuffer;

// Waits for the stream when the scope is left by an exception: work already queued may read the
// caller's parameters or write its gradient, which must not outlive the call.
class SyncOnThrow {
 public:
  explicit SyncOnThrow(cudaStream_t s) : s_(s), exceptions_(std::uncaught_exceptions()) {}
  ~SyncOnThrow() {
    if (std::uncaught_exceptions() > exceptions_) (void)cudaStreamSynchronize(s_);
  }
  SyncOnThrow(const SyncOnThrow&) = delete;
  SyncOnThrow& operator=(const SyncOnThrow&) = delete;

 private:
  cudaStream_t s_;
  int exceptions_;
};

// Rows per evaluation chunk, at least the training batch.
constexpr std::size_t kEvalChunk = 2048;

class CudaMlp final : public Model {
 public:
  CudaMlp(MlpLayout layout, std::size_t max_batch, int device);
  ~CudaMlp() override;

  std::string device() const override { return name_; }
  double loss_grad(std::span<const float> params, const Dataset& data,
                   std::span<const std::size_t> batch, std::span<float> grad) override;
  Evaluation evaluate(std::span<const float> params, const Dataset& data) override;

 private:
  // Forward pass of `rows` rows at x (labels at `labels`) with the parameters at w; leaves the
  // softmax in the last activation, per-row losses and hits, adds their sums to acc_. With `delta`
  // it also writes dL/dlogits there.
  void forward(const float* w, const float* x, const std::int32_t* labels, std::size_t rows,
               float* delta);
  // Is p memory of this model's GPU (then kernels use it in place)?
  bool on_this_gpu(const void* p) const;
  // The parameters as kernels read them: in place, or copied into params_ on the stream.
  const float* device_params(std::span<const float> params);

  int device_;
  std::string name_;
  std::size_t max_batch_;  // rows per loss_grad call
  std::size_t chunk_;      // rows per evaluation chunk (>= max_batch_)
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  DeviceBuffer<float> params_, grad_;
  DeviceBuffer<float> input_;               // chunk_ rows of features, then chunk_ labels
  std::vector<DeviceBuffer<float>> act_;    // per layer l >= 1: chunk_ x width (post-activation)
  DeviceBuffer<float> delta_, delta_next_;  // max_batch_ x widest layer
  DeviceBuffer<double> row_loss_, acc_;     // chunk_ per-row losses; [summed loss, hits]
  DeviceBuffer<std::int32_t> row_correct_;
  PinnedBuffer<float> staging_;  // max_batch_ rows of features, then their labels
  PinnedBuffer<double> acc_host_;
};

CudaMlp::CudaMlp(MlpLayout layout, std::size_t max_batch, int device)
    : Model(std::move(layout)),
      device_(device),
      max_batch_(max_batch),
      chunk_(std::max(max_batch, kEvalChunk)) {
  if (max_batch_ == 0) throw std::invalid_argument("max_batch must be positive");
  GOSSIP_CUDA(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  GOSSIP_CUDA(cudaGetDeviceProperties(&prop, device_));
  name_ = fmt::format("cuda:{} ({})", device_, prop.name);
  const auto& widths = layout_.widths();
  const std::size_t widest = *std::max_element(widths.begin() + 1, widths.end());
  params_ = DeviceBuffer<float>(layout_.size());
  grad_ = DeviceBuffer<float>(layout_.size());
  input_ = DeviceBuffer<float>(chunk_ * (widths[0] + 1));
  act_.resize(widths.size());
  for (std::size_t l = 1; l < widths.size(); ++l) act_[l] = DeviceBuffer<float>(chunk_ * widths[l]);
  delta_ = DeviceBuffer<float>(max_batch_ * widest);
  delta_next_ = DeviceBuffer<float>(max_batch_ * widest);
  row_loss_ = DeviceBuffer<double>(chunk_);
  acc_ = DeviceBuffer<double>(2);
  row_correct_ = DeviceBuffer<std::int32_t>(chunk_);
  staging_ = PinnedBuffer<float>(max_batch_ * (widths[0] + 1));
  acc_host_ = PinnedBuffer<double>(2);
  GOSSIP_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  try {
    GOSSIP_CUBLAS(cublasCreate(&blas_));
    GOSSIP_CUBLAS(cublasSetStream(blas_, stream_));
    // Plain fp32 arithmetic: no TF32, even under NVIDIA_TF32_OVERRIDE, so the backends agree.
    GOSSIP_CUBLAS(cublasSetMathMode(blas_, CUBLAS_PEDANTIC_MATH));
  } catch (...) {
    if (blas_ != nullptr) (void)cublasDestroy(blas_);
    (void)cudaStreamDestroy(stream_);
    throw;
  }
}

CudaMlp::~CudaMlp() {
  (void)cudaSetDevice(device_);
  (void)cublasDestroy(blas_);
  (void)cudaStreamDestroy(stream_);
}

bool CudaMlp::on_this_gpu(const void* p) const {
  cudaPointerAttributes a{};
  GOSSIP_CUDA(cudaPointerGetAttributes(&a, p));
  return a.type == cudaMemoryTypeDevice && a.device == device_;
}

const float* CudaMlp::device_params(std::span<const float> params) {
  if (on_this_gpu(params.data())) return params.data();
  GOSSIP_CUDA(cudaMemcpyAsync(params_.get(), params.data(), params.size() * sizeof(float),
                              cudaMemcpyDefault, stream_));
  return params_.get();
}

void CudaMlp::forward(const float* params, const float* x, const std::int32_t* labels,
                      std::size_t rows, float* delta) {
  const auto& widths = layout_.widths();
  const auto& offsets = layout_.offsets();
  const std::size_t layers = layout_.layers();
  const float one = 1.0f, zero = 0.0f;
  const float* in = x;
  for (std::size_t l = 0; l < layers; ++l) {
    const int n_in = static_cast<int>(widths[l]), n_out = static_cast<int>(widths[l + 1]);
    const float* w = params + offsets[2 * l];
    const float* b = params + offsets[2 * l + 1];
    float* out = act_[l + 1].get();
    // Row-major out (rows x n_out) = in (rows x n_in) * W^T, W row-major n_out x n_in. In cuBLAS's
    // column-major terms: out^T (n_out x rows) = W (op T of the buffer W^T) * in^T.
    GOSSIP_CUBLAS(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, n_out, static_cast<int>(rows), n_in,
                              &one, w, n_in, in, n_in, &zero, out, n_out));
    GOSSIP_CUDA(cuda_model::bias_act(out, b, rows, widths[l + 1], l + 1 < layers, stream_));
    in = out;
  }
  GOSSIP_CUDA(cuda_model::softmax_xent(act_[layers].get(), labels, rows, widths.back(), delta,
                                       1.0f / static_cast<float>(rows), row_loss_.get(),
                                       row_correct_.get(), stream_));
  GOSSIP_CUDA(cuda_model::sum_rows(row_loss_.get(), row_correct_.get(), rows, acc_.get(), stream_));
}

double CudaMlp::loss_grad(std::span<const float> params, const Dataset& data,
                          std::span<const std::size_t> batch, std::span<float> grad) {
  const std::size_t n_params = layout_.size();
  const std::size_t rows = batch.size();
  check_loss_grad(params, grad, data, batch, max_batch_);
  const auto& widths = layout_.widths();
  const auto& offsets = layout_.offsets();
  const std::size_t in0 = widths[0];
  GOSSIP_CUDA(cudaSetDevice(device_));
  // The staging buffer is free once the stream is idle: a previous call that threw may have left
  // a copy from it in flight.
  GOSSIP_CUDA(cudaStreamSynchronize(stream_));
  const SyncOnThrow guard(stream_);
  // Gather the batch into pinned memory: rows x features, then the labels' bits.
  float* stage = staging_.get();
  for (std::size_t r = 0; r < rows; ++r)
    std::memcpy(stage + r * in0, data.features.data() + batch[r] * in0, in0 * sizeof(float));
  auto* stage_labels = reinterpret_cast<std::int32_t*>(stage + rows * in0);
  for (std::size_t r = 0; r < rows; ++r) stage_labels[r] = data.labels[batch[r]];

  const float* w_all = device_params(params);
  float* g_all = on_this_gpu(grad.data()) ? grad.data() : grad_.get();
  GOSSIP_CUDA(cudaMemcpyAsync(input_.get(), stage, rows * (in0 + 1) * sizeof(float),
                              cudaMemcpyHostToDevice, stream_));
  GOSSIP_CUDA(cudaMemsetAsync(acc_.get(), 0, 2 * sizeof(double), stream_));
  const float* x = input_.get();
  const auto* labels = reinterpret_cast<const std::int32_t*>(input_.get() + rows * in0);
  float* delta = delta_.get();
  float* delta_next = delta_next_.get();
  forward(w_all, x, labels, rows, delta);

  const float one = 1.0f, zero = 0.0f;
  const int m = static_cast<int>(rows);
  for (std::size_t l = layout_.layers(); l-- > 0;) {
    const int n_in = static_cast<int>(widths[l]), n_out = static_cast<int>(widths[l + 1]);
    const float* in = l == 0 ? x : act_[l].get();
    float* gw = g_all + offsets[2 * l];
    float* gb = g_all + offsets[2 * l + 1];
    // gW (n_out x n_in, row-major) = delta^T * in; column-major: gW^T = in^T * delta.
    GOSSIP_CUBLAS(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_T, n_in, n_out, m, &one, in, n_in,
                              delta, n_out, &zero, gw, n_in));
    GOSSIP_CUDA(cuda_model::bias_grad(delta, rows, widths[l + 1], gb, stream_));
    if (l == 0) break;
    // delta_prev (rows x n_in) = delta (rows x n_out) * W; column-major: W^T * delta^T.
    const float* w = w_all + offsets[2 * l];
    GOSSIP_CUBLAS(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_N, n_in, m, n_out, &one, w, n_in, delta,
                              n_out, &zero, delta_next, n_in));
    GOSSIP_CUDA(cuda_model::relu_mask(act_[l].get(), delta_next, rows * widths[l], stream_));
    std::swap(delta, delta_next);
  }
  if (g_all != grad.data())
    GOSSIP_CUDA(
        cudaMemcpyAsync(grad.data(), g_all, n_params * sizeof(float), cudaMemcpyDefault, stream_));
  GOSSIP_CUDA(cudaMemcpyAsync(acc_host_.get(), acc_.get(), 2 * sizeof(double),
                              cudaMemcpyDeviceToHost, stream_));
  GOSSIP_CUDA(cudaStreamSynchronize(stream_));
  return acc_host_.get()[0] / static_cast<double>(rows);
}

Evaluation CudaMlp::evaluate(std::span<const float> params, const Dataset& data) {
  if (params.size() != layout_.size())
    throw std::invalid_argument("parameter vector has the wrong size");
  Evaluation e;
  e.samples = data.size();
  if (e.samples == 0) return e;
  const std::size_t in0 = layout_.widths()[0];
  if (data.dim != in0)
    throw std::invalid_argument(
        fmt::format("data rows have {} features, the model takes {}", data.dim, in0));
  GOSSIP_CUDA(cudaSetDevice(device_));
  GOSSIP_CUDA(cudaStreamSynchronize(stream_));  // as in loss_grad
  const SyncOnThrow guard(stream_);
  const float* w_all = device_params(params);
  GOSSIP_CUDA(cudaMemsetAsync(acc_.get(), 0, 2 * sizeof(double), stream_));
  for (std::size_t start = 0; start < data.size(); start += chunk_) {
    const std::size_t rows = std::min(chunk_, data.size() - start);
    // Rows of the test set are contiguous: copied straight from the data set. The stream orders
    // this chunk's copies after the previous chunk's kernels.
    float* x = input_.get();
    auto* labels = reinterpret_cast<std::int32_t*>(x + rows * in0);
    GOSSIP_CUDA(cudaMemcpyAsync(x, data.features.data() + start * in0, rows * in0 * sizeof(float),
                                cudaMemcpyHostToDevice, stream_));
    GOSSIP_CUDA(cudaMemcpyAsync(labels, data.labels.data() + start, rows * sizeof(std::int32_t),
                                cudaMemcpyHostToDevice, stream_));
    forward(w_all, x, labels, rows, nullptr);
  }
  GOSSIP_CUDA(cudaMemcpyAsync(acc_host_.get(), acc_.get(), 2 * sizeof(double),
                              cudaMemcpyDeviceToHost, stream_));
  GOSSIP_CUDA(cudaStreamSynchronize(stream_));
  e.loss = acc_host_.get()[0] / static_cast<double>(e.samples);
  e.accuracy = acc_host_.get()[1] / static_cast<double>(e.samples);
  return e;
}

}  // namespace

bool cuda_model_built() {
  return true;
}

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear the "no device / no driver" state
    if (why != nullptr) *why = fmt::format("cudaGetDeviceCount: {}", cudaGetErrorString(err));
    return 0;
  }
  if (n == 0 && why != nullptr) *why = "cudaGetDeviceCount found no device";
  return n;
}

std::unique_ptr<Model> make_cuda_mlp(std::size_t inputs, std::vector<std::size_t> hidden,
                                     std::size_t classes, std::size_t max_batch, int device) {
  std::string why;
  const int visible = cuda_device_count(&why);
  if (visible == 0) throw std::runtime_error(fmt::format("no CUDA GPU is visible ({})", why));
  if (device < 0 || device >= visible)
    throw std::invalid_argument(
        fmt::format("CUDA device {} does not exist ({} visible)", device, visible));
  return std::make_unique<CudaMlp>(MlpLayout(inputs, std::move(hidden), classes), max_batch,
                                   device);
}

}  // namespace gossip::runtime
