// Gradient clipping by norm over the flat float32 gradient buffer, as
// torch.nn.utils.clip_grad_norm_ defines it: norm = ||g||_p over every gradient at once, then
// g *= min(max_norm / (norm + 1e-6), 1) (a NaN norm makes every gradient NaN, as in torch).
//
// grad_norm: block b reduces the fixed range [b * chunk, (b + 1) * chunk) of g (|g|^p summed
// in double, or the largest |g| for p = inf, NaN kept) in a fixed tree order into parts[b];
// the last block to take a ticket combines the parts in index order and writes the norm
// (deterministic: no float atomics, the same grid for the same n). clip_by_norm reads the
// norm from device memory and scales g in place, so neither needs a host synchronisation
// and both can be captured in a CUDA graph. Grid-stride loops; float4 where aligned.
//
// Launcher: gpunet/ops/launchers/clip_grad.py (it passes -DNORM_THREADS and the norm kinds).
// NumPy reference: NumpyOps.grad_norm, NumpyOps.clip_by_norm.
// Tests: tests/test_clip_grad.py (against torch.nn.utils.clip_grad_norm_, the reference, GPU
// cases through the backend fixture). No headers: everything used here is an NVRTC built-in.

#if !defined(NORM_THREADS) || !defined(NORM_INF) || !defined(NORM_1) || !defined(NORM_2) \
    || !defined(NORM_P)
#error "sizes and norm kinds come from gpunet/ops/launchers/clip_grad.py as -DNORM_THREADS=..."
#endif
// Norm kinds: the largest |g|, sum |g|, sqrt(sum g^2), and (sum |g|^p)^(1/p) for another p.

// The larger of a and b, NaN if either is (fmax would drop a NaN).
__device__ __forceinline__ double max_nan(double a, double b)
{
    return (a > b || a != a) ? a : b;
}

__device__ __forceinline__ double combine(int kind, double a, double b)
{
    return kind == NORM_INF ? max_nan(a, b) : a + b;
}

// What one gradient value adds to the reduction.
__device__ __forceinline__ double term(int kind, double p, float g)
{
    const double a = fabs((double)g);
    switch (kind) {
    case NORM_INF: return a;
    case NORM_1: return a;
    case NORM_2: return a * a;
    default: return pow(a, p);
    }
}

// Reduce v over the block's threads in a fixed tree order; the result is in s[0].
__device__ __forceinline__ void block_reduce(double* s, int kind, double v)
{
    s[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int half = NORM_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            s[threadIdx.x] = combine(kind, s[threadIdx.x], s[threadIdx.x + half]);
        }
        __syncthreads();
    }
}

// norm[0] = the p-norm of g[0:n]. Grid: ceil(n / chunk) blocks of NORM_THREADS threads, at
// most NORM_THREADS blocks; parts: one double per block; ticket: 0 before the launch (the
// last block resets it).
__global__ void grad_norm(const float* __restrict__ g, long long n, long long chunk, int kind,
                          double p, double* parts, unsigned int* ticket,
                          float* __restrict__ norm)
{
    __shared__ double s[NORM_THREADS];
    __shared__ bool last;
    const long long begin = blockIdx.x * chunk;
    const long long end = n - begin < chunk ? n : begin + chunk;
    double v = 0.0;
    for (long long i = begin + threadIdx.x; i < end; i += NORM_THREADS) {
        v = combine(kind, v, term(kind, p, g[i]));
    }
    block_reduce(s, kind, v);
    if (threadIdx.x == 0) {
        parts[blockIdx.x] = s[0];
        __threadfence();  // the part is visible to every block before the ticket is taken
        last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    v = threadIdx.x < gridDim.x ? ((volatile double*)parts)[threadIdx.x] : 0.0;
    block_reduce(s, kind, v);
    if (threadIdx.x == 0) {
        const double total = s[0];
        norm[0] = (float)(kind == NORM_2 ? sqrt(total)
                          : kind == NORM_P ? pow(total, 1.0 / p) : total);
        *ticket = 0u;
    }
}

// g *= min(max_norm / (norm[0] + 1e-6), 1), in float32 as torch computes it; the first n4
// elements as float4 (n4 = n / 4 when g is 16-byte aligned, else 0).
__global__ void clip_by_norm(float* __restrict__ g, const float* __restrict__ norm, long long n,
                             long long n4, float max_norm)
{
    float coef = max_norm / (norm[0] + 1e-6f);
    coef = coef > 1.f ? 1.f : coef;  // a NaN stays NaN (torch.clamp)
    const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    float4* g4 = reinterpret_cast<float4*>(g);
    for (long long i = start; i < n4; i += stride) {
        float4 v = g4[i];
        v.x *= coef;
        v.y *= coef;
        v.z *= coef;
        v.w *= coef;
        g4[i] = v;
    }
    for (long long i = 4 * n4 + start; i < n; i += stride) g[i] *= coef;
}
