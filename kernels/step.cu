// The static training step's own kernels: gather a batch by index from the device-resident
// dataset (scaled to float), and record the step's loss and hits while advancing the cursor.
// Both read the cursor (the first row of the batch in the epoch's order) from device memory,
// so a step captured once as a CUDA graph walks through the epoch when replayed.
//
// Launcher: gpunet/ops/launchers/step.py (no launch size is compiled in: any block works).
// NumPy reference: NumpyOps.gather_batch, NumpyOps.end_step.
// Tests: tests/test_static_step.py (CPU), tests/test_gpu_graph.py (GPU).
// No headers: everything used here is an NVRTC built-in.

// x_out[j, :] = X[order[c + j], :] / divisor, y_out[j] = y[order[c + j]], c = cursor[0].
// Division (not a multiply by 1/divisor) rounds exactly as NumPy's uint8 / 255 does.
// A stack's groups of models (gn.stack, an order per model): `groups` row orders of
// `order_stride` entries each; rows g * rows + j of the outputs come from order row g.
template <typename T, typename L>
__global__ void gather_batch(const T* __restrict__ X, const L* __restrict__ y,
                             const long long* __restrict__ order,
                             const long long* __restrict__ cursor, float* __restrict__ x_out,
                             L* __restrict__ y_out, long long rows, long long features,
                             float divisor, long long groups, long long order_stride)
{
    const long long first = cursor[0];
    const long long n = groups * rows * features;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long row = i / features, col = i - row * features;
        const long long group = row / rows;
        const long long source = order[group * order_stride + first + row - group * rows];
        x_out[i] = (float)X[source * features + col] / divisor;
        if (col == 0) y_out[row] = y[source];
    }
}

// losses[s, m] = loss[m], hits[s, m] = correct[m] for each of `models` models (one for a
// plain model) with s = cursor[0] / batch_size; then cursor[0] += rows. One block.
__global__ void end_step(long long* cursor, long long rows, long long batch_size,
                         const float* __restrict__ loss, const long long* __restrict__ correct,
                         double* __restrict__ losses, long long* __restrict__ hits,
                         long long models)
{
    const long long step = cursor[0] / batch_size;
    for (long long m = threadIdx.x; m < models; m += blockDim.x) {
        losses[step * models + m] = (double)loss[m];
        hits[step * models + m] = correct[m];
    }
    __syncthreads();  // every thread has read the cursor
    if (threadIdx.x == 0) cursor[0] += rows;
}
