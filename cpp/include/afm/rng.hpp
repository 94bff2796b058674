// Counter-based random numbers for dropout.
//
// Why counter-based: the mask of a row depends only on (seed, epoch, row id), never on which thread
// handles the row or in which order, so a fit is reproducible for any thread count.
#pragma once
#include <cstdint>

namespace afm {

inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Inverted dropout mask for one row: out[f] = 0 with probability rho, else 1/(1-rho).
// Each 64-bit hash gives two 24-bit uniforms (one from each half).
inline void dropout_mask_row(uint64_t seed, uint64_t epoch, uint64_t row, int k, float rho, float* out) {
    const uint64_t key = splitmix64(splitmix64(seed) ^ splitmix64(epoch + 0x632BE59BD9B4E019ull) ^
                                    splitmix64(row * 0xD1B54A32D192ED03ull + 1));
    const float keep_scale = 1.0f / (1.0f - rho);
    constexpr float kTo01 = 1.0f / 16777216.0f;  // 2^-24
    for (int f = 0; f < k; f += 2) {
        const uint64_t bits = splitmix64(key + static_cast<uint64_t>(f));
        const float u0 = static_cast<float>((bits >> 40) & 0xFFFFFFu) * kTo01;
        out[f] = (u0 < rho) ? 0.0f : keep_scale;
        if (f + 1 < k) {
            const float u1 = static_cast<float>((bits >> 8) & 0xFFFFFFu) * kTo01;
            out[f + 1] = (u1 < rho) ? 0.0f : keep_scale;
        }
    }
}

}  // namespace afm
