// Counter-based dropout mask shared by the CPU and CUDA kernels (and mirrored bit for bit by the
// pure-PyTorch reference in scalegmn_ext/reference/hash_dropout.py).
//
// Element k of a dropout call with seed s is kept iff the top 24 bits of
// hash32(hash32(lo32(k) ^ hash32(hi32(k) ^ s)) + s) are >= threshold = round(p * 2^24).
// (The seed enters twice so that two seeds never give index-shifted copies of one mask.) The mask is a pure
// function of (seed, index), so backward regenerates it instead of storing it, a tile of a larger
// tensor can apply its slice of the same mask (pass the tile's flat offset), and CPU and CUDA give
// identical masks. The hash is an integer finaliser (xorshift-multiply, multipliers < 2^31) --
// ample quality for Bernoulli masks, not for cryptography.
#pragma once

#include <cstdint>

#include "macros.h"

namespace scalegmn {

SGMN_HD_INLINE uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x2c1b3c6du;
  x ^= x >> 16;
  return x;
}

// The draw given the hoisted high-word hash hi = hash32(hi32(k) ^ seed).
SGMN_HD_INLINE uint32_t dropout_draw_lo(uint32_t lo, uint32_t hi, uint32_t seed) {
  return hash32(hash32(lo ^ hi) + seed) >> 8;
}

// 24-bit uniform draw for flat element index k under a 32-bit seed.
SGMN_HD_INLINE uint32_t dropout_draw(uint64_t k, uint32_t seed) {
  const uint32_t hi = hash32(static_cast<uint32_t>(k >> 32) ^ seed);
  return dropout_draw_lo(static_cast<uint32_t>(k), hi, seed);
}

SGMN_HD_INLINE bool dropout_keep(uint64_t k, uint32_t seed, uint32_t threshold) {
  return dropout_draw(k, seed) >= threshold;
}

// threshold for drop probability p in [0, 1): P(draw < threshold) = threshold / 2^24 ~= p.
inline uint32_t dropout_threshold(double p) {
  return static_cast<uint32_t>(p * 16777216.0 + 0.5);
}

}  // namespace scalegmn
