// Fused optimizer updates over the flat float32 parameter buffer: one launch per step for
// every parameter. The learning rate and the step count are read from 1-element device arrays
// (incremented on the device by the optimizer), so a step needs no host synchronisation and
// can later be captured in a CUDA graph.
//
// The first n4 elements are processed as float4 (the host passes n4 = n / 4 only when every
// pointer is 16-byte aligned, else 0); a scalar loop takes the rest. Grid-stride loops.
//
// A stack's flat buffer (gn.stack: n models, each parameter a segment of n * size values,
// model-major) updates with per-model hyperparameters in the *_models kernels: each block
// first writes every model's arguments into shared memory (Adam's bias corrections computed
// once per model there, not per element), then each element finds its model from the
// segment table (seg_start: S + 1 flat offsets, seg_size: values per model of each segment).
//
// Launcher: gpunet/ops/launchers/optim.py (it passes -DMAX_MODELS: the shared-memory table).
// NumPy reference: NumpyOps.sgd_update, NumpyOps.adam_update.
// Tests: tests/test_cupy_ops.py (test_sgd_update, test_adam_update), tests/test_gpu_path.py
// (against torch.optim over 1,000 steps), tests/test_stack_gpu.py (per model). No headers:
// everything used here is an NVRTC built-in.

#if !defined(MAX_MODELS)
#error "MAX_MODELS comes from gpunet/ops/launchers/optim.py as -DMAX_MODELS=..."
#endif

// This thread's first index and the step of a grid-stride loop over the whole grid.
__device__ __forceinline__ long long grid_start()
{
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long grid_stride() { return (long long)gridDim.x * blockDim.x; }

struct SgdArgs {
    float lr, momentum, weight_decay;
    bool use_momentum, nesterov;
};

// g = grad + wd * p; v = momentum * v + g; step = nesterov ? g + momentum * v : v; p -= lr * step
__device__ __forceinline__ void sgd_one(float& p, float grad, float& v, const SgdArgs& a)
{
    const float g = grad + a.weight_decay * p;
    float step = g;
    if (a.use_momentum) {
        v = a.momentum * v + g;
        step = a.nesterov ? g + a.momentum * v : v;
    }
    p -= a.lr * step;
}

// `velocity` may be null when momentum == 0 (then it is never touched).
__global__ void sgd_update(float* __restrict__ param, const float* __restrict__ grad,
                           float* __restrict__ velocity, const float* __restrict__ lr,
                           long long n, long long n4, float momentum, float weight_decay,
                           int nesterov)
{
    SgdArgs a;
    a.lr = lr[0];
    a.momentum = momentum;
    a.weight_decay = weight_decay;
    a.use_momentum = momentum != 0.f;
    a.nesterov = nesterov != 0;
    const long long start = grid_start(), stride = grid_stride();
    float4* p4 = reinterpret_cast<float4*>(param);
    const float4* g4 = reinterpret_cast<const float4*>(grad);
    float4* v4 = reinterpret_cast<float4*>(velocity);
    for (long long i = start; i < n4; i += stride) {
        float4 p = p4[i];
        const float4 g = g4[i];
        float4 v = a.use_momentum ? v4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
        sgd_one(p.x, g.x, v.x, a);
        sgd_one(p.y, g.y, v.y, a);
        sgd_one(p.z, g.z, v.z, a);
        sgd_one(p.w, g.w, v.w, a);
        p4[i] = p;
        if (a.use_momentum) v4[i] = v;
    }
    for (long long i = 4 * n4 + start; i < n; i += stride) {
        float v = a.use_momentum ? velocity[i] : 0.f;
        sgd_one(param[i], grad[i], v, a);
        if (a.use_momentum) velocity[i] = v;
    }
}

struct AdamArgs {
    float one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay;
    float decay, neg_step_size, bias2_sqrt;
    bool decoupled;
};

// m = lerp(m, g, w), written as torch.lerp does (the form depends on w).
__device__ __forceinline__ float lerp_to(float m, float g, float w)
{
    return w < 0.5f ? m + w * (g - m) : g - (g - m) * (1.f - w);
}

// AdamW: p *= 1 - lr * wd; Adam: g += wd * p. Then, in PyTorch's order of operations,
// m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g g;
// p += (-lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
__device__ __forceinline__ void adam_one(float& p, float grad, float& m, float& v,
                                         const AdamArgs& a)
{
    float g = grad;
    if (a.decoupled) {
        p *= a.decay;
    } else {
        g += a.weight_decay * p;
    }
    m = lerp_to(m, g, a.one_minus_beta1);
    v = v * a.beta2 + a.one_minus_beta2 * g * g;
    p += a.neg_step_size * m / (sqrtf(v) / a.bias2_sqrt + a.eps);
}

// The bias corrections are computed in double from the device step count (1 - beta^t in
// float32 cancels: ~6e-5 relative error at t = 1), then rounded once, as PyTorch does.
__global__ void adam_update(float* __restrict__ param, const float* __restrict__ grad,
                            float* __restrict__ exp_avg, float* __restrict__ exp_avg_sq,
                            const float* __restrict__ lr, const float* __restrict__ step,
                            long long n, long long n4, double beta1, double beta2, double eps,
                            double weight_decay, int decoupled)
{
    const double t = (double)step[0], rate = (double)lr[0];
    AdamArgs a;
    a.one_minus_beta1 = (float)(1.0 - beta1);
    a.beta2 = (float)beta2;
    a.one_minus_beta2 = (float)(1.0 - beta2);
    a.eps = (float)eps;
    a.weight_decay = (float)weight_decay;
    a.decay = (float)(1.0 - rate * weight_decay);
    a.neg_step_size = (float)(-rate / (1.0 - pow(beta1, t)));
    a.bias2_sqrt = (float)sqrt(1.0 - pow(beta2, t));
    a.decoupled = decoupled != 0;
    const long long start = grid_start(), stride = grid_stride();
    float4* p4 = reinterpret_cast<float4*>(param);
    const float4* g4 = reinterpret_cast<const float4*>(grad);
    float4* m4 = reinterpret_cast<float4*>(exp_avg);
    float4* v4 = reinterpret_cast<float4*>(exp_avg_sq);
    for (long long i = start; i < n4; i += stride) {
        float4 p = p4[i], m = m4[i], v = v4[i];
        const float4 g = g4[i];
        adam_one(p.x, g.x, m.x, v.x, a);
        adam_one(p.y, g.y, m.y, v.y, a);
        adam_one(p.z, g.z, m.z, v.z, a);
        adam_one(p.w, g.w, m.w, v.w, a);
        p4[i] = p;
        m4[i] = m;
        v4[i] = v;
    }
    for (long long i = 4 * n4 + start; i < n; i += stride) {
        adam_one(param[i], grad[i], exp_avg[i], exp_avg_sq[i], a);
    }
}

// The model of flat index i: the segment holding i (a linear search: a stack has a few
// segments, two per layer), then the offset within it over the values per model.
__device__ __forceinline__ int model_of(long long i, const long long* __restrict__ seg_start,
                                        const long long* __restrict__ seg_size, int segments)
{
    int s = 0;
    while (s + 1 < segments && i >= seg_start[s + 1]) ++s;
    return (int)((i - seg_start[s]) / seg_size[s]);
}

// A per-model hyperparameter: values[m] when given per model, else the shared one.
__device__ __forceinline__ double per_model(const double* values, int m, double shared)
{
    return values != nullptr ? values[m] : shared;
}

// sgd_update with the learning rate lr[m] of each model m and, where not null, its momentum
// and weight decay; `velocity` is null when no model has momentum.
__global__ void sgd_update_models(float* __restrict__ param, const float* __restrict__ grad,
                                  float* __restrict__ velocity, const float* __restrict__ lr,
                                  long long n, const double* __restrict__ momentum,
                                  const double* __restrict__ weight_decay,
                                  double momentum_all, double decay_all, int nesterov,
                                  const long long* __restrict__ seg_start,
                                  const long long* __restrict__ seg_size, int segments,
                                  int models)
{
    __shared__ SgdArgs args[MAX_MODELS];
    for (int m = threadIdx.x; m < models; m += blockDim.x) {
        args[m].lr = lr[m];
        args[m].momentum = (float)per_model(momentum, m, momentum_all);
        args[m].weight_decay = (float)per_model(weight_decay, m, decay_all);
        args[m].use_momentum = velocity != nullptr;
        args[m].nesterov = nesterov != 0;
    }
    __syncthreads();
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        const SgdArgs& a = args[model_of(i, seg_start, seg_size, segments)];
        float v = a.use_momentum ? velocity[i] : 0.f;
        sgd_one(param[i], grad[i], v, a);
        if (a.use_momentum) velocity[i] = v;
    }
}

