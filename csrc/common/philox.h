// Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror, Shaw
// 2011, "Parallel Random Numbers: As Easy as 1, 2, 3" (SC'11), shared by the
// CPU and CUDA kernels.
//
// A Philox block maps a 128-bit counter and a 64-bit key to four 32-bit words
// with ten rounds of
//
//   (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0,  lo(M1 c2),  hi(M0 c0) ^ c3 ^ k1,  lo(M0 c0))
//
// (hi/lo: the high/low 32 bits of the 64-bit product), bumping the key by the
// Weyl constants (W0, W1) after each round. There is no state: the words of
// block n are a pure function of (key, counter n), so any element can be
// drawn by any thread in any order.
//
// fastreg's counter layout follows PyTorch's CUDA convention (curand_init with
// subsequence = index, offset = the generator's offset): for one op call,
//
//   key     = seed                 (64 bits)
//   counter = (offset / 4, group)  (low 64 bits, high 64 bits)
//
// where `offset` is the generator's Philox offset in 32-bit draws (a multiple
// of 4, advanced by 4 per call) and `group` is the index of the group of
// elements one block serves. Block (offset/4, group) is therefore exactly the
// block that curand's Philox4_32_10 would produce for subsequence `group` at
// that offset, and calls with different offsets never share a counter. On the
// CPU, seed is a fresh 64-bit draw from the CPU generator per call and the
// offset is 0.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace fastreg {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

// The four output words of one Philox block.
struct PhiloxWords {
  uint32_t w0, w1, w2, w3;
};

// Key and low counter half of one op call; block `group` has counter
// (offset_blocks, group).
struct PhiloxStream {
  uint64_t seed;
  uint64_t offset_blocks;  // the generator's offset in 128-bit blocks (offset / 4)
};

// hi and lo 32 bits of a * b.
FASTREG_HD_INLINE void mul_hi_lo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#ifdef __CUDA_ARCH__
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t product = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
#endif
}

// One Philox round on the counter words, in place.
FASTREG_HD_INLINE void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  uint32_t hi0, lo0, hi1, lo1;
  mul_hi_lo(kPhiloxM0, c0, hi0, lo0);
  mul_hi_lo(kPhiloxM1, c2, hi1, lo1);
  c0 = hi1 ^ c1 ^ k0;
  c1 = lo1;
  c2 = hi0 ^ c3 ^ k1;
  c3 = lo0;
}

// Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1).
FASTREG_HD_INLINE PhiloxWords philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                            uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif !defined(__CUDACC__)  // (the host pass of nvcc knows neither pragma)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < kPhiloxRounds; ++round) {
    philox_round(c0, c1, c2, c3, k0, k1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return {c0, c1, c2, c3};
}

// Block `group` of a stream: counter (offset_blocks, group), key seed.
FASTREG_HD_INLINE PhiloxWords philox_block(const PhiloxStream& stream, uint64_t group) {
  return philox4x32_10(static_cast<uint32_t>(stream.offset_blocks), static_cast<uint32_t>(stream.offset_blocks >> 32),
                       static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32),
                       static_cast<uint32_t>(stream.seed), static_cast<uint32_t>(stream.seed >> 32));
}

}  // namespace fastreg
