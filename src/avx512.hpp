#pragma once
// What the AVX-512 forms of the engine's loops share (packed/image_gathers_avx512.cpp,
// col2im_avx512.cpp): the target they are compiled for, whether this CPU runs them, and the
// addresses their masked loads and stores start at. The library is built for the baseline
// x86-64; these functions carry their own target and run only where cpu_has_avx512() says so.

// GCC 12's intrinsics pass a self-initialised "undefined" vector as the merge operand of the
// unmasked shuffles, which -W(maybe-)uninitialized flags (a false positive in its headers).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cstdint>

namespace convgemm::detail {

#define CONVGEMM_AVX512 [[gnu::target("avx512f,avx512bw,avx512vl,avx512dq,bmi2")]]

inline bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("bmi2");
  return has;
}

// base + offset floats, computed on integers: a masked access may start before or end after
// the array (its lanes there are masked off: no fault, nothing read or written), and forming
// that pointer by pointer arithmetic would be undefined behaviour.
template <class T>
inline T* address(T* base, int64_t offset) {
  return reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(base) +
                              static_cast<std::uintptr_t>(offset) * sizeof(T));
}

}  // namespace convgemm::detail
