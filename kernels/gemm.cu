// Register-tiled SGEMM with a bias + ReLU epilogue and deterministic split-K:
// C = act(op(A) op(B) + bias), float32.
//
// One launch per layer product (two with split-K), no cuBLAS, so a training step built from
// these kernels can be captured as a CUDA graph. op(A) is (M, K), op(B) is (K, N), C is (M, N)
// row-major with leading dimension N. Transposes are template flags on row-major storage:
//   forward      out = x W^T + b   : TA = false (x is M x K),  TB = true  (W is N x K)
//   weight grad  dW  = dZ^T X      : TA = true  (dZ is K x M), TB = false (X is K x N)
//   input grad   dX  = dZ W        : TA = false (dZ is M x K), TB = false (W is K x N)
// Block tiles are template arguments (BM x BN outputs, BK deep, TM x TN outputs per thread);
// the launcher picks one configuration per shape. A block runs BM/TM x BN/TN threads; each
// thread holds a TM x TN register tile made of 4 x 4 runs strided by 4 * (threads along that
// side), so its shared reads are float4s that a warp reads without bank conflicts and its
// global stores are float4s that neighbouring threads write side by side. K advances BK at a
// time through two shared buffers: the next slice is loaded into registers while the current
// one is multiplied, then stored into the other buffer (one __syncthreads per slice).
//
// Split-K: blockIdx.z takes K range [z * k_per_split, (z + 1) * k_per_split) and, when the
// launcher splits, writes its raw partial sums to slab z of a workspace (the <.., false, false>
// instantiation); split_k_reduce then adds the slabs in order 0, 1, ... and applies bias + ReLU.
// No atomics: the result is bit-identical run to run for a given shape.
//
// Launcher: gpunet/ops/launchers/gemm.py (it passes -DSHARED_PAD, -DREDUCE_THREADS and the
// tile sizes as template arguments). NumPy reference: NumpyOps.linear_forward /
// linear_relu_forward / linear_backward.
// Tests: tests/test_gemm_emulated.py (this source on the CPU), tests/test_gemm_plan.py,
// tests/test_gpu_gemm.py, tests/test_cupy_ops.py (the "tiled" route), tests/test_gpu_path.py.
// No headers: everything used here is an NVRTC built-in.
//
// Batched (a stack's models, gn.stack): blockIdx.z = batch * splits + split; product `batch`
// reads A, B and the bias `stride_*` elements further on and writes C (or its slabs of
// partial sums) batch * M * N further on: C is contiguous over the batch. One launch for
// every model's product, as for one model's.

#if !defined(SHARED_PAD) || !defined(REDUCE_THREADS)
#error "launch sizes come from gpunet/ops/launchers/gemm.py: -DSHARED_PAD=... -DREDUCE_THREADS=..."
#endif
// Shared tiles are k-major (tile[k][m], tile[k][n]) so that a thread reads 4 consecutive rows
// (columns) of one k as a float4. Rows are padded by SHARED_PAD floats: a multiple of 4 keeps
// them 16-byte aligned, and the padding spreads transposing stores over the banks.
static_assert(SHARED_PAD % 4 == 0, "padded shared rows stay 16-byte aligned");

__device__ __forceinline__ bool aligned16(const void* p)
{
    return (reinterpret_cast<unsigned long long>(p) & 15) == 0;
}

// One thread's share of a BK x BD slice of op(A) (D = M) or op(B) (D = N), as float4 groups of 4
// elements adjacent in memory. K_INNER: element (d, k) is src[d * ld + k] (k contiguous), else
// src[k * ld + d] (d contiguous); ld is the length of the contiguous dimension.
template <int BK, int BD, int THREADS, bool K_INNER>
struct Slice {
    static constexpr int GROUPS = BK * BD / (4 * THREADS);  // float4 groups per thread
    static constexpr int ACROSS = (K_INNER ? BK : BD) / 4;  // groups along the contiguous side
    static_assert(BK * BD % (4 * THREADS) == 0, "every thread loads whole float4 groups");

    float4 v[GROUPS];

    __device__ __forceinline__ static long long offset(int d, int k, int ld)
    {
        return K_INNER ? (long long)d * ld + k : (long long)k * ld + d;
    }

