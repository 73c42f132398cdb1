// A deliberately broken copy of sum_partials from kernels/linear_relu.cu: the loop bound is
// `p <= parts`, one row of partial sums past the end of `partial`. On a GPU this reads
// whatever lies there (compute-sanitizer's memcheck reports it); on the CPU the sanitized
// emulator must stop with a heap-buffer-overflow. tests/test_emulator_sanitizer.py.
__global__ void sum_partials(const float* __restrict__ partial, float* __restrict__ grad_bias,
                             int parts, int cols)
{
    for (int col = blockIdx.x * blockDim.x + threadIdx.x; col < cols;
         col += gridDim.x * blockDim.x) {
        float total = 0.f;
        for (int p = 0; p <= parts; ++p) total += partial[(long long)p * cols + col];
        grad_bias[col] = total;
    }
}
