#include "afm/row_kernels.hpp"

#include <algorithm>
#include <cmath>

namespace afm {

void RowScratch::reserve(int64_t max_pairs, int k, int t) {
    const size_t P = static_cast<size_t>(std::max<int64_t>(max_pairs, 1));
    E.assign(P * k, 0.0f);
    Z.assign(P * t, 0.0f);
    a.assign(P, 0.0f);
    q.assign(k, 0.0f);
    mask.assign(k, 1.0f);
    c.assign(k, 0.0f);
    delta.assign(t, 0.0f);
    de.assign(k, 0.0f);
}

void DenseGrad::resize(int k_, int t_) {
    k = k_;
    t = t_;
    data.assign(static_cast<size_t>(t) * k + 2 * static_cast<size_t>(t) + k, 0.0f);
    w0 = 0.0;
}

void DenseGrad::zero() {
    std::fill(data.begin(), data.end(), 0.0f);
    w0 = 0.0;
}

namespace {

inline float dot(const float* AFM_RESTRICT u, const float* AFM_RESTRICT v, int n) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int i = 0; i < n; ++i) acc += u[i] * v[i];
    return acc;
}

// Fills E with the row's pair products e_rs in storage order.
void pair_products(const ModelView& m, const feature_t* idx, const float* x, int64_t nnz, float* AFM_RESTRICT E) {
    const int k = m.k;
    int64_t pair = 0;
    for (int64_t r = 0; r < nnz; ++r) {
        const float* vr = m.V + static_cast<int64_t>(idx[r]) * k;
        for (int64_t s = r + 1; s < nnz; ++s, ++pair) {
            const float* vs = m.V + static_cast<int64_t>(idx[s]) * k;
            const float xrs = x[r] * x[s];
            float* e = E + pair * k;
#pragma omp simd
            for (int f = 0; f < k; ++f) e[f] = vr[f] * vs[f] * xrs;
        }
    }
}

}  // namespace

float row_forward(const ModelView& m, const feature_t* idx, const float* x, int64_t nnz, bool attention,
                  const float* mask, RowScratch& s) {
    const int k = m.k, t = m.t;
    float y = m.w0[0];
    for (int64_t r = 0; r < nnz; ++r) y += m.w[idx[r]] * x[r];

    float* AFM_RESTRICT q = s.q.data();
    std::fill(q, q + k, 0.0f);
    const int64_t P = pair_count(nnz);
    if (P == 0) return y;

    float* AFM_RESTRICT E = s.E.data();
    float* AFM_RESTRICT a = s.a.data();
    pair_products(m, idx, x, nnz, E);

    if (attention) {
        // Attention scores: s_p = h . ReLU(W e_p + b); Z is kept for the backward pass.
        float s_max = -INFINITY;
        for (int64_t pr = 0; pr < P; ++pr) {
            const float* e = E + pr * k;
            float* z = s.Z.data() + pr * t;
            float score = 0.0f;
            for (int j = 0; j < t; ++j) {
                const float zj = m.b[j] + dot(m.W + static_cast<int64_t>(j) * k, e, k);
                z[j] = zj;
                score += m.h[j] * std::max(zj, 0.0f);
            }
            a[pr] = score;
            s_max = std::max(s_max, score);
        }
        float total = 0.0f;
        for (int64_t pr = 0; pr < P; ++pr) {
            a[pr] = std::exp(a[pr] - s_max);
            total += a[pr];
        }
        const float inv = 1.0f / total;
        for (int64_t pr = 0; pr < P; ++pr) a[pr] *= inv;
    } else {
        std::fill(a, a + P, 1.0f);
    }

    for (int64_t pr = 0; pr < P; ++pr) {
        const float* e = E + pr * k;
        const float ap = a[pr];
#pragma omp simd
        for (int f = 0; f < k; ++f) q[f] += ap * e[f];
    }
    float inter = 0.0f;
    if (mask) {
        for (int f = 0; f < k; ++f) inter += m.p[f] * mask[f] * q[f];
    } else {
        inter = dot(m.p, q, k);
    }
    return y + inter;
}

void row_backward(const ModelView& m, const feature_t* idx, const float* x, int64_t nnz, bool attention,
                  const float* mask, float g, RowScratch& s, DenseGrad& dense, float* dV_nz, float* dw_nz) {
    const int k = m.k, t = m.t;
    dense.w0 += g;
    for (int64_t r = 0; r < nnz; ++r) dw_nz[r] = g * x[r];
    std::fill(dV_nz, dV_nz + nnz * k, 0.0f);
    const int64_t P = pair_count(nnz);
    if (P == 0) return;

    const float* AFM_RESTRICT q = s.q.data();
    float* AFM_RESTRICT c = s.c.data();
    float* AFM_RESTRICT dp = dense.p();
    for (int f = 0; f < k; ++f) {
        const float d = mask ? mask[f] : 1.0f;
        c[f] = g * m.p[f] * d;
        dp[f] += g * d * q[f];
    }
    const float cq = dot(c, q, k);
    const float* E = s.E.data();
    const float* a = s.a.data();
    float* AFM_RESTRICT delta = s.delta.data();
    float* AFM_RESTRICT de = s.de.data();
    float* AFM_RESTRICT dW = dense.W();
    float* AFM_RESTRICT dh = dense.h();
    float* AFM_RESTRICT db = dense.b();

    int64_t pair = 0;
    for (int64_t r = 0; r < nnz; ++r) {
        const float* vr = m.V + static_cast<int64_t>(idx[r]) * k;
        float* dvr = dV_nz + r * k;
        for (int64_t s2 = r + 1; s2 < nnz; ++s2, ++pair) {
            const float* vs = m.V + static_cast<int64_t>(idx[s2]) * k;
            float* dvs = dV_nz + s2 * k;
            const float* e = E + pair * k;
            const float ap = a[pair];
            for (int f = 0; f < k; ++f) de[f] = ap * c[f];
            if (attention) {
                // Softmax backward: ds = a (c.e - c.q); then through h . ReLU(W e + b).
                const float ds = ap * (dot(c, e, k) - cq);
                const float* z = s.Z.data() + pair * t;
                for (int j = 0; j < t; ++j) {
                    const float zj = z[j];
                    dh[j] += ds * std::max(zj, 0.0f);
                    delta[j] = zj > 0.0f ? ds * m.h[j] : 0.0f;
                    db[j] += delta[j];
                }
                for (int j = 0; j < t; ++j) {
                    const float dj = delta[j];
                    if (dj == 0.0f) continue;
                    float* dWj = dW + static_cast<int64_t>(j) * k;
                    const float* Wj = m.W + static_cast<int64_t>(j) * k;
#pragma omp simd
                    for (int f = 0; f < k; ++f) {
                        dWj[f] += dj * e[f];
                        de[f] += dj * Wj[f];
                    }
                }
            }
            const float xrs = x[r] * x[s2];
#pragma omp simd
            for (int f = 0; f < k; ++f) {
                dvr[f] += de[f] * vs[f] * xrs;
                dvs[f] += de[f] * vr[f] * xrs;
            }
        }
    }
}

}  // namespace afm