    // Where group r of thread tid starts in the slice: neighbouring threads take neighbouring
    // groups along the contiguous dimension, so a warp reads whole 32-byte sectors.
    __device__ __forceinline__ static void origin(int tid, int r, int& d, int& k)
    {
        const int g = tid + r * THREADS;
        const int along = (g % ACROSS) * 4, across = g / ACROSS;
        d = K_INNER ? across : along;
        k = K_INNER ? along : across;
    }

    // Reads the slice at (d0, k0), zero outside d < D, k < k_end. vec (ld % 4 == 0 and src
    // 16-byte aligned, and k0, k_end multiples of 4 when K_INNER): a group lies wholly inside or
    // wholly outside the matrix and one float4 load reads it; otherwise 4 checked scalar loads.
    __device__ __forceinline__ void load(const float* __restrict__ src, int ld, int d0, int D,
                                         int k0, int k_end, bool vec, int tid)
    {
#pragma unroll
        for (int r = 0; r < GROUPS; ++r) {
            int d, k;
            origin(tid, r, d, k);
            d += d0;
            k += k0;
            if (vec) {
                v[r] = d < D && k < k_end
                           ? *reinterpret_cast<const float4*>(src + offset(d, k, ld))
                           : make_float4(0.f, 0.f, 0.f, 0.f);
                continue;
            }
            float e[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int di = K_INNER ? d : d + i, ki = K_INNER ? k + i : k;
                e[i] = di < D && ki < k_end ? src[offset(di, ki, ld)] : 0.f;
            }
            v[r] = make_float4(e[0], e[1], e[2], e[3]);
        }
    }

    // Writes the loaded groups into tile[k][d]: a k-contiguous group is transposed into four
    // rows, a d-contiguous one is stored as it is.
    __device__ __forceinline__ void store(float (*tile)[BD + SHARED_PAD], int tid) const
    {
#pragma unroll
        for (int r = 0; r < GROUPS; ++r) {
            int d, k;
            origin(tid, r, d, k);
            if (K_INNER) {
                tile[k][d] = v[r].x;
                tile[k + 1][d] = v[r].y;
                tile[k + 2][d] = v[r].z;
                tile[k + 3][d] = v[r].w;
            } else {
                *reinterpret_cast<float4*>(&tile[k][d]) = v[r];
            }
        }
    }
};

