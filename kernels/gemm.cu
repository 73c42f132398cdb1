// Tiled shared-memory GEMM with a bias + ReLU epilogue: C = act(op(A) op(B) + bias), float32.
//
// One launch per layer product, no cuBLAS, so a training step built from these kernels can be
// captured as a CUDA graph. op(A) is (M, K), op(B) is (K, N), C is (M, N) row-major with
// leading dimension N. Transposes are template flags on row-major storage:
//   forward      out = x W^T + b   : TA = false (x is M x K),  TB = true  (W is N x K)
//   weight grad  dW  = dZ^T X      : TA = true  (dZ is K x M), TB = false (X is K x N)
//   input grad   dX  = dZ W        : TA = false (dZ is M x K), TB = false (W is K x N)
// A block of THREADS_SIDE^2 threads (16 x 16) computes a TILE x TILE (64 x 64) tile of C, each
// thread a PER_THREAD x PER_THREAD (4 x 4) grid of elements strided by THREADS_SIDE
// (conflict-free shared reads, coalesced stores); K advances TILE_K (16) at a time.
//
// Launcher: gpunet/ops/launchers/gemm.py (it passes -DTILE, -DTILE_K, -DTHREADS_SIDE).
// NumPy reference: NumpyOps.linear_forward / linear_relu_forward / linear_backward.
// Tests: tests/test_cupy_ops.py (the "tiled" route), tests/test_gpu_path.py.
// No headers: everything used here is an NVRTC built-in.

#if !defined(TILE) || !defined(TILE_K) || !defined(THREADS_SIDE)
#error "launch sizes come from gpunet/ops/launchers/gemm.py as -DTILE=... -DTILE_K=... -DTHREADS_SIDE=..."
#endif
#define PER_THREAD (TILE / THREADS_SIDE)
static_assert(TILE % THREADS_SIDE == 0, "a thread computes a whole PER_THREAD x PER_THREAD grid");
static_assert((TILE * TILE_K) % (THREADS_SIDE * THREADS_SIDE) == 0,
              "every thread loads the same number of tile elements");

// Element (m, k) of op(A) and (k, n) of op(B), zero outside the matrix.
template <bool TA>
__device__ __forceinline__ float load_a(const float* __restrict__ a, int m, int k, int M, int K)
{
    if (m >= M || k >= K) return 0.f;
    return TA ? a[(long long)k * M + m] : a[(long long)m * K + k];
}

template <bool TB>
__device__ __forceinline__ float load_b(const float* __restrict__ b, int k, int n, int K, int N)
{
    if (k >= K || n >= N) return 0.f;
    return TB ? b[(long long)n * K + k] : b[(long long)k * N + n];
}

// Grid: (ceil(M / TILE), ceil(N / TILE)); block: (THREADS_SIDE, THREADS_SIDE).
template <bool TA, bool TB, bool HAS_BIAS, bool RELU>
__global__ void __launch_bounds__(THREADS_SIDE * THREADS_SIDE)
gemm_bias_act(const float* __restrict__ a, const float* __restrict__ b,
              const float* __restrict__ bias, float* __restrict__ c, int M, int N, int K)
{
    __shared__ float a_tile[TILE_K][TILE + 1];  // a_tile[k][m]
    __shared__ float b_tile[TILE_K][TILE + 1];  // b_tile[k][n]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * THREADS_SIDE + tx;
    const int m0 = blockIdx.x * TILE, n0 = blockIdx.y * TILE;
    float acc[PER_THREAD][PER_THREAD];
#pragma unroll
    for (int i = 0; i < PER_THREAD; ++i)
#pragma unroll
        for (int j = 0; j < PER_THREAD; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < K; k0 += TILE_K) {
        // Each tile holds TILE * TILE_K elements, as many per thread. The index order
        // follows the storage so that neighbouring threads read neighbouring addresses.
#pragma unroll
        for (int r = 0; r < (TILE * TILE_K) / (THREADS_SIDE * THREADS_SIDE); ++r) {
            const int e = tid + r * THREADS_SIDE * THREADS_SIDE;
            const int am = TA ? e % TILE : e / TILE_K;
            const int ak = TA ? e / TILE : e % TILE_K;
            a_tile[ak][am] = load_a<TA>(a, m0 + am, k0 + ak, M, K);
            const int bn = TB ? e / TILE_K : e % TILE;
            const int bk = TB ? e % TILE_K : e / TILE;
            b_tile[bk][bn] = load_b<TB>(b, k0 + bk, n0 + bn, K, N);
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < TILE_K; ++k) {
            float av[PER_THREAD], bv[PER_THREAD];
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i) av[i] = a_tile[k][ty + i * THREADS_SIDE];
#pragma unroll
            for (int j = 0; j < PER_THREAD; ++j) bv[j] = b_tile[k][tx + j * THREADS_SIDE];
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i)
#pragma unroll
                for (int j = 0; j < PER_THREAD; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < PER_THREAD; ++i) {
        const int m = m0 + ty + i * THREADS_SIDE;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < PER_THREAD; ++j) {
            const int n = n0 + tx + j * THREADS_SIDE;
            if (n >= N) continue;
            float v = acc[i][j];
            if (HAS_BIAS) v += bias[n];
            if (RELU) v = v < 0.f ? 0.f : v;  // keeps NaN, as numpy.maximum(v, 0) does
            c[(long long)m * N + n] = v;
        }
    }
}
