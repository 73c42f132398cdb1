// Fused softmax cross-entropy over (rows, classes) float32 logits and integer labels.
//
// One warp per row: an online max / sum-of-exponentials pass (logits read from memory once;
// the gradient pass re-reads the row from cache), the arg-max (first index on ties, as numpy),
// the row's loss, and the gradient (softmax - onehot) / batch written in place of `grad`.
// A second kernel reduces the per-row losses and hits over several blocks, each summing a
// fixed range of rows; the last block to finish sums the blocks' parts in index order, so the
// mean is deterministic. Labels outside [0, classes) are never used as indices: the row
// records an error instead. With class weights, sample weights or label smoothing (torch's
// cross_entropy(weight=, label_smoothing=) with per-row weights), a first kernel sums the
// batch's weight W the same deterministic way, the rows use 1 / W and the mean divides by W.
//
// A stack's logits (gn.stack: models x batch rows) take one mean per model: row r reads label
// (r / label_period) * label_batch + r % label_batch (labels shared by all models, or one row
// of labels per group of models), and the finish kernel's grid y is the model.
//
// Launcher: gpunet/ops/launchers/softmax_xent.py (it passes -DWARP, -DROWS_PER_BLOCK,
// -DFINISH_THREADS). NumPy reference: NumpyOps.softmax_cross_entropy, NumpyOps.check_labels.
// Tests: tests/test_cupy_ops.py (test_softmax_cross_entropy, test_out_of_range_label_*),
// tests/test_gpu_path.py, tests/test_weighted_losses.py (against torch). No headers:
// everything used here is an NVRTC built-in.

#if !defined(WARP) || !defined(ROWS_PER_BLOCK) || !defined(FINISH_THREADS) || !defined(LABEL_BITS)
#error "sizes come from gpunet/ops/launchers/softmax_xent.py as -DWARP=... etc."
#endif
// An error word is (index << LABEL_BITS) | (label + 2^(LABEL_BITS - 1)), see below.

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

// Record a bad label: the error word keeps the smallest such word seen, so the host can name
// the first bad index (below 2^(64 - LABEL_BITS)) and its label (clamped to LABEL_BITS bits).
__device__ __forceinline__ void record_bad_label(unsigned long long* err, long long index,
                                                 long long label)
{
    const long long lo = -(1LL << (LABEL_BITS - 1)), hi = (1LL << (LABEL_BITS - 1)) - 1;
    const long long clamped = label < lo ? lo : (label > hi ? hi : label);
    const unsigned long long word =
        ((unsigned long long)index << LABEL_BITS) | (unsigned long long)(clamped - lo);
    atomicMin(err, word);
}

// Add x to the running (max m, sum s of exp(v - m)); x == m covers a row of -inf.
__device__ __forceinline__ void lse_add(float& m, float& s, float x)
{
    if (x > m) {
        s = s * expf(m - x) + 1.f;
        m = x;
    } else {
        s += (x == m) ? 1.f : expf(x - m);
    }
}

// Merge two (max, sum) states; a state with m == the merged max needs no rescaling.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2)
{
    const float mm = fmaxf(m, m2);
    s = (m == mm ? s : s * expf(m - mm)) + (m2 == mm ? s2 : s2 * expf(m2 - mm));
    m = mm;
}

// Keep the larger value; on ties (and for lanes that saw nothing, index -1) the first index.
__device__ __forceinline__ void argmax_merge(float& v, int& i, float v2, int i2)
{
    if (i2 >= 0 && (i < 0 || v2 > v || (v2 == v && i2 < i))) {
        v = v2;
        i = i2;
    }
}