// Grid: (ceil(M / BM), ceil(N / BN), batches * splits); block: BM/TM * BN/TN threads (1-D).
// c is C, or the (batches, splits, M, N) partial sums when the launcher splits K (then
// HAS_BIAS = RELU = false).
// At least 2 blocks per SM: registers are capped at 128 a thread for the 256-thread tiles.
template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB, bool HAS_BIAS, bool RELU>
__global__ void __launch_bounds__(BM * BN / TM / TN, 2)
gemm_tiled(const float* __restrict__ a, const float* __restrict__ b,
           const float* __restrict__ bias, float* __restrict__ c, int M, int N, int K,
           int k_per_split, int splits, int stride_a, int stride_b, int stride_bias)
{
    constexpr int THREADS = BM * BN / TM / TN;
    constexpr int RM = BM / TM, CN = BN / TN;  // threads along m, along n
    static_assert(TM % 4 == 0 && TN % 4 == 0, "register tiles are made of 4 x 4 runs");
    static_assert(BK % 4 == 0, "k-contiguous float4 groups stay inside one slice");
    alignas(16) __shared__ float a_tile[2][BK][BM + SHARED_PAD];  // a_tile[buffer][k][m]
    alignas(16) __shared__ float b_tile[2][BK][BN + SHARED_PAD];  // b_tile[buffer][k][n]
    Slice<BK, BM, THREADS, !TA> a_slice;  // A is k-contiguous unless transposed
    Slice<BK, BN, THREADS, TB> b_slice;   // B is k-contiguous when transposed
    const long long batch = blockIdx.z / splits;
    a += batch * (long long)stride_a;
    b += batch * (long long)stride_b;
    if (HAS_BIAS) bias += batch * (long long)stride_bias;
    const int lda = TA ? M : K, ldb = TB ? K : N;
    const bool vec_a = aligned16(a) && lda % 4 == 0, vec_b = aligned16(b) && ldb % 4 == 0;

    const int tid = threadIdx.x, tx = tid % CN, ty = tid / CN;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int k_begin = (int)(blockIdx.z - batch * splits) * k_per_split;
    const int k_end = K - k_begin < k_per_split ? K : k_begin + k_per_split;
    const int slices = (k_end - k_begin + BK - 1) / BK;  // 0 when K == 0: bias/zeros only
    c += (long long)blockIdx.z * M * N;  // slab (batch, split), or product batch's C

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    if (slices > 0) {
        a_slice.load(a, lda, m0, M, k_begin, k_end, vec_a, tid);
        b_slice.load(b, ldb, n0, N, k_begin, k_end, vec_b, tid);
        a_slice.store(a_tile[0], tid);
        b_slice.store(b_tile[0], tid);
        __syncthreads();
    }
    for (int s = 0; s < slices; ++s) {
        const int cur = s & 1;
        const bool more = s + 1 < slices;
        if (more) {  // the next slice's global loads are in flight during the products below
            const int k0 = k_begin + (s + 1) * BK;
            a_slice.load(a, lda, m0, M, k0, k_end, vec_a, tid);
            b_slice.load(b, ldb, n0, N, k0, k_end, vec_b, tid);
        }
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            // Run q of this thread's rows starts at q * 4 * RM + ty * 4 (same for columns): the
            // threads of a warp read consecutive float4s or the same one (a broadcast).
            float av[TM], bv[TN];
#pragma unroll
            for (int q = 0; q < TM / 4; ++q) {
                const float4 v = *reinterpret_cast<const float4*>(
                    &a_tile[cur][k][q * 4 * RM + ty * 4]);
                av[4 * q] = v.x, av[4 * q + 1] = v.y, av[4 * q + 2] = v.z, av[4 * q + 3] = v.w;
            }
#pragma unroll
            for (int q = 0; q < TN / 4; ++q) {
                const float4 v = *reinterpret_cast<const float4*>(
                    &b_tile[cur][k][q * 4 * CN + tx * 4]);
                bv[4 * q] = v.x, bv[4 * q + 1] = v.y, bv[4 * q + 2] = v.z, bv[4 * q + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
        }
        if (more) {  // the other buffer: every thread finished reading it before the last sync
            a_slice.store(a_tile[cur ^ 1], tid);
            b_slice.store(b_tile[cur ^ 1], tid);
        }
        __syncthreads();
    }

    // Epilogue: bias and ReLU per element, then one float4 store per run of 4 columns where C's
    // rows are 16-byte aligned, else checked scalar stores.
    const bool vec_c = aligned16(c) && N % 4 == 0;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + (i / 4) * 4 * RM + ty * 4 + i % 4;
        if (m >= M) continue;
        float* row = c + (long long)m * N;
#pragma unroll
        for (int q = 0; q < TN / 4; ++q) {
            const int n = n0 + q * 4 * CN + tx * 4;
            float v[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                v[j] = acc[i][4 * q + j];
                if (HAS_BIAS && n + j < N) v[j] += bias[n + j];
                if (RELU) v[j] = v[j] < 0.f ? 0.f : v[j];  // keeps NaN, as numpy.maximum does
            }
            if (vec_c && n < N) {
                *reinterpret_cast<float4*>(row + n) = make_float4(v[0], v[1], v[2], v[3]);
                continue;
            }
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (n + j < N) row[n + j] = v[j];
        }
    }
}

// Second pass of split-K: c = act(sum over s of partials[s] + bias), the slabs added in order
// s = 0, 1, ... (deterministic). Grid-stride over the batches * M * N outputs (product b's
// bias `stride_bias` elements further on); block: REDUCE_THREADS.
template <bool HAS_BIAS, bool RELU>
__global__ void __launch_bounds__(REDUCE_THREADS)
split_k_reduce(const float* __restrict__ partials, const float* __restrict__ bias,
               float* __restrict__ c, int M, int N, int splits, int batches, int stride_bias)
{
    const long long per = (long long)M * N, total = per * batches;
    const long long stride = (long long)gridDim.x * REDUCE_THREADS;
    for (long long e = (long long)blockIdx.x * REDUCE_THREADS + threadIdx.x; e < total;
         e += stride) {
        const long long batch = e / per, within = e - batch * per;
        const float* slabs = partials + batch * splits * per + within;
        float v = slabs[0];
        for (int s = 1; s < splits; ++s) v += slabs[s * per];
        if (HAS_BIAS) v += bias[batch * stride_bias + within % N];
        if (RELU) v = v < 0.f ? 0.f : v;  // keeps NaN, as numpy.maximum does
        c[e] = v;
    }
}
