// Just enough CUDA C++ to compile a kernels/*.cu with g++ and run its kernels on the CPU.
//
// A launch runs the grid's blocks one after another; each CUDA thread of a block is a
// std::thread, __syncthreads() is a std::barrier over them, and __shared__ becomes `static`
// (one block at a time, so a kernel's static locals are that block's shared memory). The
// thread's coordinates are thread_local globals. Used by tests/cuda_emulator/emulator.py.
#pragma once

#include <barrier>
#include <cstddef>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __syncthreads() emu::block_barrier->arrive_and_wait()

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

inline std::barrier<>* block_barrier = nullptr;  // the running block's __syncthreads

// Runs kernel(args...) over grid x block, one block at a time, block.x*y*z threads each.
template <typename... P, typename... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, A... args)
{
    const unsigned threads = block.x * block.y * block.z;
    std::barrier<> sync(threads);
    block_barrier = &sync;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            gridDim = grid;
            blockDim = block;
            threadIdx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
            for (unsigned z = 0; z < grid.z; ++z)
                for (unsigned y = 0; y < grid.y; ++y)
                    for (unsigned x = 0; x < grid.x; ++x) {
                        blockIdx = {x, y, z};
                        kernel(args...);
                        sync.arrive_and_wait();  // the next block reuses the shared memory
                    }
        });
    }
    for (auto& thread : pool) thread.join();
}

// cuLaunchKernel's calling convention: params[i] points to the value of argument i.
template <typename... P, std::size_t... I>
void launch_params(void (*kernel)(P...), const unsigned* dims, void** params,
                   std::index_sequence<I...>)
{
    launch(kernel, dim3{dims[0], dims[1], dims[2]}, dim3{dims[3], dims[4], dims[5]},
           *static_cast<std::remove_reference_t<P>*>(params[I])...);
}

template <typename... P>
void launch_params(void (*kernel)(P...), const unsigned* dims, void** params)
{
    launch_params(kernel, dims, params, std::index_sequence_for<P...>{});
}

}  // namespace emu