// The weighted, smoothed row (torch's cross_entropy with weight= and label_smoothing=, and
// per-row weights): with r = s w[y], W = sum of r over the batch (inv_total = 1 / W, from
// xent_weight_total), e = smoothing and C classes, the row's share of the loss numerator is
// (1 - e) r (lse - x[y]) + e / C s sum_c w[c] (lse - x[c]), and the gradient
// g[c] = (p[c] ((1 - e) r + e / C s sum(w)) - (1 - e) r [c = y] - e / C s w[c]) / W.
// class_weight and sample_weight may be null (all 1). Called by the whole warp.
__device__ __forceinline__ void weighted_row(const float* x, float* g, float* row_loss,
                                             int lane, int row, int classes, long long label,
                                             float m, float s, float weight_sum,
                                             const float* class_weight,
                                             const float* sample_weight,
                                             const float* inv_total, float smoothing)
{
    const float lse = logf(s) + m;
    const float si = sample_weight != nullptr ? sample_weight[row] : 1.f;
    const float r = si * (class_weight != nullptr ? class_weight[label] : 1.f);
    const float keep = 1.f - smoothing, spread = smoothing / classes;
    const float a = keep * r + spread * si * weight_sum;
    const float inv = inv_total[0];
    float smooth = 0.f;  // this lane's part of sum_c w[c] (lse - x[c])
    for (int j = lane; j < classes; j += WARP) {
        const float w = class_weight != nullptr ? class_weight[j] : 1.f;
        const float v = x[j];
        float gj = expf(v - m) / s * a;
        if (j == label) gj -= keep * r;
        if (smoothing != 0.f) {
            gj -= spread * si * w;
            smooth += w * (lse - v);
        }
        g[j] = gj * inv;
    }
    if (smoothing != 0.f) {
        for (int offset = WARP / 2; offset > 0; offset /= 2) {
            smooth += __shfl_xor_sync(0xffffffffu, smooth, offset);
        }
    }
    if (lane == 0) {
        float loss = keep * r * (lse - x[label]);
        if (smoothing != 0.f) loss += spread * si * smooth;
        row_loss[row] = loss;
    }
}

// One warp per row: bad labels flagged; max, sum of exponentials and arg-max in one pass;
// then the loss and the gradient: (softmax - onehot) * inv_batch, or the weighted row above
// when class_weight, sample_weight or smoothing is given (inv_total is then not null).
template <typename L>
__global__ void softmax_xent_rows(const float* __restrict__ logits, const L* __restrict__ labels,
                                  float* __restrict__ grad, float* __restrict__ row_loss,
                                  int* __restrict__ row_hit, unsigned long long* err,
                                  int rows, int classes, float inv_batch,
                                  const float* __restrict__ class_weight,
                                  const float* __restrict__ sample_weight,
                                  const float* __restrict__ inv_total, float smoothing,
                                  int label_period, int label_batch)
{
    const int lane = threadIdx.x % WARP;
    const int warp = threadIdx.x / WARP;
    const bool weighted = inv_total != nullptr;
    for (int row = blockIdx.x * ROWS_PER_BLOCK + warp; row < rows;
         row += gridDim.x * ROWS_PER_BLOCK) {
        const float* x = logits + (long long)row * classes;
        float* g = grad + (long long)row * classes;
        const int at = row / label_period * label_batch + row % label_batch;  // its label
        const long long label = (long long)labels[at];  // the same for the whole warp
        if (label < 0 || label >= classes) {
            if (lane == 0) {
                record_bad_label(err, at, label);
                row_loss[row] = quiet_nan();
                row_hit[row] = 0;
            }
            for (int j = lane; j < classes; j += WARP) g[j] = 0.f;
            continue;
        }
        float m = neg_inf(), s = 0.f, best = neg_inf(), weight_sum = 0.f;
        int best_i = -1;
        for (int j = lane; j < classes; j += WARP) {
            const float v = x[j];
            lse_add(m, s, v);
            if (best_i < 0 || v > best) {
                best = v;
                best_i = j;
            }
            if (class_weight != nullptr && smoothing != 0.f) weight_sum += class_weight[j];
        }
        for (int offset = WARP / 2; offset > 0; offset /= 2) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
            const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
            const float b2 = __shfl_xor_sync(0xffffffffu, best, offset);
            const int i2 = __shfl_xor_sync(0xffffffffu, best_i, offset);
            weight_sum += __shfl_xor_sync(0xffffffffu, weight_sum, offset);
            lse_merge(m, s, m2, s2);
            argmax_merge(best, best_i, b2, i2);
        }
        // Every lane now holds the row's max, sum and arg-max (xor butterfly).
        if (lane == 0) row_hit[row] = best_i == label ? 1 : 0;
        if (weighted) {
            if (class_weight == nullptr) weight_sum = (float)classes;
            weighted_row(x, g, row_loss, lane, row, classes, label, m, s, weight_sum,
                         class_weight, sample_weight, inv_total, smoothing);
            continue;
        }
        const float x_label = x[label];
        if (lane == 0) row_loss[row] = logf(s) + m - x_label;
        for (int j = lane; j < classes; j += WARP) {
            const float p = expf(x[j] - m) / s;
            g[j] = (j == label ? p - 1.f : p) * inv_batch;
        }
    }
}

// Sum (l, h) over the block's threads in a fixed tree order; the result is in ls[0], hs[0].
__device__ __forceinline__ void block_sum(double* ls, long long* hs, double l, long long h)
{
    ls[threadIdx.x] = l;
    hs[threadIdx.x] = h;
    __syncthreads();
    for (int half = FINISH_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            ls[threadIdx.x] += ls[threadIdx.x + half];
            hs[threadIdx.x] += hs[threadIdx.x + half];
        }
        __syncthreads();
    }
}

