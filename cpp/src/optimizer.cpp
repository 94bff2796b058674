#include "afm/optimizer.hpp"

#include <cmath>

namespace afm {

void adagrad_update(float* AFM_RESTRICT theta, float* AFM_RESTRICT accum, const float* AFM_RESTRICT grad,
                    int64_t n, float lr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const float g = grad[i];
        const float G = accum[i] + g * g;
        accum[i] = G;
        theta[i] -= lr * g / std::sqrt(G);
    }
}

void sgd_update(float* AFM_RESTRICT theta, const float* AFM_RESTRICT grad, int64_t n, float lr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) theta[i] -= lr * grad[i];
}

}  // namespace afm
