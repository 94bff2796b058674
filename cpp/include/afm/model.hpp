// The AFM parameters as raw views, and the settings of a training run.
//
//   y = w0 + sum_r w[i_r] x_r + p . (d * sum_{r<s} a_rs e_rs),   e_rs = V[i_r] * V[i_s] * x_r * x_s
//   a = softmax over the row's pairs of h . ReLU(W e_rs + b)
//
// Shapes: w (n_features), V (n_features x k), W (t x k), b (t), h (t), p (k); all float32, row-major.
// See docs/model.md for the full contract. The arrays are owned by Python; the core only views them.
#pragma once
#include <cstdint>

#include "afm/optimizers.hpp"

namespace afm {

struct ModelView {
    float* w0 = nullptr;  // one float
    float* w = nullptr;
    float* V = nullptr;
    float* W = nullptr;
    float* b = nullptr;
    float* h = nullptr;
    float* p = nullptr;
    int64_t n_features = 0;
    int k = 0;  // embedding_dim
    int t = 0;  // attention_dim
    // FwFM (field-weighted pooling; docs/model.md, "FwFM"): R (n_fields x n_fields, symmetric, read in its upper
    // triangle) weighs each pair by its fields, field[i] in [0, n_fields) is feature i's field. nullptr: AFM/FM.
    // With attention (field-aware AFM, docs/model.md): R weighs each pooled pair, a_rs r_F(r)F(s) e_rs, and S
    // (n_fields x n_fields, symmetric likewise) adds s_F(r)F(s) to each pair's attention logit; either may be null.
    // An optimizer slot's view has R and S (its state of them) and no field. Last, so that {w0, ..., t} still
    // initialises.
    float* R = nullptr;
    const int32_t* field = nullptr;
    int n_fields = 0;
    float* S = nullptr;
    bool field_weighted() const { return R != nullptr; }
    bool field_aware() const { return R != nullptr || S != nullptr; }
};

enum class Loss { squared = 0, logistic = 1 };

struct TrainConfig {
    Loss loss = Loss::squared;
    Optimizer optimizer = Optimizer::adagrad;
    bool attention = true;      // false: FM-like uniform pooling (all a_rs = 1)
    bool learn_projection = true;  // false: p stays fixed (p = 1 gives the plain FM pair term)
    float dropout = 0.0f;       // drop ratio on the pooled pair-wise layer
    float attention_l2 = 0.0f;  // L2 on W, once per batch
    float l2 = 0.0f;            // L2 on touched rows of V and w, once per batch
    // L2 on V and w scaled by frequency: id i's share in a batch is frequency_l2 * c_iB / n_i^2 (c_iB its
    // occurrences in the batch, n_i in the rows of the fit), so over an epoch id i pays frequency_l2 / n_i.
    float frequency_l2 = 0.0f;
    float learning_rate = 0.01f;
    // Adam's constants (fastafm.reference.ADAM_BETA1, ADAM_BETA2, ADAM_EPS set them; docs/model.md). Double:
    // 1 - beta2 in float32 arithmetic would be off by 1.3e-5 relative (0.999f is not 0.999).
    double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;
    int batch_size = 128;
    uint64_t seed = 0;          // dropout stream
    uint64_t epoch = 0;         // dropout stream
    int n_threads = 0;          // 0 = all cores
    // precision="bf16": the attention GEMMs with bf16 inputs and float32 sums (bf16_kernels(); the CPU must have
    // AVX512_BF16, else the Trainer throws std::invalid_argument). Parameters and optimizer state stay float32.
    bool bf16 = false;
};

// What a trainer in bf16 mode says where the CPU (or build) lacks AVX512_BF16.
constexpr const char* kBf16Missing =
    "precision='bf16' needs a CPU with AVX512_BF16 (the avx512_bf16 flag: Zen 4 / Sapphire Rapids or later); this "
    "CPU lacks it: use precision='fp32'";

// The optimizer's state as named slots, each a view with the model's shapes (docs/model.md, "Optimizer
// state"), in the order of its row of the optimizer table (afm/optimizers.hpp): sgd has none, adagrad one, G
// (the running sums of squared gradients), adam the moments m and v. An optimizer whose coefficients depend on
// the step count (adam) also has its step counts (slot "step", arrays for w and w0 only): one per row of V and w
// (they are always updated together) and one for the dense parameters.
struct OptimizerState {
    Optimizer kind = Optimizer::sgd;
    ModelView slot[kMaxOptimizerSlots];  // slot[i]: the optimizer's i-th slot
    float* row_step = nullptr;    // updates so far of row i of V and w (n_features; float32, exact to 2^24)
    float* dense_step = nullptr;  // updates so far of w0, W, b, h, p (one float)
};

}  // namespace afm
