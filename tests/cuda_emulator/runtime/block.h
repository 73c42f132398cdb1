// What a launch is made of: blocks of threads (each a fiber, fiber.h) in warps, each block
// with its own copy of the kernel's shared memory; the request Python sends and the
// statistics it reads back. The scheduler (scheduler.h) runs them.
#pragma once

#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <vector>

#include "fiber.h"

// CUDA's launch-coordinate type (also threadIdx's and blockIdx's, uint3 in CUDA).
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x = 1, unsigned y = 1, unsigned z = 1) : x(x), y(y), z(z) {}
};
using uint3 = dim3;

namespace emu {

enum class Mode : int { sequential = 0, shuffled = 1, concurrent = 2 };
enum class Shuffle : int { index, up, down, xor_, sync };

constexpr unsigned warp_size = 32;
constexpr std::size_t shared_limit = 48 * 1024;  // a block's shared memory without opt-in
#ifdef EMU_ASAN
constexpr std::size_t stack_size = 256 * 1024;  // ASan's redzones make frames larger
#else
constexpr std::size_t stack_size = 64 * 1024;
#endif

// One launch as Python asks for it (module.py declares the same layout with ctypes).
struct LaunchRequest {
    unsigned grid[3];
    unsigned block[3];
    unsigned long long dynamic_shared;  // bytes of `extern __shared__` memory per block
    int mode;                           // a Mode
    unsigned resident;                  // blocks interleaved at once in concurrent mode
    unsigned long long seed;
};

// What the last launch did, for tests that need to know the schedule overlapped blocks.
struct LaunchStats {
    unsigned long long switches;      // times a thread was resumed
    unsigned long long interleavings; // ... while the previously resumed one's block was unfinished
    unsigned long long preemptions;   // blocks paused at an atomic or fence (concurrent mode)
    unsigned max_resident;            // most blocks started and unfinished at once
};

// splitmix64: a small generator giving the same sequence on every platform.
class Rng {
public:
    explicit Rng(unsigned long long seed = 0) : state_(seed) {}
    unsigned long long next()
    {
        unsigned long long z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
    template <class T>
    void shuffle(std::vector<T>& items)
    {
        for (std::size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[below(i)]);
    }

private:
    unsigned long long state_;
};

// Heap memory for one block's copy of one __shared__ variable (a heap block, so ASan sees
// reads past its end).
class SharedBuffer {
public:
    SharedBuffer() = default;
    SharedBuffer(SharedBuffer&& other) noexcept { *this = std::move(other); }
    SharedBuffer& operator=(SharedBuffer&& other) noexcept
    {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        std::swap(align_, other.align_);
        std::swap(generation, other.generation);
        return *this;
    }
    ~SharedBuffer() { release(); }

    void* get(std::size_t size, std::size_t align)
    {
        if (!data_ || size_ != size || align_ != align) {
            release();
            data_ = ::operator new(size ? size : 1, std::align_val_t(align));
            size_ = size;
            align_ = align;
        }
        return data_;
    }
    void poison() { std::memset(data_, 0xff, size_); }  // NaN as float: unwritten reads show
    std::size_t size() const { return size_; }

    unsigned long long generation = 0;  // the block that last used it

private:
    void release()
    {
        if (data_) ::operator delete(data_, std::align_val_t(align_));
        data_ = nullptr;
    }
    void* data_ = nullptr;
    std::size_t size_ = 0, align_ = 1;
};

struct Block;

enum class State { ready, at_barrier, at_shuffle, done };

// One CUDA thread.
struct Thread {
    Thread() : stack(stack_size) {}
    Context context;
    Stack stack;
    dim3 index;       // threadIdx
    unsigned id = 0;  // x + y * blockDim.x + z * blockDim.x * blockDim.y
    Block* block = nullptr;
    State state = State::ready;
    int line = 0;                         // of the barrier or shuffle it waits at
    unsigned long long value = 0;         // what it gives a shuffle
    unsigned long long result = 0;        // what it gets from it
    int operand = 0;                      // the shuffle's lane, delta or lane mask
};

// The shuffle a warp's lanes are gathering at, and which lanes can never come to it.
struct Warp {
    unsigned lanes = 0;       // lanes that exist (fewer than 32 in a block's last, partial warp)
    unsigned returned = 0;    // lanes whose kernel call has returned
    unsigned at_barrier = 0;  // lanes waiting at __syncthreads()
    unsigned arrived = 0;     // lanes waiting at the shuffle
    unsigned mask = 0;     // its mask, line, kind, width and value size, as the first lane gave
    int line = 0, width = 0, size = 0;
    Shuffle kind = Shuffle::sync;
};

// A resident block slot: its threads' fibers and shared memory are reused by later blocks.
struct Block {
    dim3 index;
    std::vector<std::unique_ptr<Thread>> threads;  // the first `count` run
    unsigned count = 0, finished = 0, at_barrier = 0;
    int barrier_line = 0;
    std::vector<Warp> warps;
    std::vector<SharedBuffer> shared;  // by __shared__ declaration (site)
    SharedBuffer dynamic;              // extern __shared__
    std::size_t shared_bytes = 0;
    unsigned long long generation = 0;
    std::deque<Thread*> ready;         // its threads that can run
    unsigned long long priority = 0;   // concurrent mode: the highest runs
};

}  // namespace emu
