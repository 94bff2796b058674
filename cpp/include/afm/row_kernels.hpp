// Forward and backward pass of AFM for one sparse row: the pair-wise interaction layer, the
// attention network and the attention-based pooling.
//
//   forward:  e_rs = V[i_r]*V[i_s]*x_r*x_s   (P x k, P = m(m-1)/2 pairs in storage order)
//             Z = E W^T + b (P x t);  s = ReLU(Z) h;  a = softmax(s);  q = a^T E (k)
//             y = w0 + sum w[i_r] x_r + p . (d * q)
//   backward: given g = dloss/dy, adds the row's gradient to a thread's dense buffers (W, b, h, p, w0)
//             and writes the gradient of each of the row's non-zeros (V rows, w) to caller-owned
//             per-non-zero slots, so that sparse gradients are summed later in a fixed order.
//
// Threading contract: a RowScratch and a DenseGrad belong to one thread; the model is read only.
// FLOPs per row: forward 2*P*t*k (the attention GEMM) + O(P*(k+t)); backward 4*P*t*k + O(P*(k+t)).
#pragma once
#include <vector>

#include "afm/common.hpp"
#include "afm/model.hpp"

namespace afm {

// Per-thread work memory of one row, sized once for the largest row (no allocation per row).
struct RowScratch {
    std::vector<float> E;     // P x k pair products
    std::vector<float> Z;     // P x t attention pre-activations
    std::vector<float> a;     // P attention weights
    std::vector<float> q;     // k pooled vector
    std::vector<float> mask;  // k dropout factors d
    std::vector<float> c;     // k: dloss/dq
    std::vector<float> delta; // t: dloss/dz of one pair
    std::vector<float> de;    // k: dloss/de of one pair
    void reserve(int64_t max_pairs, int k, int t);
};

// Gradient of the dense parameters, summed over the rows one thread handled.
// One flat buffer [W (t*k) | b (t) | h (t) | p (k)] so that threads' buffers reduce in one loop.
struct DenseGrad {
    std::vector<float> data;
    double w0 = 0.0;
    int k = 0, t = 0;
    void resize(int k_, int t_);
    void zero();
    float* W() { return data.data(); }
    float* b() { return data.data() + static_cast<size_t>(t) * k; }
    float* h() { return b() + t; }
    float* p() { return h() + t; }
    const float* W() const { return data.data(); }
    const float* b() const { return data.data() + static_cast<size_t>(t) * k; }
    const float* h() const { return b() + t; }
    const float* p() const { return h() + t; }
};

// Forward pass; keeps E, Z, a, q in `s` for the backward pass. `mask` is null (no dropout) or k factors.
float row_forward(const ModelView& m, const feature_t* idx, const float* x, int64_t nnz, bool attention,
                  const float* mask, RowScratch& s);

// Backward pass after row_forward on the same row. dV_nz (nnz x k) and dw_nz (nnz) are overwritten.
void row_backward(const ModelView& m, const feature_t* idx, const float* x, int64_t nnz, bool attention,
                  const float* mask, float g, RowScratch& s, DenseGrad& dense, float* dV_nz, float* dw_nz);

// The attention weights of the row's pairs after row_forward (P values, storage order).
inline const float* row_attention(const RowScratch& s) { return s.a.data(); }

}  // namespace afm
