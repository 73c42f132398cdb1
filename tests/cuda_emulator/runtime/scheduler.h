// The emulator's scheduler: runs one kernel launch on the calling OS thread, every CUDA
// thread a fiber (fiber.h), and checks the rules a GPU leaves undefined.
//
// A launch admits blocks into a few resident slots (one in sequential and shuffled mode, up to
// `resident` in concurrent mode). A thread runs until it reaches a yield point:
// - __syncthreads(): it waits until every thread of its block arrives at the same one;
// - a warp shuffle: it waits until every lane named in the mask arrives, then each lane gets
//   the value of the lane it reads (the warp-wide exchange happens at once, as in lockstep);
// - an atomic (just before and just after it) or a fence: in concurrent mode, a preemption.
// Modes: sequential runs blocks in grid order and threads in index order (deterministic);
// shuffled runs blocks in a seeded random order and resumes a block's threads in a seeded
// random order at every barrier and shuffle. Concurrent admits blocks in a seeded random
// order, each with a random priority, and runs the ready threads (in random order) of the
// resident block of highest priority; at every atomic and fence, with probability 1/2, the
// running block is preempted: it drops below every block not preempted, so it may stay
// paused between two instructions while the other blocks run on and finish (as a block on a
// busy SM may): the schedule that exposes inter-block protocols such as a last-block ticket.
// A thread that leaves the others waiting (returns, or waits at another barrier or shuffle)
// ends the launch with an error naming the kernel, the block and the threads; so does
// static + dynamic shared memory over 48 KiB. Memory is sequentially consistent: fences and
// volatile are yield points or nothing, and reorderings a GPU may make are not modelled.
// A warp meets at one shuffle at a time: lanes of disjoint masks shuffling at two different
// call sites at once (legal since Volta, unused by kernels/*.cu) are reported as a mismatch.
// A thread spinning on memory another block writes, with no atomic or fence in the loop,
// never yields and hangs the emulator.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "block.h"
#include "fiber.h"

namespace emu {

class Scheduler {
public:
    // Runs kernel `name` over the request's grid: body(closure) is one thread's kernel call.
    // Returns 0, or 1 with error() saying what went wrong.
    int run(const char* name, const LaunchRequest& request, void (*body)(const void*),
            const void* closure);
    const std::string& error() const { return error_; }
    const LaunchStats& stats() const { return stats_; }

    // Called by kernel code (cuda_shim.h) on the running thread.
    Thread* current = nullptr;
    const dim3& grid_dim() const { return grid_; }
    const dim3& block_dim() const { return block_; }
    void barrier(int line);
    unsigned long long exchange(Shuffle kind, int line, unsigned mask, unsigned long long value,
                                int size, int operand, int width);
    void yield_point();
    void* shared(int site, std::size_t size, std::size_t align);
    void* dynamic_shared();
    [[noreturn]] void fail(const std::string& what);

private:
    static void thread_main(void* thread);
    void configure(std::size_t slots);
    void start_block(Block& block, unsigned long long linear);
    void make_ready(std::vector<Thread*>& threads);
    void finish(Thread& thread);
    void release_barrier(Block& block);
    void complete_shuffle(Block& block, Warp& warp, unsigned first_id);
    Thread* pick();
    void report_deadlock();
    std::string where(const Thread& thread) const;
    std::string threads_in(const Block& block, State state) const;
    static const char* shuffle_name(Shuffle kind);
    static std::string hex(unsigned value);

