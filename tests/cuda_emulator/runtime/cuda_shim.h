// The CUDA C++ that kernels/*.cu use, for g++: qualifiers, launch coordinates, __syncthreads,
// warp shuffles, atomics, fences, bit casts, float4 and the math functions. Threads run as
// fibers under the scheduler (scheduler.h); this header is what kernel code sees of it.
//
// `__shared__` declarations are rewritten by build.py into EMU_SHARED before compilation, so
// each resident block has its own copy of a kernel's shared memory (on the heap: ASan sees
// overruns), filled with 0xff bytes when a block starts, as a GPU leaves it undefined.
#pragma once

#include <math.h>

#include <cstring>
#include <type_traits>

#include "scheduler.h"

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

namespace emu {

inline const dim3& thread_index() { return scheduler.current->index; }
inline const dim3& block_index() { return scheduler.current->block->index; }

inline int register_shared_site()
{
    static int sites = 0;
    return sites++;
}

// This block's copy of one __shared__ variable of type T. Site is the type of a lambda
// written at the declaration, so every declaration (in every template instance) has its own.
template <class T, std::size_t Align, class Site>
T& block_shared(Site)
{
    static const int site = register_shared_site();
    constexpr std::size_t align = Align > alignof(T) ? Align : alignof(T);
    return *static_cast<T*>(scheduler.shared(site, sizeof(T), align));
}

template <class To, class From>
To bit_cast(From from)
{
    static_assert(sizeof(To) == sizeof(From), "bit casts keep the size");
    To to;
    std::memcpy(&to, &from, sizeof to);
    return to;
}

// One warp-wide exchange of a 32- or 64-bit value (see Scheduler::exchange).
template <class T>
T shuffle(Shuffle kind, int line, unsigned mask, T value, int operand, int width = warp_size)
{
    static_assert(std::is_arithmetic<T>::value && (sizeof(T) == 4 || sizeof(T) == 8),
                  "CUDA shuffles move 32- and 64-bit scalars");
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = scheduler.exchange(kind, line, mask, bits, sizeof(T), operand, width);
    std::memcpy(&value, &bits, sizeof(T));
    return value;
}

inline void syncwarp(int line, unsigned mask = 0xffffffffu)
{
    shuffle(Shuffle::sync, line, mask, 0, 0);
}

// An atomic read-modify-write: indivisible here (one OS thread); in concurrent mode other
// threads may run just before and just after it. Returns the old value, as CUDA does.
template <class T, class Update>
T atomic_update(T* address, Update update)
{
    scheduler.yield_point();
    const T old = *address;
    *address = update(old);
    scheduler.yield_point();
    return old;
}

// Integer addition that wraps, as the GPU's does (signed overflow is undefined in C++).
template <class T>
T wrapping_add(T a, T b)
{
    using U = typename std::make_unsigned<T>::type;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
}

}  // namespace emu

#define threadIdx (::emu::thread_index())
#define blockIdx (::emu::block_index())
#define blockDim (::emu::scheduler.block_dim())
#define gridDim (::emu::scheduler.grid_dim())
constexpr int warpSize = 32;

#define EMU_SHARED(ALIGN, TYPE, NAME, DIMS) \
    auto& NAME = ::emu::block_shared<TYPE DIMS, ALIGN>([] {})
#define EMU_DYNAMIC_SHARED(TYPE, NAME) \
    TYPE* const NAME = static_cast<TYPE*>(::emu::scheduler.dynamic_shared())

#define __syncthreads() ::emu::scheduler.barrier(__LINE__)
#define __syncwarp(...) ::emu::syncwarp(__LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) ::emu::shuffle(::emu::Shuffle::index, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::emu::shuffle(::emu::Shuffle::up, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::emu::shuffle(::emu::Shuffle::down, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::emu::shuffle(::emu::Shuffle::xor_, __LINE__, __VA_ARGS__)

