// What a compiled module exports to Python (module.py): per kernel, a launch in
// cuLaunchKernel's convention (params[i] points to argument i's value) and its parameter
// signature; for the module, the last error and statistics, and the coverage flush.
// build.py writes the per-kernel `extern "C"` wrappers after the kernel source.
#pragma once

#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "scheduler.h"

namespace emu {

// The C++ spelling of T, e.g. "const float*" (read from GCC's __PRETTY_FUNCTION__).
template <class T>
std::string type_name()
{
    const std::string_view text = __PRETTY_FUNCTION__;  // "... [with T = const float*; ...]"
    const std::size_t begin = text.find("T = ") + 4;
    return std::string(text.substr(begin, text.find_first_of(";]", begin) - begin));
}

// p(ointer), b(ool), f(loat), i(signed integer), u(nsigned integer), v(oid), o(ther).
template <class T>
constexpr char kind()
{
    if constexpr (std::is_pointer<T>::value) return 'p';
    else if constexpr (std::is_same<T, bool>::value) return 'b';
    else if constexpr (std::is_floating_point<T>::value) return 'f';
    else if constexpr (std::is_integral<T>::value) return std::is_signed<T>::value ? 'i' : 'u';
    else if constexpr (std::is_void<T>::value) return 'v';
    else return 'o';
}

template <class T>
constexpr std::size_t size_of()
{
    if constexpr (std::is_void<T>::value) return 0;
    else return sizeof(T);
}

template <class T>
constexpr std::size_t align_of()
{
    if constexpr (std::is_void<T>::value) return 1;
    else return alignof(T);
}

// One parameter: "kind size element_kind element_size element_align c_type" (the element is
// what a pointer points to; for a scalar, the scalar itself).
template <class P>
std::string describe()
{
    using E = std::remove_cv_t<std::remove_pointer_t<P>>;
    return std::string(1, kind<P>()) + " " + std::to_string(sizeof(P)) + " " + kind<E>() + " " +
           std::to_string(size_of<E>()) + " " + std::to_string(align_of<E>()) + " " +
           type_name<P>();
}

// The parameters of a kernel, one line each.
template <typename... P>
const char* signature(void (*)(P...))
{
    static const std::string text = [] {
        std::string lines;
        ((lines += describe<P>() + "\n"), ...);
        return lines;
    }();
    return text.c_str();
}

template <typename... P>
struct Call {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> args;  // each thread's call copies them, as CUDA's do
};

template <typename... P, std::size_t... I>
int launch(void (*kernel)(P...), const char* name, const LaunchRequest& request, void** params,
           std::index_sequence<I...>)
{
    const Call<P...> call{kernel, {*static_cast<const std::decay_t<P>*>(params[I])...}};
    auto body = [](const void* closure) {
        const auto& c = *static_cast<const Call<P...>*>(closure);
        std::apply(c.kernel, c.args);
    };
    return scheduler.run(name, request, body, &call);
}

template <typename... P>
int launch(void (*kernel)(P...), const char* name, const LaunchRequest& request, void** params)
{
    return launch(kernel, name, request, params, std::index_sequence_for<P...>{});
}

}  // namespace emu

#define EMU_EXPORT extern "C" __attribute__((visibility("default")))

EMU_EXPORT const char* emu_last_error() { return emu::scheduler.error().c_str(); }
EMU_EXPORT void emu_last_stats(emu::LaunchStats* stats) { *stats = emu::scheduler.stats(); }

#ifdef EMU_COVERAGE
extern "C" void __gcov_dump(void);
extern "C" void __gcov_reset(void);
// Write this module's line counts to its .gcda file now (merged with what is there) and
// start counting from zero, so a report can be read while the process still runs.
EMU_EXPORT void emu_coverage_flush()
{
    __gcov_dump();
    __gcov_reset();
}
#endif