    std::mutex mutex_;
    Context main_;
    const char* kernel_ = "";
    void (*body_)(const void*) = nullptr;
    const void* closure_ = nullptr;
    dim3 grid_, block_;
    Mode mode_ = Mode::sequential;
    Rng rng_;
    std::size_t dynamic_bytes_ = 0;
    std::vector<std::unique_ptr<Block>> slots_;  // kept between launches; resident_ in use
    std::size_t resident_ = 0;
    std::vector<unsigned long long> order_;  // blocks in admission order (shuffled modes)
    std::vector<Thread*> scratch_;           // threads being made ready
    unsigned long long admitted_ = 0, generations_ = 0, preempted_ = 0;
    std::string error_;
    bool failed_ = false;
    LaunchStats stats_{};
};

inline Scheduler scheduler;  // one per compiled module

inline int Scheduler::run(const char* name, const LaunchRequest& request,
                          void (*body)(const void*), const void* closure)
{
    std::lock_guard<std::mutex> lock(mutex_);
    kernel_ = name;
    body_ = body;
    closure_ = closure;
    grid_ = dim3(request.grid[0], request.grid[1], request.grid[2]);
    block_ = dim3(request.block[0], request.block[1], request.block[2]);
    mode_ = static_cast<Mode>(request.mode);
    rng_ = Rng(request.seed);
    dynamic_bytes_ = request.dynamic_shared;
    error_.clear();
    failed_ = false;
    stats_ = LaunchStats{};

    const unsigned long long blocks =
        static_cast<unsigned long long>(grid_.x) * grid_.y * grid_.z;
    order_.clear();
    if (mode_ != Mode::sequential) {
        order_.resize(blocks);
        for (unsigned long long b = 0; b < blocks; ++b) order_[b] = b;
        rng_.shuffle(order_);
    }
    const unsigned long long resident =
        mode_ == Mode::concurrent && request.resident > 1 ? request.resident : 1;
    configure(resident < blocks ? resident : blocks);

    admitted_ = preempted_ = 0;
    unsigned running = 0;
    for (std::size_t slot = 0; slot < resident_; ++slot) {
        start_block(*slots_[slot], admitted_++);
        ++running;
    }
    stats_.max_resident = running;
    const Block* previous = nullptr;
    while (running > 0 && !failed_) {
        Thread* thread = pick();
        if (!thread) {
            report_deadlock();
            break;
        }
        ++stats_.switches;
        if (previous && previous != thread->block && previous->finished < previous->count)
            ++stats_.interleavings;
        previous = thread->block;
        current = thread;
        main_.switch_to(thread->context);
        current = nullptr;
        Block& block = *thread->block;
        if (!failed_ && thread->state == State::done && block.finished == block.count) {
            --running;
            if (admitted_ < blocks) {
                start_block(block, admitted_++);
                ++running;
            }
        }
    }
    for (std::size_t slot = 0; slot < resident_; ++slot)
        slots_[slot]->ready.clear();  // after a failure: the other threads are abandoned
    return failed_ ? 1 : 0;
}

// Resident slots with block_ threads each (fibers are kept between launches).
inline void Scheduler::configure(std::size_t slots)
{
    const unsigned count = block_.x * block_.y * block_.z;
    while (slots_.size() < slots) slots_.push_back(std::make_unique<Block>());
    resident_ = slots;
    for (std::size_t slot = 0; slot < resident_; ++slot) {
        Block& block = *slots_[slot];
        while (block.threads.size() < count) block.threads.push_back(std::make_unique<Thread>());
        block.count = count;
        for (unsigned id = 0; id < count; ++id) {
            Thread& thread = *block.threads[id];
            thread.id = id;
            thread.index = dim3(id % block_.x, id / block_.x % block_.y,
                                id / (block_.x * block_.y));
            thread.block = &block;
        }
        block.warps.assign((count + warp_size - 1) / warp_size, Warp{});
        for (std::size_t w = 0; w < block.warps.size(); ++w) {
            const unsigned lanes = count - static_cast<unsigned>(w) * warp_size;
            block.warps[w].lanes = lanes >= warp_size ? ~0u : (1u << lanes) - 1;
        }
        block.dynamic.get(dynamic_bytes_, 16);
    }
}

inline void Scheduler::start_block(Block& block, unsigned long long admitted)
{
    const unsigned long long linear = order_.empty() ? admitted : order_[admitted];
    block.index = dim3(static_cast<unsigned>(linear % grid_.x),
                       static_cast<unsigned>(linear / grid_.x % grid_.y),
                       static_cast<unsigned>(linear / (static_cast<unsigned long long>(grid_.x) *
                                                       grid_.y)));
    block.finished = block.at_barrier = 0;
    block.generation = ++generations_;
    block.priority = (1ull << 63) | (rng_.next() >> 1);  // above every preempted block
    block.shared_bytes = dynamic_bytes_;
    block.dynamic.poison();
    for (Warp& warp : block.warps) warp.arrived = warp.returned = warp.at_barrier = 0;
    scratch_.clear();
    for (unsigned id = 0; id < block.count; ++id) {
        Thread& thread = *block.threads[id];
        thread.state = State::ready;
        thread.context.prepare(thread.stack, &thread_main, &thread);
        scratch_.push_back(&thread);
    }
    make_ready(scratch_);
}

// Queue threads of one block to run (in a random order but in sequential mode).
inline void Scheduler::make_ready(std::vector<Thread*>& threads)
{
    if (threads.empty()) return;
    if (mode_ != Mode::sequential) rng_.shuffle(threads);
    std::deque<Thread*>& ready = threads.front()->block->ready;
    ready.insert(ready.end(), threads.begin(), threads.end());
}

inline void Scheduler::thread_main(void* arg)
{
    Thread& thread = *static_cast<Thread*>(arg);
    Context::entered(scheduler.main_);
    scheduler.body_(scheduler.closure_);
    scheduler.finish(thread);
}

inline void Scheduler::finish(Thread& thread)
{
    Block& block = *thread.block;
    thread.state = State::done;
    ++block.finished;
    Warp& warp = block.warps[thread.id / warp_size];
    warp.returned |= 1u << (thread.id % warp_size);
    if (block.at_barrier > 0)
        fail(where(thread) + " returned while the __syncthreads() of line " +
             std::to_string(block.barrier_line) + " holds " +
             threads_in(block, State::at_barrier) +
             ": every thread of a block must reach each __syncthreads()");
    if (warp.arrived && (warp.mask >> (thread.id % warp_size) & 1))
        fail(where(thread) + " returned while the " + shuffle_name(warp.kind) + " of line " +
             std::to_string(warp.line) + " holds " + threads_in(block, State::at_shuffle) +
             ", waiting for it");
    thread.context.leave_for_good(main_);
}

inline void Scheduler::barrier(int line)
{
    Thread& thread = *current;
    Block& block = *thread.block;
    if (block.finished > 0)
        fail("__syncthreads() of line " + std::to_string(line) + " is reached by " +
             where(thread) + " but " + threads_in(block, State::done) +
             " returned before it: every thread of a block must reach each __syncthreads()");
    if (block.at_barrier > 0 && block.barrier_line != line)
        fail(where(thread) + " waits at the __syncthreads() of line " + std::to_string(line) +
             " while the one of line " + std::to_string(block.barrier_line) + " holds " +
             threads_in(block, State::at_barrier));
    Warp& warp = block.warps[thread.id / warp_size];
    if (warp.arrived && (warp.mask >> (thread.id % warp_size) & 1))
        fail(where(thread) + " reached the __syncthreads() of line " + std::to_string(line) +
             " while the " + shuffle_name(warp.kind) + " of line " + std::to_string(warp.line) +
             " holds " + threads_in(block, State::at_shuffle) + ", waiting for it");
    block.barrier_line = line;
    thread.line = line;
    thread.state = State::at_barrier;
    warp.at_barrier |= 1u << (thread.id % warp_size);
    if (++block.at_barrier == block.count) {
        block.at_barrier = 0;
        release_barrier(block);
    }
    current->context.switch_to(main_);
}

inline unsigned long long Scheduler::exchange(Shuffle kind, int line, unsigned mask,
                                              unsigned long long value, int size, int operand,
                                              int width)
{
    Thread& thread = *current;
    Block& block = *thread.block;
    const unsigned first_id = thread.id / warp_size * warp_size;
    Warp& warp = block.warps[thread.id / warp_size];
    const unsigned lane = thread.id % warp_size;
    auto call = [&] {
        return std::string(shuffle_name(kind)) + " of line " + std::to_string(line);
    };
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail(where(thread) + " calls " + call() + " with width " + std::to_string(width) +
             ": a power of 2 from 1 to 32");
    if (mask & ~warp.lanes)
        fail(where(thread) + " calls " + call() + " with mask " + hex(mask) +
             ", which names lanes that do not exist (the block's last warp is partial)");
    if (!(mask >> lane & 1))
        fail(where(thread) + " calls " + call() + " with a mask that leaves out its own lane");
    if (!warp.arrived) {
        warp.mask = mask;
        warp.line = line;
        warp.kind = kind;
        warp.width = width;
        warp.size = size;
    } else if (warp.mask != mask || warp.line != line || warp.kind != kind ||
               warp.width != width || warp.size != size) {
        fail(where(thread) + " calls " + call() + " while the " + shuffle_name(warp.kind) +
             " of line " + std::to_string(warp.line) + " holds " +
             threads_in(block, State::at_shuffle) +
             " (lanes must meet at the same shuffle with the same mask, width and type)");
    }
    const unsigned never = mask & ~warp.arrived & (warp.returned | warp.at_barrier);
    if (never) {  // a lane of the mask that cannot come before this shuffle completes
        const Thread& peer = *block.threads[first_id + __builtin_ctz(never)];
        fail(where(thread) + " calls " + call() + " but " + where(peer) +
             ", named in its mask, " +
             (peer.state == State::done ? std::string("has returned")
                                        : "waits at the __syncthreads() of line " +
                                              std::to_string(peer.line)));
    }
    thread.value = value;
    thread.operand = operand;
    thread.line = line;
    thread.state = State::at_shuffle;
    warp.arrived |= 1u << lane;
    if (warp.arrived == warp.mask) complete_shuffle(block, warp, first_id);
    current->context.switch_to(main_);
    return thread.result;
}

// Every lane of the mask has arrived: hand each the value of the lane it reads.
inline void Scheduler::complete_shuffle(Block& block, Warp& warp, unsigned first_id)
{
    std::vector<Thread*>& lanes = scratch_;
    lanes.clear();
    for (unsigned lane = 0; lane < warp_size; ++lane) {
        if (!(warp.mask >> lane & 1)) continue;
        Thread& thread = *block.threads[first_id + lane];
        const unsigned width = static_cast<unsigned>(warp.width);
        const unsigned segment = lane / width * width;  // first lane of its width-wide group
        const unsigned operand = static_cast<unsigned>(thread.operand);
        // CUDA's rules: a lane outside its group of `width` reads its own value (xor may
        // read an earlier group); __shfl_sync's lane is taken modulo width.
        unsigned source = lane;
        switch (warp.kind) {
        case Shuffle::index: source = segment + operand % width; break;
        case Shuffle::up: source = lane - segment >= operand ? lane - operand : lane; break;
        case Shuffle::down: source = lane + operand < segment + width ? lane + operand : lane;
            break;
        case Shuffle::xor_: source = (lane ^ operand) < segment + width ? lane ^ operand : lane;
            break;
        case Shuffle::sync: break;
        }
        if (source >= warp_size || !(warp.mask >> source & 1))
            fail(where(thread) + " reads lane " + std::to_string(source) + " in the " +
                 shuffle_name(warp.kind) + " of line " + std::to_string(warp.line) +
                 ", which its mask leaves out (an undefined value on a GPU)");
        thread.result = block.threads[first_id + source]->value;
        thread.state = State::ready;
        lanes.push_back(&thread);
    }
    warp.arrived = 0;
    make_ready(lanes);
}

// Every thread of the block has arrived at its __syncthreads(): all go on.
inline void Scheduler::release_barrier(Block& block)
{
    scratch_.clear();
    for (unsigned id = 0; id < block.count; ++id) {
        Thread& thread = *block.threads[id];
        thread.state = State::ready;
        scratch_.push_back(&thread);
    }
    for (Warp& warp : block.warps) warp.at_barrier = 0;
    make_ready(scratch_);
}

inline void Scheduler::yield_point()
{
    if (mode_ != Mode::concurrent) return;
    Block& block = *current->block;
    if (rng_.next() & 1) {  // preempted: below every block that was not (random among those)
        block.priority = rng_.next() >> 1;
        ++stats_.preemptions;
    }
    block.ready.push_back(current);
    current->context.switch_to(main_);
}

inline void* Scheduler::shared(int site, std::size_t size, std::size_t align)
{
    Block& block = *current->block;
    if (block.shared.size() <= static_cast<std::size_t>(site)) block.shared.resize(site + 1);
    SharedBuffer& buffer = block.shared[site];
    void* data = buffer.get(size, align);
    if (buffer.generation != block.generation) {  // the first use by this block
        buffer.generation = block.generation;
        buffer.poison();
        block.shared_bytes += size;
        if (block.shared_bytes > shared_limit)
            fail("block uses " + std::to_string(block.shared_bytes) +
                 " bytes of shared memory (static and dynamic), more than 48 KiB");
    }
    return data;
}

inline void* Scheduler::dynamic_shared()
{
    return current->block->dynamic.get(dynamic_bytes_, 16);
}

// The next thread to run: of the resident block of highest priority that has one ready, the
// first (random in concurrent mode); null when none can run.
inline Thread* Scheduler::pick()
{
    Block* chosen = nullptr;
    for (std::size_t slot = 0; slot < resident_; ++slot) {
        Block& block = *slots_[slot];
        if (!block.ready.empty() && (!chosen || block.priority > chosen->priority))
            chosen = &block;
    }
    if (!chosen) return nullptr;
    std::deque<Thread*>& ready = chosen->ready;
    if (mode_ == Mode::concurrent) std::swap(ready[rng_.below(ready.size())], ready.front());
    Thread* thread = ready.front();
    ready.pop_front();
    return thread;
}

inline void Scheduler::fail(const std::string& what)
{
    if (!failed_) error_ = std::string("kernel ") + kernel_ + ": " + what;
    failed_ = true;
    if (!current) {  // only kernel threads fail a launch
        std::fputs(error_.c_str(), stderr);
        std::abort();
    }
    current->context.leave_for_good(main_);  // the launch's other threads are abandoned
}

// No resident block has a thread that can run. The checks at every arrival should make this
// unreachable (each wait that can never end is reported where it starts); this keeps a case
// they miss an error rather than a hang.
inline void Scheduler::report_deadlock()
{
    error_ = std::string("kernel ") + kernel_ + ": no thread can run:";
    for (std::size_t slot = 0; slot < resident_; ++slot) {
        const Block& block = *slots_[slot];
        if (block.finished == block.count) continue;
        error_ += " block (" + std::to_string(block.index.x) + "," +
                  std::to_string(block.index.y) + "," + std::to_string(block.index.z) +
                  "): " + threads_in(block, State::at_barrier) + " at __syncthreads(), " +
                  threads_in(block, State::at_shuffle) + " at a shuffle;";
    }
    failed_ = true;
}

inline std::string Scheduler::where(const Thread& thread) const
{
    const dim3& t = thread.index;
    const dim3& b = thread.block->index;
    return "thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," +
           std::to_string(t.z) + ") of block (" + std::to_string(b.x) + "," +
           std::to_string(b.y) + "," + std::to_string(b.z) + ")";
}

// "threads 0-31, 64 (of 128)": the linear ids of a block's threads in `state`.
inline std::string Scheduler::threads_in(const Block& block, State state) const
{
    std::string text;
    unsigned id = 0, found = 0;
    while (id < block.count) {
        if (block.threads[id]->state != state) {
            ++id;
            continue;
        }
        unsigned end = id;
        while (end + 1 < block.count && block.threads[end + 1]->state == state) ++end;
        text += (text.empty() ? "" : ", ") + std::to_string(id) +
                (end > id ? "-" + std::to_string(end) : "");
        found += end - id + 1;
        id = end + 1;
    }
    if (found == 0) return "no threads";
    return (found == 1 ? "thread " : "threads ") + text + " (linear ids, of " +
           std::to_string(block.count) + ")";
}

inline std::string Scheduler::hex(unsigned value)
{
    char text[16];
    std::snprintf(text, sizeof text, "0x%08x", value);
    return text;
}

inline const char* Scheduler::shuffle_name(Shuffle kind)
{
    switch (kind) {
    case Shuffle::index: return "__shfl_sync";
    case Shuffle::up: return "__shfl_up_sync";
    case Shuffle::down: return "__shfl_down_sync";
    case Shuffle::xor_: return "__shfl_xor_sync";
    case Shuffle::sync: return "__syncwarp";
    }
    return "shuffle";
}

}  // namespace emu
