// Philox4x32-10 (common/philox.h) on many counters at once, for the CPU
// kernels: kLanes consecutive blocks, one SIMD lane per block.
//
// Each round needs the high and low 32 bits of 32x32-bit products. GCC's
// vectorizer turns `uint64_t(a) * b` into a full 64x64-bit multiply (three
// vpmuludq per vector), so the AVX-512 and AVX2 versions spell out the even/
// odd-lane vpmuludq pair with intrinsics (two multiplies per 16 or 8 lanes).
// They live in functions compiled for their target (GCC/Clang `target`
// attribute), chosen at run time with __builtin_cpu_supports, so the extension
// needs no -march flags. Every other CPU runs the scalar philox4x32_10; all
// three produce the same words (checked by the C++ test).
#pragma once

#include <cstdint>

#include "../common/philox.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTREG_X86_SIMD 1
#include <immintrin.h>
#else
#define FASTREG_X86_SIMD 0
#endif

namespace fastreg {
namespace cpu {

// Blocks handled per call: two AVX-512 vectors per word.
constexpr int kLanes = 32;

// The words of kLanes consecutive Philox blocks, one array per word.
struct LaneWords {
  alignas(64) uint32_t w0[kLanes];
  alignas(64) uint32_t w1[kLanes];
  alignas(64) uint32_t w2[kLanes];
  alignas(64) uint32_t w3[kLanes];
};

// Blocks first_block .. first_block + kLanes - 1 of the stream, one at a time.
inline void philox_lanes_scalar(const PhiloxStream& stream, uint64_t first_block, LaneWords& out) {
  for (int l = 0; l < kLanes; ++l) {
    const PhiloxWords w = philox_block(stream, first_block + static_cast<uint64_t>(l));
    out.w0[l] = w.w0;
    out.w1[l] = w.w1;
    out.w2[l] = w.w2;
    out.w3[l] = w.w3;
  }
}

#if FASTREG_X86_SIMD

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_epi32(), which
// -Wmaybe-uninitialized reports wrongly wherever they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// Per 32-bit lane: hi and lo 32 bits of a * m. vpmuludq multiplies the even
// lanes (as 64-bit products); shifting a right by 32 bits brings the odd lanes
// into place for a second one; blends put each product's halves back.
__attribute__((target("avx512f"), always_inline)) inline void mul_hi_lo_avx512(__m512i a, __m512i m, __m512i& hi,
                                                                               __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

__attribute__((target("avx2"), always_inline)) inline void mul_hi_lo_avx2(__m256i a, __m256i m, __m256i& hi,
                                                                          __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// True when the low word of the group index wraps inside the batch; the
// scalar path then handles the carry into word 3.
inline bool group_word_wraps(uint64_t first_block) {
  return static_cast<uint32_t>(first_block) > UINT32_MAX - static_cast<uint32_t>(kLanes - 1);
}

// kLanes blocks, 16 per AVX-512 vector.
__attribute__((target("avx512f"), always_inline)) inline void philox_lanes_avx512(const PhiloxStream& stream,
                                                                                  uint64_t first_block,
                                                                                  LaneWords& out) {
  if (group_word_wraps(first_block)) return philox_lanes_scalar(stream, first_block, out);
  constexpr int kWidth = 16;
  constexpr int kVectors = kLanes / kWidth;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i c0[kVectors], c1[kVectors], c2[kVectors], c3[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    c0[v] = _mm512_set1_epi32(static_cast<int>(stream.offset_blocks));
    c1[v] = _mm512_set1_epi32(static_cast<int>(stream.offset_blocks >> 32));
    c2[v] = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(first_block + v * kWidth)), lane);
    c3[v] = _mm512_set1_epi32(static_cast<int>(first_block >> 32));
  }
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(kPhiloxM1));
  uint32_t k0 = static_cast<uint32_t>(stream.seed);
  uint32_t k1 = static_cast<uint32_t>(stream.seed >> 32);
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
    const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
    for (int v = 0; v < kVectors; ++v) {
      __m512i hi0, lo0, hi1, lo1;
      mul_hi_lo_avx512(c0[v], m0, hi0, lo0);
      mul_hi_lo_avx512(c2[v], m1, hi1, lo1);
      c0[v] = _mm512_ternarylogic_epi32(hi1, c1[v], key0, 0x96);  // three-way xor
      c1[v] = lo1;
      c2[v] = _mm512_ternarylogic_epi32(hi0, c3[v], key1, 0x96);
      c3[v] = lo0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  for (int v = 0; v < kVectors; ++v) {
    _mm512_store_si512(out.w0 + v * kWidth, c0[v]);
    _mm512_store_si512(out.w1 + v * kWidth, c1[v]);
    _mm512_store_si512(out.w2 + v * kWidth, c2[v]);
    _mm512_store_si512(out.w3 + v * kWidth, c3[v]);
  }
}

// kLanes blocks, 8 per AVX2 vector.
__attribute__((target("avx2"), always_inline)) inline void philox_lanes_avx2(const PhiloxStream& stream,
                                                                             uint64_t first_block, LaneWords& out) {
  if (group_word_wraps(first_block)) return philox_lanes_scalar(stream, first_block, out);
  constexpr int kWidth = 8;
  constexpr int kVectors = kLanes / kWidth;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i c0[kVectors], c1[kVectors], c2[kVectors], c3[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    c0[v] = _mm256_set1_epi32(static_cast<int>(stream.offset_blocks));
    c1[v] = _mm256_set1_epi32(static_cast<int>(stream.offset_blocks >> 32));
    c2[v] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first_block + v * kWidth)), lane);
    c3[v] = _mm256_set1_epi32(static_cast<int>(first_block >> 32));
  }
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  uint32_t k0 = static_cast<uint32_t>(stream.seed);
  uint32_t k1 = static_cast<uint32_t>(stream.seed >> 32);
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int v = 0; v < kVectors; ++v) {
      __m256i hi0, lo0, hi1, lo1;
      mul_hi_lo_avx2(c0[v], m0, hi0, lo0);
      mul_hi_lo_avx2(c2[v], m1, hi1, lo1);
      c0[v] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[v]), key0);
      c1[v] = lo1;
      c2[v] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[v]), key1);
      c3[v] = lo0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  for (int v = 0; v < kVectors; ++v) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.w0 + v * kWidth), c0[v]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.w1 + v * kWidth), c1[v]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.w2 + v * kWidth), c2[v]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.w3 + v * kWidth), c3[v]);
  }
}

#pragma GCC diagnostic pop

#endif  // FASTREG_X86_SIMD

}  // namespace cpu
}  // namespace fastreg
