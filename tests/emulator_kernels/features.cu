// Small kernels, one CUDA feature each, for tests/test_emulator_features.py: what the
// emulator must run as a GPU does (kernels/*.cu use every one of them).

// out[linear thread id over the whole launch] = its coordinates, packed.
__global__ void coordinates(unsigned* out)
{
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned i = block * blockDim.x * blockDim.y * blockDim.z + thread;
    out[6 * i + 0] = threadIdx.x;
    out[6 * i + 1] = threadIdx.y;
    out[6 * i + 2] = threadIdx.z;
    out[6 * i + 3] = blockIdx.x;
    out[6 * i + 4] = blockIdx.y;
    out[6 * i + 5] = blockIdx.z;
}

// For each thread: the four shuffles of its value, written as out[4 * i + k].
template <typename T>
__global__ void shuffles(const T* in, T* out, int operand, int width)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const T v = in[i];
    out[4 * i + 0] = __shfl_xor_sync(0xffffffffu, v, operand, width);
    out[4 * i + 1] = __shfl_down_sync(0xffffffffu, v, operand, width);
    out[4 * i + 2] = __shfl_up_sync(0xffffffffu, v, operand, width);
    out[4 * i + 3] = __shfl_sync(0xffffffffu, v, operand, width);
}

// A warp's sum by an xor butterfly (as softmax_xent_rows merges its lanes), int and float.
__global__ void warp_sums(const float* in, float* sums, int* counts)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float s = in[i];
    int c = s > 0.f ? 1 : 0;
    for (int offset = warpSize / 2; offset > 0; offset /= 2) {
        s += __shfl_xor_sync(0xffffffffu, s, offset);
        c += __shfl_xor_sync(0xffffffffu, c, offset);
    }
    sums[i] = s;
    counts[i] = c;
}

// Every atomic the emulator provides, hit by every thread of the launch.
__global__ void atomics(int* i32, unsigned* u32, unsigned long long* u64, long long* i64,
                        float* f32, double* f64, int* previous)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&i32[0], 1);
    atomicSub(&i32[1], 2);
    atomicMin(&i32[2], -t);
    atomicMax(&i32[3], t);
    atomicAdd(&u32[0], 1u);
    atomicInc(&u32[1], 4u);  // wraps to 0 after 4
    atomicOr(&u32[2], 1u << (t % 32));
    atomicAnd(&u32[3], ~(1u << (t % 32)));
    atomicXor(&u32[4], 1u);
    atomicAdd(&u64[0], 3ull);
    atomicMin(&u64[1], 1000ull + (unsigned long long)t);
    atomicMax(&u64[2], (unsigned long long)t << 40);
    atomicMin(&i64[0], -(long long)t);
    atomicMax(&i64[1], (long long)t);
    atomicAdd(&f32[0], 0.5f);
    atomicAdd(&f64[0], 0.25);
    previous[t] = atomicCAS(&i32[4], t, t + 1);  // a chain: only thread i32[4] advances it
}

// Each block writes its own index into its shared memory, meets another thread of the
// block at a barrier (other blocks may run meanwhile in concurrent mode) and reads it back.
__global__ void shared_per_block(int* out, unsigned* ticket)
{
    __shared__ int mine[64];
    __shared__ int block_id;
    if (threadIdx.x == 0) block_id = blockIdx.x;
    mine[threadIdx.x] = blockIdx.x * 1000 + threadIdx.x;
    __threadfence();
    atomicAdd(ticket, 1u);
    __syncthreads();
    const int j = (threadIdx.x + 1) % blockDim.x;
    out[blockIdx.x * blockDim.x + threadIdx.x] = mine[j] - block_id * 1000;
}

// The math functions and bit casts the kernels call, on each input.
__global__ void math_functions(const float* x, float* f, const double* y, double* d, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    f[8 * i + 0] = expf(x[i]);
    f[8 * i + 1] = logf(fabsf(x[i]) + 1.f);
    f[8 * i + 2] = fmaxf(x[i], 0.25f);
    f[8 * i + 3] = sqrtf(fabsf(x[i]));
    f[8 * i + 4] = __int_as_float(__float_as_int(x[i]) ^ 0x80000000);  // -x by its sign bit
    f[8 * i + 5] = __int_as_float(0xff800000);                         // -inf
    f[8 * i + 6] = __int_as_float(0x7fc00000);                         // NaN
    f[8 * i + 7] = (float)__float_as_int(x[i]);
    d[2 * i + 0] = pow(0.9, y[i]);
    d[2 * i + 1] = sqrt(1.0 - pow(0.999, y[i]));
}

// float4 loads and stores where the caller says they are aligned, scalars elsewhere.
__global__ void __launch_bounds__(128) scale4(const float* __restrict__ in,
                                              float* __restrict__ out, long long n,
                                              long long n4, float by)
{
    const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const float4* in4 = reinterpret_cast<const float4*>(in);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (long long i = start; i < n4; i += stride) {
        const float4 v = in4[i];
        out4[i] = make_float4(v.x * by, v.y * by, v.z * by, v.w * by);
    }
    for (long long i = 4 * n4 + start; i < n; i += stride) out[i] = in[i] * by;
}

// One parameter of every scalar width a launcher passes; each written back as a double.
__device__ __forceinline__ double widen(long long v) { return (double)v; }

__global__ void widths(double* out, signed char a, short b, int c, long long d, unsigned char e,
                       unsigned short f, unsigned g, unsigned long long h, float i, double j,
                       bool k)
{
    out[0] = widen(a);
    out[1] = widen(b);
    out[2] = widen(c);
    out[3] = widen(d);
    out[4] = widen(e);
    out[5] = widen(f);
    out[6] = widen(g);
    out[7] = (double)h;
    out[8] = i;
    out[9] = j;
    out[10] = k ? 1.0 : 0.0;
}

// Dynamic shared memory: a block reverses its slice of `in` through it.
__global__ void reverse_dynamic(const float* in, float* out)
{
    extern __shared__ float stage[];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    stage[threadIdx.x] = in[i];
    __syncthreads();
    out[i] = stage[blockDim.x - 1 - threadIdx.x];
}

// Reads shared memory no thread wrote: the emulator fills it with 0xff bytes (NaN).
__global__ void unwritten_shared(float* out)
{
    __shared__ float never_written[32];
    out[threadIdx.x] = never_written[threadIdx.x];
}