// loss[0] = mean of row_loss (the sum divided by total[0], W, when total is not null),
// hits[0] = sum of row_hit. Block b sums rows
// [b * chunk, (b + 1) * chunk) into part_loss[b], part_hit[b]; the last block to take a
// ticket sums the parts in index order and resets the ticket counter for the next call.
// Block: FINISH_THREADS threads; grid: ceil(rows / chunk) blocks, at most FINISH_THREADS.
// Grid y > 1: a stack's models, `rows` each, one after another; model y has its own parts,
// ticket, loss[y] and hits[y].
__global__ void softmax_xent_finish(const float* __restrict__ row_loss,
                                    const int* __restrict__ row_hit, double* part_loss,
                                    long long* part_hit, unsigned int* ticket,
                                    float* __restrict__ loss, long long* __restrict__ hits,
                                    int rows, int chunk, const double* __restrict__ total)
{
    __shared__ double ls[FINISH_THREADS];
    __shared__ long long hs[FINISH_THREADS];
    __shared__ bool last;
    const long long model = blockIdx.y;
    row_loss += model * rows;
    row_hit += model * rows;
    part_loss += model * gridDim.x;
    part_hit += model * gridDim.x;
    ticket += model;
    const int begin = blockIdx.x * chunk;
    const int end = rows - begin < chunk ? rows : begin + chunk;
    double l = 0.0;
    long long h = 0;
    for (int i = begin + threadIdx.x; i < end; i += FINISH_THREADS) {
        l += (double)row_loss[i];
        h += row_hit[i];
    }
    block_sum(ls, hs, l, h);
    if (threadIdx.x == 0) {
        part_loss[blockIdx.x] = ls[0];
        part_hit[blockIdx.x] = hs[0];
        __threadfence();  // the part is visible to every block before the ticket is taken
        last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    l = 0.0;
    h = 0;
    if (threadIdx.x < gridDim.x) {  // gridDim.x <= FINISH_THREADS: one part per thread
        l = ((volatile double*)part_loss)[threadIdx.x];
        h = ((volatile long long*)part_hit)[threadIdx.x];
    }
    block_sum(ls, hs, l, h);
    if (threadIdx.x == 0) {
        loss[model] = (float)(ls[0] / (total != nullptr ? total[0] : (double)rows));
        hits[model] = hs[0];
        *ticket = 0u;
    }
}

// W = sum over rows of sample_weight[i] * class_weight[labels[i]] (either may be null: 1),
// bad labels counting 0: total[0] = W, inv_total[0] = 1 / W (float), before the rows kernel
// of a weighted loss. Partials and ticket as softmax_xent_finish (same grid and chunk).
template <typename L>
__global__ void xent_weight_total(const L* __restrict__ labels,
                                  const float* __restrict__ class_weight,
                                  const float* __restrict__ sample_weight, int rows,
                                  int classes, int chunk, double* part, unsigned int* ticket,
                                  double* __restrict__ total, float* __restrict__ inv_total)
{
    __shared__ double ls[FINISH_THREADS];
    __shared__ long long hs[FINISH_THREADS];
    __shared__ bool last;
    const int begin = blockIdx.x * chunk;
    const int end = rows - begin < chunk ? rows : begin + chunk;
    double w = 0.0;
    for (int i = begin + threadIdx.x; i < end; i += FINISH_THREADS) {
        const long long label = (long long)labels[i];
        if (label < 0 || label >= classes) continue;
        const float si = sample_weight != nullptr ? sample_weight[i] : 1.f;
        w += (double)(si * (class_weight != nullptr ? class_weight[label] : 1.f));
    }
    block_sum(ls, hs, w, 0);
    if (threadIdx.x == 0) {
        part[blockIdx.x] = ls[0];
        __threadfence();  // the part is visible to every block before the ticket is taken
        last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    w = threadIdx.x < gridDim.x ? ((volatile double*)part)[threadIdx.x] : 0.0;
    block_sum(ls, hs, w, 0);
    if (threadIdx.x == 0) {
        total[0] = ls[0];
        inv_total[0] = (float)(1.0 / ls[0]);
        *ticket = 0u;
    }
}

// Flag (without using them) labels outside [0, classes): the standalone check.
template <typename L>
__global__ void check_label_range(const L* __restrict__ labels, long long n, long long classes,
                                  unsigned long long* err)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long label = (long long)labels[i];
        if (label < 0 || label >= classes) record_bad_label(err, i, label);
    }
}
