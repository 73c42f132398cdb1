// Fused epilogue and backward kernels of a linear layer with an optional ReLU (float32).
//
// Forward: after the GEMM z = x W^T has been written into `out` (cuBLAS), one pass adds the
// bias and applies the ReLU in place. Backward: one pass masks the upstream gradient with the
// saved output (ReLU'(z) = out > 0) and reduces per-block partial bias gradients; a second,
// tiny pass sums the partials in a fixed order, so the bias gradient is deterministic.
//
// Launcher: gpunet/ops/launchers/linear_relu.py (it passes the block shape as -DBW, -DBR).
// NumPy reference: NumpyOps.linear_relu_forward / linear_relu_backward / linear_backward.
// Tests: tests/test_cupy_ops.py (test_linear_forward, test_linear_backward), tests/test_gpu_path.py,
// tests/test_stack_gpu.py (a stack's model axis).
//
// The model axis of a stack (gn.stack): `out` holds `models` (rows, cols) blocks one after
// another, each with its own bias row (bias (models, cols)); the backward grid's z index is the
// model, and the partials and bias gradients are per model. One model is models = 1.
// No headers: everything used here is an NVRTC built-in.

#if !defined(BW) || !defined(BR)
#error "launch sizes come from gpunet/ops/launchers/linear_relu.py as -DBW=... -DBR=..."
#endif

// out[r, c] = act(out[r, c] + bias[c]) over a (rows, cols) C-contiguous array; with a model
// axis, the `per_bias` elements of each model (rows * cols) use that model's bias row.
// `n4` elements are handled as float4 (the host passes n4 = 0 unless cols % 4 == 0 and both
// pointers are 16-byte aligned); the scalar loop covers the rest.
template <bool HAS_BIAS, bool RELU>
__device__ __forceinline__ float bias_act(float v, const float* __restrict__ bias, long long b)
{
    if (HAS_BIAS) v += bias[b];
    if (RELU) v = v < 0.f ? 0.f : v;  // keeps NaN, as numpy.maximum(v, 0) does
    return v;
}

template <bool HAS_BIAS, bool RELU>
__global__ void bias_act_inplace(float* __restrict__ out, const float* __restrict__ bias,
                                 long long n, long long n4, long long cols, long long per_bias)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    float4* out4 = reinterpret_cast<float4*>(out);
    for (long long i = start; i < n4; i += stride) {
        float4 v = out4[i];
        // cols % 4 == 0: the 4 lanes share one row, so one model and one bias row
        const long long b = (4 * i) / per_bias * cols + (4 * i) % cols;
        v.x = bias_act<HAS_BIAS, RELU>(v.x, bias, b);
        v.y = bias_act<HAS_BIAS, RELU>(v.y, bias, b + 1);
        v.z = bias_act<HAS_BIAS, RELU>(v.z, bias, b + 2);
        v.w = bias_act<HAS_BIAS, RELU>(v.w, bias, b + 3);
        out4[i] = v;
    }
    for (long long i = 4 * n4 + start; i < n; i += stride) {
        out[i] = bias_act<HAS_BIAS, RELU>(out[i], bias, i / per_bias * cols + i % cols);
    }
}

// Block shape of the backward pass: BW columns (one warp wide) by BR rows of threads.
// grad_z = RELU ? grad_out * (out > 0) : grad_out (written only when RELU), and
// partial[blockIdx.y, c] = sum of grad_z[r, c] over the rows this block visits.
// Grid: (ceil(cols / BW), parts, models); block: (BW, BR). Each thread walks the rows
// r = blockIdx.y * BR + threadIdx.y of model blockIdx.z, stepping by parts * BR, in a fixed
// order; partial is (models, parts, cols).
template <bool RELU>
__global__ void mask_bias_grad_partial(const float* __restrict__ grad_out,
                                       const float* __restrict__ out,
                                       float* __restrict__ grad_z,
                                       float* __restrict__ partial,
                                       int rows, int cols)
{
    __shared__ float sums[BR][BW + 1];
    const int col = blockIdx.x * BW + threadIdx.x;
    const long long model = (long long)blockIdx.z * rows * cols;  // this model's first element
    grad_out += model;
    out += RELU ? model : 0;
    grad_z += RELU ? model : 0;
    partial += (long long)blockIdx.z * gridDim.y * cols;
    float acc = 0.f;
    if (col < cols) {
        for (int r = blockIdx.y * BR + threadIdx.y; r < rows; r += gridDim.y * BR) {
            const long long i = (long long)r * cols + col;
            float g = grad_out[i];
            if (RELU) {
                g = out[i] > 0.f ? g : 0.f;
                grad_z[i] = g;
            }
            acc += g;
        }
    }
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        float total = 0.f;
        for (int k = 0; k < BR; ++k) total += sums[k][threadIdx.x];
        partial[(long long)blockIdx.y * cols + col] = total;
    }
}

// grad_bias[m, c] = sum over p of partial[m, p, c], p in increasing order (one thread per
// model and column).
__global__ void sum_partials(const float* __restrict__ partial, float* __restrict__ grad_bias,
                             int parts, int cols, int models)
{
    const long long n = (long long)models * cols;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long model = i / cols, col = i - model * cols;
        const float* part = partial + model * parts * cols + col;
        float total = 0.f;
        for (int p = 0; p < parts; ++p) total += part[(long long)p * cols];
        grad_bias[i] = total;
    }
}