// adam_update with each model's learning rate lr[m] and, where not null, its betas, eps and
// weight decay: the bias corrections of every model computed once per block, in double.
__global__ void adam_update_models(float* __restrict__ param, const float* __restrict__ grad,
                                   float* __restrict__ exp_avg, float* __restrict__ exp_avg_sq,
                                   const float* __restrict__ lr, const float* __restrict__ step,
                                   long long n, const double* __restrict__ beta1,
                                   const double* __restrict__ beta2,
                                   const double* __restrict__ eps,
                                   const double* __restrict__ weight_decay, double beta1_all,
                                   double beta2_all, double eps_all, double decay_all,
                                   int decoupled, const long long* __restrict__ seg_start,
                                   const long long* __restrict__ seg_size, int segments,
                                   int models)
{
    __shared__ AdamArgs args[MAX_MODELS];
    const double t = (double)step[0];
    for (int m = threadIdx.x; m < models; m += blockDim.x) {
        const double b1 = per_model(beta1, m, beta1_all), b2 = per_model(beta2, m, beta2_all);
        const double wd = per_model(weight_decay, m, decay_all), rate = (double)lr[m];
        AdamArgs& a = args[m];
        a.one_minus_beta1 = (float)(1.0 - b1);
        a.beta2 = (float)b2;
        a.one_minus_beta2 = (float)(1.0 - b2);
        a.eps = (float)per_model(eps, m, eps_all);
        a.weight_decay = (float)wd;
        a.decay = (float)(1.0 - rate * wd);
        a.neg_step_size = (float)(-rate / (1.0 - pow(b1, t)));
        a.bias2_sqrt = (float)sqrt(1.0 - pow(b2, t));
        a.decoupled = decoupled != 0;
    }
    __syncthreads();
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        adam_one(param[i], grad[i], exp_avg[i], exp_avg_sq[i],
                 args[model_of(i, seg_start, seg_size, segments)]);
    }
}
