// Kernels that break a rule of CUDA a GPU does not report (it hangs or computes garbage):
// the emulator must stop each with an error naming the kernel. tests/test_emulator_rules.py.

// Threads 16 and up never reach the barrier that threads 0-15 wait at.
__global__ void barrier_in_branch(float* out)
{
    if (threadIdx.x < 16) {
        __syncthreads();
    }
    out[threadIdx.x] = 1.f;
}

// Half the block waits at one __syncthreads, half at another.
__global__ void two_barriers(float* out)
{
    if (threadIdx.x % 2) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.f;
}

// Thread 0 returns early; the others then wait for it at a barrier.
__global__ void return_before_barrier(float* out)
{
    if (threadIdx.x == 0) return;
    __syncthreads();
    out[threadIdx.x] = 1.f;
}

// Lane 31 returns before a full-warp shuffle.
__global__ void lane_returns_before_shuffle(float* out)
{
    if (threadIdx.x == 31) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}

// Lane 0 waits at a barrier while the rest of its warp waits for it at a shuffle.
__global__ void barrier_against_shuffle(float* out)
{
    float v = (float)threadIdx.x;
    if (threadIdx.x == 0) {
        __syncthreads();
    } else {
        v = __shfl_down_sync(0xffffffffu, v, 1);
        __syncthreads();
    }
    out[threadIdx.x] = v;
}

// A full mask in a block of fewer than 32 threads names lanes that do not exist.
__global__ void mask_beyond_block(float* out)
{
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

// A half-warp mask whose lanes read lanes outside it.
__global__ void reads_outside_mask(float* out)
{
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, 1.f, 16);
}

// 52,000 bytes of static shared memory: over the 48 KiB a block may have without opt-in.
__global__ void too_much_shared(float* out)
{
    __shared__ float big[13000];
    big[threadIdx.x] = 1.f;
    __syncthreads();
    out[threadIdx.x] = big[threadIdx.x];
}