inline void __threadfence() { ::emu::scheduler.yield_point(); }
inline void __threadfence_block() { ::emu::scheduler.yield_point(); }
inline void __threadfence_system() { ::emu::scheduler.yield_point(); }

// CUDA's atomic functions, with its overload set (a type CUDA lacks fails to compile here too).
#define EMU_ATOMIC(NAME, T, NEW_VALUE)                                                \
    inline T NAME(T* address, T val)                                                  \
    {                                                                                 \
        return ::emu::atomic_update(address, [val](T old) -> T { return NEW_VALUE; }); \
    }
EMU_ATOMIC(atomicAdd, int, ::emu::wrapping_add(old, val))
EMU_ATOMIC(atomicAdd, unsigned int, old + val)
EMU_ATOMIC(atomicAdd, unsigned long long, old + val)
EMU_ATOMIC(atomicAdd, float, old + val)
EMU_ATOMIC(atomicAdd, double, old + val)
EMU_ATOMIC(atomicSub, int, ::emu::wrapping_add(old, -val))
EMU_ATOMIC(atomicSub, unsigned int, old - val)
EMU_ATOMIC(atomicExch, int, val)
EMU_ATOMIC(atomicExch, unsigned int, val)
EMU_ATOMIC(atomicExch, unsigned long long, val)
EMU_ATOMIC(atomicExch, float, val)
EMU_ATOMIC(atomicMin, int, val < old ? val : old)
EMU_ATOMIC(atomicMin, unsigned int, val < old ? val : old)
EMU_ATOMIC(atomicMin, long long, val < old ? val : old)
EMU_ATOMIC(atomicMin, unsigned long long, val < old ? val : old)
EMU_ATOMIC(atomicMax, int, val > old ? val : old)
EMU_ATOMIC(atomicMax, unsigned int, val > old ? val : old)
EMU_ATOMIC(atomicMax, long long, val > old ? val : old)
EMU_ATOMIC(atomicMax, unsigned long long, val > old ? val : old)
EMU_ATOMIC(atomicAnd, int, old & val)
EMU_ATOMIC(atomicAnd, unsigned int, old & val)
EMU_ATOMIC(atomicAnd, unsigned long long, old & val)
EMU_ATOMIC(atomicOr, int, old | val)
EMU_ATOMIC(atomicOr, unsigned int, old | val)
EMU_ATOMIC(atomicOr, unsigned long long, old | val)
EMU_ATOMIC(atomicXor, int, old ^ val)
EMU_ATOMIC(atomicXor, unsigned int, old ^ val)
EMU_ATOMIC(atomicXor, unsigned long long, old ^ val)
EMU_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1)
EMU_ATOMIC(atomicDec, unsigned int, old == 0 || old > val ? val : old - 1)
#undef EMU_ATOMIC

template <class T>
T atomicCAS(T* address, T compare, T val)
{
    static_assert(std::is_same<T, int>::value || std::is_same<T, unsigned int>::value ||
                      std::is_same<T, unsigned long long>::value ||
                      std::is_same<T, unsigned short>::value,
                  "CUDA's atomicCAS takes int, unsigned int, unsigned long long, unsigned short");
    return ::emu::atomic_update(address, [=](T old) { return old == compare ? val : old; });
}

template <class T>
T __ldg(const T* address)
{
    return *address;
}

inline float __int_as_float(int x) { return ::emu::bit_cast<float>(x); }
inline int __float_as_int(float x) { return ::emu::bit_cast<int>(x); }
inline float __uint_as_float(unsigned int x) { return ::emu::bit_cast<float>(x); }
inline unsigned int __float_as_uint(float x) { return ::emu::bit_cast<unsigned int>(x); }
inline double __longlong_as_double(long long x) { return ::emu::bit_cast<double>(x); }
inline long long __double_as_longlong(double x) { return ::emu::bit_cast<long long>(x); }

// Fast-math intrinsics: the same functions at full precision (a GPU's are less precise).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
