// Parameter updates: Adagrad (the paper's optimizer) and plain SGD.
//
//   Adagrad: G += g*g;  theta -= lr * g / sqrt(G)      (accumulators start at 1e-8, see docs/model.md)
//   SGD:     theta -= lr * g
//
// Each call updates n contiguous coordinates; the caller decides which rows (sparse, touched rows only)
// or arrays (dense, once per batch). Threading: callers give disjoint ranges to different threads.
#pragma once
#include <cstdint>

#include "afm/common.hpp"
#include "afm/model.hpp"

namespace afm {

constexpr float kAdagradInitialAccumulator = 1e-8f;

void adagrad_update(float* theta, float* accum, const float* grad, int64_t n, float lr);
void sgd_update(float* theta, const float* grad, int64_t n, float lr);

// Dispatches on cfg.optimizer; accum is ignored for SGD.
inline void apply_update(Optimizer opt, float* theta, float* accum, const float* grad, int64_t n, float lr) {
    if (opt == Optimizer::adagrad) adagrad_update(theta, accum, grad, n, lr);
    else sgd_update(theta, grad, n, lr);
}

}  // namespace afm
