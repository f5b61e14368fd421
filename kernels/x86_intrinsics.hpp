#pragma once
// <immintrin.h> for the host kernels, on x86-64 only. GCC 12's AVX-512 headers trip
// -Wmaybe-uninitialized on their own _mm512_undefined_epi32() (GCC bug 105593). The warning is
// reported at the header's lines, so it is silenced around the include here rather than where the
// intrinsics are used.

#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif
