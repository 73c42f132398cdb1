// Fibers: a CUDA thread of the emulator is a stack and a saved context on one OS thread,
// switched by hand at its yield points (barriers, shuffles, atomics, fences).
//
// On x86-64 the switch is 20 instructions of assembly (callee-saved registers, the x87 and SSE
// control words, the stack pointer); elsewhere, or with -DEMU_UCONTEXT, it is swapcontext
// (correct everywhere, but a system call per switch). Under AddressSanitizer every switch is
// announced with __sanitizer_start/finish_switch_fiber, so ASan knows which stack is live.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace emu {

// A fiber's stack: mmap'd, with an inaccessible guard page below it (an overflow faults).
class Stack {
public:
    explicit Stack(std::size_t size) : size_(size)
    {
        const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        void* region = mmap(nullptr, size + page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (region == MAP_FAILED) throw std::bad_alloc();
        mprotect(region, page, PROT_NONE);
        region_ = region;
        bottom_ = static_cast<char*>(region) + page;
        page_ = page;
    }
    ~Stack() { munmap(region_, size_ + page_); }
    Stack(const Stack&) = delete;
    Stack& operator=(const Stack&) = delete;

    char* bottom() const { return bottom_; }
    char* top() const { return bottom_ + size_; }
    std::size_t size() const { return size_; }

private:
    void* region_;
    char* bottom_;
    std::size_t size_, page_;
};

}  // namespace emu

#ifdef EMU_ASM_SWITCH
// emu_fiber_switch(&from_sp, to_sp): save the callee-saved state on the current stack, store
// the stack pointer in *from_sp, load to_sp and restore the state saved there.
// emu_fiber_start: the first "return address" of a new fiber; calls r13(r12).
asm(R"(
    .text
    .p2align 4
    .hidden emu_fiber_switch
    .type emu_fiber_switch, @function
emu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    fldcw (%rsp)
    ldmxcsr 8(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_fiber_switch, .-emu_fiber_switch

    .p2align 4
    .hidden emu_fiber_start
    .type emu_fiber_start, @function
emu_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size emu_fiber_start, .-emu_fiber_start
)");
extern "C" void emu_fiber_switch(void** from_sp, void* to_sp);
extern "C" void emu_fiber_start();
#endif

namespace emu {

// Where a fiber (or the OS thread's own stack) stopped, and which stack it runs on.
class Context {
public:
    // Make this context start entry(arg) on `stack` when first switched to.
    void prepare(Stack& stack, void (*entry)(void*), void* arg)
    {
        stack_bottom_ = stack.bottom();
        stack_size_ = stack.size();
#ifdef EMU_ASAN
        ASAN_UNPOISON_MEMORY_REGION(stack.bottom(), stack.size());  // frames left by a failure
#endif
#ifdef EMU_ASM_SWITCH
        // The frame emu_fiber_switch pops: control words, r15..r12, rbx, rbp, return address.
        void** frame = reinterpret_cast<void**>(stack.top() - 88);  // 8 mod 16: ABI alignment
        unsigned short fpu_control;
        unsigned sse_control;
        asm volatile("fnstcw %0\n\tstmxcsr %1" : "=m"(fpu_control), "=m"(sse_control));
        frame[0] = reinterpret_cast<void*>(static_cast<unsigned long>(fpu_control));
        frame[1] = reinterpret_cast<void*>(static_cast<unsigned long>(sse_control));
        frame[2] = frame[3] = nullptr;                 // r15, r14
        frame[4] = reinterpret_cast<void*>(entry);     // r13
        frame[5] = arg;                                // r12
        frame[6] = frame[7] = nullptr;                 // rbx, rbp (ends frame-pointer walks)
        frame[8] = reinterpret_cast<void*>(&emu_fiber_start);
        sp_ = frame;
#else
        getcontext(&context_);
        context_.uc_stack.ss_sp = stack.bottom();
        context_.uc_stack.ss_size = stack.size();
        context_.uc_link = nullptr;
        const unsigned long long bits = reinterpret_cast<unsigned long long>(arg);
        const unsigned long long code = reinterpret_cast<unsigned long long>(entry);
        makecontext(&context_, reinterpret_cast<void (*)()>(&ucontext_entry), 4,
                    unsigned(code >> 32), unsigned(code), unsigned(bits >> 32), unsigned(bits));
#endif
    }

    // Leave this context for `next`; returns when something switches back to this one.
    void switch_to(Context& next)
    {
#ifdef EMU_ASAN
        void* fake_stack = nullptr;
        __sanitizer_start_switch_fiber(&fake_stack, next.stack_bottom_, next.stack_size_);
        raw_switch(next);
        __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
        raw_switch(next);
#endif
    }

    // The last switch of a fiber whose function has finished: it is never resumed.
    [[noreturn]] void leave_for_good(Context& next)
    {
#ifdef EMU_ASAN
        __sanitizer_start_switch_fiber(nullptr, next.stack_bottom_, next.stack_size_);
#endif
        raw_switch(next);
        __builtin_unreachable();
    }

    // Called first thing on a new fiber: tells ASan the switch finished and records the stack
    // of the context that started it (the OS thread's, which ASan knows and we do not).
    static void entered(Context& from)
    {
#ifdef EMU_ASAN
        const void* bottom;
        std::size_t size;
        __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
        from.stack_bottom_ = bottom;
        from.stack_size_ = size;
#else
        (void)from;
#endif
    }

private:
    void raw_switch(Context& next)
    {
#ifdef EMU_ASM_SWITCH
        emu_fiber_switch(&sp_, next.sp_);
#else
        swapcontext(&context_, &next.context_);
#endif
    }

#ifdef EMU_ASM_SWITCH
    void* sp_ = nullptr;
#else
    static void ucontext_entry(unsigned code_hi, unsigned code_lo, unsigned arg_hi,
                               unsigned arg_lo)
    {
        auto entry = reinterpret_cast<void (*)(void*)>(
            (static_cast<unsigned long long>(code_hi) << 32) | code_lo);
        entry(reinterpret_cast<void*>((static_cast<unsigned long long>(arg_hi) << 32) | arg_lo));
        __builtin_trap();  // entries never return: they leave_for_good
    }
    ucontext_t context_;
#endif
    const void* stack_bottom_ = nullptr;
    std::size_t stack_size_ = 0;
};

}  // namespace emu
